"""Journal files as hostile input: whatever the bytes, loading a journal (as `schedtop restore`,
`restore --list` and the TUI's start do) either gives a journal or one line naming the file and
what is wrong; never a traceback, never a hang. A journal that loads saves and loads back the
same. No syscall on a task is made here: nothing is restored, the pids are never live."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

from fuzzing import fuzz
from hypothesis import example, given
from hypothesis import strategies as st

from schedtop.steer import restore_cli
from schedtop.steer.journal import Journal, JournalCorrupt, JournalError

SETTINGS = fuzz(400)  # 200 examples per test in make check, 8000 with SCHEDTOP_FUZZ=deep

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
json_any = st.recursive(json_leaf, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                          st.dictionaries(st.text(max_size=10), kids, max_size=4)),
                        max_leaves=30)

DEAD_PID = 4194000  # never live here: even a bug could not touch a real task

REF = {"pid": DEAD_PID, "tid": DEAD_PID, "starttime": 7, "comm": "x"}
BEFORE = {"policy": 0, "rt_priority": 0, "nice": 0, "affinity": [0, 1], "slice_ns": 2800000, "reset_on_fork": False}
VALID = {
    "version": 2, "owner": None,
    "steps": [{"id": 1, "ts": 1.5, "label": "nice -3", "entries": [{"task": REF, "before": BEFORE, "attrs": ["nice"]}],
               "groups": [{"group": 12, "nice": 0, "member": REF}]},
              {"id": 2, "ts": 2.5, "label": "base slice 3ms", "entries": [], "base_slice": 3000000}],
    "held": [{"key": f"task:{DEAD_PID}:7", "attr": "nice", "original": 0, "value": -3, "first": 1, "last": 2,
              "task": REF},
             {"key": f"task:{DEAD_PID}:7", "attr": "affinity", "original": [0, 1], "value": [0], "first": 1,
              "last": 2, "task": REF},
             {"key": "group:12", "attr": "group_nice", "original": 0, "value": -10, "first": 1, "last": 1,
              "member": REF, "group": 12},
             {"key": "global", "attr": "base_slice", "original": 2800000, "value": 3000000, "first": 3, "last": 3}],
}


def _paths(v, at=()):
    """Every place in a JSON value: the mutation sites."""
    yield at
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _paths(x, at + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _paths(x, at + (i,))


def _mutate(doc, at, new, delete):
    doc = json.loads(json.dumps(doc))
    if not at:
        return new
    parent = doc
    for k in at[:-1]:
        parent = parent[k]
    if delete:
        del parent[at[-1]]
    else:
        parent[at[-1]] = new
    return doc


ALL_PATHS = list(_paths(VALID))


def _load(raw: bytes) -> Journal | None:
    """Load as the tools do; returns the journal, or None after checking the one-line error."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "cli.json"
        p.write_bytes(raw)
        os.chmod(p, 0o600)
        try:
            j = Journal(p, None, set_aside_bad=False)
        except JournalCorrupt as exc:
            msg = str(exc)
            assert msg.startswith(f"{p}: not a usable journal: ") and "\n" not in msg, msg
            assert len(msg) < 400 + len(str(p)), msg
            return None
        # it loaded: what the changes pane and --list read works, and it saves and loads back the same
        j.active()
        j.active_groups()
        j.active_base_slice()
        len(j)
        steps, held = j.steps, j.held
        j._save()
        again = Journal(p, None, set_aside_bad=False)
        assert (again.steps, again.held) == (steps, held)
        return j


@SETTINGS
@given(json_any)
@example([])
@example(None)
@example(42)
@example("hello")
def test_any_json_value_loads_or_is_one_line(value):
    _load(json.dumps(value).encode())


@SETTINGS
@given(st.binary(max_size=300))
@example(b"[" * 100_000)
@example(b'{"a":' * 50_000)
@example(b"\xff\xfe\x00")
@example(b'{"version": 2, "steps": [], "held": [], "x": 1e999999}')
def test_any_bytes_load_or_are_one_line(raw):
    _load(raw)


@SETTINGS
@given(st.sampled_from(ALL_PATHS), json_any, st.booleans())
def test_a_valid_journal_with_one_part_changed_loads_or_is_one_line(at, new, delete):
    if delete and not at:
        delete = False
    _load(json.dumps(_mutate(VALID, at, new, delete)).encode())


def test_the_valid_journal_loads():
    j = _load(json.dumps(VALID).encode())
    assert j is not None and len(j) == 3 and j.active_base_slice() == (2800000, ("base slice 3ms",))


@fuzz(80)
@given(st.sampled_from(ALL_PATHS), json_any)
def test_restore_list_on_a_broken_journal_never_raises(at, new):
    """`schedtop restore --list` as the CLI runs it: rc 0 or 1, each problem in one line."""
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "cli.json").write_text(json.dumps(_mutate(VALID, at, new, False)))
        os.chmod(Path(d) / "cli.json", 0o600)
        out, err = io.StringIO(), io.StringIO()
        old = os.environ.get("SCHEDTOP_STATE_DIR")
        os.environ["SCHEDTOP_STATE_DIR"] = d
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = restore_cli.run(argparse.Namespace(list=True, quiet=False))
        except JournalError as exc:  # never: restore reports, it does not raise
            raise AssertionError(exc) from None
        finally:
            if old is None:
                os.environ.pop("SCHEDTOP_STATE_DIR", None)
            else:
                os.environ["SCHEDTOP_STATE_DIR"] = old
        assert rc in (0, 1)
        for line in err.getvalue().splitlines():
            assert line.startswith("schedtop: ") and "cli.json" in line, line
