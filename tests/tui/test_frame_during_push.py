"""A frame that arrives between push_screen and the new screen's mount must not crash the app.

CI hit this once: `x` pushed the sched_ext screen and the next SnapshotReady reached the screen
before its widgets were composed (NoMatches '#ext-timeline'). Here the frame is delivered in
the very same turn as the push, so the window is hit every time, for every live screen."""

from __future__ import annotations

import pytest
from tuikit import run_replay, wait_for

from schedtop.ui.screens.detail import DetailScreen
from schedtop.ui.screens.queue import QueueScreen
from schedtop.ui.screens.sched_ext import SchedExtScreen
from schedtop.ui.screens.scx import ScxScreen


@pytest.mark.parametrize("make", [
    lambda snap: SchedExtScreen([]),
    lambda snap: ScxScreen(),
    lambda snap: QueueScreen(snap.cpus[0].cpu),
    lambda snap: DetailScreen(snap.tasks[0].tid),
], ids=["sched_ext", "scx", "queue", "detail"])
def test_a_frame_in_the_push_turn_is_drawn_by_the_screens_mount(make) -> None:
    async def body(app, pilot) -> None:
        snap = app.snapshot
        screen = make(snap)
        app.push_screen(screen)
        assert not screen.is_mounted  # the window CI fell into
        app.show(snap)  # must skip the unmounted screen, not query its missing widgets
        await wait_for(pilot, lambda: screen.is_mounted)  # however long the mount takes under load
        assert app.screen is screen
        app.show(snap)  # and once mounted, frames reach it again
        await pilot.pause(0.05)
        assert app.screen is screen

    app = run_replay(body)
    assert app.return_code in (None, 0)
