"""Recent snapshots, for sparklines: per-task trails and the system p99 over time.

Kept by the app and updated once per snapshot on the UI thread, even while the
view is paused, so the sparklines have no gap when it resumes. The update is
O(1): it keeps references to the (immutable) snapshots and builds a task's
trail only when something shows it, indexing each snapshot by tid once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from schedtop.model import Snapshot, Task

DEPTH = 120  # samples kept; at 1 s refresh, two minutes


@dataclass(slots=True)
class TaskTrail:
    starttime: int
    vruntime_growth_ns: list[float] = field(default_factory=list)
    wait_ns_per_s: list[float] = field(default_factory=list)
    slice_ns: list[float] = field(default_factory=list)


class History:
    def __init__(self, depth: int = DEPTH) -> None:
        self.depth = depth
        self.snaps: deque[Snapshot] = deque(maxlen=depth)
        self.p99_us: deque[float] = deque(maxlen=depth)
        self.p99_ts: deque[float] = deque(maxlen=depth)  # Snapshot.ts of each p99_us sample
        self.frames = 0
        self._by_tid: dict[int, dict[int, Task]] = {}  # id(snapshot) -> {tid: task}, built on demand

    def update(self, snap: Snapshot) -> None:
        self.frames += 1
        if len(self.snaps) == self.snaps.maxlen:
            self._by_tid.pop(id(self.snaps[0]), None)
        self.snaps.append(snap)
        if snap.latency is not None and snap.latency.p99_us is not None:
            self.p99_us.append(snap.latency.p99_us)
            self.p99_ts.append(snap.ts)

    def _index(self, snap: Snapshot) -> dict[int, Task]:
        idx = self._by_tid.get(id(snap))
        if idx is None:
            idx = self._by_tid[id(snap)] = {t.tid: t for t in snap.tasks}
        return idx

    def trail(self, tid: int) -> TaskTrail | None:
        """The task's samples, oldest first, from its current incarnation (a reused tid starts over)."""
        samples = [t for t in (self._index(s).get(tid) for s in self.snaps) if t is not None]
        if not samples:
            return None
        start = samples[-1].starttime
        samples = [t for t in samples if t.starttime == start]
        trail = TaskTrail(start)
        prev = None
        for t in samples:
            if t.vruntime_ns is not None:
                if prev is not None:
                    trail.vruntime_growth_ns.append(max(0, t.vruntime_ns - prev))
                prev = t.vruntime_ns
            trail.wait_ns_per_s.append(t.wait_ns_per_s)
            if t.slice_ns is not None:
                trail.slice_ns.append(t.slice_ns)
        return trail
