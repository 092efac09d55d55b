"""Driving a real `schedtop scx` process in the guest: start, talk JSON lines, read stats."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

SCX = Path("/sys/kernel/sched_ext")


def state() -> str:
    return (SCX / "state").read_text().strip()


def ops() -> str | None:
    try:
        return (SCX / "root" / "ops").read_text().strip()
    except OSError:
        return None


def wait_state(want: str, timeout: float) -> float:
    """Seconds until sched_ext reads ``want``; raises on timeout."""
    t0 = time.monotonic()
    while state() != want:
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"sched_ext still {state()!r} after {timeout}s (wanted {want!r})")
        time.sleep(0.01)
    return time.monotonic() - t0


class ScxProcess:
    """`schedtop scx --json --control stdin` as a child, its JSON lines collected by a thread."""

    def __init__(self, *args: str, timeout_ms: int = 10000) -> None:
        cmd = [sys.executable, "-m", "schedtop", "scx", "--json", "--control", "stdin",
               "--stats-interval", "0.5", "--timeout-ms", str(timeout_ms), *args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.lines: queue.Queue[dict] = queue.Queue()
        self.stats: dict = {}
        self.events: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if "event" in obj:
                self.events.append(obj)
            else:
                self.stats = obj
            self.lines.put(obj)

    def wait_loaded(self, timeout: float = 60.0) -> None:
        t0 = time.monotonic()
        while not (state() == "enabled" and ops() == "schedtop"):
            if self.proc.poll() is not None:
                raise AssertionError(f"schedtop scx exited {self.proc.returncode}: {self.stderr()}")
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"not enabled after {timeout}s: {state()} {ops()}")
            time.sleep(0.05)

    def send(self, **cmd: object) -> None:
        assert self.proc.stdin
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def next_stats(self, timeout: float = 20.0) -> dict:
        """The first stats line that arrives after now."""
        while not self.lines.empty():  # older lines describe the past
            self.lines.get_nowait()
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            try:
                obj = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if "counters" in obj:
                return obj
        raise AssertionError("no stats line")

    def stop(self, timeout: float = 30.0) -> dict:
        """Unload through the control channel; returns the exit event."""
        if self.proc.poll() is None:
            try:
                self.send(cmd="stop")
            except (BrokenPipeError, ValueError):
                pass
        self.proc.wait(timeout=timeout)
        return self.exit_event(timeout)

    def exit_event(self, timeout: float = 10.0) -> dict:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            for e in self.events:
                if e.get("event") == "exit":
                    return e
            time.sleep(0.05)
        raise AssertionError(f"no exit event; stderr: {self.stderr()}")

    def stderr(self) -> str:
        if self.proc.poll() is None or not self.proc.stderr:
            return ""
        return self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def run_all(cmds: list[list[str]], timeout: float = 120.0) -> list[subprocess.CompletedProcess]:
    """Start every command at once (a mixed load), wait for all; each must finish."""
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for c in cmds]
    out = []
    for c, p in zip(cmds, procs):
        try:
            text, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            text, _ = p.communicate()
            raise AssertionError(f"{c} did not finish in {timeout}s") from None
        out.append(subprocess.CompletedProcess(c, p.returncode, text, None))
    return out


PING_PONG = (
    "import os\n"
    "r1, w1 = os.pipe(); r2, w2 = os.pipe()\n"
    "if os.fork() == 0:\n"
    "    for _ in range(N):\n"
    "        os.read(r1, 1); os.write(w2, b'x')\n"
    "    os._exit(0)\n"
    "for _ in range(N):\n"
    "    os.write(w1, b'x'); os.read(r2, 1)\n"
    "os.wait()\n"
    "print('pingpong done')\n"
)


def ping_pong_cmd(n: int = 2000) -> list[str]:
    return [sys.executable, "-c", PING_PONG.replace("N", str(n))]


def spinner_cmd(seconds: float) -> list[str]:
    return [sys.executable, "-c", f"import time\nt=time.monotonic()+{seconds}\nwhile time.monotonic()<t: pass\n"]


def schedstat(pid: int) -> tuple[int, int, int]:
    """(ns on CPU, ns waiting, timeslices) from /proc/PID/schedstat."""
    a, b, c = Path(f"/proc/{pid}/schedstat").read_text().split()
    return int(a), int(b), int(c)


def last_cpu(pid: int) -> int:
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text[text.rindex(")") + 2 :].split()[36])
