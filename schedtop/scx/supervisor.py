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
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable


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


class ScxSupervisor:
    def __init__(self, options: ScxOptions, on_change: Callable[[ScxState], None] | None = None) -> None:
        self.options = options
        self.state = ScxState()
        self.on_change = on_change
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

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
                self.state.exit = {k: obj.get(k) for k in ("reason", "text", "code")}
                if obj.get("stats"):
                    self.state.stats = obj["stats"]
            elif event == "bad_command":
                self.state.errors.append(str(obj.get("error")))
            elif event is None:
                self.state.stats = obj
            self._changed()
        err = proc.stderr.read().strip()
        code = proc.wait()
        if self.state.exit is None:
            # It died before saying why (refused to load, killed): its stderr is the reason.
            text = err.splitlines()[-1] if err else f"exited with status {code}"
            self.state.exit = {"reason": "error" if code else "stopped", "text": text.removeprefix("schedtop scx: "),
                               "code": code}
        self.state.running = False
        self._changed()

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

    def extras(self) -> dict[str, Any]:
        """The mapping the app's source puts into Snapshot.extras["scx"]."""
        st = self.state
        return {"running": self.running, "loaded": dict(st.loaded), "stats": dict(st.stats),
                "exit": dict(st.exit) if st.exit else None, "options": {
                    "policy": self.options.policy, "partial": self.options.partial}}
