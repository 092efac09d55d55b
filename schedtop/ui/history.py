"""Short per-task and system histories for sparklines (kept by the app, rendered by widgets).

Updated once per snapshot on the UI thread, even while the view is paused,
so the sparklines have no gap when it resumes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from schedtop.model import Snapshot

DEPTH = 120  # samples kept; at 1 s refresh, two minutes


@dataclass(slots=True)
class TaskTrail:
    starttime: int
    vruntime_growth_ns: deque[float]
    wait_ns_per_s: deque[float]
    slice_ns: deque[float]
    last_vruntime: int | None = None


class History:
    def __init__(self, depth: int = DEPTH) -> None:
        self.depth = depth
        self.tasks: dict[int, TaskTrail] = {}
        self.p99_us: deque[float] = deque(maxlen=depth)
        self.frames = 0

    def _trail(self, starttime: int) -> TaskTrail:
        d = self.depth
        return TaskTrail(starttime, deque(maxlen=d), deque(maxlen=d), deque(maxlen=d))

    def update(self, snap: Snapshot) -> None:
        self.frames += 1
        if snap.latency is not None and snap.latency.p99_us is not None:
            self.p99_us.append(snap.latency.p99_us)
        seen = set()
        for t in snap.tasks:
            seen.add(t.tid)
            trail = self.tasks.get(t.tid)
            if trail is None or trail.starttime != t.starttime:  # new, or a reused tid
                trail = self.tasks[t.tid] = self._trail(t.starttime)
            if t.vruntime_ns is not None:
                if trail.last_vruntime is not None:
                    trail.vruntime_growth_ns.append(max(0, t.vruntime_ns - trail.last_vruntime))
                trail.last_vruntime = t.vruntime_ns
            trail.wait_ns_per_s.append(t.wait_ns_per_s)
            if t.slice_ns is not None:
                trail.slice_ns.append(t.slice_ns)
        for tid in [tid for tid in self.tasks if tid not in seen]:
            del self.tasks[tid]

    def trail(self, tid: int) -> TaskTrail | None:
        return self.tasks.get(tid)
