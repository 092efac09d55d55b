"""The TUI's T writes a trace under a name schedtop chose, as root, in whatever directory it
was started from: the file is created (0600), never opened through a planted symlink or over
someone else's file, and a name already there is skipped."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from schedtop.export.perfetto import PerfettoWriter
from schedtop.ui.ext_actions import trace_path


def test_a_planted_symlink_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "passwd-like"
    target.write_text("precious\n")
    link = tmp_path / "trace.perfetto-trace"
    link.symlink_to(target)
    with pytest.raises(OSError):
        PerfettoWriter(link, exclusive=True)
    assert target.read_text() == "precious\n"
    plain = tmp_path / "someone-elses.perfetto-trace"
    plain.write_text("theirs\n")
    with pytest.raises(FileExistsError):
        PerfettoWriter(plain, exclusive=True)
    assert plain.read_text() == "theirs\n"


def test_the_file_is_new_and_private(tmp_path: Path) -> None:
    path = tmp_path / "new.perfetto-trace"
    w = PerfettoWriter(path, exclusive=True)
    w.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_size > 0


def test_names_already_taken_are_skipped(tmp_path: Path) -> None:
    first = Path(trace_path(str(tmp_path)))
    first.symlink_to(tmp_path / "nowhere")  # a dangling link still takes the name
    second = Path(trace_path(str(tmp_path)))
    assert second != first and not os.path.lexists(second)
    # Same second: the stem gets -2; a new second: a new stem. Either way, beside the first.
    assert second.parent == tmp_path and second.name.startswith("schedtop-")
