"""The steering session without Textual, on real child processes: each change is read back
from /proc (and sched_getaffinity) independently of schedtop's own readers, the journal is
the real one in a temporary state directory, and the profile's threads are real threads."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from schedtop.model import Task
from schedtop.scx.supervisor import ScxOptions
from schedtop.steer.journal import Journal
from schedtop.ui.controllers.steering import (
    EXT_REFUSAL,
    Ask,
    ChangeRow,
    ChooseCpus,
    ChoosePolicy,
    Note,
    Quit,
    Reply,
    ShowChanges,
    SteeringSession,
    Target,
)

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="lowering nice and RT policies need root")

# Names itself, starts N-1 more threads, prints every tid, then sleeps.
CHILD = textwrap.dedent("""
    import ctypes, sys, threading, time
    libc = ctypes.CDLL(None)
    libc.prctl(15, sys.argv[1].encode()[:15], 0, 0, 0)
    n = int(sys.argv[2])
    tids = [threading.get_native_id()]
    ready = threading.Barrier(n)
    def worker():
        tids.append(threading.get_native_id())
        ready.wait()
        time.sleep(1000)
    for _ in range(n - 1):
        threading.Thread(target=worker, daemon=True).start()
    ready.wait()
    print(" ".join(map(str, tids)), flush=True)
    time.sleep(1000)
""")


def fmt(cpus: set[int]) -> str:
    """"0-1" for {0, 1}: how the pane writes a CPU list (contiguous sets only, as here)."""
    lo, hi = min(cpus), max(cpus)
    assert cpus == set(range(lo, hi + 1))
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _stat(pid: int, tid: int | None = None) -> list[str]:
    data = Path(f"/proc/{pid}/task/{tid or pid}/stat").read_text()
    return data[data.rindex(")") + 2:].split()


def nice_of(pid: int, tid: int | None = None) -> int:
    return int(_stat(pid, tid)[16])  # field 19


def policy_of(pid: int, tid: int | None = None) -> tuple[int, int]:
    f = _stat(pid, tid)
    return int(f[38]), int(f[37])  # fields 41 and 40: policy, RT priority


def slice_of(pid: int) -> int | None:
    for line in Path(f"/proc/{pid}/sched").read_text().splitlines():
        if line.startswith("se.slice"):
            return int(float(line.split(":")[1]))
    return None


class Kid:
    def __init__(self, name: str, threads: int = 1) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, name, str(threads)], stdout=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout is not None
        self.tids = [int(t) for t in self.proc.stdout.readline().split()]
        assert len(self.tids) == threads
        self.pid = self.proc.pid

    def task(self, tid: int | None = None, starttime: int | None = None) -> Task:
        """The row the app would have under its cursor, from /proc (policy names do not matter here)."""
        tid = tid or self.pid
        st = int(_stat(self.pid, tid)[19])
        return Task(pid=self.pid, tid=tid, comm="kid", state="S", policy="OTHER", nice=nice_of(self.pid, tid),
                    prio=120, rt_priority=0, cpu=0, affinity=tuple(sorted(os.sched_getaffinity(tid))),
                    starttime=st if starttime is None else starttime)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


class Knobs:
    """schedtop's sched_ext scheduler as the session sees it: whether it runs, and each knob sent
    (the scheduler itself needs a sched_ext kernel: the guest tests drive the real one)."""

    def __init__(self, running: bool = False, partial: bool = False) -> None:
        self._running = running
        self._options = ScxOptions(partial=partial)
        self.sent: list[tuple[str, int, dict[str, Any]]] = []

    @property
    def running(self) -> bool:
        return self._running

    @property
    def options(self) -> ScxOptions:
        return self._options

    def steer(self, what: str, pid: int, **values: Any) -> bool:
        self.sent.append((what, pid, values))
        return self._running


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "state"
    monkeypatch.setenv("SCHEDTOP_STATE_DIR", str(d))
    return d


@pytest.fixture
def kid() -> Iterator[Kid]:
    k = Kid("stu-kid")
    yield k
    k.kill()


def notes(reply: Reply) -> list[tuple[str, str]]:
    return [(n.text, n.severity) for n in reply if isinstance(n, Note)]


def session(knobs: Knobs | None = None, posted: list[Any] | None = None, actions: list[dict[str, Any]] | None = None,
            **kw: Any) -> SteeringSession:
    post: Callable[[Any], object] = posted.append if posted is not None else (lambda m: True)
    record: Callable[[dict[str, Any]], None] = actions.append if actions is not None else (lambda a: None)
    s = SteeringSession(post, record, knobs or Knobs(), **kw)
    assert s.start() == []  # nothing left by a crash in a fresh state directory
    assert s.journal is not None
    return s


def wait(cond: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.05)


@needs_root
def test_nice_undo_and_close_act_on_the_real_task_through_the_journal(kid: Kid, state: Path) -> None:
    actions: list[dict[str, Any]] = []
    s = session(actions=actions)
    reply = s.nice(Target(kid.task()), -1)
    assert notes(reply) == [(f"nice -1: stu-kid[{kid.pid}]: 1 thread changed", "information")]
    assert nice_of(kid.pid) == -1
    assert len(list(state.glob("session-*.json"))) == 1  # on disk, as the crash recovery needs it
    s.nice(Target(kid.task()), -1)
    assert nice_of(kid.pid) == -2
    assert s.undo_last().startswith("undo nice -2")
    assert nice_of(kid.pid) == -1
    assert [a["type"] for a in actions] == ["steer", "steer", "steer.undo"]
    assert actions[0]["tids"] == [kid.pid] and actions[0]["errors"] == []
    msg = s.close()
    assert msg is not None and msg.startswith("schedtop: restored on exit:")
    assert nice_of(kid.pid) == 0
    assert not list(state.glob("session-*.json"))  # given back: nothing left for `schedtop restore`
    assert s.close() is None  # once


def test_nice_that_is_already_at_the_end_says_so_and_changes_nothing(kid: Kid, state: Path) -> None:
    os.setpriority(os.PRIO_PROCESS, kid.pid, 19)
    s = session()
    assert notes(s.nice(Target(kid.task()), 1)) == [("nice is already 19", "warning")]
    assert nice_of(kid.pid) == 19 and s.journal is not None and s.journal.steps == []


def test_pin_asks_which_cpus_then_pins_and_the_changes_pane_undoes_the_row(kid: Kid, state: Path) -> None:
    before = os.sched_getaffinity(kid.pid)
    s = session()
    (choose,) = s.pin(Target(kid.task()))
    assert isinstance(choose, ChooseCpus) and choose.current == tuple(sorted(before))
    assert choose.answer(None) == [] and os.sched_getaffinity(kid.pid) == before  # cancelled
    assert notes(choose.answer((0,)))[0][1] == "information"
    assert os.sched_getaffinity(kid.pid) == {0}
    (pane,) = s.changes()
    assert isinstance(pane, ShowChanges)
    rows = pane.rows()
    assert [(r.key.split(":")[0], r.what) for r in rows] == [(str(kid.pid), "pin 0")]
    assert isinstance(rows[0], ChangeRow) and rows[0].task == f"stu-kid[{kid.pid}]"
    assert rows[0].before.endswith(f"cpus {fmt(before)}") and rows[0].now.endswith(" cpus 0")
    assert "restored" in pane.undo_row(rows[0].key)
    assert os.sched_getaffinity(kid.pid) == before
    assert pane.rows() == [] and pane.undo_last() == "nothing to undo"


def test_scope_and_process_view_steer_every_thread(state: Path) -> None:
    k = Kid("stu-threads", threads=3)
    try:
        s = session()
        (one,) = s.pin(Target(k.task(k.tids[1])))
        assert isinstance(one, ChooseCpus) and "3 threads" not in one.who
        one.answer((0,))
        assert [os.sched_getaffinity(t) == {0} for t in k.tids] == [False, True, False]
        assert s.restore_all().startswith("restore all:")
        (whole,) = s.pin(Target(k.task(k.tids[1]), processes=True))  # the view shows processes
        assert isinstance(whole, ChooseCpus) and "(3 threads)" in whole.who
        whole.answer((0,))
        assert all(os.sched_getaffinity(t) == {0} for t in k.tids)
        s.restore_all()
        assert notes(s.toggle_scope()) == [("steering every thread of the process", "information")]
        s.nice(Target(k.task(k.tids[2])), 3)
        assert [nice_of(k.pid, t) for t in k.tids] == [3, 3, 3]
        assert notes(s.toggle_scope()) == [("steering the selected thread only", "information")]
    finally:
        k.kill()


def test_a_reused_pid_or_no_selection_is_never_touched(kid: Kid, state: Path) -> None:
    s = session()
    wrong = kid.task(starttime=int(_stat(kid.pid)[19]) + 1)  # the row was another task with this pid
    assert notes(s.nice(Target(wrong), 1)) == [(f"pid {kid.pid} now belongs to another task: not touched", "warning")]
    assert notes(s.boost(Target(None))) == [("no task selected", "warning")]
    assert nice_of(kid.pid) == 0 and s.journal is not None and s.journal.steps == []


@needs_root
def test_rt_boost_asks_and_only_yes_changes_the_policy(kid: Kid, state: Path) -> None:
    s = session()
    (ask,) = s.rt_boost(Target(kid.task()))
    assert isinstance(ask, Ask) and "SCHED_FIFO 88" in ask.text and ask.yes == "Boost"
    assert ask.answer(False) == [] and policy_of(kid.pid) == (0, 0)
    ask.answer(True)
    assert policy_of(kid.pid) == (1, 88)
    (choose,) = s.choose_policy(Target(kid.task()))
    assert isinstance(choose, ChoosePolicy) and "FIFO" in choose.current
    choose.answer((3, 0))  # SCHED_BATCH
    assert policy_of(kid.pid) == (3, 0)
    s.close()
    assert policy_of(kid.pid) == (0, 0)


@needs_root
def test_while_the_scheduler_runs_the_keys_also_set_its_knobs_and_undo_resets_them(kid: Kid, state: Path) -> None:
    knobs = Knobs(running=True)
    s = session(knobs)
    s.boost(Target(kid.task()))
    assert knobs.sent == [("boost", kid.pid, {})]
    assert nice_of(kid.pid) == -10
    (choose,) = s.pin(Target(kid.task()))
    assert isinstance(choose, ChooseCpus)
    choose.answer((0,))
    assert knobs.sent[-1] == ("knob", kid.pid, {"cpu": 0})
    s.demote(Target(kid.task()), "batch")
    assert knobs.sent[-1] == ("demote", kid.pid, {}) and policy_of(kid.pid) == (3, 0)
    knobs.sent.clear()
    # The boost and the pin stay: their knobs are sent again after the reset.
    assert s.undo_last() == f"undo BATCH: stu-kid[{kid.pid}]: 1 restored"
    assert knobs.sent[:2] == [("reset", kid.pid, {}), ("boost", kid.pid, {})]
    assert knobs.sent[2:] == [("knob", kid.pid, {"cpu": 0, "slice_ns": 1_000_000})]  # the boost's slice and the pin
    s.close()
    assert nice_of(kid.pid) == 0 and policy_of(kid.pid) == (0, 0)


def test_e_needs_the_scheduler_loaded_in_partial_mode(kid: Kid, state: Path) -> None:
    for knobs in (Knobs(), Knobs(running=False, partial=True), Knobs(running=True, partial=False)):
        s = session(knobs)
        assert notes(s.toggle_ext(Target(kid.task()))) == [(EXT_REFUSAL, "warning")]
        assert s.journal is not None and s.journal.steps == [] and policy_of(kid.pid) == (0, 0)


def test_a_replay_steers_nothing(kid: Kid, state: Path) -> None:
    s = SteeringSession(lambda m: True, lambda a: None, Knobs(), live=False)
    assert s.start() == [] and s.journal is None
    assert notes(s.nice(Target(kid.task()), 1)) == [("replay: nothing live to steer", "warning")]
    assert notes(s.step_base_slice()) == [("replay: nothing live to steer", "warning")]
    assert notes(s.toggle_ext(Target(kid.task()))) == [("replay: no live scheduler to drive", "warning")]
    assert notes(s.changes()) == [("no changes (steering is off)", "warning")]
    assert s.start_profile("audio") == [] and s.close() is None
    assert nice_of(kid.pid) == 0 and not state.exists()


def test_keep_hands_the_changes_to_schedtop_restore(kid: Kid, state: Path) -> None:
    s = session(keep=True)
    s.nice(Target(kid.task()), 2)
    msg = s.close()
    assert msg is not None and "kept changes on 1 thread(s) (--keep)" in msg
    assert nice_of(kid.pid) == 2  # left as it is
    assert len(Journal.shared()) == 1 and not list(state.glob("session-*.json"))
    assert sum(o.status == "restored" for o in Journal.shared().restore_all()) == 1
    assert nice_of(kid.pid) == 0


CRASH = textwrap.dedent("""
    import os, sys
    from schedtop.ui.controllers.steering import SteeringSession, Target
    from schedtop.model import Task
    class Off:
        running = False
    s = SteeringSession(lambda m: True, lambda a: None, Off())
    s.start()
    pid = int(sys.argv[1])
    st = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[19])
    s.nice(Target(Task(pid, pid, "kid", "S", "OTHER", 0, 120, 0, 0, (0,), starttime=st)), 7)
    os.kill(os.getpid(), 9)  # a crash: nothing restored, the journal stays
""")


def test_a_crashed_sessions_changes_are_offered_back_at_start(kid: Kid, state: Path) -> None:
    r = subprocess.run([sys.executable, "-c", CRASH, str(kid.pid)], capture_output=True, text=True, timeout=60)
    assert r.returncode == -9, r.stderr
    assert nice_of(kid.pid) == 7 and len(list(state.glob("session-*.json"))) == 1
    s = SteeringSession(lambda m: True, lambda a: None, Knobs())
    (ask,) = s.start()
    assert isinstance(ask, Ask) and ask.title == "Restore after a crash?" and "1 thread(s)" in ask.text
    assert notes(ask.answer(True)) == [("restored the crashed session's changes: 1 restored", "information")]
    assert nice_of(kid.pid) == 0
    s.close()


def _profile(tmp_path: Path, tag: str, poll: float) -> Path:
    prof = tmp_path / "p.toml"
    prof.write_text(f'name = "t"\npoll = {poll}\n[[rule]]\ncomm = "{tag}"\nnice = 5\n')
    return prof


def test_a_profile_polls_on_its_own_thread_posts_what_it_did_and_close_restores(tmp_path: Path, state: Path) -> None:
    tag = f"stp{os.getpid() % 100000}"
    k = Kid(tag)
    posted: list[Any] = []
    try:
        s = session(posted=posted, exec_hook=False)
        assert notes(s.start_profile(str(_profile(tmp_path, tag, 0.2)))) == [
            ("profile t: applying live (1 rules)", "information")]
        wait(lambda: nice_of(k.pid) == 5, "the poll tuned the task")
        wait(lambda: [(m.text, m.severity) for m in posted] == [("profile t: rule 1: 1 thread changed", "information")],
             "the report posted")
        assert s.status()["profile"] == "t"
        late = Kid(tag)  # started after the first poll: the next poll finds it
        try:
            wait(lambda: nice_of(late.pid) == 5, "the next poll tuned the new task")
            threads = list(s._threads)
            assert s.close() is not None
            assert nice_of(k.pid) == 0 and nice_of(late.pid) == 0
            assert not any(t.is_alive() for t in threads)
        finally:
            late.kill()
    finally:
        k.kill()


def test_the_exec_hook_tunes_a_new_program_between_polls(tmp_path: Path, state: Path) -> None:
    from schedtop.steer.exec_watch import open_watch

    hook, why = open_watch()
    if hook is None:
        pytest.skip(f"no exec hook here: {why}")
    hook.close()
    tag = f"ste{os.getpid() % 100000}"
    s = session(exec_hook=True)
    s.start_profile(str(_profile(tmp_path, tag, 600)))  # the first poll runs now, the next in 10 minutes
    wait(lambda: s.status()["exec_hook"] in ("tp_btf", "raw_tp"), "the hook attached")
    k = Kid(tag)  # names itself after its exec: the rename hook reports it
    try:
        wait(lambda: nice_of(k.pid) == 5, "the hook's thread tuned the new task", 10)
        s.close()
        assert nice_of(k.pid) == 0
    finally:
        k.kill()


def test_a_profile_that_does_not_load_ends_the_session(tmp_path: Path, state: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\ncomm = "x"\nnice = 99\n')
    s = session()
    (quit_,) = s.start_profile(str(bad))
    assert isinstance(quit_, Quit) and quit_.code == 2 and f"{bad}:3: nice 99 is out of range" in quit_.text
    assert s._threads == []
