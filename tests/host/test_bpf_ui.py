"""The BPF keys in the real app, on a live source with the BPF tier loaded (root)."""

from __future__ import annotations

import asyncio
import time

import pytest

from schedtop.collect.bpf import OBJECT
from schedtop.ui.bpf_actions import next_rate, tier_of

pytestmark = [pytest.mark.root, pytest.mark.bpf,
              pytest.mark.skipif(not OBJECT.exists(), reason="trace.bpf.o not built (make bpf)")]


def test_next_rate_steps_and_reaches_off_and_all() -> None:
    assert next_rate(128, 0.5) == 64 and next_rate(128, 2) == 256
    assert next_rate(1, 0.5) == 1
    assert next_rate(1 << 20, 2) == 0 and next_rate(0, 0.5) == 1 << 20 and next_rate(0, 2) == 0


async def _wait(pilot, cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.05)


def test_sample_rate_keys_drive_the_loaded_tier() -> None:
    from schedtop.collect.live import LiveSource
    from schedtop.ui.app import SchedtopApp

    src = LiveSource(use_debugfs=False)
    app = SchedtopApp(src, delay=0.3)

    async def main() -> None:
        async with app.run_test(size=(140, 40)) as pilot:
            await _wait(pilot, lambda: app.snapshot is not None and app.snapshot.source == "bpf")
            tier = tier_of(app.source)
            assert tier is not None and tier.sample_rate == 128
            await pilot.press("right_square_bracket")
            assert tier.sample_rate == 64
            await pilot.press("left_square_bracket", "left_square_bracket")
            assert tier.sample_rate == 256
            await _wait(pilot, lambda: app.snapshot.extras.bpf.sample_rate == 256)
            await pilot.press("ctrl+b")
            await pilot.pause(0.1)
            # H hides the latency panel and brings it back, filled from the newest snapshot
            lat = app.query_one("#latency")
            await _wait(pilot, lambda: lat.display)
            await pilot.press("H")
            assert not lat.display
            await pilot.pause(0.5)  # a collect while hidden does not bring it back
            assert not lat.display
            await pilot.press("H")
            assert lat.display

    try:
        asyncio.run(main())
    finally:
        src.close()


def test_tier_opens_in_the_background_and_never_delays_a_collect() -> None:
    """bpf_wait=0 (the TUI's): collect() answers from procfs while the tier loads in its
    thread; once bpf_pending is False the next snapshot carries BPF data, and bpf_tier
    is the tier itself. -p narrows the rows only: the tier still counts every task."""
    import os

    from schedtop.collect.live import LiveSource

    src = LiveSource(pids=(os.getpid(),), use_debugfs=False, bpf_wait=0)
    try:
        t0 = time.monotonic()
        first = src.collect()
        assert first.tasks and {t.pid for t in first.tasks} == {os.getpid()}
        if src.bpf_pending:  # still loading: the frame did not wait for it
            assert first.source == "procfs" and src.bpf_tier is None
        deadline = t0 + 20
        while src.bpf_pending:
            assert time.monotonic() < deadline, "BPF tier still opening after 20 s"
            time.sleep(0.01)
        snap = src.collect()
        assert snap.source == "bpf", snap.warnings
        tier = src.bpf_tier
        assert tier is not None and tier.pid_filter is None  # whole machine
        assert snap.extras.bpf.pid_filter is None
    finally:
        src.close()
    assert src.bpf_tier is None


def test_histogram_key_collides_with_no_other_binding() -> None:
    """`H` is free on the main screen, and every binding id is unique."""
    from schedtop.ui.app import SchedtopApp
    from schedtop.ui.screens.main import MainScreen

    bindings = [*SchedtopApp.BINDINGS, *MainScreen.BINDINGS]  # what acts on the main screen
    ids = [b.id for b in bindings]
    assert len(ids) == len(set(ids)) and "schedtop.bpf.histogram" in ids
    keys = [k.strip() for b in bindings for k in b.key.split(",")]
    assert keys.count("H") == 1 and len(keys) == len(set(keys))
