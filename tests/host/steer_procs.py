"""Real child processes to retune, and /proc readers that check the result independently
of schedtop's own code (tests must not trust the code under test to verify itself)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

# A child that names itself, starts N-1 extra threads, prints every tid, then sleeps.
CHILD = r"""
import ctypes, sys, threading, time
name, n = sys.argv[1], int(sys.argv[2])
libc = ctypes.CDLL(None)
libc.prctl(15, name.encode()[:15], 0, 0, 0)
tids = [threading.get_native_id()]
ready = threading.Barrier(n)
def worker(i):
    libc.prctl(15, f"{name[:10]}-w{i}".encode(), 0, 0, 0)
    tids.append(threading.get_native_id())
    ready.wait()
    while True:
        time.sleep(1000)
for i in range(1, n):
    threading.Thread(target=worker, args=(i,), daemon=True).start()
ready.wait()
print(" ".join(map(str, tids)), flush=True)
while True:
    time.sleep(1000)
"""


@dataclass
class Child:
    proc: subprocess.Popen
    tids: list[int]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def spawn(name: str = "stt-child", threads: int = 1, prefix: list[str] | None = None,
          python: str | os.PathLike | None = None) -> Child:
    """``python``: an interpreter the prefix's user can run (the nobody_install fixture's)."""
    n = max(threads, 1)
    proc = subprocess.Popen([*(prefix or []), python or sys.executable, "-c", CHILD, name, str(n)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    tids = [int(t) for t in line.split()]
    assert len(tids) == n, f"child did not start: {line!r}"
    return Child(proc, tids)


def _stat(pid: int, tid: int) -> list[str]:
    with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:  # a comm may be any bytes
        data = f.read()
    return data[data.rindex(b")") + 2:].decode().split()


def policy(pid: int, tid: int | None = None) -> int:
    return int(_stat(pid, tid or pid)[38])  # field 41


def rt_priority(pid: int, tid: int | None = None) -> int:
    return int(_stat(pid, tid or pid)[37])  # field 40


def nice(pid: int, tid: int | None = None) -> int:
    return int(_stat(pid, tid or pid)[16])  # field 19


def starttime(pid: int, tid: int | None = None) -> int:
    return int(_stat(pid, tid or pid)[19])  # field 22


def slice_ns(pid: int, tid: int | None = None) -> int | None:
    with open(f"/proc/{pid}/task/{tid or pid}/sched", errors="replace") as f:
        for line in f:
            if line.startswith("se.slice"):
                return int(float(line.split(":")[1]))
    return None


def affinity(pid: int, tid: int | None = None) -> str:
    with open(f"/proc/{pid}/task/{tid or pid}/status", errors="replace") as f:
        for line in f:
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()
    raise AssertionError("no Cpus_allowed_list")


def snapshot(pid: int, tid: int | None = None) -> tuple:
    """Everything schedtop may change, read straight from /proc."""
    return (policy(pid, tid), rt_priority(pid, tid), nice(pid, tid), slice_ns(pid, tid), affinity(pid, tid))


def schedtop(*args: str, env: dict | None = None, prefix: list[str] | None = None,
             timeout: float = 60, exe: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """The venv's schedtop, or ``exe`` (for another user: the nobody_install fixture's)."""
    exe = exe or os.path.join(os.path.dirname(sys.executable), "schedtop")
    return subprocess.run([*(prefix or []), exe, *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def wait_for(cond, timeout: float = 20.0) -> bool:
    """Poll ``cond`` every 50 ms until it holds (True) or ``timeout`` seconds pass (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(autouse=True)
def state(tmp_path, monkeypatch):
    """A private journal dir per test (import this fixture into a test module to use it)."""
    d = tmp_path / "state"
    monkeypatch.setenv("SCHEDTOP_STATE_DIR", str(d))
    return d
