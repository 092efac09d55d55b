"""The collection loop and the replay transport, mixed into SchedtopApp.

A one-shot timer wakes a thread worker that calls `source.collect()` (blocking
I/O, never on the UI thread), records the snapshot if --record is on, and
posts `SnapshotReady`; when the worker ends the next timer is armed, so polls
never overlap (dolphie). `SnapshotReady.can_replace` lets a burst collapse to
the newest frame if the UI falls behind (toolong). Replays are paced by their
recorded intervals divided by `source.speed`; stepping is in memory.

The host app provides: source, replay, paused, pending, latest, delay,
collect_ms, recorder, error, history, show(snapshot), _render_state().
"""

from __future__ import annotations

import threading
import time

from textual import work
from textual.message import Message
from textual.timer import Timer
from textual.worker import Worker, WorkerState, get_current_worker

from schedtop.model import Snapshot, ViewRequest

SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


class SnapshotReady(Message):
    """Posted from the collector thread; a newer one replaces an unhandled older one."""

    def __init__(self, snapshot: Snapshot | None, error: str | None = None, elapsed: float = 0.0,
                 threads: bool = True) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.error = error
        self.elapsed = elapsed
        self.threads = threads  # the request's: one row per thread, or per process (folded by the source)

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotReady) and message.error is None



class Poller:
    _timer: Timer | None = None
    _polling = False
    _stopped = False  # set on exit: arm nothing more

    def poller_init(self) -> None:
        self._timer = None
        self._polling = False
        self._stopped = False
        self._again = False  # the view changed while a collect was in flight: collect again at once
        self._record_lock = threading.Lock()  # the worker records snapshots, the UI actions

    def poller_stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def _poll(self) -> None:
        self._timer = None
        if self._polling:
            return
        if self.replay and getattr(self.source, "at_end", False):
            self._render_state()
            return
        self._polling = True
        self._collect(self.view_request())

    @work(thread=True, exclusive=False, group="collect", exit_on_error=False)
    def _collect(self, request: ViewRequest) -> None:
        worker = get_current_worker()
        t0 = time.perf_counter()
        try:
            snap = self.source.collect(request)
        except Exception as exc:  # a collector bug must not take the UI down
            if not worker.is_cancelled:
                from schedtop.collect.replay import ReplayError

                # A replay's bad frame (ReplayError) is already one line naming file and line.
                what = str(exc) if isinstance(exc, ReplayError) else f"collector: {type(exc).__name__}: {exc}"
                self.post_message(SnapshotReady(None, what))
            return
        elapsed = time.perf_counter() - t0
        if self.recorder is not None and not self.replay:
            with self._record_lock:
                self.recorder.snapshot(snap)
        if not worker.is_cancelled:
            self.post_message(SnapshotReady(snap, None, elapsed, threads=request.threads))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "collect":
            return
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            self._polling = False
            if event.state == WorkerState.ERROR:
                self.error = f"collector: {event.worker.error}"
            self._arm()

    def poll_now(self) -> None:
        """Collect now, for a request that changed (the thread/process mode)."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if self._polling:
            self._again = True
        else:
            self._poll()

    def _arm(self) -> None:
        if self._timer is not None or self._stopped:
            return
        if self._again:
            self._again = False
            self._timer = self.set_timer(0, self._poll)
            return
        if self.replay:
            if self.paused or getattr(self.source, "at_end", False):
                return
            interval = self.latest.interval_s if self.latest is not None and self.latest.interval_s > 0 else self.delay
            wait = interval / max(float(getattr(self.source, "speed", 1.0)), 0.01)
        else:
            wait = max(0.05, self.delay - self.collect_ms / 1000)
            if getattr(self.source, "bpf_pending", False):
                wait = min(wait, 0.1)  # the BPF tier is still loading: show its data as soon as it is up
        self._timer = self.set_timer(wait, self._poll)

    def action_step(self, delta: int) -> None:
        """Replay only: pause and move one frame. No worker: the frame is in memory, or, in a
        large recording, one line to decode (tens of ms at 1000 threads)."""
        src = self.source
        self.paused = True
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if delta > 0 and src.at_end:
            self.notify("end of the recording")
            self._render_state()
            return
        if delta < 0 and src.pos <= 0:
            self.notify("start of the recording")
            self._render_state()
            return
        try:
            snap = src.step(delta, self.view_request())
        except Exception as exc:  # a bad frame of a large recording: say so, keep the last good one
            self.error = str(exc)
            self._render_state()
            return
        self.error = None
        if delta > 0:
            self.history.update(snap)
        self.latest = snap
        self.pending = 0
        self.show(snap)

    def action_speed(self, delta: int) -> None:
        src = self.source
        cur = float(getattr(src, "speed", 1.0))
        i = min(range(len(SPEEDS)), key=lambda k: abs(SPEEDS[k] - cur))
        src.speed = SPEEDS[max(0, min(len(SPEEDS) - 1, i + delta))]
        if self._timer is not None:  # re-arm at the new pace
            self._timer.stop()
            self._timer = None
            self._arm()
        self._render_state()
