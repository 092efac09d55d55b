"""`schedtop set --ext` on a kernel without sched_ext (this host): one clear line, exit 1,
no traceback, and neither the journal nor the task is touched. The guest tests
(tests/guest/test_scx_partial.py) cover the kernel that has the class."""

from __future__ import annotations

import errno
import os

import pytest

import steer_procs as sp
from schedtop.steer.actions import SteerError, Tuning, apply_tuning, ref_for
from steer_procs import schedtop, spawn, state  # noqa: F401 (autouse fixture)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.path.isdir("/sys/kernel/sched_ext"), reason="this kernel has sched_ext: see the guest tests"),
]

NO_EXT = "schedtop: this kernel has no sched_ext (CONFIG_SCHED_CLASS_EXT): SCHED_EXT is not available"


@pytest.fixture
def batch_child():
    # Not SCHED_OTHER nice 0, so "untouched" cannot be confused with "reset".
    kid = spawn("stt-ext", threads=2, prefix=["chrt", "-b", "0", "nice", "-n", "5"])
    yield kid
    kid.kill()


def _files(d):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in d.iterdir()} if d.exists() else {}


@pytest.mark.parametrize("how", [[], ["-a"], ["--tree"], ["--name", "stt-ext*"]], ids=["pid", "threads", "tree", "name"])
def test_set_ext_fails_clearly_and_changes_nothing(batch_child, state, how):
    before = [sp.snapshot(batch_child.pid, t) for t in batch_child.tids]
    assert before[0][:3] == (3, 0, 5)  # BATCH, no RT priority, nice 5
    args = [str(batch_child.pid)] if how[:1] != ["--name"] else []
    r = schedtop("set", *args, *how, "--ext")
    assert r.returncode == 1
    assert r.stderr.strip() == NO_EXT and "Traceback" not in r.stderr and r.stdout == ""
    assert [sp.snapshot(batch_child.pid, t) for t in batch_child.tids] == before
    assert not (state / "cli.json").exists()  # refused before anything was journaled


def test_an_existing_journal_is_left_byte_for_byte(batch_child, state):
    pid = batch_child.pid
    assert schedtop("set", str(pid), "--nice", "7").returncode == 0
    files = _files(state)
    assert "cli.json" in files
    task = sp.snapshot(pid)
    r = schedtop("set", str(pid), "--ext", "--nice", "3")
    assert (r.returncode, r.stderr.strip()) == (1, NO_EXT)
    assert _files(state) == files  # same bytes, not even rewritten
    assert sp.snapshot(pid) == task
    r = schedtop("restore")
    assert r.returncode == 0 and sp.snapshot(pid)[:3] == (3, 0, 5)


def test_the_kernels_own_refusal_is_explained_too(batch_child):
    """Below the pre-check (sysfs unmounted, say): the kernel's EINVAL for policy 7 is named."""
    ref = ref_for(batch_child.pid)
    before = sp.snapshot(ref.pid)
    with pytest.raises(SteerError) as exc:
        apply_tuning(ref, Tuning(policy=7))
    assert exc.value.errno == errno.EINVAL
    assert "Invalid argument" in str(exc.value) and "no sched_ext (CONFIG_SCHED_CLASS_EXT)" in str(exc.value)
    assert sp.snapshot(ref.pid) == before


def test_ext_and_other_policies_are_exclusive(batch_child):
    r = schedtop("set", str(batch_child.pid), "--ext", "--batch")
    assert r.returncode == 2 and "not allowed with argument" in r.stderr and "Traceback" not in r.stderr
