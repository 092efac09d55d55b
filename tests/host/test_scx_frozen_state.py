"""The supervisor's view of its child's run state, read from /proc on real processes: a child
stopped by SIGSTOP is "stopped", a ptrace-stopped one "traced", a running or sleeping one is not
frozen, and a reaped one has no state. (The ejection itself needs sched_ext: tests/guest.)"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

from schedtop.scx.supervisor import frozen_kind, proc_state


def _wait_state(pid: int, want: set[str], timeout: float = 5.0) -> str | None:
    deadline = time.monotonic() + timeout
    while (st := proc_state(pid)) not in want:
        assert time.monotonic() < deadline, f"state {st!r}, wanted {want}"
        time.sleep(0.01)
    return st


CHILD = (
    "import ctypes, sys\n"
    "ctypes.CDLL(None).prctl(15, b'a) b (c', 0, 0, 0)  # PR_SET_NAME, like any thread may\n"
    "print('named', flush=True)\n"
    "sys.stdin.read()\n"
)


def test_stopped_running_and_gone_children() -> None:
    p = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "named"
        # The state follows the LAST ')' of /proc/PID/stat: this comm has spaces and parentheses.
        assert open(f"/proc/{p.pid}/stat").read().startswith(f"{p.pid} (a) b (c) ")
        assert frozen_kind(_wait_state(p.pid, {"S", "R"})) is None
        os.kill(p.pid, signal.SIGSTOP)
        assert frozen_kind(_wait_state(p.pid, {"T"})) == "stopped"
        os.kill(p.pid, signal.SIGCONT)
        assert frozen_kind(_wait_state(p.pid, {"S", "R"})) is None
    finally:
        p.kill()
        p.wait()
    assert proc_state(p.pid) is None and frozen_kind(None) is None


def test_a_traced_child_is_traced_not_stopped() -> None:
    # PTRACE_SEIZE + PTRACE_INTERRUPT: a ptrace-stop without any SIGSTOP, so detaching lets it
    # run again (PTRACE_ATTACH's SIGSTOP could leave it group-stopped, 'T', after the detach).
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 17, 0x4206, 0x4207
    p = subprocess.Popen(["sleep", "30"])
    try:
        assert libc.ptrace(PTRACE_SEIZE, p.pid, None, None) == 0, os.strerror(ctypes.get_errno())
        assert libc.ptrace(PTRACE_INTERRUPT, p.pid, None, None) == 0, os.strerror(ctypes.get_errno())
        os.waitpid(p.pid, 0)  # the interrupt stop
        assert frozen_kind(_wait_state(p.pid, {"t"})) == "traced"
        assert libc.ptrace(PTRACE_DETACH, p.pid, None, None) == 0, os.strerror(ctypes.get_errno())
        assert frozen_kind(_wait_state(p.pid, {"S", "R"})) is None
    finally:
        p.kill()
        p.wait()
