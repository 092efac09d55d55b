"""The TUI's start meets a journal that is not one (an orphan session file of `[]`, 100 000
nested `[`): it says so in a notification naming the file, moves it aside, still offers to
restore the good orphan beside it, and keeps running (it crashed at every start before)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

from test_steer_tmux import Tui, _start, params, wait_for

pytestmark = [pytest.mark.tmux, pytest.mark.root,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]


@pytest.fixture
def child():
    p = subprocess.Popen(["sleep", "600"], start_new_session=True)
    yield p.pid
    p.kill()
    p.wait()


def _garbage(state, raw: bytes):
    state.mkdir(mode=0o700, exist_ok=True)
    bad = state / "session-4194000-1.json"  # a dead owner: an orphan the start reads
    bad.write_bytes(raw)
    os.chmod(bad, 0o600)
    return bad


@pytest.mark.parametrize("garbage", [b"[]", b"[" * 100_000], ids=["list", "deep"])
def test_a_garbage_orphan_is_said_in_one_notification_and_moved_aside(child, tmp_path, garbage):
    state = tmp_path / "state"
    bad = _garbage(state, garbage)
    tui = Tui(child, state)
    try:
        # the notification wraps anywhere in the long path: compare without borders and blanks
        flat = lambda: "".join(tui.screen().split()).replace("▌", "")  # noqa: E731
        wait_for(lambda: f"{bad}:notausablejournal" in flat(), "the notification naming the file", 30)
        why = "thetoplevelisalist,notanobject" if garbage == b"[]" else "JSONnestedtoodeep"
        assert why in flat() and "movedasidetosession-4194000-1.json.bad" in flat()
        assert tui.alive() and "Traceback" not in tui.screen()
        assert not bad.exists() and (state / "session-4194000-1.json.bad").read_bytes() == garbage
        tui.keys("q")
        wait_for(lambda: not tui.alive(), "quit")
    finally:
        tui.close()
    tui = Tui(child, state)  # the next start: nothing to trip on
    try:
        wait_for(lambda: f"{child}" in tui.screen(), "the child's row", 30)
        assert "usable journal" not in tui.screen() and tui.alive()
        tui.keys("q")
        wait_for(lambda: not tui.alive(), "quit")
    finally:
        tui.close()


def test_a_garbage_orphan_beside_a_good_one_still_lets_the_good_one_be_restored(child, tmp_path):
    state = tmp_path / "state"
    orig = params(child)
    tui = _start(child, state)  # a session that crashes after a change: a good orphan
    try:
        tui.keys("D")
        wait_for(lambda: params(child)["policy"] == 5, "SCHED_IDLE")
        os.kill(tui.pid, signal.SIGKILL)
        wait_for(lambda: not tui.alive(), "killed")
    finally:
        tui.close()
    bad = _garbage(state, b"null")
    tui = Tui(child, state)
    try:
        tui.wait_text("Restore after a crash?", 30)
        assert tui.alive() and not bad.exists()
        tui.keys("y")
        wait_for(lambda: params(child) == orig, "recovery restore")
        tui.keys("q")
        wait_for(lambda: not tui.alive(), "quit")
        assert not list(state.glob("session-*.json"))
    finally:
        tui.close()
