"""What `schedtop set` says when a change is not what the user meant: pid 1 and kernel threads
need --force (with the reason), a per-CPU kernel thread cannot be pinned (not a cpuset story),
a pid together with --name is ambiguous, and a change to what already is journals nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import steer_procs as sp
from steer_procs import schedtop, spawn, state  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.root


def _pid_of(comm: str) -> int:
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if Path(f"/proc/{name}/comm").read_text().strip() == comm:
                    return int(name)
            except OSError:
                continue
    pytest.skip(f"no {comm} here")


def test_pid_1_and_kernel_threads_need_force_and_say_why(state):
    before = sp.snapshot(1)
    want = "3" if sp.nice(1) != 3 else "4"  # a real change, whatever pid 1 has
    r = schedtop("set", "1", "--nice", want)
    assert r.returncode == 1 and sp.snapshot(1) == before
    assert "pid 1 (" in r.stderr and "is the init process: every service it starts inherits the change" in r.stderr
    assert "add --force to change it anyway" in r.stderr
    kthreadd = _pid_of("kthreadd")
    before = sp.snapshot(kthreadd)
    r = schedtop("set", str(kthreadd), "--nice", "3" if sp.nice(kthreadd) != 3 else "4")
    assert r.returncode == 1 and sp.snapshot(kthreadd) == before
    assert f"pid {kthreadd} (kthreadd) is a kernel thread" in r.stderr and "--force" in r.stderr
    assert not (state / "cli.json").exists()


def test_pinning_a_per_cpu_kernel_thread_says_it_is_bound(state):
    pid = _pid_of("ksoftirqd/0")
    r = schedtop("set", str(pid), "--pin", "1", "--force")
    assert r.returncode == 1 and sp.affinity(pid) == "0"
    assert f"pid {pid} (ksoftirqd/0) is a kernel thread bound to CPU 0: the kernel does not let it be moved" \
        in r.stderr
    assert "cpuset" not in r.stderr and "not allowed" not in r.stderr
    assert not (state / "cli.json").exists()


def test_a_pid_and_a_name_glob_together_are_refused_as_ambiguous(state):
    c = spawn("stt-amb")
    try:
        r = schedtop("set", str(c.pid), "--name", "stt-amb*", "--nice", "4")
        assert r.returncode == 2 and "give a pid or --name GLOB, not both" in r.stderr
        assert sp.nice(c.pid) == 0 and not (state / "cli.json").exists()
    finally:
        c.kill()


def test_a_no_op_change_is_not_journaled(state):
    c = spawn("stt-noop")
    try:
        r = schedtop("set", str(c.pid), "--nice", "0", "--pin", "0-1")
        assert r.returncode == 0, r.stderr
        assert f"pid {c.pid} (stt-noop): already OTHER nice 0" in r.stdout and "nothing to change" in r.stdout
        assert not (state / "cli.json").exists()
        assert schedtop("set", str(c.pid), "--nice", "2").returncode == 0
        assert schedtop("set", str(c.pid), "--nice", "2").returncode == 0  # again: no second step
        import json

        steps = json.loads((state / "cli.json").read_text())["steps"]
        assert len(steps) == 1 and steps[0]["entries"][0]["attrs"] == ["nice"]
    finally:
        c.kill()


def test_a_name_that_is_not_utf8_is_tuned_and_restored(state):
    """Any user may give a task a name that is not UTF-8 (prctl PR_SET_NAME takes bytes). Reading
    its /proc files as text once raised, and the error read as 'No such process': set refused a
    live task. Now it is tuned, shown with replacement characters, and restored."""
    import subprocess
    import sys

    code = ("import ctypes,time; ctypes.CDLL(None).prctl(15, b'stt-\\xff\\xfe', 0, 0, 0);"
            "print('ok', flush=True); time.sleep(300)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout and p.stdout.readline().strip() == "ok"
        before = sp.snapshot(p.pid)
        r = schedtop("set", str(p.pid), "--nice", "5")
        assert r.returncode == 0, r.stderr
        assert f"pid {p.pid} (stt-\ufffd\ufffd)" in r.stdout and "nice 5" in r.stdout
        assert sp.nice(p.pid) == 5
        r = schedtop("restore")
        assert r.returncode == 0 and "1 restored" in r.stdout, r.stdout + r.stderr
        assert sp.snapshot(p.pid) == before
    finally:
        p.kill()
        p.wait()
