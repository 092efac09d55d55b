"""SVG snapshots of the TUI from the recorded session, at 80x24 and 200x60.

The replay starts paused and is stepped to a fixed frame, the time zone is
pinned (conftest), so the pictures depend only on the fixture and the code.
Update after an intended change: pytest tests/tui --snapshot-update
"""

from __future__ import annotations

import pytest
from tuikit import replay_source, wait_for

from schedtop.ui.app import APP_BINDINGS, SchedtopApp
from schedtop.ui.screens.main import VIEW_BINDINGS, MainScreen

SIZES = [(80, 24), (200, 60)]


class CoreMain(MainScreen, inherit_bindings=False):
    """The main screen with the view's own keys only: other areas' bindings (tested by their
    owners) would otherwise change the footer, and these pictures, whenever one is added.
    inherit_bindings=False: Textual merges BINDINGS along the MRO, so MainScreen's would come back."""

    BINDINGS = list(VIEW_BINDINGS)


class CoreApp(SchedtopApp, inherit_bindings=False):
    """The app with its app-wide keys and CoreMain as its main screen."""

    BINDINGS = list(APP_BINDINGS)
    MAIN_SCREEN = CoreMain


def replay_app(**kw):
    return CoreApp(replay_source(), delay=1.0, **kw)


def _at_frame(app, frame: int, keys: tuple[str, ...] = ()):
    async def run_before(pilot) -> None:
        await wait_for(pilot, lambda: app.snapshot is not None)
        for _ in range(frame):
            await pilot.press("full_stop")
        for k in keys:
            await pilot.press(k)
        await pilot.pause(0.1)

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_view(snap_compare, size):
    app = replay_app(paused=True)
    assert snap_compare(app, terminal_size=size, run_before=_at_frame(app, 3))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_queue_view(snap_compare, size):
    app = replay_app(paused=True)
    assert snap_compare(app, terminal_size=size, run_before=_at_frame(app, 3, ("down", "e")))


def test_help_80x24(snap_compare):
    app = replay_app(paused=True)
    assert snap_compare(app, terminal_size=(80, 24), run_before=_at_frame(app, 1, ("question_mark",)))


def test_process_view_filtered_200x60(snap_compare):
    app = replay_app(paused=True)
    keys = ("t", "slash", "h", "o", "g", "enter", "w")
    assert snap_compare(app, terminal_size=(200, 60), run_before=_at_frame(app, 3, keys))


def test_bpf_session_200x60(snap_compare):
    """A real recording with the BPF tier: latency columns, histogram, p99 sparkline, side pane."""
    from pathlib import Path

    from schedtop.collect.replay import ReplaySource, load_replay

    rec = Path(__file__).with_name("session-bpf.jsonl")
    app = CoreApp(ReplaySource(load_replay(rec)), delay=1.0, paused=True)
    assert snap_compare(app, terminal_size=(200, 60), run_before=_at_frame(app, 6, ("down",)))


def _cfs_app():
    """A recording made on Debian 12's 6.1 (CFS) in the lab guest: 3 busy shells on CPU 0."""
    from pathlib import Path

    from schedtop.collect.replay import ReplaySource, load_replay

    rec = Path(__file__).resolve().parents[1] / "fixtures" / "session_6.1.jsonl"
    return CoreApp(ReplaySource(load_replay(rec)), delay=1.0, paused=True)


def test_cfs_6_1_main_view_120x30(snap_compare):
    """scheduler CFS (fair), no SLICE column."""
    app = _cfs_app()
    assert snap_compare(app, terminal_size=(120, 30), run_before=_at_frame(app, 1))


def test_cfs_6_1_queue_view_80x24(snap_compare):
    """CFS order by vruntime, no eligibility/deadline/lag/slice, and why."""
    app = _cfs_app()
    assert snap_compare(app, terminal_size=(80, 24), run_before=_at_frame(app, 1, ("down", "e")))
