"""TUI test helpers: the app driven by the recorded session (tests/fixtures/session.jsonl).

Imported as `tuikit` (pytest puts this directory on sys.path)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

# The header shows the snapshot's wall time in local time: pin the zone so SVGs are stable.
os.environ["TZ"] = "UTC"
time.tzset()

ROOT = Path(__file__).resolve().parents[2]
SESSION = ROOT / "tests" / "fixtures" / "session.jsonl"


def replay_source():
    from schedtop.collect.replay import ReplaySource, load_replay

    return ReplaySource(load_replay(SESSION))


def replay_app(**kw: Any):
    from schedtop.ui.app import SchedtopApp

    kw.setdefault("delay", 1.0)
    return SchedtopApp(replay_source(), **kw)


async def wait_for(pilot, cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.02)


def run_pilot(app, body: Callable[[Any], Awaitable[None]], size: tuple[int, int] = (120, 40)) -> None:
    """Run `body(pilot)` against `app` headless; sync wrapper (no pytest-asyncio needed)."""

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await body(pilot)

    asyncio.run(main())


@pytest.fixture
def session_path() -> Path:
    return SESSION


def run_replay(body: Callable[[Any, Any], Awaitable[None]], size: tuple[int, int] = (120, 40), **kw: Any):
    """The replay app (paused on its first frame unless told otherwise), then `body(app, pilot)`."""
    kw.setdefault("paused", True)
    app = replay_app(**kw)

    async def main(pilot) -> None:
        await wait_for(pilot, lambda: app.snapshot is not None)
        await body(app, pilot)

    run_pilot(app, main, size)
    return app


def run_live(body: Callable[[Any, Any], Awaitable[None]], size: tuple[int, int] = (120, 40),
             pids: tuple[int, ...] = (), delay: float = 0.2) -> None:
    """The app on the live machine (procfs only, no root parts), then `body(app, pilot)`."""
    from schedtop.collect.live import LiveSource
    from schedtop.ui.app import SchedtopApp

    src = LiveSource(pids=pids, use_bpf=False, use_debugfs=False)
    app = SchedtopApp(src, delay=delay, pids=pids)

    async def main(pilot) -> None:
        await wait_for(pilot, lambda: app.history.frames >= 1)
        await body(app, pilot)

    try:
        run_pilot(app, main, size)
    finally:
        src.close()


def capture_notifications(app) -> list[tuple[str, str]]:
    """Every app.notify from now on, as (message, severity); the toasts still show."""
    seen: list[tuple[str, str]] = []
    orig = app.notify

    def notify(message, *a, **kw):
        seen.append((str(message), kw.get("severity", "information")))
        return orig(message, *a, **kw)

    app.notify = notify
    return seen
