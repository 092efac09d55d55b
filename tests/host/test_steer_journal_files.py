"""Journal files schedtop did not write, or that are not journals: `schedtop restore`,
`restore --list` and the next start say so in one line naming the file and what is wrong,
never act on them, move the broken ones aside, and still restore every good journal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from schedtop.steer.journal import Journal, ensure_dir

import steer_procs as sp
from steer_procs import state  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.root

DEAD = "session-4194000-1.json"  # pid 4194000 with start time 1: never alive on this box

GARBAGE = {
    "list": (b"[]", "the top level is a list, not an object"),
    "null": (b"null", "the top level is null, not an object"),
    "number": (b"42", "the top level is the number 42, not an object"),
    "string": (b'"hello"', "the top level is a string, not an object"),
    "deep": (b"[" * 100_000, "JSON nested too deep"),
    "not-json": (b"{not json", "not JSON"),
    "not-utf8": (b'{"version": 2, "x": "\xff\xfe"}', "not UTF-8"),
    "no-steps": (b'{"version": 2, "held": []}', "the top level: 'steps' is missing"),
    "steps-string": (b'{"version": 2, "steps": "x", "held": []}', "steps is a string, not a list"),
    "no-starttime": (json.dumps({"version": 1, "steps": [{"id": 1, "ts": 0, "label": "x", "entries": [
        {"task": {"pid": 5, "tid": 5}, "before": {}}]}]}).encode(),
        "steps[0].entries[0].task: 'starttime' is missing"),
    "starttime-string": (json.dumps({"version": 1, "steps": [{"id": 1, "ts": 0, "label": "x", "entries": [
        {"task": {"pid": 5, "tid": 5, "starttime": "abc"}, "before": {}}]}]}).encode(),
        "steps[0].entries[0].task.starttime is a string, not an integer"),
    "nice-1000": (json.dumps({"version": 1, "steps": [{"id": 1, "ts": 0, "label": "x", "entries": [
        {"task": {"pid": 5, "tid": 5, "starttime": 9}, "before": {
            "policy": 0, "rt_priority": 0, "nice": 1000, "affinity": [0], "slice_ns": 0}}]}]}).encode(),
        "steps[0].entries[0].before.nice is 1000, outside -20..19"),
    "version": (b'{"version": 99, "steps": []}', "unknown journal version 99"),
}


def _problem_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "not a usable journal" in line or "refused" in line]


@pytest.mark.parametrize("where", ["cli.json", DEAD])
@pytest.mark.parametrize("case", list(GARBAGE))
def test_structure_garbage_is_one_line_never_a_traceback_and_moved_aside(state, case, where):
    raw, why = GARBAGE[case]
    d = ensure_dir(state)
    (d / where).write_bytes(raw)
    os.chmod(d / where, 0o600)
    listing = sp.schedtop("restore", "--list")
    assert "Traceback" not in listing.stderr and listing.returncode == 1, listing.stderr
    lines = _problem_lines(listing.stderr)
    assert len(lines) == 1 and f"{d / where}: not a usable journal: {why}" in lines[0], listing.stderr
    assert (d / where).read_bytes() == raw  # --list changes nothing
    r = sp.schedtop("restore")
    assert "Traceback" not in r.stderr and r.returncode == 1, r.stderr
    lines = _problem_lines(r.stderr)
    assert len(lines) == 1 and why in lines[0] and f"moved aside to {where}.bad" in lines[0], r.stderr
    assert not (d / where).exists() and (d / f"{where}.bad").read_bytes() == raw  # kept for the user
    again = sp.schedtop("restore")  # said once: the next run does not trip on it again
    assert again.returncode == 0 and again.stdout.strip() == "nothing to restore", again.stderr


def _orphan_renice(d: Path, pid: int, nice: int) -> None:
    """A session that changes a task and dies without restoring (a crash)."""
    code = ("import sys; from pathlib import Path; from schedtop.steer.journal import Journal;"
            "from schedtop.steer.change import change; from schedtop.steer.actions import Tuning, ref_for;"
            f"change([ref_for({pid})], Tuning(nice={nice}), Journal.session(Path(sys.argv[1])))")
    subprocess.run([sys.executable, "-c", code, str(d)], check=True)


def test_one_bad_journal_never_blocks_the_others(state):
    d = ensure_dir(state)
    kid = sp.spawn("stt-bad1")
    try:
        _orphan_renice(d, kid.pid, 6)
        assert sp.nice(kid.pid) == 6
        (d / "cli.json").write_text("[]")  # beside the good orphan
        r = sp.schedtop("restore")
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert sp.nice(kid.pid) == 0, r.stdout + r.stderr  # the good one was restored
        assert "1 restored" in r.stdout
        assert _problem_lines(r.stderr) == [
            f"schedtop: {d / 'cli.json'}: not a usable journal: the top level is a list, not an object; "
            "moved aside to cli.json.bad, nothing in it was used"]
    finally:
        kid.kill()


def _fifo99_journal(kid_pid: int) -> str:
    """What an attacker writes: the "original" of a root task is FIFO 99 (a version-1 journal)."""
    st = sp.starttime(kid_pid)
    return json.dumps({"version": 1, "owner": None, "steps": [{"id": 1, "ts": 1.0, "label": "x", "entries": [
        {"task": {"pid": kid_pid, "tid": kid_pid, "starttime": st, "comm": "x"},
         "before": {"policy": 1, "rt_priority": 99, "nice": 0, "affinity": [0, 1], "slice_ns": 0}}]}]})


def test_a_journal_written_by_another_user_is_refused_never_acted_on(monkeypatch):
    """The repro: the state dir is chmodded 777, uid 65534 writes cli.json, root runs restore."""
    top = Path(tempfile.mkdtemp(prefix="schedtop-st-"))  # pytest's tmp_path is not reachable by nobody
    os.chmod(top, 0o755)
    d = ensure_dir(top / "state")
    monkeypatch.setenv("SCHEDTOP_STATE_DIR", str(d))
    kid = sp.spawn("stt-victim")
    try:
        os.chmod(d, 0o777)
        payload = top / "payload.json"
        payload.write_text(_fifo99_journal(kid.pid))
        os.chmod(payload, 0o644)
        subprocess.run([*sp.NOBODY, "cp", str(payload), str(d / "cli.json")], check=True)
        r = sp.schedtop("restore")
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert f"state dir {d} is writable by others (mode 0777)" in r.stderr
        assert sp.policy(kid.pid) == 0  # never FIFO 99
        os.chmod(d, 0o700)  # the directory put right: the foreign file is still not trusted
        for args in (("restore", "--list"), ("restore",)):
            r = sp.schedtop(*args)
            assert r.returncode == 1 and "Traceback" not in r.stderr
            assert _problem_lines(r.stderr) == [
                f"schedtop: {d / 'cli.json'}: refused: owned by uid 65534, not root, so schedtop did not "
                "write it; check it and remove it"], r.stderr
        assert sp.policy(kid.pid) == 0 and (d / "cli.json").exists()  # left in place for the user
    finally:
        kid.kill()
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.parametrize("how", ["group-writable", "other-writable", "symlink", "hardlink"])
def test_unsafe_journal_files_are_refused_and_good_ones_restored(state, tmp_path, how):
    d = ensure_dir(state)
    victim, good = sp.spawn("stt-victim"), sp.spawn("stt-good")
    try:
        _orphan_renice(d, good.pid, 4)  # a good orphan beside the unsafe file
        text = _fifo99_journal(victim.pid)
        target = d / "cli.json"
        if how == "symlink":
            elsewhere = tmp_path / "elsewhere.json"
            elsewhere.write_text(text)
            os.chmod(elsewhere, 0o600)
            target.symlink_to(elsewhere)
            why = "refused: a symbolic link (never followed); remove it"
        elif how == "hardlink":
            elsewhere = tmp_path / "elsewhere.json"
            elsewhere.write_text(text)
            os.chmod(elsewhere, 0o600)
            os.link(elsewhere, target)
            why = "refused: it has 2 hard links"
        else:
            target.write_text(text)
            os.chmod(target, 0o620 if how == "group-writable" else 0o602)
            why = f"refused: writable by group or others (mode {'0620' if how == 'group-writable' else '0602'})"
        r = sp.schedtop("restore")
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert _problem_lines(r.stderr) == [f"schedtop: {target}: {why}" + (
            ", so anyone could have written it" if "writable" in why else "")], r.stderr
        assert sp.policy(victim.pid) == 0  # never acted on
        assert sp.nice(good.pid) == 0 and "1 restored" in r.stdout  # and the good one still restored
    finally:
        victim.kill()
        good.kill()


def test_a_refused_orphan_session_file_is_not_acted_on(state, tmp_path):
    d = ensure_dir(state)
    victim = sp.spawn("stt-victim")
    try:
        (d / DEAD).write_text(_fifo99_journal(victim.pid))
        os.chown(d / DEAD, 65534, 65534)
        found, problems = Journal.scan(d)
        assert found == [] and problems == [
            f"{d / DEAD}: refused: owned by uid 65534, not root, so schedtop did not write it; check it and remove it"]
        assert Journal.orphans(d) == []  # the TUI's start: nothing offered, nothing raised
        assert sp.policy(victim.pid) == 0
    finally:
        victim.kill()
