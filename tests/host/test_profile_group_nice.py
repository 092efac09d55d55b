"""A profile's group_nice on real session groups: children that start their own session (the
CI runner sits in the init session, where /proc/PID/autogroup is empty, so no test here relies
on the runner's group), /proc/PID/autogroup read before and after, the group set once per
profile run (a new member of a done session journals no second group entry), put back by the
runner's restore, by the watcher's exit on SIGTERM, and by `schedtop restore` after kill -9; a
rule with group_nice alone journals no thread; a task in no session group gets a note, not an
error."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import steer_procs as sp
from schedtop.steer import autogroup
from schedtop.steer.journal import Journal
from schedtop.steer.profiles import ProfileRunner, parse
from steer_procs import schedtop, state, wait_for  # noqa: F401 (autouse fixture)

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not autogroup.enabled(), reason="kernel.sched_autogroup_enabled is not 1")]

# A session leader (start_new_session: its own autogroup) named argv[1]; each line on stdin forks
# one more member of that session (same name), whose pid it prints.
LEADER = r"""
import ctypes, os, sys, time
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)
print(os.getpid(), flush=True)
for line in sys.stdin:
    kid = os.fork()
    if kid == 0:
        while True:
            time.sleep(1000)
    print(kid, flush=True)
while True:
    time.sleep(1000)
"""


class Session:
    def __init__(self, name: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", LEADER, name], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, start_new_session=True)
        self.pid = int(self.proc.stdout.readline())
        assert os.getsid(self.pid) == self.pid

    def fork(self) -> int:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)  # the leader and every forked member
        except ProcessLookupError:
            pass
        self.proc.wait()


@pytest.fixture
def sessions():
    made: list[Session] = []

    def make(name: str) -> Session:
        made.append(Session(name))
        return made[-1]

    yield make
    for s in made:
        s.kill()


def group_of(pid: int) -> tuple[int, int]:
    """(id, nice) straight from /proc, independent of schedtop's parser."""
    text = Path(f"/proc/{pid}/autogroup").read_text()
    m = re.fullmatch(r"/autogroup-(\d+) nice (-?\d+)\n", text)
    assert m, f"pid {pid}: {text!r}"
    return int(m.group(1)), int(m.group(2))


def test_group_nice_is_set_once_per_session_apart_from_the_thread_nice(sessions, state):
    tag = "g" + uuid.uuid4().hex[:6]
    a = sessions(tag)
    gid, nice0 = group_of(a.pid)
    assert nice0 == 0 and sp.nice(a.pid) == 0
    prof = parse(f'name = "t"\n[[rule]]\ncomm = "{tag}"\nnice = 4\ngroup_nice = -10\n')
    j = Journal.session(state)
    runner = ProfileRunner(prof, j)
    reps = runner.poll()
    assert [r.changed for r in reps] == [1] and reps[0].ok, [r.summary() for r in reps]
    assert group_of(a.pid) == (gid, -10) and sp.nice(a.pid) == 4  # two knobs, two values
    assert "autogroup-" in reps[0].summary() and "applies to every task of that session" in reps[0].summary()

    b = a.fork()  # a new member of the same (already done) session
    assert group_of(b) == (gid, -10)  # the group's nice is the session's, b feels it at once
    reps = runner.poll()
    # b inherited nice 4 from a: already so, so nothing is journaled; and not the group again
    assert [(r.changed, r.unchanged) for r in reps] == [(0, 1)] and reps[0].groups == ()
    assert sp.nice(b) == 4
    (first, labels), = j.active_groups()
    assert (first.group, first.nice, len(labels)) == (gid, 0, 1)
    assert len(j.steps) == 1

    j.restore_all()
    # b was forked from a after a got nice 4: 4 is b's own original, and stays
    assert group_of(a.pid) == (gid, 0) and (sp.nice(a.pid), sp.nice(b)) == (0, 4)
    assert not j.path.exists()


def test_group_nice_alone_journals_the_group_and_no_thread(sessions, state):
    tag = "o" + uuid.uuid4().hex[:6]
    a = sessions(tag)
    gid, _ = group_of(a.pid)
    before = sp.snapshot(a.pid)
    j = Journal.session(state)
    reps = ProfileRunner(parse(f'[[rule]]\ncomm = "{tag}"\ngroup_nice = 5\n'), j).poll()
    assert len(reps) == 1 and reps[0].results == () and [g.ok for g in reps[0].groups] == [True]
    assert reps[0].ok and "0 threads" not in reps[0].summary(), reps[0].summary()  # a success, said as one
    assert group_of(a.pid) == (gid, 5) and sp.snapshot(a.pid) == before
    assert j.active() == [] and [g.group for g, _ in j.active_groups()] == [gid]  # no thread row
    os.setpriority(os.PRIO_PROCESS, a.pid, 3)  # someone else retunes the thread meanwhile
    assert [o.status for o in j.restore_all()] == ["restored"]
    assert group_of(a.pid) == (gid, 0) and sp.nice(a.pid) == 3  # theirs stays: schedtop never set it


def test_a_task_in_no_session_group_gets_a_note_not_an_error(state):
    # kthreadd lives in the root task group: /proc/2/autogroup is empty, like every task of the
    # init session (CI's runner); the rule changes no thread knob, so nothing is journaled.
    assert Path("/proc/2/autogroup").read_text() == ""
    j = Journal.session(state)
    runner = ProfileRunner(parse('[[rule]]\ncomm = "kthreadd"\ngroup_nice = -5\n'), j)
    reps = runner.poll()
    assert len(reps) == 1 and reps[0].results == () and reps[0].groups == () and not runner.errors
    assert reps[0].notes == ("pid 2 is in no session autogroup (root group): task nice alone ranks it",)
    assert "no group nice: pid 2 is in no session autogroup" in reps[0].summary()
    assert runner.poll() == []  # said once: kthreadd is judged, nothing new
    assert len(j) == 0 and Path("/proc/2/autogroup").read_text() == ""


def _watch(prof: Path) -> subprocess.Popen:
    exe = os.path.join(os.path.dirname(sys.executable), "schedtop")
    return subprocess.Popen([exe, "profile", "apply", str(prof), "--watch", "--interval", "0.2", "--no-exec-hook"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("end", ["SIGTERM", "kill9-restore"])
def test_watched_profile_puts_session_groups_back(sessions, tmp_path, state, end):
    tag = "w" + uuid.uuid4().hex[:6]
    a, b = sessions(tag), sessions(tag)  # two sessions, two groups
    ga, gb = group_of(a.pid)[0], group_of(b.pid)[0]
    assert ga != gb
    prof = tmp_path / "g.toml"
    prof.write_text(f'name = "g"\n[[rule]]\ncomm = "{tag}"\npolicy = "batch"\ngroup_nice = -7\n')
    w = _watch(prof)
    try:
        assert wait_for(lambda: (group_of(a.pid), group_of(b.pid)) == ((ga, -7), (gb, -7))), w.stderr
        assert (sp.policy(a.pid), sp.policy(b.pid)) == (3, 3)  # SCHED_BATCH
        if end == "SIGTERM":
            w.send_signal(signal.SIGTERM)
            out, err = w.communicate(timeout=30)
            assert w.returncode == 0, err
            assert "session groups: 2 restored" in out, out
        else:
            w.kill()
            w.wait()
            assert (group_of(a.pid), group_of(b.pid)) == ((ga, -7), (gb, -7))  # nothing undid it
            r = schedtop("restore")
            assert r.returncode == 0, r.stdout + r.stderr
            assert f"autogroup-{ga}" in r.stdout and f"autogroup-{gb}" in r.stdout
        assert (group_of(a.pid), group_of(b.pid)) == ((ga, 0), (gb, 0))
        assert (sp.policy(a.pid), sp.policy(b.pid)) == (0, 0)
        assert not list(state.glob("session-*.json"))
    finally:
        if w.poll() is None:
            w.kill()
            w.wait()
