"""Large recordings: indexed at load, frames decoded on demand, a bad frame reported when reached.

The recordings are built at test time (tests/fixtures/big_recording.py): the session's
frames widened to 1000 threads, written by the real Recorder, repeated with shifted ts.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tracemalloc
from typing import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schedtop.collect.replay as replay_mod
from schedtop.collect.replay import (
    CACHE_FRAMES,
    EAGER_BYTES,
    Frames,
    ReplayError,
    ReplaySource,
    load_replay,
)
from schedtop.model import snapshot_from_dict

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
from big_recording import write_big_recording  # noqa: E402

FRAMES = 400  # ~190 MB of text at 1000 threads (eagerly: ~20 s and ~0.9 GB); bench/replay_load.py goes to an hour


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("big") / "big.jsonl"
    write_big_recording(path, FRAMES, action_every=100)
    yield path
    path.unlink()  # pytest keeps the last runs' tmp dirs: do not keep hundreds of MB in them


@pytest.fixture(scope="module")
def big_bad(tmp_path_factory) -> Iterator[tuple[Path, int]]:
    """200 frames (~95 MB) with frame 100 corrupt; its line number (after the header, 1 action, 100 frames)."""
    path = tmp_path_factory.mktemp("big") / "bad.jsonl"
    no = write_big_recording(path, 200, bad_frame=100)
    assert no == 1 + 1 + 101
    yield path, no
    path.unlink()


def test_load_decodes_no_frame_and_stays_small(big, monkeypatch):
    calls = []
    real = replay_mod.snapshot_from_dict
    monkeypatch.setattr(replay_mod, "snapshot_from_dict", lambda d: calls.append(1) or real(d))
    assert big.stat().st_size > 20 * EAGER_BYTES
    tracemalloc.start()
    try:
        r = load_replay(big)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert calls == [] and isinstance(r.snapshots, Frames) and r.snapshots.decoded == 0
    # The index and one read chunk, not the text: ~100 bytes per frame against ~470 KB of JSON each.
    assert peak < 8_000_000, peak
    assert len(r.snapshots) == FRAMES
    # Actions are decoded at load and placed between the right frames.
    assert [a["index"] for a in r.actions] == [0, 100, 200, 300]
    assert all(a["kind"] == "marker" for a in r.actions)
    last = r.snapshots[-1]
    assert calls == [1] and len(last.tasks) == 1000
    assert last.ts == pytest.approx(r.snapshots[0].ts + FRAMES - 1)


def test_frames_match_the_eager_decode_and_the_cache_is_bounded(big):
    r = load_replay(big)
    frames = r.snapshots
    src = ReplaySource(r)
    t0 = src.collect().ts
    for i in range(1, 3 * CACHE_FRAMES):
        snap = src.collect()
        assert src.pos == i and snap.ts == pytest.approx(t0 + i)
        assert len(frames._cache) <= CACHE_FRAMES
    # Frame k is line frames.line_of(k) (1 header + 1 action + k + 1), decoded as the eager reader does.
    k = 3 * CACHE_FRAMES - 1
    assert frames.line_of(k) == k + 3
    with open(big, encoding="utf-8") as f:
        for _ in range(k + 2):
            f.readline()
        line = f.readline()
    assert frames[k] == snapshot_from_dict(json.loads(line)["data"])
    decoded = frames.decoded
    src.step(-2)
    src.step(1)  # both still cached: nothing decoded again
    assert frames.decoded == decoded
    src.seek(0)  # evicted long ago: decoded again, the cache stays at its size
    assert frames.decoded == decoded + 1 and len(frames._cache) == CACHE_FRAMES
    src.close()


def test_a_bad_frame_is_reported_when_reached_and_play_stops_on_the_last_good(big_bad):
    bad, no = big_bad
    r = load_replay(bad)  # the bad line is not looked at yet
    src = ReplaySource(r)
    src.seek(98)
    good = src.collect()
    assert src.pos == 99
    for _ in range(2):  # asked again (the next poll): same error, still on the last good frame
        with pytest.raises(ReplayError) as exc:
            src.collect()
        assert src.pos == 99
    msg = str(exc.value)
    assert msg.startswith(f"{bad}: line {no}: ") and "expected a list" in msg and "\n" not in msg
    assert src.current() == good
    # Stepping moves onto it (and says so again), then past it.
    with pytest.raises(ReplayError, match=f"line {no}:"):
        src.step(1)
    assert src.collect().ts == pytest.approx(good.ts + 2) and src.pos == 101


def test_a_bad_frame_reads_the_same_found_eagerly_or_lazily(tmp_path):
    # The same small file read both ways (eager_bytes=0 makes any file lazy).
    bad = tmp_path / "bad.jsonl"
    write_big_recording(bad, 24, tasks=100, action_every=0, bad_frame=12)
    with pytest.raises(ReplayError) as eager:
        load_replay(bad)
    lazy = load_replay(bad, eager_bytes=0)
    assert [s.ts for s in lazy.snapshots[:12]] == [lazy.snapshots[0].ts + i for i in range(12)]
    with pytest.raises(ReplayError) as late:
        lazy.snapshots[12]
    assert str(late.value) == str(eager.value)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_load_time_checks_still_refuse_bad_files(tmp_path, gz):
    write_big_recording(tmp_path / "s.jsonl", 24, action_every=0)
    base = (tmp_path / "s.jsonl").read_bytes()
    cases = {
        "truncated": base[:-100],
        "newer": base.replace(b'"schema":1', b'"schema":99', 1),
        "not a snapshot or action": base.replace(b'{"t":"snapshot"', b'{"t":"frame"', 1),
        "line 2 is not JSON": base[: base.index(b"\n") + 1] + b'{"t":"action","data":{\n' + base[base.index(b"\n") + 1:],
    }
    for needle, raw in cases.items():
        p = tmp_path / ("x.jsonl.gz" if gz else "x.jsonl")
        p.write_bytes(gzip.compress(raw, compresslevel=1) if gz else raw)
        with pytest.raises(ReplayError) as exc:
            load_replay(p)
        assert needle in str(exc.value) and "\n" not in str(exc.value)
    p = tmp_path / "ok.jsonl.gz"
    p.write_bytes(gzip.compress(base, compresslevel=1))
    r = load_replay(p)
    assert isinstance(r.snapshots, Frames) and r.snapshots.decoded == 0 and len(r.snapshots) == 24
    assert r.snapshots[-1].ts == pytest.approx(r.snapshots[0].ts + 23)


def _once(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "schedtop", "--once", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_once_replay_prints_the_last_frame_of_a_large_recording(big, tmp_path):
    # Eagerly this file takes minutes; the 120 s timeout is the only clock here.
    r = _once("--json", "--replay", str(big))
    assert r.returncode == 0, r.stderr
    snap = snapshot_from_dict(json.loads(r.stdout))
    first = load_replay(big).snapshots[0]
    assert snap.ts == pytest.approx(first.ts + FRAMES - 1) and len(snap.tasks) == 1000
    # The last frame bad: the one before it, and the bad line named.
    bad = tmp_path / "bad.jsonl"
    no = write_big_recording(bad, 30, bad_frame=29)
    r = _once("--json", "--replay", str(bad))
    assert r.returncode == 0, r.stderr
    assert snapshot_from_dict(json.loads(r.stdout)).ts == pytest.approx(first.ts + 28)
    assert f"line {no}:" in r.stderr and "last good frame" in r.stderr and len(r.stderr.splitlines()) == 1


def test_lazy_and_eager_refuse_a_cut_file_alike(tmp_path):
    p = tmp_path / "s.jsonl"
    write_big_recording(p, 6, tasks=60)
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) - 1000])
    msgs = []
    for eager_bytes in (1 << 40, 0):
        with pytest.raises(ReplayError) as exc:
            load_replay(p, eager_bytes=eager_bytes)
        msgs.append(str(exc.value))
    assert msgs[0] == msgs[1] and "truncated (line 8 is incomplete)" in msgs[0]


def test_a_file_cut_under_a_running_replay_gives_an_error_not_a_crash(tmp_path):
    # E.g. recorded over while replayed: pread finds it short (an mmap would SIGBUS).
    p = tmp_path / "s.jsonl"
    write_big_recording(p, 6, tasks=60, action_every=0)
    r = load_replay(p, eager_bytes=0)
    assert len(r.snapshots[0].tasks) == 60
    os.truncate(p, 100)
    with pytest.raises(ReplayError, match=r"line 7: cut off"):
        r.snapshots[5]
    r.snapshots.close()


_SMALL = {}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=20000), st.booleans())
def test_fuzz_lazy_splice(tmp_path, junk, at, gz):
    # The lazy reader on a real file with bytes spliced in: at load or at any frame, either
    # a frame or one clean line, never a traceback.
    if "raw" not in _SMALL:
        write_big_recording(tmp_path / "seed.jsonl", 4, tasks=8)
        _SMALL["raw"] = (tmp_path / "seed.jsonl").read_bytes()
    good = _SMALL["raw"]
    data = good[:at] + junk + good[at:]
    p = tmp_path / ("f.jsonl.gz" if gz else "f.jsonl")
    p.write_bytes(gzip.compress(data, compresslevel=1) if gz else data)
    try:
        r = load_replay(p, eager_bytes=0)
    except ReplayError as exc:
        assert "\n" not in str(exc)
        return
    try:
        for i in range(len(r.snapshots)):
            try:
                r.snapshots[i]
            except ReplayError as exc:
                assert "\n" not in str(exc) and f"line {r.snapshots.line_of(i)}" in str(exc)
    finally:
        r.snapshots.close()
