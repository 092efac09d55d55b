"""The fair boost reaches the session autogroup: real children in their own sessions (setsid),
/proc/PID/autogroup read before and after, put back by undo, by `schedtop restore` after kill -9
(through a surviving member when the recorded one is gone), EPERM for non-root, and nothing
extra (with the reason) where the autogroup does not schedule the task (cpu cgroup)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

import steer_procs as sp
from schedtop.steer import autogroup
from schedtop.steer.actions import Tuning, ref_for
from schedtop.steer.change import change
from schedtop.steer.journal import Journal, summarize
from steer_procs import schedtop, spawn, state  # noqa: F401 (autouse fixture)

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not autogroup.enabled(), reason="kernel.sched_autogroup_enabled is not 1")]

BOOST = Tuning(nice=-10, slice_ns=1_000_000, group=True)


def group_of(pid: int) -> tuple[int, int]:
    """(id, nice) straight from /proc, independent of schedtop's parser."""
    text = Path(f"/proc/{pid}/autogroup").read_text()
    m = re.fullmatch(r"/autogroup-(\d+) nice (-?\d+)\n", text)
    assert m, text
    return int(m.group(1)), int(m.group(2))


def group_id_or_none(pid: int) -> int | None:
    """The session autogroup's id, or None where the task is in none: /proc/PID/autogroup is
    empty for a task of the init session that never called setsid (CI's runner is one)."""
    m = re.fullmatch(r"/autogroup-(\d+) nice (-?\d+)\n", Path(f"/proc/{pid}/autogroup").read_text())
    return int(m.group(1)) if m else None


@pytest.fixture
def own_session():
    c = spawn("stt-ag", prefix=["setsid"])
    assert os.getsid(c.pid) == c.pid and group_of(c.pid)[0] != group_id_or_none(os.getpid())
    yield c
    c.kill()


# A session leader that forks a second member, prints both pids, then sleeps.
LEADER = r"""
import os, sys, time
kid = os.fork()
if kid == 0:
    while True:
        time.sleep(1000)
print(os.getpid(), kid, flush=True)
while True:
    time.sleep(1000)
"""


def test_boost_sets_session_nice_and_undo_puts_it_back(own_session, state):
    pid = own_session.pid
    gid, nice0 = group_of(pid)
    assert nice0 == 0
    j = Journal.session(state)
    rep = change([ref_for(pid)], BOOST, j, "boost")
    assert rep.ok and rep.notes == (), rep.summary()
    assert group_of(pid) == (gid, -10)
    assert (sp.nice(pid), sp.slice_ns(pid)) == (-10, 1_000_000)
    assert "applies to every task of that session" in rep.summary()
    assert [g.group for g, _ in j.active_groups()] == [gid]
    label, outs = j.undo_last()
    assert {o.status for o in outs} == {"restored"} and any(o.group for o in outs)
    assert summarize(outs) == "1 restored; session groups: 1 restored"
    assert group_of(pid) == (gid, 0) and sp.nice(pid) == 0
    assert not j.path.exists()


def test_group_keeps_its_first_original_across_steps_and_undo_row(own_session, state):
    pid = own_session.pid
    gid, _ = group_of(pid)
    j = Journal.session(state)
    change([ref_for(pid)], Tuning(nice=3, group=True), j)
    change([ref_for(pid)], Tuning(nice=-4, group=True), j)
    assert group_of(pid) == (gid, -4)
    (first, labels), = j.active_groups()
    assert first.nice == 0 and len(labels) == 2
    assert j.undo_group(gid).status == "restored"
    assert group_of(pid) == (gid, 0)
    assert sp.nice(pid) == -4  # the thread's own nice is a separate row
    j.restore_all()
    assert sp.nice(pid) == 0


def test_cli_group_is_opt_in(own_session):
    pid = own_session.pid
    gid, _ = group_of(pid)
    r = schedtop("set", str(pid), "--nice", "-10")
    assert r.returncode == 0, r.stderr
    assert group_of(pid) == (gid, 0) and "--group" in r.stdout  # the note says how
    r = schedtop("set", str(pid), "--nice", "-10", "--group")
    assert r.returncode == 0, r.stderr
    assert group_of(pid) == (gid, -10)
    assert f"autogroup-{gid}" in r.stdout and "every task of that session" in r.stdout
    r = schedtop("set", str(pid), "--group")
    assert r.returncode == 2 and "--group needs --nice" in r.stderr
    r = schedtop("restore")
    assert r.returncode == 0, r.stderr
    assert group_of(pid) == (gid, 0) and sp.nice(pid) == 0


def test_kill9_then_schedtop_restore_through_a_surviving_member(state):
    leader = subprocess.Popen(["setsid", sys.executable, "-c", LEADER], stdout=subprocess.PIPE, text=True)
    lpid, member = (int(x) for x in leader.stdout.readline().split())
    gid, _ = group_of(lpid)
    assert group_of(member) == (gid, 0)
    # A schedtop session that boosts the leader, then dies by SIGKILL (its journal is an orphan).
    code = ("import os, sys; from schedtop.steer.actions import Tuning, ref_for; "
            "from schedtop.steer.change import change; from schedtop.steer.journal import Journal; "
            f"r = change([ref_for({lpid})], Tuning(nice=-10, slice_ns=1_000_000, group=True), Journal.session()); "
            "print(r.ok, flush=True); os.kill(os.getpid(), 9)")
    s = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ)
    assert s.returncode == -signal.SIGKILL and s.stdout.strip() == "True", s.stderr
    try:
        assert group_of(member) == (gid, -10)  # the other member of the session feels it too
        leader.kill()  # the journaled member is gone; the forked one still holds the group
        leader.wait()
        r = schedtop("restore", "--list")
        assert f"autogroup-{gid}" in r.stdout and "was session nice 0" in r.stdout
        r = schedtop("restore")
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"autogroup-{gid}" in r.stdout and "restored" in r.stdout
        assert group_of(member) == (gid, 0)
        assert not list(state.glob("session-*.json"))
    finally:
        os.kill(member, signal.SIGKILL)
        leader.kill()
        leader.wait()


def test_group_with_no_member_left_is_dropped(own_session, state):
    pid = own_session.pid
    j = Journal.session(state)
    change([ref_for(pid)], BOOST, j)
    own_session.kill()
    assert j.prune() == 2  # the thread and its (now empty) session group
    assert len(j) == 0 and j.restore_all() == []


def test_non_root_gets_eperm_for_the_group_and_may_raise_it(nobody_install):
    xdg = Path(tempfile.mkdtemp(prefix="schedtop-xdg-"))  # pytest's tmp_path is not reachable by nobody
    shutil.chown(xdg, "nobody", "nogroup")
    env = {"XDG_STATE_HOME": str(xdg), "SCHEDTOP_STATE_DIR": ""}
    c = spawn("stt-ag-nobody", prefix=[*sp.NOBODY, nobody_install.python, "-c", SETSID_INPROC])
    assert os.getsid(c.pid) == c.pid
    try:
        gid, _ = group_of(c.pid)
        r = schedtop("set", str(c.pid), "--nice", "-5", "--group", env=env, prefix=sp.NOBODY,
                     exe=nobody_install.schedtop)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert f"failed to set pid {c.pid}'s autogroup nice to -5: Operation not permitted" in r.stderr
        assert "CAP_SYS_NICE" in r.stderr
        assert group_of(c.pid) == (gid, 0) and sp.nice(c.pid) == 0
        # raising it is allowed and journaled; `schedtop restore` as nobody may lower the group's
        # nice back to 0 (the kernel checks only nice < 0 there), but not the thread's (RLIMIT_NICE)
        r = schedtop("set", str(c.pid), "--nice", "5", "--group", "--force", env=env, prefix=sp.NOBODY,
                     exe=nobody_install.schedtop)
        assert r.returncode == 0, r.stderr
        assert group_of(c.pid) == (gid, 5)
        r = schedtop("restore", env=env, prefix=sp.NOBODY, exe=nobody_install.schedtop)
        assert f"autogroup-{gid}" in r.stdout and "nice 0: restored" in r.stdout
        assert r.returncode == 1 and "raising priority needs root or CAP_SYS_NICE" in r.stderr
        assert group_of(c.pid) == (gid, 0) and sp.nice(c.pid) == 5
        # said once: what nobody can never undo is dropped from the journal, not asked again
        assert "dropped from the journal" in r.stderr
        r = schedtop("restore", env=env, prefix=sp.NOBODY, exe=nobody_install.schedtop)
        assert r.returncode == 0 and r.stdout.strip() == "nothing to restore", r.stdout + r.stderr
    finally:
        c.kill()
        shutil.rmtree(xdg, ignore_errors=True)


# setsid(1) cannot exec the venv's python as nobody here (it lives under /root): start a new
# session inside the interpreter instead, then run the child script given after it.
SETSID_INPROC = "import os, sys; os.setsid(); code = sys.argv[3]; sys.argv = ['-c'] + sys.argv[4:]; exec(code)"

CPU_CG = Path("/sys/fs/cgroup/cpu")


@pytest.mark.skipif(not (CPU_CG / "cgroup.procs").exists(), reason="no cgroup v1 cpu hierarchy")
def test_cpu_cgroup_bypasses_the_autogroup_so_nothing_extra(own_session, state):
    pid = own_session.pid
    gid, _ = group_of(pid)
    cg = CPU_CG / f"schedtop-test-{uuid.uuid4().hex[:6]}"
    cg.mkdir()
    try:
        (cg / "cgroup.procs").write_text(str(pid))
        rep = change([ref_for(pid)], BOOST, Journal.session(state))
        assert rep.ok and rep.groups == ()
        assert rep.notes and f"cpu cgroup /{cg.name}" in rep.notes[0] and "bypasses the autogroup" in rep.notes[0]
        assert group_of(pid) == (gid, 0) and sp.nice(pid) == -10
    finally:
        (CPU_CG / "cgroup.procs").write_text(str(pid))
        for _ in range(50):
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.05)
