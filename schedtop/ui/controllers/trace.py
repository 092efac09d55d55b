"""The sched_ext window and the `T` Perfetto recording, as the TUI drives them.

ExtWatch fills each live snapshot's "sched_ext" and "scx_stats" parts; the `x` screen is
seeded with its context-switch timeline. `T` records the BPF event stream into a file with
a TraceRecorder of its own tier: the monitor's tier opens without the stream (nothing in
the view reads it), so the sampled events and their sampling rate (`[`, `]`) belong to the
recording. Start and stop run on threads of their own (loading BPF takes a moment); what
happens comes back as small Messages, the REC bar's as one that a newer one replaces.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from textual.markup import escape
from textual.message import Message
from textual.notifications import SeverityLevel

from schedtop.collect.bpf import MAX_SAMPLE_RATE

TRACE_DIR_ENV = "SCHEDTOP_TRACE_DIR"
DEFAULT_TRACE_RATE = 1  # every event: a trace is for reading one moment in full

Post = Callable[[Message], object]
Record = Callable[[dict[str, Any]], None]


def trace_path(directory: str | None = None) -> str:
    """A new name in the directory: two traces in one second get -2, -3... (the file itself
    is created exclusively, so a name taken meanwhile fails instead of being overwritten)."""
    d = directory or os.environ.get(TRACE_DIR_ENV) or os.getcwd()
    stem = os.path.join(d, time.strftime("schedtop-%Y%m%d-%H%M%S"))
    path, n = f"{stem}.perfetto-trace", 1
    while os.path.lexists(path):
        n += 1
        path = f"{stem}-{n}.perfetto-trace"
    return path


def next_rate(rate: int, factor: float) -> int:
    """The rate after one key press: 0 (off) stays reachable from 1 and back."""
    if factor > 1:
        if rate == 0:
            return 0
        new = rate * 2
        return 0 if new > MAX_SAMPLE_RATE else new  # past the largest rate the stream stops
    if rate == 0:
        return MAX_SAMPLE_RATE
    return max(1, rate // 2)


def rate_text(rate: int) -> str:
    return "off" if rate == 0 else ("every scheduling event" if rate == 1 else f"1 event in {rate}")


def _default_recorder(path: str, sample_rate: int) -> Any:
    from schedtop.export.trace_record import TraceRecorder

    counters = None
    try:
        from schedtop.export.cli import scx_counter_source

        counters = scx_counter_source(None)
    except Exception:  # the counter tracks are a bonus, never a reason not to record
        counters = None
    return TraceRecorder(path, extra_counters=counters, exclusive=True, sample_rate=sample_rate)


class TraceController:
    """Plain object: no Textual app, screen or widget. `post` is the app's post_message."""

    class Note(Message):
        def __init__(self, text: str, severity: SeverityLevel = "information", timeout: float = 8) -> None:
            super().__init__()
            self.text, self.severity, self.timeout = text, severity, timeout

    class Bar(Message):
        """The REC line's text, None to hide it. A burst collapses to the newest."""

        def __init__(self, text: str | None) -> None:
            super().__init__()
            self.text = text

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, TraceController.Bar)

    def __init__(self, post: Post, record: Record, make_recorder: Callable[[str, int], Any] = _default_recorder,
                 directory: str | None = None) -> None:
        self._post = post
        self._record = record
        self._make = make_recorder
        self.directory = directory
        self.sample_rate = DEFAULT_TRACE_RATE  # what T records: [ and ] change it
        self._rec: Any = None
        self.watch: Any = None  # ExtWatch on a live source

    # --- the sched_ext window -----------------------------------------------------------

    def attach(self, source: Any) -> None:
        """Fill the live source's sched_ext and scx_stats parts (and invalidate it on a load)."""
        from schedtop.collect.ext_watch import ExtWatch

        self.watch = ExtWatch(poll=True).attach(source)

    def timeline(self) -> list[tuple[float, float]]:
        return list(self.watch.timeline) if self.watch is not None else []

    # --- T --------------------------------------------------------------------------------

    @property
    def recording(self) -> bool:
        return self._rec is not None

    def start(self, path: str | None = None) -> None:
        path = path or trace_path(self.directory)
        rec = self._make(path, self.sample_rate)
        self._rec = rec
        self._record({"type": "trace.start", "path": path, "sample_rate": self.sample_rate})
        self._post(self.Bar(f"● REC starting {escape(os.path.basename(path))} …"))

        def start() -> None:  # loading BPF takes a moment: never on the UI thread
            try:
                rec.start()
            except Exception as exc:
                if self._rec is rec:
                    self._rec = None
                self._post(self.Bar(None))
                self._post(self.Note(f"trace not started: {type(exc).__name__}: {exc}", "error"))

        threading.Thread(target=start, name="trace-start", daemon=True).start()

    def stop(self) -> None:
        rec, self._rec = self._rec, None
        if rec is None:
            return
        self._post(self.Bar(f"● REC stopping, writing {escape(os.path.basename(rec.path))} …"))

        def stop() -> None:
            summary = rec.stop()
            self._post(self.Bar(None))
            if summary is None or rec.error:
                self._post(self.Note(f"trace failed: {rec.error}", "error"))
                return
            total = sum(summary.events.values())
            self._post(self.Note(f"trace written: {summary.path}\n{total} events, {summary.dropped} dropped",
                                 "warning" if summary.dropped else "information", 10))
            self._record({"type": "trace.stop", "path": summary.path, "events": total,
                          "dropped": summary.dropped})

        threading.Thread(target=stop, name="trace-stop", daemon=True).start()

    def step_rate(self, factor: float) -> int:
        """[ and ]: the sampling rate of what T records (every event by default). A recording
        in progress keeps the rate its file says it has: the step applies to the next one."""
        self.sample_rate = next_rate(self.sample_rate, factor)
        self._record({"type": "trace.sample_rate", "rate": self.sample_rate})
        when = "the next trace (T)" if self.recording else "T"
        self._post(self.Note(f"{when} records {rate_text(self.sample_rate)}", timeout=4))
        return self.sample_rate

    def tick(self) -> None:
        """Twice a second while recording: the REC bar, or why the recording ended."""
        rec = self._rec
        if rec is None:
            return
        st = rec.status()
        if st.error:
            self._rec = None
            self._post(self.Bar(None))
            self._post(self.Note(f"trace stopped: {st.error}", "error"))
        elif st.recording:
            drops = f"  [b]{st.dropped} DROPPED[/b]" if st.dropped else "  0 dropped"
            rate = "" if self.sample_rate == 1 else f"  1 in {self.sample_rate}"
            self._post(self.Bar(f"● REC {escape(os.path.basename(st.path))}  {st.elapsed_s:.1f}s  "
                                f"{st.events} events{drops}{rate}   (T stops)"))

    def close(self) -> None:
        """On exit: a running trace is finished (the file stays valid), the watch stops."""
        rec, self._rec = self._rec, None
        if rec is not None:
            rec.stop()
        if self.watch is not None:
            self.watch.close()
            self.watch = None
