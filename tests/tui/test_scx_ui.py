"""The scheduler keys on a live app: load asks first, a refused load is explained with a
reload offered, the panel shows why, and the policy/slice/mode keys change what loads next."""

from __future__ import annotations

import pytest

from schedtop.scx.loader import SYSFS
from schedtop.ui.screens.scx import ScxScreen, panel_markup
from schedtop.ui.screens.steer import ConfirmScreen
from tuikit import run_pilot, wait_for


@pytest.mark.skipif(SYSFS.exists(), reason="here loading would succeed: the guest tests cover that path")
def test_load_without_sched_ext_is_refused_clearly_and_the_app_goes_on():
    from schedtop.collect.live import LiveSource
    from schedtop.ui.app import SchedtopApp

    app = SchedtopApp(LiveSource(use_bpf=False, use_debugfs=False), delay=0.3)

    async def body(pilot):
        await pilot.press("P")  # deadline -> fifo, before loading
        assert app._scx_options.policy == "fifo"
        await pilot.press("right_curly_bracket")
        assert app._scx_options.slice_us == 10000
        await pilot.press("left_curly_bracket", "left_curly_bracket")
        assert app._scx_options.slice_us == 3000
        await pilot.press("M")
        assert app._scx_options.partial
        await pilot.press("L")
        assert isinstance(app.screen, ConfirmScreen) and "partial mode" in app.screen.message
        await pilot.press("y")
        # The real child runs `schedtop scx` and refuses: the reason comes back as an exit.
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen) and "Reload" in app.screen.yes, 30)
        assert "sched_ext" in app.screen.message or "root" in app.screen.message
        await pilot.press("n")
        assert not app.scx_running
        await pilot.press("g")
        assert isinstance(app.screen, ScxScreen)
        await wait_for(pilot, lambda: app.snapshot is not None and "scx" in app.snapshot.extras, 10)
        assert app.snapshot.extras["scx"]["exit"]["reason"] == "error"
        await pilot.press("escape")
        assert not isinstance(app.screen, ScxScreen)

    run_pilot(app, body)


def test_panel_markup_shows_rates_depth_latency_and_exit():
    stats = {
        "policy": "interactive", "slice_ns": 2_000_000, "partial": False, "uptime_s": 12.0,
        "counters": {"nr_queued": 1000, "nr_user_dispatches": 990, "nr_congested": 3},
        "rates": {"nr_queued": 250.0, "nr_user_dispatches": 240.0},
        "user_queue": 7, "dispatch_p50_us": 120.0, "dispatch_p99_us": 2048.0,
        "decide_p50_us": 80.0, "decide_p99_us": 900.0, "page_faults_after_warmup": 0,
        "cpu_pct": 6.5, "rss_kb": 41000, "knobs": {"42": [1_000_000, 1, 1000, True]},
    }
    text = panel_markup({"running": True, "stats": stats, "options": {}, "exit": None})
    assert "interactive" in text and "2000 µs" in text
    assert "250" in text and "1,000" in text and "depth   7" in text
    assert "p99 2,048 µs" in text and "page faults after warm-up 0" in text
    assert "42: 1000 µs, 1, 1000, yes" in text
    gone = panel_markup({"running": False, "stats": stats, "options": {},
                         "exit": {"reason": "ejected", "text": "stall (watchdog): runnable task stall"}})
    assert "not loaded" in gone and "runnable task stall" in gone
    assert "not loaded" in panel_markup({})
    frozen = panel_markup({"running": True, "stats": stats, "options": {}, "exit": None, "frozen": "stopped"})
    assert "policy loop is stopped" in frozen and "watchdog" in frozen
    assert "loop is" not in text  # only while it is frozen


def test_exit_text_with_brackets_is_shown_as_written(tmp_path):
    """The reason comes from the kernel or a policy (task names, exception text): it is
    shown verbatim, never parsed as markup (a stray [/] used to raise MarkupError)."""
    from dataclasses import replace

    from textual.markup import to_content

    from schedtop.collect.live import LiveSource
    from schedtop.ui.app import SchedtopApp

    bad = tmp_path / "x[/]y" / "[b]policy.py"  # the real child refuses it: "policy file not found: ..."
    app = SchedtopApp(LiveSource(use_bpf=False, use_debugfs=False), delay=0.3)

    async def body(pilot):
        app._scx_options = replace(app._scx_options, policy=str(bad))
        await pilot.press("L", "y")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen.yes == "Reload"
                       and app.screen.query("#confirm-text"), 30)
        assert str(bad) in str(app.screen.query_one("#confirm-text").render())
        # as the toast renders it: plain text, never markup
        assert any(str(bad) in (str(to_content(n.message)) if n.markup else n.message) for n in app._notifications)
        await pilot.press("n")
        assert app.is_running and not app.scx_running

    run_pilot(app, body)
