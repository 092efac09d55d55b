"""Out of SCHED_EXT goes back to the journaled policy (the E key's "out"), and the note after
`schedtop set --ext` says whether a sched_ext scheduler will actually run the task."""

from __future__ import annotations

from schedtop.steer import ext
from schedtop.steer.actions import TaskParams, TaskRef, Tuning
from schedtop.steer.journal import Journal

REF = TaskRef(pid=100, tid=101, starttime=4242, comm="hog")
OTHER_REF = TaskRef(pid=100, tid=102, starttime=4243, comm="hog-w")


def params(policy: int, prio: int = 0, nice: int = 0) -> TaskParams:
    return TaskParams(policy=policy, rt_priority=prio, nice=nice, affinity=(0, 1), slice_ns=0)


def test_out_goes_back_to_the_policy_before_the_move_in(tmp_path):
    j = Journal.shared(tmp_path)
    j.record("nice +5", [(REF, params(3, nice=0))])  # BATCH nice 0 -> nice 5
    j.record("into SCHED_EXT", [(REF, params(3, nice=5))])  # BATCH -> EXT
    j.record("nice +2", [(REF, params(7, nice=5))])  # a change while in EXT saved EXT
    assert ext.out_tuning(REF, [j]) == Tuning(policy=3)


def test_an_rt_task_goes_back_to_its_priority(tmp_path):
    j = Journal.session(tmp_path)
    j.record("into SCHED_EXT", [(REF, params(1, prio=50))])
    assert ext.out_tuning(REF, [j]) == Tuning(policy=1, rt_priority=50)


def test_unknown_to_every_journal_means_other(tmp_path):
    j = Journal.shared(tmp_path)
    j.record("into SCHED_EXT", [(OTHER_REF, params(5))])
    pid_reused = TaskRef(pid=100, tid=101, starttime=9999)  # same tid, another task
    assert ext.out_tuning(REF, [j]) == Tuning(policy=0)
    assert ext.out_tuning(pid_reused, [j]) == Tuning(policy=0)
    assert ext.out_tuning(REF, []) == Tuning(policy=0)


def test_the_first_journal_that_knows_wins(tmp_path):
    session, shared = Journal.session(tmp_path), Journal.shared(tmp_path)
    shared.record("EXT", [(REF, params(5))])
    assert ext.out_tuning(REF, [session, shared]) == Tuning(policy=5)


def _sysfs(root, st, switch_all=None, ops=None):
    root.mkdir(parents=True, exist_ok=True)
    (root / "state").write_text(st + "\n")
    if switch_all is not None:
        (root / "switch_all").write_text(f"{switch_all}\n")
    if ops is not None:
        (root / "root").mkdir(exist_ok=True)
        (root / "root" / "ops").write_text(ops + "\n")
    return str(root)


def test_note_after_the_move(tmp_path):
    assert "no sched_ext scheduler is loaded" in ext.note_after_move(_sysfs(tmp_path / "a", "disabled", 0))
    assert "full mode" in ext.note_after_move(_sysfs(tmp_path / "b", "enabled", 1, "rusty"))
    assert ext.note_after_move(_sysfs(tmp_path / "c", "enabled", 0, "schedtop")) is None
    assert "no sched_ext scheduler is loaded" in ext.note_after_move(str(tmp_path / "none"))  # no sysfs at all
