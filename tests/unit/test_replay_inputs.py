"""Replay files and recordings as an attacker would hand them over: not a file, a gzip bomb,
a planted symlink, someone else's file in /tmp. Refused with one line; nothing clobbered."""

from __future__ import annotations

import os
import stat
import zlib
from pathlib import Path

import pytest

from schedtop.collect import replay
from schedtop.collect.replay import Recorder, ReplayError, load_replay
from schedtop.export.perfetto import PerfettoWriter

SESSION = Path(__file__).resolve().parents[1] / "fixtures" / "session.jsonl"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["fifo", "dev", "dir", "empty-name"])
def test_only_regular_files_are_replayed(tmp_path, kind):
    path = {"fifo": str(tmp_path / "f.jsonl"), "dev": "/dev/zero", "dir": str(tmp_path), "empty-name": ""}[kind]
    if kind == "fifo":
        os.mkfifo(path)  # before: open() waited for a writer, silently
    with pytest.raises(ReplayError) as exc:
        load_replay(path)
    assert "\n" not in str(exc.value) and ("regular file" in str(exc.value) or "directory" in str(exc.value)
                                           or "empty path" in str(exc.value))


def test_a_gzip_that_inflates_past_the_cap_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(replay, "GUNZIP_MIN_CAP", 8 << 20)  # the real cap is 1 GiB or 200x the file
    bomb = tmp_path / "bomb.jsonl.gz"
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb.write_bytes(c.compress(b"\0" * (64 << 20)) + c.flush())  # 64 MiB of zeros in 64 KiB
    with pytest.raises(ReplayError, match="decompresses to over 12 MiB"):
        load_replay(bomb)


def test_a_real_gzip_recording_still_loads_through_the_capped_inflate(tmp_path):
    import gzip

    gz = tmp_path / "s.jsonl.gz"
    gz.write_bytes(gzip.compress(SESSION.read_bytes()))
    assert load_replay(gz) == load_replay(SESSION)


def _open_writer(kind: str, path: Path):
    if kind == "record":
        return Recorder(path)
    return PerfettoWriter(path)


@pytest.mark.parametrize("kind", ["record", "trace"])
def test_a_planted_symlink_is_not_followed(tmp_path, kind):
    target = tmp_path / "root-owned"
    target.write_text("precious\n")
    link = tmp_path / "x.trace"
    link.symlink_to(target)
    with pytest.raises(OSError) as exc:
        _open_writer(kind, link)
    assert "symbolic link" in exc.value.strerror
    assert target.read_text() == "precious\n"


@pytest.mark.root
@pytest.mark.parametrize("kind", ["record", "trace"])
def test_another_users_file_in_a_sticky_dir_is_not_clobbered(tmp_path, kind):
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    theirs = shared / "x.trace"
    theirs.write_text("theirs\n")
    os.chown(theirs, 65534, 65534)
    with pytest.raises(OSError) as exc:
        _open_writer(kind, theirs)
    assert "owned by uid 65534" in exc.value.strerror
    assert theirs.read_text() == "theirs\n"
    # A hard link to root's own file, planted there, is refused too.
    mine = tmp_path / "mine"
    mine.write_text("mine\n")
    os.link(mine, shared / "hard.trace")
    with pytest.raises(OSError, match="hard link"):
        _open_writer(kind, shared / "hard.trace")
    assert mine.read_text() == "mine\n"


@pytest.mark.parametrize("kind", ["record", "trace"])
def test_the_callers_own_file_is_overwritten_like_perf(tmp_path, kind):
    own = tmp_path / ("s.jsonl" if kind == "record" else "s.perfetto-trace")
    own.write_text("old contents that are longer than a header line, surely, " * 100)
    w = _open_writer(kind, own)
    w.close()
    assert b"old contents" not in own.read_bytes() and own.stat().st_size > 0
    assert stat.S_ISREG(own.stat().st_mode)
    if kind == "record":
        with pytest.raises(ReplayError, match="no snapshots"):  # a header only, written whole
            load_replay(own)


def test_a_gzip_recorder_closes_its_file(tmp_path):
    before = len(os.listdir("/proc/self/fd"))
    r = Recorder(tmp_path / "s.jsonl.gz")
    r.close()
    assert len(os.listdir("/proc/self/fd")) == before
