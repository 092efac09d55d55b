"""Record/replay: round trip, the player's controls, and every way a file can be bad."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schedtop.collect.replay import (
    REPLAY_VERSION,
    Recorder,
    ReplayError,
    ReplaySource,
    load_replay,
    parse_replay,
)
from schedtop.model import SCHEMA_VERSION, ViewRequest, to_dict

SESSION = Path(__file__).resolve().parents[1] / "fixtures" / "session.jsonl"


def test_fixture_session_loads():
    r = load_replay(SESSION)
    assert len(r.snapshots) >= 3
    assert r.header["schedtop_replay"] == REPLAY_VERSION
    assert r.actions and r.actions[0]["index"] == 0
    # Recorded with hogs running: some task was busy, and rates were measured.
    assert any(t.cpu_pct > 50 for t in r.snapshots[-1].tasks)
    assert all(s.interval_s > 0 for s in r.snapshots)


def test_round_trip_is_lossless(tmp_path):
    snaps = load_replay(SESSION).snapshots
    path = tmp_path / "s.jsonl"
    with Recorder(path) as rec:
        rec.snapshot(snaps[0])
        rec.action({"kind": "nice", "pid": 1, "value": 5})
        rec.snapshot(snaps[1])
    back = load_replay(path)
    assert back.snapshots == snaps[:2]
    assert back.actions[0]["kind"] == "nice" and back.actions[0]["index"] == 1
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["schema"] == SCHEMA_VERSION
    assert [json.loads(x)["t"] for x in lines[1:]] == ["snapshot", "action", "snapshot"]


def test_recorder_flushes_each_line(tmp_path):
    snap = load_replay(SESSION).snapshots[0]
    path = tmp_path / "live.jsonl"
    rec = Recorder(path)
    rec.snapshot(snap)
    # Readable while still open: a crash would lose nothing written so far.
    assert load_replay(path).snapshots == (snap,)
    rec.close()


def test_replay_source_controls():
    src = ReplaySource(load_replay(SESSION))
    n = len(src)
    first = src.collect()
    assert src.pos == 0 and first.source == "replay"
    assert first.extras.recorded_source in ("procfs", "procfs+debugfs", "bpf")
    src.step(2)
    assert src.pos == 2
    src.step(-10)
    assert src.pos == 0
    src.seek(n + 5)
    assert src.pos == n - 1 and src.at_end
    last = src.collect()
    assert src.pos == n - 1 and last.ts == src.replay.snapshots[-1].ts
    assert src.actions_at(0)


def _write(tmp_path, text: str | bytes) -> Path:
    p = tmp_path / "bad.jsonl"
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


def _good_text() -> str:
    return SESSION.read_text()


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda t: "", "empty"),
        (lambda t: t[: len(t) // 2], "truncated"),
        (lambda t: t.replace('"schema":1', '"schema":99', 1), "newer"),
        (lambda t: t.replace('"schedtop_replay":1', '"schedtop_replay":7', 1), "newer"),
        (lambda t: "hello\n", "not JSON"),
        (lambda t: '{"x": 1}\n', "not a schedtop recording"),
        (lambda t: t.splitlines()[0] + "\n", "no snapshots"),
        (lambda t: t.splitlines()[0] + '\n{"t":"snapshot","data":{}}\n', "missing field"),
        (lambda t: t.splitlines()[0] + '\n{"t":"frame","data":{}}\n', "line 2"),
        (lambda t: t.replace('"tasks":[', '"tasks":"x","_":[', 1), "expected a list"),
    ],
)
def test_bad_files_raise_one_line(tmp_path, mutate, needle):
    with pytest.raises(ReplayError) as exc:
        load_replay(_write(tmp_path, mutate(_good_text())))
    msg = str(exc.value)
    assert "\n" not in msg and needle in msg


def test_unreadable_and_binary(tmp_path):
    with pytest.raises(ReplayError, match="No such file"):
        load_replay(tmp_path / "nope.jsonl")
    with pytest.raises(ReplayError, match="UTF-8"):
        load_replay(_write(tmp_path, b"\xff\xfe\x00garbage\n"))
    with pytest.raises(ReplayError):
        load_replay(tmp_path)  # a directory


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=2000))
def test_fuzz_arbitrary_text(text):
    try:
        parse_replay(text)
    except ReplayError as exc:
        assert "\n" not in str(exc)


_first = to_dict(load_replay(SESSION).snapshots[0])
_first["tasks"] = _first["tasks"][:2]
_FIRST_FRAME = json.dumps(_first)  # parsed afresh per example: each mutates its own copy

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_snapshots(data):
    # Start from a real snapshot, then replace one field anywhere in the tree with junk.
    snap = json.loads(_FIRST_FRAME)
    node = snap
    path = []
    while isinstance(node, (dict, list)) and node:
        keys = list(node.keys()) if isinstance(node, dict) else list(range(len(node)))
        k = data.draw(st.sampled_from(keys))
        path.append(k)
        if data.draw(st.booleans()):
            break
        node = node[k]
    target = snap
    for k in path[:-1]:
        target = target[k]
    if path:
        target[path[-1]] = data.draw(_json)
    header = json.dumps({"schedtop_replay": 1, "schema": SCHEMA_VERSION})
    text = header + "\n" + json.dumps({"t": "snapshot", "data": snap}) + "\n"
    try:
        r = parse_replay(text)
    except ReplayError as exc:
        assert "\n" not in str(exc)
    else:
        assert len(r.snapshots) == 1


_SPLICE_BASE = {
    "x.jsonl": SESSION.read_bytes()[:6000],
    "x.jsonl.gz": gzip.compress(SESSION.read_bytes()[:20000], compresslevel=1),
}


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(_SPLICE_BASE)), st.binary(max_size=500), st.integers(min_value=0, max_value=4000))
def test_fuzz_file_splice(tmp_path_factory, name, junk, at):
    # A real file (plain or gzip) with bytes spliced in: loads or fails cleanly, never a traceback.
    good = _SPLICE_BASE[name]
    p = tmp_path_factory.mktemp("f") / name
    p.write_bytes(good[:at] + junk + good[at:])
    try:
        load_replay(p)
    except ReplayError as exc:
        assert "\n" not in str(exc)


def test_huge_number_in_float_field(tmp_path):
    text = _good_text().replace('"uptime_s":', '"uptime_s":1' + "0" * 400 + ',"_x":', 1)
    with pytest.raises(ReplayError, match="line 3: int too large"):
        load_replay(_write(tmp_path, text))
    deep = _good_text().splitlines()[0] + "\n" + '{"t":"snapshot","data":' + "[" * 100000 + "\n"
    with pytest.raises(ReplayError):
        parse_replay(deep)


def test_fast_encoder_matches_to_dict():
    from dataclasses import replace as dc_replace
    from types import MappingProxyType

    from schedtop.collect.live import LiveSource
    from schedtop.collect.replay import encode_snapshot
    from schedtop.model import BpfCpu, BpfPart, ScxPart

    src = LiveSource(use_bpf=False)
    src.collect()
    live = src.collect()
    frames = list(load_replay(SESSION).snapshots) + [live]
    # A non-dict Mapping and int keys in the parts' free-form fields, as other areas may put there.
    frames.append(dc_replace(live, extras=dc_replace(
        live.extras, scx=ScxPart(stats=MappingProxyType({1: (2, 3)}), loaded={"z": [1.5]}),
        bpf=BpfPart(cpus=(BpfCpu(0, p50_us=1.5),)), recorded_source="procfs")))
    for snap in frames:
        assert json.loads(encode_snapshot(snap)) == json.loads(json.dumps(to_dict(snap)))


def test_gzip_recording(tmp_path):
    snaps = load_replay(SESSION).snapshots
    plain, packed = tmp_path / "s.jsonl", tmp_path / "s.jsonl.gz"
    for path in (plain, packed):
        with Recorder(path) as rec:
            for s in snaps:
                rec.snapshot(s)
            rec.action({"kind": "nice", "pid": 1})
    assert packed.read_bytes()[:2] == b"\x1f\x8b"
    assert packed.stat().st_size * 4 < plain.stat().st_size
    back = load_replay(packed)
    assert back.snapshots == snaps and back.actions[0]["index"] == len(snaps)


def test_gzip_without_trailer_loads_cut_inside_fails(tmp_path):
    snap = load_replay(SESSION).snapshots[0]
    path = tmp_path / "crash.jsonl.gz"
    rec = Recorder(path)
    rec.snapshot(snap)
    rec.snapshot(snap)
    # As if the process died now: flushed to a sync point, never closed (no trailer).
    raw = path.read_bytes()
    crashed = tmp_path / "crashed.jsonl.gz"
    crashed.write_bytes(raw)
    assert load_replay(crashed).snapshots == (snap, snap)
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(raw[: len(raw) * 2 // 3])
    with pytest.raises(ReplayError, match="truncated"):
        load_replay(cut)
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(raw[:10] + b"\x00" * 50 + raw[60:])
    with pytest.raises(ReplayError):
        load_replay(bad)
    rec.close()


def test_replay_folds_threads_like_live():
    from schedtop.collect.fold import fold_processes

    src = ReplaySource(load_replay(SESSION))
    threads = src.collect()
    procs = src.current(ViewRequest(threads=False))
    assert {t.pid for t in procs.tasks} == {t.pid for t in threads.tasks}
    assert len(procs.tasks) == len({t.pid for t in threads.tasks})
    assert all(p.tid == p.pid for p in procs.tasks)
    assert sum(p.nr_threads for p in procs.tasks) == len(threads.tasks)
    assert sum(p.cpu_pct for p in procs.tasks) == pytest.approx(sum(t.cpu_pct for t in threads.tasks))
    assert fold_processes(procs.tasks) == procs.tasks  # folding twice changes nothing
    multi = max(procs.tasks, key=lambda p: p.nr_threads)
    members = [t for t in threads.tasks if t.pid == multi.pid]
    assert multi.nr_threads == len(members) > 1
    assert multi.wait_ns == sum(t.wait_ns for t in members)


def test_fold_keeps_the_worst_latency():
    from dataclasses import replace as dc_replace

    from schedtop.collect.fold import fold_processes

    snap = load_replay(SESSION).snapshots[-1]
    pid = max({t.pid for t in snap.tasks}, key=lambda p: sum(t.pid == p for t in snap.tasks))
    members = [t for t in snap.tasks if t.pid == pid]
    assert len(members) > 1
    tasks = [dc_replace(t, lat_p99_us=float(i * 10)) if t.pid == pid else t for i, t in enumerate(snap.tasks)]
    folded = next(t for t in fold_processes(tasks) if t.pid == pid)
    assert folded.lat_p99_us == max(t.lat_p99_us for t in tasks if t.pid == pid)
    assert folded.lat_p50_us is None
