"""sched_ext observability against a real loaded scheduler (the lab's bpf/minimal.bpf.c).

SchedulerInfo from the real sysfs, root/events as rates, load / unload / SysRq-S ejection seen
by the tracker with the kernel's own exit reasons from /dev/kmsg, per-task ext.enabled in the
task rows, and the two Snapshot extras through a real LiveSource.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from schedtop.collect.ext_watch import ExtWatch
from schedtop.collect.live import LiveSource
from schedtop.collect.sched_ext import read_scheduler_info
from schedtop.collect.scx_events import KmsgReader, ScxEventTracker
from schedtop.lab.minimal import loaded, wait_state

pytestmark = pytest.mark.kernel


def settle(tracker: ScxEventTracker, want: int, timeout: float = 5.0) -> None:
    """Poll until `want` events are seen (the kernel logs the exit reason just after the state flips)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tracker.update(read_scheduler_info())
        if len(tracker.events) >= want and all(e.reason for e in tracker.events if e.kind != "load"):
            return
        time.sleep(0.05)


def test_scheduler_info_events_and_exit_reasons() -> None:
    assert wait_state("disabled") == "disabled"
    tracker = ScxEventTracker(KmsgReader())
    assert tracker.kmsg is not None and tracker.kmsg.available
    before = read_scheduler_info()
    tracker.update(before)
    assert before.ext_state == "disabled" and before.kind == "eevdf"

    with loaded():
        assert wait_state("enabled", 0) == "enabled"
        info = read_scheduler_info()
        assert (info.kind, info.ext_state, info.ops_name) == ("sched_ext", "enabled", "schedtop_min")
        assert info.switch_all is True
        assert info.enable_seq == before.enable_seq + 1
        assert info.nr_rejected is not None and info.hotplug_seq is not None
        # root/events (6.15+): whatever fields this kernel has, each one a counter.
        assert info.events, "root/events is empty on a 7.x kernel"
        assert all(isinstance(v, int) for v in info.events.values())
        tracker.update(info)
        subprocess.run(["stress-ng", "--cpu", "4", "--timeout", "1", "--quiet"], check=True, timeout=120)
        later = read_scheduler_info()
        tracker.update(later)
        assert set(tracker.rates) == {k for k in later.events if k in info.events}
        assert all(r >= 0 for r in tracker.rates.values())
    assert wait_state("disabled") == "disabled"
    settle(tracker, 2)
    load, unload = list(tracker.events)[-2:]
    assert (load.kind, load.ops_name, load.enable_seq) == ("load", "schedtop_min", before.enable_seq + 1)
    assert (unload.kind, unload.ops_name) == ("unload", "schedtop_min")
    assert unload.reason == "unregistered from user space"

    # SysRq-S ejects whatever BPF scheduler runs: the kernel's safety net, seen as an ejection.
    Path("/proc/sys/kernel/sysrq").write_text("1\n")
    with loaded():  # leaving the block detaches the (already ejected) link
        settle(tracker, 3)
        Path("/proc/sysrq-trigger").write_text("S")
        assert wait_state("disabled") == "disabled"
        settle(tracker, 4)
    ev = tracker.events[-1]
    assert (ev.kind, ev.ops_name, ev.reason) == ("eject", "schedtop_min", "disabled by sysrq-S"), ev
    assert "EJECTED" in ev.label
    tracker.kmsg.close()


def test_ext_enabled_per_task_and_the_snapshot_extras() -> None:
    assert wait_state("disabled") == "disabled"
    sleeper = subprocess.Popen(["sleep", "60"])
    watch = ExtWatch(poll=False)
    src = LiveSource(use_bpf=False)
    watch.attach(src)
    try:
        snap = src.collect()
        task = next(t for t in snap.tasks if t.tid == sleeper.pid)
        assert task.ext_enabled is False
        assert snap.extras.sched_ext.state == "disabled"
        assert snap.extras.scx_stats.ok is False  # nobody serves stats yet
        with loaded():
            assert wait_state("enabled", 0) == "enabled"
            src.collect()  # sees the load
            snap = src.collect()
            task = next(t for t in snap.tasks if t.tid == sleeper.pid)
            assert task.ext_enabled is True, "switch_all: every fair task belongs to the BPF scheduler"
            ext = snap.extras.sched_ext
            assert (ext.state, ext.ops, ext.switch_all) == ("enabled", "schedtop_min", True)
            assert [c.kind for c in ext.changes][-1:] == ["load"]
            assert ext.events, "root/events fields missing from the part"
            assert snap.scheduler.ops_name == "schedtop_min"
        assert wait_state("disabled") == "disabled"
        snap = src.collect()  # sees the unload, so the next collect re-reads every task
        assert [c.kind for c in snap.extras.sched_ext.changes][-1:] == ["unload"]
        snap = src.collect()
        assert next(t for t in snap.tasks if t.tid == sleeper.pid).ext_enabled is False
    finally:
        sleeper.kill()
        sleeper.wait()
        src.close()
        watch.close()


def test_sched_ext_screen_marks_a_real_load_and_unload() -> None:
    """The `x` screen, headless, while the lab's scheduler loads and unloads under it."""
    import asyncio

    from schedtop.ui.app import SchedtopApp
    from schedtop.ui.screens.sched_ext import SchedExtScreen

    assert wait_state("disabled") == "disabled"
    app = SchedtopApp(LiveSource(use_bpf=False), delay=0.3)

    def text(wid: str) -> str:
        return str(app.screen.query_one(wid).render())

    def marks() -> str:  # the marker row under the sparkline (the third line is the legend)
        return text("#ext-timeline").splitlines()[1]

    async def until(pilot, cond, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, "condition not met in time"
            await pilot.pause(0.1)

    async def main() -> None:
        async with app.run_test(size=(120, 45)) as pilot:
            await until(pilot, lambda: app.snapshot is not None and app.snapshot.extras.sched_ext is not None)
            await pilot.press("x")
            assert isinstance(app.screen, SchedExtScreen)
            with loaded():
                assert wait_state("enabled", 0) == "enabled"
                await until(pilot, lambda: "schedtop_min" in text("#ext-sysfs") and "▲" in marks())
                await until(pilot, lambda: "SCX_EV_" in text("#ext-events"))
                assert "loaded schedtop_min" in text("#ext-changes")
            await until(pilot, lambda: "▼" in marks() and "unloaded schedtop_min" in text("#ext-changes"))
            await until(pilot, lambda: "unregistered from user space" in text("#ext-changes"))
            assert marks().index("▲") < marks().index("▼")
            # Quit the way a user does, and wait for the app's message loop to end. Leaving run_test
            # with the app running prunes the screens under a live loop: a collection finishing
            # meanwhile (likely under TCG) renders into removed widgets (NoMatches: CpuPanel).
            app.exit(0)  # stops the poller; a snapshot in flight is handled before the loop ends
            deadline = time.monotonic() + 30
            while app.is_running:
                assert time.monotonic() < deadline, "the app did not stop"
                await asyncio.sleep(0.02)  # not pilot.pause: it waits on the (stopping) screen

    asyncio.run(main())
