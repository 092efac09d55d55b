"""The undo journal: durable format, ordering of undo/restore, pruning, refusal of a foreign dir.
Real child processes and real syscalls; the journal file is read back as JSON."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from schedtop.steer.actions import TaskParams, Tuning, read_params, ref_for
from schedtop.steer.change import change
from schedtop.steer.journal import Journal, JournalError, ensure_dir, summarize

pytestmark = pytest.mark.root


def _nice(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])


@pytest.fixture
def kids():
    procs = [subprocess.Popen(["sleep", "300"]) for _ in range(3)]
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def test_record_is_on_disk_before_the_change_and_atomic(tmp_path, kids):
    d = ensure_dir(tmp_path / "st")
    j = Journal.session(d)
    ref = ref_for(kids[0].pid)
    before = read_params(ref)
    j.record("test", [(ref, before)])
    # durable now, while the task is still untouched
    data = json.loads(j.path.read_text())
    assert data["steps"][0]["entries"][0]["task"]["starttime"] == ref.starttime
    assert TaskParams.from_json(data["steps"][0]["entries"][0]["before"]) == before
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE(j.path.stat().st_mode) == 0o600
    assert [p.name for p in d.iterdir() if p.name.startswith(".journal-")] == []  # no temp file left
    assert j.path.name == f"session-{os.getpid()}-{ref_for(os.getpid()).starttime}.json"


def test_undo_last_then_restore_all_uses_the_earliest_original(tmp_path, kids):
    j = Journal.session(ensure_dir(tmp_path / "st"))
    a, b = ref_for(kids[0].pid), ref_for(kids[1].pid)
    change([a, b], Tuning(nice=3), j, "nice 3")
    change([a], Tuning(nice=6), j, "nice 6")
    change([b], Tuning(nice=9), j, "nice 9")
    assert (_nice(a.pid), _nice(b.pid)) == (6, 9)
    label, outs = j.undo_last()
    assert label == "nice 9" and [o.status for o in outs] == ["restored"]
    assert (_nice(a.pid), _nice(b.pid)) == (6, 3)
    assert {(x.ref.tid, x.labels) for x in j.active()} == {(a.tid, ("nice 3", "nice 6")), (b.tid, ("nice 3",))}
    outs = j.restore_all()
    assert summarize(outs) == "2 restored"
    assert (_nice(a.pid), _nice(b.pid)) == (0, 0)
    assert not j.path.exists() and j.undo_last() is None


def test_undo_task_reverts_one_row(tmp_path, kids):
    j = Journal.session(ensure_dir(tmp_path / "st"))
    a, b = ref_for(kids[0].pid), ref_for(kids[1].pid)
    change([a, b], Tuning(nice=5), j)
    assert j.undo_task(a).status == "restored"
    assert (_nice(a.pid), _nice(b.pid)) == (0, 5)
    assert [x.ref.tid for x in j.active()] == [b.tid]


def test_exited_tasks_are_dropped(tmp_path, kids):
    j = Journal.session(ensure_dir(tmp_path / "st"))
    refs = [ref_for(p.pid) for p in kids]
    change(refs, Tuning(nice=2), j)
    kids[1].kill()
    kids[1].wait()
    assert j.prune() == 1
    assert len(j) == 2
    outs = j.restore_all()
    assert sorted(o.status for o in outs) == ["restored", "restored"]


def test_a_failed_change_is_not_left_in_the_journal(tmp_path, kids):
    j = Journal.session(ensure_dir(tmp_path / "st"))
    ref = ref_for(kids[0].pid)
    rep = change([ref], Tuning(affinity=(4095,)), j)  # no such CPU: EINVAL, nothing changed
    assert not rep.ok and "Invalid argument" in rep.errors()[0].error
    assert not j.path.exists() and len(j) == 0


def test_orphan_journal_of_a_dead_owner_is_found_and_live_one_is_not(tmp_path, kids):
    d = ensure_dir(tmp_path / "st")
    code = ("import sys; from schedtop.steer.journal import Journal; from schedtop.steer.change import change;"
            "from schedtop.steer.actions import Tuning, ref_for; from pathlib import Path;"
            f"change([ref_for({kids[2].pid})], Tuning(nice=7), Journal.session(Path(sys.argv[1])))")
    subprocess.run([sys.executable, "-c", code, str(d)], check=True)  # exits without restoring: a "crash"
    assert _nice(kids[2].pid) == 7
    mine = Journal.session(d)
    change([ref_for(kids[0].pid)], Tuning(nice=1), mine)
    orphans = Journal.orphans(d)
    assert len(orphans) == 1 and orphans[0].path != mine.path
    assert summarize(orphans[0].restore_all()) == "1 restored"
    assert _nice(kids[2].pid) == 0 and Journal.orphans(d) == []
    mine.restore_all()


def test_foreign_owned_state_dir_is_refused(tmp_path):
    d = tmp_path / "foreign"
    d.mkdir()
    os.chown(d, 65534, 65534)
    with pytest.raises(JournalError, match="owned by uid 65534"):
        ensure_dir(d)


def test_readable_mode_is_tightened_and_writable_by_others_is_refused(tmp_path):
    d = tmp_path / "loose"
    d.mkdir()
    os.chmod(d, 0o755)
    ensure_dir(d)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    os.chmod(d, 0o777)  # anyone could have put a journal there: nothing in it is trusted
    with pytest.raises(JournalError, match=r"writable by others \(mode 0777\)"):
        ensure_dir(d)
    assert stat.S_IMODE(d.stat().st_mode) == 0o777  # left for the user to check, not silently fixed


def test_corrupt_journal_names_the_file_and_is_moved_aside(tmp_path):
    d = ensure_dir(tmp_path / "st")
    (d / "cli.json").write_text("{not json")
    j = Journal.shared(d)
    assert len(j) == 0 and len(j.problems) == 1
    assert j.problems[0].startswith(f"{d / 'cli.json'}: not a usable journal: not JSON")
    assert "moved aside to cli.json.bad" in j.problems[0]
    assert (d / "cli.json.bad").read_text() == "{not json" and not (d / "cli.json").exists()


@pytest.mark.skipif(not os.path.exists("/proc/self/autogroup"), reason="kernel without autogroup")
def test_group_entries_are_written_before_the_change_and_read_back(tmp_path):
    """A step's session group (id, original nice, member) is on disk before the group's nice is
    written; a journal without the key (older files) still loads."""
    from schedtop.steer import autogroup
    from schedtop.steer.autogroup import GroupEntry

    kid = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        j = Journal.session(ensure_dir(tmp_path / "st"))
        ref = ref_for(kid.pid)
        g = autogroup.read(kid.pid)
        assert g is not None and g.nice == 0
        j.record("group", [(ref, read_params(ref))], [GroupEntry(g.id, g.nice, ref)])
        data = json.loads(j.path.read_text())
        assert data["steps"][0]["groups"] == [{"group": g.id, "nice": 0, "member": {
            "pid": ref.pid, "tid": ref.tid, "starttime": ref.starttime, "comm": ref.comm}}]
        assert autogroup.read(kid.pid).nice == 0  # recorded, nothing changed yet
        again = Journal(j.path, j.owner)
        assert again.steps[0].groups == (GroupEntry(g.id, 0, ref),) and len(again) == 2
        del data["steps"][0]["groups"]
        j.path.write_text(json.dumps(data))
        assert Journal(j.path, j.owner).steps[0].groups == ()
    finally:
        kid.kill()
        kid.wait()
