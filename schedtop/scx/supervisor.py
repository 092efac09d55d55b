"""Run the scheduler as a supervised child process (what the TUI does).

Why a child and not a thread of the app (measured, see BENCHMARKS.md): the
loop needs the GIL for every decision, and a Textual app rendering at full
rate holds it for milliseconds at a time; a child has its own GIL, its own
mlockall (the app's memory stays pageable) and its own page-fault count. The
child's struct_ops link dies with it, so a crashed app cannot leave the
scheduler behind: stdin closing also tells the child to unload.

All methods are safe from any thread and never block on the child: stats
arrive through a reader thread that swaps ``latest``; commands are written
to the child's stdin pipe (a few bytes, the child reads them in a thread).

A stopped child (SIGSTOP, a debugger) cannot say anything, yet the kernel's
watchdog still ejects it after timeout_ms. A watcher thread therefore reads
the child's state from /proc and sched_ext's from sysfs, and reports the
ejection (with the kernel's reason from /dev/kmsg) while the child is frozen.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from schedtop import kernel_paths


@dataclass(frozen=True, slots=True)
class ScxOptions:
    policy: str = "deadline"
    partial: bool = False
    slice_us: int = 5000
    timeout_ms: int = 5000
    stats_interval: float = 1.0

    def argv(self) -> list[str]:
        args = [sys.executable, "-m", "schedtop", "scx", "--json", "--control", "stdin",
                "--policy", self.policy, "--slice-us", str(self.slice_us),
                "--timeout-ms", str(self.timeout_ms), "--stats-interval", str(self.stats_interval)]
        return args + (["--partial"] if self.partial else [])


@dataclass
class ScxState:
    """What the app shows: updated by the reader thread, read by anyone."""

    running: bool = False
    loaded: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    exit: dict[str, Any] | None = None  # {"reason", "text", "code"} once it ended
    errors: list[str] = field(default_factory=list)
    frozen: str | None = None  # "stopped" (SIGSTOP) or "traced" (a debugger) while the child cannot run


@dataclass(frozen=True, slots=True)
class ScxView:
    """The supervised scheduler at one moment, copied whole: the reader thread goes on
    changing ScxState, a view does not change (its mappings are read-only copies)."""

    running: bool
    loaded: Mapping[str, Any]
    stats: Mapping[str, Any]
    frozen: str | None
    exit: Mapping[str, Any] | None  # {"reason", "text", "code"} once it ended
    options: ScxOptions

    @classmethod
    def of(cls, state: ScxState, running: bool, options: ScxOptions) -> ScxView:
        exit_ = state.exit
        return cls(running=running, loaded=MappingProxyType(dict(state.loaded)),
                   stats=MappingProxyType(dict(state.stats)), frozen=state.frozen,
                   exit=MappingProxyType(dict(exit_)) if exit_ else None, options=options)


WATCH_S = 0.25  # how often the watcher looks: well inside any timeout_ms worth setting
KMSG_WAIT_S = 2.0  # for the kernel's exit lines once sysfs no longer says "disabling"
DISABLING_MAX_S = 60.0  # a disable still running after this is not waited for any longer


def proc_state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat (R, S, T, t, Z...), None once it is gone."""
    from schedtop.collect.procfs import parse_stat  # the collector's parser (comm with ") (" etc.)

    try:
        with open(kernel_paths.proc_stat(pid), "rb") as f:
            fields = parse_stat(f.read())
    except OSError:
        return None
    return fields.state if fields is not None else None


def frozen_kind(state: str | None) -> str | None:
    return {"T": "stopped", "t": "traced"}.get(state or "")


class ScxSupervisor:
    def __init__(self, options: ScxOptions, on_change: Callable[[ScxState], None] | None = None) -> None:
        self.options = options
        self.state = ScxState()
        self.on_change = on_change
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._exit_lock = threading.Lock()  # not _lock: send() may sit on a full pipe to a frozen child

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self.state = ScxState(running=True)
        self._proc = subprocess.Popen(self.options.argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, bufsize=1)
        threading.Thread(target=self._read, args=(self._proc,), name="scx-supervisor", daemon=True).start()
        threading.Thread(target=self._watch, args=(self._proc, self.state), name="scx-watch", daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout and proc.stderr
        for line in proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            event = obj.get("event")
            if event == "loaded":
                self.state.loaded = obj
            elif event == "exit":
                # The watcher may have reported an ejection while the child was frozen; the app
                # has acted on that one, so a thawed child's own account does not replace it.
                self._set_exit(self.state, {k: obj.get(k) for k in ("reason", "text", "code")})
                if obj.get("stats"):
                    self.state.stats = obj["stats"]
            elif event == "bad_command":
                self.state.errors.append(str(obj.get("error")))
            elif event is None:
                self.state.stats = obj
            self._changed()
        err = proc.stderr.read().strip()
        code = proc.wait()
        # It died before saying why (refused to load, killed): its stderr is the reason.
        text = err.splitlines()[-1] if err else f"exited with status {code}"
        self._set_exit(self.state, {"reason": "error" if code else "stopped",
                                    "text": text.removeprefix("schedtop scx: "), "code": code})
        self.state.running = False
        self._changed()

    def _watch(self, proc: subprocess.Popen[str], state: ScxState) -> None:
        from schedtop.collect.sched_ext import SCHEDTOP_OPS, read_scheduler_info
        from schedtop.collect.scx_events import KmsgReader, ScxEventTracker

        kmsg = KmsgReader()  # opened now, so only this run's lines are read; without root: no reason
        tracker = ScxEventTracker(kmsg if kmsg.available else None)
        try:
            while proc.poll() is None and state is self.state:
                time.sleep(WATCH_S)
                info = read_scheduler_info()
                events = tracker.update(info)
                kind = frozen_kind(proc_state(proc.pid))
                if kind != state.frozen:
                    state.frozen = kind
                    self._changed()
                if kind is None or not state.loaded or state.exit is not None:
                    continue
                gone = [e for e in events if e.kind in ("eject", "unload") and e.ops_name == SCHEDTOP_OPS]
                if gone:
                    ev = gone[-1]
                    # The kernel logs "disabled (REASON)" at the end of its disable work, after
                    # moving every task back to the fair class, and only then sets "disabled":
                    # while sysfs reads "disabling" the line is still to come (a TCG guest on a
                    # loaded host has taken more than 2 s for that). The tracker fills the
                    # reason into the event it already returned.
                    now = time.monotonic()
                    give_up, settled = now + DISABLING_MAX_S, None if info.ext_state == "disabling" else now
                    while ev.reason is None and kmsg.available:
                        now = time.monotonic()
                        if now >= give_up or (settled is not None and now >= settled + KMSG_WAIT_S):
                            break
                        time.sleep(0.05)
                        info = read_scheduler_info()
                        tracker.update(info)
                        if settled is None and info.ext_state != "disabling":
                            settled = time.monotonic()
                        ev = next((e for e in reversed(tracker.events) if e.ts == ev.ts), ev)
                    why = ev.reason or "see the kernel log"
                    detail = f": {ev.detail}" if ev.detail else ""
                    if self._set_exit(state, {"reason": "ejected", "code": None,
                                              "text": f"the kernel ejected the scheduler ({why}{detail}) while "
                                                      f"its loop (pid {proc.pid}) was {kind}"}):
                        self._changed()
                    if kind == "stopped":
                        # Nothing is left for it to do, and a frozen process holding a dead
                        # scheduler's link only confuses. A traced one belongs to its debugger.
                        self._kill(proc)
        finally:
            kmsg.close()

    @staticmethod
    def _kill(proc: subprocess.Popen[str]) -> None:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def _set_exit(self, state: ScxState, exit_: dict[str, Any]) -> bool:
        """The first account of an exit wins (reader and watcher may both have one)."""
        with self._exit_lock:
            if state.exit is not None:
                return False
            state.exit = exit_
            return True

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change(self.state)
            except Exception:  # a UI callback must not kill the reader
                pass

    def send(self, **cmd: Any) -> bool:
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None or proc.stdin is None:
                return False
            try:
                proc.stdin.write(json.dumps(cmd) + "\n")
                proc.stdin.flush()
                return True
            except (BrokenPipeError, OSError, ValueError):
                return False

    def stop(self, timeout: float = 5.0) -> None:
        """Unload: ask, then close stdin, then terminate if it does not go."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None and frozen_kind(proc_state(proc.pid)):
            # Frozen, it can neither read "stop" nor handle SIGTERM; the kernel drops its
            # struct_ops link when it dies, which is all an unload is.
            self._kill(proc)
            return
        self.send(cmd="stop")
        try:
            if proc.stdin:
                proc.stdin.close()
        except OSError:
            pass
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def view(self) -> ScxView:
        """What Snapshot.extras.scx is made from (SchedulerController.part)."""
        return ScxView.of(self.state, self.running, self.options)
