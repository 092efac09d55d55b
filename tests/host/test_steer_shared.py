"""Several sessions on one task share the journal without losing the original: each gives back
only what it changed, only while the value is still its own, and the one that stays inherits
the true original. Real session processes (each with its own session journal, as the TUI and
`profile apply --watch` have), `schedtop set`, kill -9, and `schedtop restore`; /proc says."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

import steer_procs as sp
from steer_procs import schedtop, spawn, state  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.root

# A steering session like the TUI's: F7/F8 step the nice from its current value, `a` pins.
SESSION = r"""
import json, sys
from pathlib import Path
from schedtop.steer.actions import Tuning, read_params, ref_for
from schedtop.steer.change import change
from schedtop.steer.journal import Journal
j = Journal.session(Path(sys.argv[1]))
print("ready", flush=True)
for line in sys.stdin:
    cmd, *a = line.split()
    if cmd == "end":
        print(json.dumps([o.line() for o in j.restore_all()]), flush=True)
        break
    if cmd == "undo":  # z
        label, outs = j.undo_last()
        print(json.dumps([o.line() for o in outs]), flush=True)
        continue
    ref = ref_for(int(a[0]))
    if cmd == "nice":
        rep = change([ref], Tuning(nice=read_params(ref).nice + int(a[1])), j)
    else:
        rep = change([ref], Tuning(affinity=tuple(int(c) for c in a[1].split(","))), j)
    print(json.dumps(rep.summary()), flush=True)
"""


class Session:
    def __init__(self, state) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", SESSION, str(state)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def do(self, *cmd: str):
        self.proc.stdin.write(" ".join(cmd) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def end(self) -> list[str]:
        lines = self.do("end")
        self.proc.wait(timeout=30)
        return lines

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    @property
    def pid(self) -> int:
        return self.proc.pid


@pytest.fixture
def sleeper():
    c = spawn("stt-shared")
    assert (sp.nice(c.pid), sp.affinity(c.pid)) == (0, "0-1")
    yield c
    c.kill()


def _two_sessions(state, pid: int) -> tuple[Session, Session]:
    """The issue's steps: session 1 F7 x3 (nice -3); session 2 pins to CPU 0, then F8."""
    s1, s2 = Session(state), Session(state)
    for _ in range(3):
        s1.do("nice", str(pid), "-1")
    assert sp.nice(pid) == -3
    s2.do("pin", str(pid), "0")
    s2.do("nice", str(pid), "+1")
    assert (sp.nice(pid), sp.affinity(pid)) == (-2, "0")
    return s1, s2


def test_the_earlier_session_ends_first_and_the_later_inherits_the_original(sleeper, state):
    pid = sleeper.pid
    s1, s2 = _two_sessions(state, pid)
    lines = s1.end()
    # session 1 changed only the nice, and session 2 changed it after: both stay as session 2 set them
    assert (sp.nice(pid), sp.affinity(pid)) == (-2, "0"), lines
    assert any(f"nice left to session pid {s2.pid}, which changed it after this one" in x for x in lines), lines
    s2.end()
    assert (sp.nice(pid), sp.affinity(pid)) == (0, "0-1")  # the true original, inherited from session 1
    r = schedtop("restore")
    assert r.returncode == 0 and r.stdout.strip() == "nothing to restore", r.stdout + r.stderr
    assert list(state.glob("session-*.json")) == []


def test_the_later_session_ends_first_and_gives_back_the_earlier_ones_value(sleeper, state):
    pid = sleeper.pid
    s1, s2 = _two_sessions(state, pid)
    s2.end()
    assert (sp.nice(pid), sp.affinity(pid)) == (-3, "0-1")  # session 1's value again, its own pin gone
    s1.end()
    assert (sp.nice(pid), sp.affinity(pid)) == (0, "0-1")
    assert schedtop("restore").stdout.strip() == "nothing to restore"


def test_schedtop_set_pin_beside_a_session(sleeper, state):
    pid = sleeper.pid
    s1 = Session(state)
    for _ in range(3):
        s1.do("nice", str(pid), "-1")
    r = schedtop("set", str(pid), "--pin", "0")
    assert r.returncode == 0, r.stderr
    s1.end()
    assert (sp.nice(pid), sp.affinity(pid)) == (0, "0")  # the session took back its nice, not set's pin
    r = schedtop("restore")
    assert r.returncode == 0 and "1 restored" in r.stdout, r.stdout + r.stderr
    assert (sp.nice(pid), sp.affinity(pid)) == (0, "0-1")
    assert schedtop("restore").stdout.strip() == "nothing to restore"


def test_a_session_on_top_of_schedtop_set_gives_back_sets_value(sleeper, state):
    pid = sleeper.pid
    assert schedtop("set", str(pid), "--nice", "-3").returncode == 0
    s1 = Session(state)
    s1.do("nice", str(pid), "+1")
    s1.do("pin", str(pid), "1")
    assert (sp.nice(pid), sp.affinity(pid)) == (-2, "1")
    s1.end()
    assert (sp.nice(pid), sp.affinity(pid)) == (-3, "0-1")  # `schedtop set`'s nice stays until restore
    r = schedtop("restore")
    assert r.returncode == 0, r.stderr
    assert (sp.nice(pid), sp.affinity(pid)) == (0, "0-1")


@pytest.mark.parametrize("killed", ["first", "second", "both"])
def test_kill9_of_any_session_leaves_restore_able_to_put_every_original_back(sleeper, state, killed):
    pid = sleeper.pid
    s1, s2 = _two_sessions(state, pid)
    if killed in ("first", "both"):
        s1.kill9()
    if killed in ("second", "both"):
        s2.kill9()
    if killed == "first":
        s2.end()
    elif killed == "second":
        s1.end()
    r = schedtop("restore")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert (sp.nice(pid), sp.affinity(pid)) == (0, "0-1"), r.stdout
    assert schedtop("restore").stdout.strip() == "nothing to restore"
    assert list(state.glob("session-*.json")) == []


@pytest.mark.parametrize("later_first", [True, False], ids=["later-first", "earlier-first"])
def test_kill9_both_then_restore_in_either_file_order(sleeper, state, later_first):
    """The order restore meets two orphans in must not matter (it reads them sorted by name)."""
    pid = sleeper.pid
    s1, s2 = _two_sessions(state, pid)
    s1.kill9()
    s2.kill9()
    f1, f2 = (next(state.glob(f"session-{s.pid}-*.json")) for s in (s1, s2))
    a, b = ("session-4194001-1.json", "session-4194000-1.json") if later_first else \
        ("session-4194000-1.json", "session-4194001-1.json")
    f1.rename(state / a)  # dead pids: still orphans, now in the order wanted
    f2.rename(state / b)
    r = schedtop("restore")
    assert r.returncode == 0, r.stderr
    assert (sp.nice(pid), sp.affinity(pid)) == (0, "0-1"), r.stdout
    assert schedtop("restore").stdout.strip() == "nothing to restore"


def test_a_value_changed_outside_schedtop_is_left_alone_and_said(sleeper, state):
    pid = sleeper.pid
    s1 = Session(state)
    s1.do("nice", str(pid), "-3")
    os.setpriority(os.PRIO_PROCESS, pid, 7)  # renice(1) by someone else
    lines = s1.end()
    assert sp.nice(pid) == 7
    assert any("nice is +7, not -3 as set here: changed outside schedtop since, left alone (it was +0)" in x
               for x in lines), lines


def test_the_journal_is_on_disk_before_the_change(sleeper, state):
    """Crash safety: the session file names the task and its original before the syscall; a
    kill -9 right after leaves restore what it needs."""
    pid = sleeper.pid
    s1 = Session(state)
    s1.do("pin", str(pid), "1")
    (f,) = state.glob("session-*.json")
    held = json.loads(f.read_text())["held"]
    assert [(h["attr"], h["original"], h["value"]) for h in held] == [("affinity", [0, 1], [1])]
    s1.kill9()
    assert schedtop("restore").returncode == 0 and sp.affinity(pid) == "0-1"


def test_undo_in_one_session_leaves_what_another_changed_since(sleeper, state):
    """z in session 1 after session 2 changed the same nice: left to session 2, and said."""
    pid = sleeper.pid
    s1, s2 = Session(state), Session(state)
    s1.do("nice", str(pid), "-1")
    s1.do("nice", str(pid), "-1")
    s2.do("nice", str(pid), "-3")
    assert sp.nice(pid) == -5
    lines = s1.do("undo")
    assert sp.nice(pid) == -5 and any(f"left to session pid {s2.pid}" in x for x in lines), lines
    lines = s2.do("undo")  # session 2's own undo steps back to the value it found
    assert sp.nice(pid) == -2, lines
    s2.end()
    s1.end()
    assert sp.nice(pid) == 0
    assert schedtop("restore").stdout.strip() == "nothing to restore"


CRASH_BEFORE_SYSCALL = r"""
import os, sys
from pathlib import Path
from schedtop.steer.actions import Tuning, read_params, ref_for, target_params
from schedtop.steer.journal import Journal
j = Journal.session(Path(sys.argv[1]))
ref = ref_for(int(sys.argv[2]))
have = read_params(ref)
j.record("pin 1", [(ref, have)], wants=[target_params(have, Tuning(affinity=(1,)))])
os._exit(0)  # dies between the journal write and the syscall
"""


def test_a_crash_between_the_journal_and_the_syscall_restores_cleanly(sleeper, state):
    pid = sleeper.pid
    subprocess.run([sys.executable, "-c", CRASH_BEFORE_SYSCALL, str(state), str(pid)], check=True)
    assert len(list(state.glob("session-*.json"))) == 1 and sp.affinity(pid) == "0-1"
    r = schedtop("restore")
    assert r.returncode == 0 and "1 restored" in r.stdout and "changed" not in r.stdout, r.stdout + r.stderr
    assert sp.affinity(pid) == "0-1" and list(state.glob("session-*.json")) == []
