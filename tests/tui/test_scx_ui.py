"""The scheduler keys on a live app: load asks first, a load that cannot happen is refused
with what is really loaded (never reported as an ejection), the panel tells the truth about
who schedules, and the policy/slice/mode keys change what loads next."""

from __future__ import annotations

import pytest

from schedtop.model import ScxOptionsPart, ScxPart
from schedtop.scx.loader import SCHED_EXT_DIR
from schedtop.ui.screens.scx import ScxScreen, panel_markup
from schedtop.ui.screens.steer import ConfirmScreen
from tuikit import capture_notifications, run_pilot, wait_for


def _fake_sched_ext(root, state: str, ops: str | None = None):
    """A sched_ext sysfs directory as the kernel lays it out (for the collector to read)."""
    root.mkdir()
    (root / "state").write_text(f"{state}\n")
    (root / "switch_all").write_text("1\n")
    if ops is not None:
        (root / "root").mkdir()
        (root / "root" / "ops").write_text(f"{ops}\n")
    return str(root)


@pytest.mark.skipif(SCHED_EXT_DIR.exists(), reason="here loading would succeed: the guest tests cover that path")
def test_load_without_sched_ext_is_refused_clearly_and_the_app_goes_on():
    from schedtop.collect.live import LiveSource
    from schedtop.ui.app import SchedtopApp

    app = SchedtopApp(LiveSource(use_bpf=False, use_debugfs=False), delay=0.3)

    async def body(pilot):
        seen = capture_notifications(app)
        await pilot.press("P")  # deadline -> fifo, before loading
        assert app.scheduler.options.policy == "fifo"
        await pilot.press("right_curly_bracket")
        assert app.scheduler.options.slice_us == 10000
        await pilot.press("left_curly_bracket", "left_curly_bracket")
        assert app.scheduler.options.slice_us == 3000
        await pilot.press("M")
        assert app.scheduler.options.partial
        await pilot.press("L")
        # This kernel has no sched_ext: nothing to confirm, nothing started, and never an "ejected".
        assert not isinstance(app.screen, ConfirmScreen)
        refusals = [m for m, sev in seen if sev == "error" and "no sched_ext" in m]
        assert len(refusals) == 1 and "nothing was loaded" in refusals[0]
        assert app.scheduler.supervisor is None and not app.scheduler.running
        await pilot.pause(0.5)
        assert not isinstance(app.screen, ConfirmScreen)
        assert not any("eject" in m.lower() or "gone" in m for m, _ in seen)
        await pilot.press("g")
        assert isinstance(app.screen, ScxScreen)
        assert "not loaded" in str(app.screen.query_one("#scx-panel").render())
        # The panel's hint line names L, P, { } and M: they act from the panel too.
        await pilot.press("P", "right_curly_bracket", "M")
        assert app.scheduler.options.policy == "interactive" and app.scheduler.options.slice_us == 5000
        assert not app.scheduler.options.partial
        await pilot.press("L")
        assert sum(1 for m, sev in seen if sev == "error" and "no sched_ext" in m) == 2
        assert isinstance(app.screen, ScxScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, ScxScreen)

    run_pilot(app, body)


def test_load_while_another_scheduler_runs_names_it_and_the_panel_shows_it(tmp_path):
    """The demo's case: schedtop_min is loaded. L says so and starts nothing; g names
    schedtop_min instead of showing schedtop's policy and slice as if they were loaded."""
    from schedtop.collect.live import LiveSource
    from schedtop.ui.app import SchedtopApp

    root = _fake_sched_ext(tmp_path / "sched_ext", "enabled", "schedtop_min")
    app = SchedtopApp(LiveSource(use_bpf=False, use_debugfs=False, sched_ext_root=root), delay=0.3)

    async def body(pilot):
        seen = capture_notifications(app)
        await wait_for(pilot, lambda: app.latest is not None, 10)
        assert app.latest.scheduler.ops_name == "schedtop_min"
        await pilot.press("L")
        assert not isinstance(app.screen, ConfirmScreen)
        assert [m for m, sev in seen if sev == "error"] == [
            "sched_ext already runs another scheduler, schedtop_min: nothing was loaded (unload it first)"]
        assert app.scheduler.supervisor is None
        await pilot.press("g")
        text = str(app.screen.query_one("#scx-panel").render())
        assert "another scheduler: schedtop_min" in text
        assert "policy" not in text and "slice" not in text

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
    text = panel_markup(ScxPart(running=True, stats=stats, options=ScxOptionsPart(), exit=None))
    assert "interactive" in text and "2000 µs" in text
    assert "250" in text and "1,000" in text and "depth   7" in text
    assert "p99 2,048 µs" in text and "page faults after warm-up 0" in text
    assert "42: 1000 µs, 1, 1000, yes" in text
    gone = panel_markup(ScxPart(running=False, stats=stats, options=ScxOptionsPart(),
                                exit={"reason": "ejected", "text": "stall (watchdog): runnable task stall"}))
    assert "not loaded" in gone and "runnable task stall" in gone
    assert "not loaded" in panel_markup(None)
    frozen = panel_markup(ScxPart(running=True, stats=stats, options=ScxOptionsPart(), exit=None, frozen="stopped"))
    assert "policy loop is stopped" in frozen and "watchdog" in frozen
    assert "loop is" not in text  # only while it is frozen


def test_exit_text_with_brackets_is_shown_as_written(tmp_path):
    """The reason comes from the kernel or a policy (task names, exception text): it is
    shown verbatim, never parsed as markup (a stray [/] used to raise MarkupError). The real
    child refuses the policy before loading anything: a failed load, with no reload offered."""
    from dataclasses import replace

    from textual.markup import to_content

    from schedtop.collect.live import LiveSource
    from schedtop.ui.app import SchedtopApp

    bad = tmp_path / "x[/]y" / "[b]policy.py"  # the real child refuses it: "policy file not found: ..."
    root = _fake_sched_ext(tmp_path / "sched_ext", "disabled")  # sched_ext, nothing loaded: worth trying
    app = SchedtopApp(LiveSource(use_bpf=False, use_debugfs=False, sched_ext_root=root), delay=0.3)

    async def body(pilot):
        app.scheduler.options = replace(app.scheduler.options, policy=str(bad))
        await wait_for(pilot, lambda: app.latest is not None, 10)
        await pilot.press("L")
        assert isinstance(app.screen, ConfirmScreen) and str(bad) in str(app.screen.query_one("#confirm-text").render())
        await pilot.press("y")
        def shown(n):  # as the toast renders it: plain text, never markup
            return str(to_content(n.message)) if n.markup else n.message

        await wait_for(pilot, lambda: any("did not load" in shown(n) for n in app._notifications), 30)
        failed = [shown(n) for n in app._notifications if "did not load" in shown(n)]
        assert len(failed) == 1 and str(bad) in failed[0]
        await wait_for(pilot, lambda: not app.scheduler.running, 10)
        assert not isinstance(app.screen, ConfirmScreen)  # no "Scheduler ejected ... Reload?"
        assert app.is_running and app.scheduler.part().phase == "failed"

    run_pilot(app, body)
