"""A large recording in the TUI: a frame found corrupt while playing is shown in the status line.

The app stays up on the last good frame; stepping moves onto the bad one (the error again)
and past it. The recording (30 frames x 1000 threads, ~14 MB: over the eager limit) is
built at test time by tests/fixtures/big_recording.py.
"""

from __future__ import annotations

import sys

import pytest
from tuikit import ROOT, run_pilot, wait_for

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
from big_recording import write_big_recording  # noqa: E402


def test_corrupt_frame_reached_while_playing_is_reported_and_the_app_stays_on_the_last_good(tmp_path):
    from schedtop.collect.replay import EAGER_BYTES, Frames, ReplaySource, load_replay
    from schedtop.ui.app import SchedtopApp
    from schedtop.ui.widgets.status import StatusBar

    path = tmp_path / "big.jsonl"
    no = write_big_recording(path, 30, bad_frame=5)
    assert path.stat().st_size > EAGER_BYTES
    src = ReplaySource(load_replay(path))
    assert isinstance(src.replay.snapshots, Frames)
    t0 = src.replay.snapshots[0].ts
    src.speed = 16.0  # ~65 ms a frame
    app = SchedtopApp(src, delay=1.0, paused=False)

    async def body(pilot):
        await wait_for(pilot, lambda: app.error is not None, 10)
        assert f"{path}: line {no}: " in app.error and "expected a list" in app.error
        assert src.pos == 4 and app.snapshot.ts == pytest.approx(t0 + 4)
        await wait_for(pilot, lambda: f"line {no}" in str(app.query_one(StatusBar).render()))
        # Later polls find the same frame bad: still on frame 4, the error still up, no crash.
        shown = app.history.frames
        await pilot.pause(0.4)
        assert app.is_running and src.pos == 4 and app.snapshot.ts == pytest.approx(t0 + 4)
        assert app.error is not None and app.history.frames == shown
        # Pause and let any armed or running poll land (none is armed after), then step onto the bad frame (it says so again)
        # and past it.
        await pilot.press("space")
        await wait_for(pilot, lambda: app.paused and app._timer is None and not app._polling)
        await pilot.press("full_stop")
        assert src.pos == 5 and f"line {no}" in app.error and app.snapshot.ts == pytest.approx(t0 + 4)
        await pilot.press("full_stop")
        assert src.pos == 6 and app.error is None and app.snapshot.ts == pytest.approx(t0 + 6)

    run_pilot(app, body)
