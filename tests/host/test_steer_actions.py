"""Every steering action on real child processes, verified through /proc (root)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from schedtop.steer import units
from schedtop.steer.actions import SteerError, Tuning, ref_for, set_base_slice
from schedtop.steer.change import change
from schedtop.steer.journal import Journal
from schedtop.steer.targets import resolve

import steer_procs as sp
from steer_procs import schedtop, spawn, state  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.root


@pytest.fixture
def child():
    c = spawn("stt-one")
    yield c
    c.kill()


@pytest.fixture
def threaded():
    c = spawn("stt-mt", threads=4)
    yield c
    c.kill()


def test_slice_is_set_and_read_back_from_se_slice(child, state):
    j = Journal.session(state)
    ref = ref_for(child.pid)
    rep = change([ref], Tuning(slice_ns=3_000_000), j)
    assert rep.ok
    assert sp.slice_ns(child.pid) == 3_000_000
    assert rep.results[0].after.slice_ns == 3_000_000
    change([ref], Tuning(slice_ns=500_000), j)
    assert sp.slice_ns(child.pid) == 500_000
    default = rep.results[0].before.slice_ns
    change([ref], Tuning(slice_ns=0), j)  # "default" key
    assert sp.slice_ns(child.pid) == default


def test_slice_out_of_range_is_refused_with_the_range(child):
    with pytest.raises(ValueError, match=r"0\.1ms\.\.100ms"):
        units.parse_slice("50us")
    with pytest.raises(ValueError, match="out of range"):
        units.parse_slice("200ms")
    r = schedtop("set", str(child.pid), "--slice", "101ms")
    assert r.returncode == 2 and "0.1ms..100ms" in r.stderr
    assert sp.slice_ns(child.pid) != 101_000_000


def test_pin_single_thread_only_touches_that_thread(threaded, state):
    tid = threaded.tids[2]
    rep = change([ref_for(tid)], Tuning(affinity=(1,)), Journal.session(state))
    assert rep.ok
    assert sp.affinity(threaded.pid, tid) == "1"
    for other in threaded.tids:
        if other != tid:
            assert sp.affinity(threaded.pid, other) == "0-1"


def test_pin_whole_process_pins_every_thread(threaded):
    r = schedtop("set", str(threaded.pid), "--threads", "--pin", "0")
    assert r.returncode == 0, r.stderr
    assert [sp.affinity(threaded.pid, t) for t in threaded.tids] == ["0"] * 4
    r = schedtop("set", str(threaded.pid), "-a", "--pin", "all")
    assert r.returncode == 0, r.stderr
    assert [sp.affinity(threaded.pid, t) for t in threaded.tids] == ["0-1"] * 4


def test_nice_up_and_down(child):
    r = schedtop("set", str(child.pid), "--nice", "-5")
    assert r.returncode == 0
    assert sp.nice(child.pid) == -5
    ag = Path("/proc/sys/kernel/sched_autogroup_enabled")
    # nice alone cannot beat other sessions: say so, but only where the child is in a session
    # group (the file is empty for a task of the init session, as under CI's runner)
    in_group = Path(f"/proc/{child.pid}/autogroup").read_text().strip() != ""
    if ag.exists() and ag.read_text().strip() == "1":
        assert ("autogroup is on" in r.stdout) == in_group, r.stdout
    assert schedtop("set", str(child.pid), "--nice", "7").returncode == 0
    assert sp.nice(child.pid) == 7


def test_fifo_rr_batch_idle_other(child):
    pid = str(child.pid)
    assert schedtop("set", pid, "--fifo", "88").returncode == 0
    assert (sp.policy(child.pid), sp.rt_priority(child.pid)) == (1, 88)
    assert schedtop("set", pid, "--rr", "10").returncode == 0
    assert (sp.policy(child.pid), sp.rt_priority(child.pid)) == (2, 10)
    assert schedtop("set", pid, "--batch").returncode == 0
    assert (sp.policy(child.pid), sp.rt_priority(child.pid)) == (3, 0)
    assert schedtop("set", pid, "--idle").returncode == 0
    assert sp.policy(child.pid) == 5
    assert schedtop("set", pid, "--other", "--nice", "-3", "--slice", "1ms").returncode == 0
    assert (sp.policy(child.pid), sp.nice(child.pid), sp.slice_ns(child.pid)) == (0, -3, 1_000_000)


def test_slice_on_fifo_task_is_refused(child):
    assert schedtop("set", str(child.pid), "--fifo", "50").returncode == 0
    r = schedtop("set", str(child.pid), "--slice", "3ms")
    assert r.returncode == 1 and "slice only applies" in r.stderr
    assert sp.policy(child.pid) == 1


def test_fair_boost_keeps_slice_and_nice_together(child, state):
    """nice and slice travel in one sched_setattr; neither may undo the other."""
    j = Journal.session(state)
    ref = ref_for(child.pid)
    change([ref], Tuning(nice=-10, slice_ns=1_000_000), j)
    assert (sp.nice(child.pid), sp.slice_ns(child.pid)) == (-10, 1_000_000)
    change([ref], Tuning(nice=-4), j)
    assert (sp.nice(child.pid), sp.slice_ns(child.pid)) == (-4, 1_000_000)
    change([ref], Tuning(policy=units.SCHED_BATCH), j)
    assert (sp.policy(child.pid), sp.nice(child.pid), sp.slice_ns(child.pid)) == (3, -4, 1_000_000)


def test_name_glob_matches_processes_and_threads():
    tag = uuid.uuid4().hex[:5]
    a = spawn(f"stn{tag}a", threads=3)
    b = spawn(f"stn{tag}b")
    other = spawn("stt-other")
    try:
        got = {r.tid for r in resolve(name=f"stn{tag}*")}
        # main threads by process name, worker threads by their own names (stn<tag>a-w1 ...)
        assert got == set(a.tids) | set(b.tids)
        assert {r.tid for r in resolve(name=f"stn{tag}b")} == {b.pid}
        assert {r.tid for r in resolve(name=f"stn{tag}a", threads=True)} == set(a.tids)
        r = schedtop("set", "--name", f"stn{tag}*", "--nice", "4")
        assert r.returncode == 0, r.stderr
        assert all(sp.nice(a.pid, t) == 4 for t in a.tids) and sp.nice(b.pid) == 4
        assert sp.nice(other.pid) == 0
        r = schedtop("set", "--name", "no-such-task-xyz*", "--nice", "1")
        assert r.returncode == 1 and "no task matches" in r.stderr
    finally:
        for c in (a, b, other):
            c.kill()


def test_tree_covers_descendants(tmp_path):
    # sh -> two python children (one with 2 threads)
    script = tmp_path / "tree.sh"
    script.write_text("#!/bin/sh\nsleep 300 &\nsleep 300 &\nwait\n")
    script.chmod(0o755)
    import subprocess
    import time

    top = subprocess.Popen([str(script)])
    try:
        for _ in range(100):
            kids = [int(p) for p in Path(f"/proc/{top.pid}/task/{top.pid}/children").read_text().split()]
            if len(kids) == 2:
                break
            time.sleep(0.02)
        r = schedtop("set", str(top.pid), "--tree", "--pin", "1")
        assert r.returncode == 0, r.stderr
        assert [sp.affinity(p) for p in [top.pid, *kids]] == ["1", "1", "1"]
    finally:
        subprocess.run(["pkill", "-P", str(top.pid)])
        top.kill()
        top.wait()


def test_vanished_pid_is_reported_like_chrt():
    # Above pid_max: can never exist (a just-killed pid may be reused at once on a busy box,
    # and this test must not renice someone else's process).
    pid = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    r = schedtop("set", str(pid), "--nice", "3")
    assert r.returncode == 1
    assert f"failed to get pid {pid}'s policy: No such process" in r.stderr


CPUSET = Path("/sys/fs/cgroup/cpuset")


@pytest.mark.skipif(not (CPUSET / "cpuset.cpus").exists() or len(units.online_cpus()) < 2,
                    reason="needs a cgroup v1 cpuset hierarchy and 2 CPUs")
def test_cpuset_forbidding_affinity_is_shown_plainly(child):
    cg = CPUSET / f"schedtop-test-{os.getpid()}"
    cg.mkdir()
    try:
        (cg / "cpuset.cpus").write_text("0")
        (cg / "cpuset.mems").write_text((CPUSET / "cpuset.mems").read_text().strip())
        (cg / "tasks").write_text(str(child.pid))
        r = schedtop("set", str(child.pid), "--pin", "1")
        assert r.returncode == 1
        assert f"failed to set pid {child.pid}'s affinity: Invalid argument" in r.stderr
        assert "cpuset allows 0" in r.stderr
        assert sp.affinity(child.pid) == "0"
        assert not Journal.shared().steps  # nothing changed, nothing journaled
    finally:
        child.kill()
        (CPUSET / "tasks").write_text(str(os.getpid()))  # harmless: we are already in the root
        cg.rmdir()


def test_non_root_gets_eperm_with_the_reason(nobody_install):
    """A nobody process retuning its own nobody child: lowering nice or asking for FIFO fails."""
    xdg = Path(tempfile.mkdtemp(prefix="schedtop-xdg-"))  # pytest's tmp_path is not reachable by nobody
    shutil.chown(xdg, "nobody", "nogroup")
    c = spawn("stt-nobody", prefix=sp.NOBODY, python=nobody_install.python)
    env = {"XDG_STATE_HOME": str(xdg), "SCHEDTOP_STATE_DIR": ""}
    try:
        r = schedtop("set", str(c.pid), "--fifo", "88", env=env, prefix=sp.NOBODY, exe=nobody_install.schedtop)
        assert r.returncode == 1, r.stdout + r.stderr
        assert f"failed to set pid {c.pid}'s policy: Operation not permitted" in r.stderr
        assert "RLIMIT_RTPRIO is 0" in r.stderr and "Traceback" not in r.stderr
        r = schedtop("set", str(c.pid), "--nice", "-5", env=env, prefix=sp.NOBODY, exe=nobody_install.schedtop)
        assert r.returncode == 1 and "Operation not permitted" in r.stderr and "CAP_SYS_NICE" in r.stderr
        assert (sp.policy(c.pid), sp.nice(c.pid)) == (0, 0)
        # lowering its own priority is allowed but cannot be undone by nobody (RLIMIT_NICE 0): it
        # is refused with the reason before anything changes, then made with --force
        r = schedtop("set", str(c.pid), "--nice", "5", env=env, prefix=sp.NOBODY, exe=nobody_install.schedtop)
        assert r.returncode == 1 and sp.nice(c.pid) == 0, r.stdout + r.stderr
        assert "cannot be undone by you: going back to nice 0 needs root or CAP_SYS_NICE" in r.stderr
        assert "add --force" in r.stderr and not (xdg / "schedtop" / "cli.json").exists()
        r = schedtop("set", str(c.pid), "--nice", "5", "--force", env=env, prefix=sp.NOBODY,
                     exe=nobody_install.schedtop)
        assert r.returncode == 0, r.stderr
        assert sp.nice(c.pid) == 5
        d = xdg / "schedtop"
        assert (d.stat().st_mode & 0o777) == 0o700 and d.stat().st_uid != 0
        assert (d / "cli.json").exists()
        # root-only changes on a root task by nobody: EPERM, plainly
        root_child = spawn("stt-rootchild")
        try:
            r = schedtop("set", str(root_child.pid), "--pin", "0", env=env, prefix=sp.NOBODY,
                         exe=nobody_install.schedtop)
            assert r.returncode == 1 and "Operation not permitted" in r.stderr
            assert f"pid {root_child.pid} belongs to uid 0, not you" in r.stderr
            # raising another user's nice: the reason is the owner, not "raising priority needs root"
            r = schedtop("set", str(root_child.pid), "--nice", "5", "--force", env=env, prefix=sp.NOBODY,
                         exe=nobody_install.schedtop)
            assert r.returncode == 1 and sp.nice(root_child.pid) == 0, r.stderr
            assert f"pid {root_child.pid} belongs to uid 0, not you (uid 65534)" in r.stderr
            assert "raising priority" not in r.stderr
        finally:
            root_child.kill()
    finally:
        c.kill()
        shutil.rmtree(xdg, ignore_errors=True)


def test_global_base_slice_degrades_with_a_clear_message():
    knob = Path("/sys/kernel/debug/sched/base_slice_ns")
    try:
        original = int(knob.read_text())
    except OSError:  # this machine: EPERM even for root, so the write must fail plainly
        with pytest.raises(SteerError, match="per-task slices"):
            set_base_slice(3_000_000)
        r = schedtop("set", "--base-slice", "3ms")
        assert r.returncode == 1 and "base_slice_ns" in r.stderr and "Traceback" not in r.stderr
        return
    try:  # a kernel where it is readable: the write must take effect
        assert "3ms" in set_base_slice(3_000_000)
        assert int(knob.read_text()) == 3_000_000
    finally:
        knob.write_text(str(original))


def test_show_without_changes_prints_current_params(child):
    r = schedtop("set", str(child.pid))
    assert r.returncode == 0 and f"pid {child.pid} (stt-one): OTHER nice 0" in r.stdout


def test_bad_cpu_list_and_missing_target_are_usage_errors():
    r = schedtop("set", "1", "--pin", "x-y")
    assert r.returncode == 2 and "bad CPU list" in r.stderr
    r = schedtop("set", "--nice", "1")
    assert r.returncode == 1 and "give a pid or --name" in r.stderr
