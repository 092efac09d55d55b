"""The sched_ext screen (`x`) on the live host: sysfs state, the timeline, and scx_stats metrics
from a real stats server shown generically from its metadata; a broken server costs a warning."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from schedtop.collect.live import LiveSource
from schedtop.export.scx_stats import StatsServer, struct_meta
from schedtop.model import ScxChange
from schedtop.ui.app import SchedtopApp
from schedtop.ui.screens.sched_ext import SchedExtScreen, marker_row, sparkline

META = {"Metrics": struct_meta("Metrics", {
    "nr_dispatched": ("u64", "tasks dispatched"),
    "brand_new_metric": ("float", "something schedtop has never heard of"),
}, desc="a third-party scheduler", top=True)}


async def wait_for(pilot, cond, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.05)


def text_of(screen, wid: str) -> str:
    return str(screen.query_one(wid).render())


def run(app, body, size=(120, 45)) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await body(pilot)

    asyncio.run(main())


def test_x_shows_sysfs_and_generic_scx_stats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sock = tmp_path / "scx" / "stats"
    monkeypatch.setenv("SCHEDTOP_SCX_STATS", str(sock))
    n = [0]

    def stats(_args):
        n[0] += 1000
        return {"nr_dispatched": n[0], "brand_new_metric": 0.25}

    with StatsServer(sock, stats, META):
        app = SchedtopApp(LiveSource(use_bpf=False), delay=0.2)

        async def body(pilot) -> None:
            await wait_for(pilot, lambda: app.snapshot is not None and app.snapshot.extras.sched_ext is not None)
            await pilot.press("x")
            assert isinstance(app.screen, SchedExtScreen)
            screen = app.screen
            await wait_for(pilot, lambda: "nr_dispatched" in text_of(screen, "#ext-stats")
                           and "/s" in text_of(screen, "#ext-timeline"))
            stats_text = text_of(screen, "#ext-stats")
            assert "a third-party scheduler" in stats_text
            assert "something schedtop has never heard of" in stats_text
            assert "0.250" in stats_text
            sysfs = text_of(screen, "#ext-sysfs")
            if not Path("/sys/kernel/sched_ext").exists():
                assert "no sched_ext" in sysfs
            # the u64 counter gets a rate once two readings are in: value, then per-second rate
            def rate_shown() -> bool:
                line = next(ln for ln in text_of(screen, "#ext-stats").splitlines() if "nr_dispatched" in ln)
                return len(line.split("tasks dispatched")[0].split()) == 3
            await wait_for(pilot, rate_shown)
            await pilot.press("x")
            assert not isinstance(app.screen, SchedExtScreen)

        run(app, body)


def test_a_broken_stats_server_costs_a_warning_not_a_frozen_ui(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    sock = tmp_path / "stats"
    monkeypatch.setenv("SCHEDTOP_SCX_STATS", str(sock))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock))
    listener.listen(8)  # accepts (in the backlog) and never answers
    try:
        app = SchedtopApp(LiveSource(use_bpf=False), delay=0.2)
        notes: list[str] = []
        orig = app.notify

        def notify(message, *a, **kw):
            notes.append(str(message))
            return orig(message, *a, **kw)

        app.notify = notify  # type: ignore[method-assign]

        async def body(pilot) -> None:
            await wait_for(pilot, lambda: any("scx_stats" in m and "timed out" in m for m in notes))
            frames = app.history.frames
            t0 = time.monotonic()
            await wait_for(pilot, lambda: app.history.frames >= frames + 3)  # snapshots keep coming
            assert time.monotonic() - t0 < 5
            await pilot.press("x")
            await wait_for(pilot, lambda: "timed out" in text_of(app.screen, "#ext-stats"))

        run(app, body)
    finally:
        listener.close()


def test_markers_line_up_with_the_samples() -> None:
    stamps = [10.0, 11.0, 12.0, 13.0]
    changes = [ScxChange(ts=11.02, kind="load"), ScxChange(ts=12.98, kind="unload"), ScxChange(ts=13.0, kind="eject")]
    row = marker_row(stamps, changes, 80)
    assert row == " [$success]▲[/] [$error]✖[/]"  # the ejection wins its slot over the unload
    assert sparkline([0, 1, 2, 4], 10) == "▁▂▄█"


@pytest.mark.bpf
@pytest.mark.root
def test_T_records_a_trace_with_an_indicator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from schedtop.export.perfetto import read_trace, summarize
    from schedtop.ui.ext_actions import TRACE_DIR_ENV, TraceIndicator

    monkeypatch.setenv(TRACE_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("SCHEDTOP_SCX_STATS", str(tmp_path / "no-stats"))
    app = SchedtopApp(LiveSource(use_bpf=False), delay=0.5)

    async def body(pilot) -> None:
        await wait_for(pilot, lambda: app.snapshot is not None)
        bar = app.query_one("#trace-indicator", TraceIndicator)
        assert not bar.display
        await pilot.press("T")
        await wait_for(pilot, lambda: bar.display and "events" in str(bar.render()), timeout=15)
        assert "REC" in str(bar.render()) and "dropped" in str(bar.render())
        await pilot.pause(0.8)
        await pilot.press("T")
        await wait_for(pilot, lambda: not bar.display, timeout=30)

    run(app, body)
    (trace,) = tmp_path.glob("schedtop-*.perfetto-trace")
    c = summarize(read_trace(trace))
    assert c.counts["switch"] > 0 and c.switch_pids <= c.process_pids | c.thread_tids
