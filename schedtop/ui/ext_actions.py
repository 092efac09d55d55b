"""Key bindings and actions of one feature area, mixed into SchedtopApp.

Owned by the sched_ext-observability engineer (issue 7). The app concatenates `BINDINGS` below into its own
(every Binding has an id, so the keymap can remap it) and calls
`ext_mount()` on mount and `ext_unmount()` on exit.

  x  the sched_ext screen (sysfs, root/events rates, load/unload markers, scx_stats metrics)
  T  start / stop recording a Perfetto trace; a REC bar shows while it runs

What the host app provides to mixins:
  self.snapshot: Snapshot | None      the latest snapshot shown
  self.selected_task() -> Task | None the task under the cursor
  self.record_action(action: dict)    journal the action into --record output
  self.source                          the live or replay source (LiveSource.add_extra exists on live)
"""

from __future__ import annotations

import os
import time
from typing import Any

from textual.binding import Binding
from textual.widgets import Static

BINDINGS: list[Binding] = [
    Binding("x", "sched_ext", "sched_ext", id="schedtop.sched_ext",
            tooltip="sched_ext: state, ops, root/events rates, load/unload markers, scx_stats metrics"),
    Binding("T", "trace", "Trace", id="schedtop.trace",
            tooltip="Start/stop recording a Perfetto trace (BPF tier, root) into the current directory"),
]

TRACE_DIR_ENV = "SCHEDTOP_TRACE_DIR"


class TraceIndicator(Static):
    """A one-line bar above the footer while a trace records: file, time, events, drops."""

    DEFAULT_CSS = """
    TraceIndicator {
        dock: bottom;
        height: 1;
        padding: 0 1;
        background: $error 30%;
        color: $foreground;
        text-style: bold;
        display: none;
    }
    """


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


class ExtActions:
    _ext_watch: Any = None
    _ext_recorder: Any = None
    _ext_timer: Any = None
    _ext_stats_warned: bool = False

    def ext_mount(self) -> None:
        """Called once the app is mounted: register the extras, mount the REC bar, start the ticker."""
        app: Any = self
        if hasattr(app.source, "add_extra") and not app.replay:
            from schedtop.collect.ext_watch import ExtWatch

            self._ext_watch = ExtWatch(poll=True).attach(app.source)
        app.screen.mount(TraceIndicator(id="trace-indicator"))
        self._ext_timer = app.set_interval(0.5, self._ext_tick)

    def ext_unmount(self) -> None:
        """Called when the app exits: finish a running trace (the file stays valid), stop the poller."""
        if self._ext_timer is not None:
            self._ext_timer.stop()
            self._ext_timer = None
        rec, self._ext_recorder = self._ext_recorder, None
        if rec is not None:
            rec.stop()
        if self._ext_watch is not None:
            self._ext_watch.close()
            self._ext_watch = None

    # --- x: the screen -----------------------------------------------------------

    def action_sched_ext(self) -> None:
        from schedtop.ui.screens.sched_ext import SchedExtScreen

        app: Any = self
        if isinstance(app.screen, SchedExtScreen):
            app.screen.dismiss(None)
            return
        seed = list(self._ext_watch.timeline) if self._ext_watch is not None else []
        app.push_screen(SchedExtScreen(seed))

    # --- T: the trace ------------------------------------------------------------

    def action_trace(self) -> None:
        app: Any = self
        if self._ext_recorder is not None:
            self._ext_stop_trace()
            return
        if app.replay:
            app.notify("trace recording needs the live machine, not a replay", severity="warning")
            return
        if os.geteuid() != 0:
            app.notify("trace recording needs root (BPF tracepoints)", severity="error")
            return
        path = trace_path()
        self._ext_start_trace(path)

    def _ext_start_trace(self, path: str) -> None:
        app: Any = self
        from schedtop.export.trace_record import TraceRecorder

        counters = None
        try:
            from schedtop.export.cli import scx_counter_source

            counters = scx_counter_source(None)
        except Exception:  # the counter tracks are a bonus, never a reason not to record
            counters = None
        rec = TraceRecorder(path, extra_counters=counters, exclusive=True)
        app.record_action({"type": "trace.start", "path": path})
        self._ext_recorder = rec
        self._ext_bar(f"● REC starting {os.path.basename(path)} …")
        self._ext_start_worker(rec)

    def _ext_start_worker(self, rec: Any) -> None:
        app: Any = self

        def start() -> None:  # loading BPF takes a moment: never on the UI thread
            try:
                rec.start()
            except Exception as exc:
                app.call_from_thread(self._ext_start_failed, rec, f"{type(exc).__name__}: {exc}")

        app.run_worker(start, thread=True, group="ext-trace", exit_on_error=False)

    def _ext_start_failed(self, rec: Any, error: str) -> None:
        app: Any = self
        if self._ext_recorder is rec:
            self._ext_recorder = None
        self._ext_bar(None)
        app.notify(f"trace not started: {error}", severity="error", timeout=8)

    def _ext_stop_trace(self) -> None:
        app: Any = self
        rec, self._ext_recorder = self._ext_recorder, None
        self._ext_bar(f"● REC stopping, writing {os.path.basename(rec.path)} …")

        def stop() -> None:
            summary = rec.stop()
            app.call_from_thread(self._ext_stopped, rec, summary)

        app.run_worker(stop, thread=True, group="ext-trace", exit_on_error=False)

    def _ext_stopped(self, rec: Any, summary: Any) -> None:
        app: Any = self
        self._ext_bar(None)
        if summary is None or rec.error:
            app.notify(f"trace failed: {rec.error}", severity="error", timeout=8)
            return
        total = sum(summary.events.values())
        sev = "warning" if summary.dropped else "information"
        app.notify(f"trace written: {summary.path}\n{total} events, {summary.dropped} dropped",
                   severity=sev, timeout=10)
        app.record_action({"type": "trace.stop", "path": summary.path, "events": total,
                           "dropped": summary.dropped})

    def _ext_bar(self, text: str | None) -> None:
        app: Any = self
        try:
            bar = app.query_one("#trace-indicator", TraceIndicator)
        except Exception:  # another screen is on top; the bar lives on the main one
            return
        bar.display = text is not None
        if text is not None:
            bar.update(text)

    def _ext_tick(self) -> None:
        app: Any = self
        rec = self._ext_recorder
        if rec is not None:
            st = rec.status()
            if st.error:
                self._ext_recorder = None
                self._ext_bar(None)
                app.notify(f"trace stopped: {st.error}", severity="error", timeout=8)
            elif st.recording:
                drops = f"  [b]{st.dropped} DROPPED[/b]" if st.dropped else "  0 dropped"
                self._ext_bar(f"● REC {os.path.basename(st.path)}  {st.elapsed_s:.1f}s  "
                              f"{st.events} events{drops}   (T stops)")
        # A stats server that exists but misbehaves costs one warning, not a frozen UI.
        snap = app.snapshot
        stats = snap.extras.scx_stats if snap is not None else None
        err = (stats.error if stats is not None else None) or ""
        broken = stats is not None and not stats.ok and "No such file" not in err and "no scheduler" not in err \
            and "not read yet" not in err
        if broken and not self._ext_stats_warned:
            app.notify(f"scx_stats: {err}", severity="warning", timeout=6)
        self._ext_stats_warned = broken
