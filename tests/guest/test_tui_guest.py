"""The TUI driving schedtop's own sched_ext scheduler on a real sched_ext kernel (the lab guest).

The real SchedtopApp under Textual's Pilot, on a real LiveSource: every key goes
through the app's own actions to the supervised `schedtop scx` child, and the
kernel's sysfs (state, root/ops, enable_seq) says what happened. The panel is
checked on its rendered text, fed by the live loop's stats.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import pytest

from scx_helpers import SCX, ops, state

pytestmark = pytest.mark.kernel


@pytest.fixture(autouse=True)
def journal_dir(tmp_path, monkeypatch):
    """The steering keys (b, E, z) journal into a private state dir, restored when the app quits."""
    monkeypatch.setenv("SCHEDTOP_STATE_DIR", str(tmp_path / "state"))


LOAD_S = 120.0  # a cold `schedtop scx` under TCG: Python start, re-exec, BPF load


def enable_seq() -> int:
    return int((SCX / "enable_seq").read_text())


def scx_children() -> list[int]:
    """Every `schedtop scx` process on the machine (the app's child, or one it left behind)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if proc.name.isdigit() and b"schedtop" in argv and b"scx" in argv:
            found.append(int(proc.name))
    return found


def text(widget: Any) -> str:
    return str(widget.render())


async def until(pilot, cond: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what}: not met after {timeout:.0f} s"
        await pilot.pause(0.1)


def sleeper() -> subprocess.Popen:
    """Wakes every ms: keeps the scheduler busy (rates above 0) and is the task we steer."""
    return subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(0.001)\n"])


def run_app(body: Callable[[Any, Any], Any], children: list[subprocess.Popen],
            after: Callable[[], None] | None = None) -> None:
    """The app on a LiveSource until body returns, then quit like a user; ``after`` runs once it
    has exited, while the children still live."""
    from schedtop.collect.live import LiveSource
    from schedtop.ui.app import SchedtopApp

    assert state() == "disabled" and not scx_children()
    src = LiveSource(use_bpf=False)
    app = SchedtopApp(src, delay=0.3)
    # Every notification, kept: toasts expire (15 s), and a TCG guest under load can take that long.
    app.notes = []
    orig_notify = app.notify

    def notify(message, *a, **kw):
        app.notes.append(str(message))
        return orig_notify(message, *a, **kw)

    app.notify = notify

    async def main() -> None:
        async with app.run_test(size=(140, 45)) as pilot:
            await until(pilot, lambda: app.snapshot is not None, 60, "first snapshot")
            try:
                await body(app, pilot)
            finally:
                # Quit the way a user does and let the message loop end before run_test tears
                # the screens down (a collection in flight would render into removed widgets).
                app.exit(0)
                deadline = time.monotonic() + 60
                while app.is_running:
                    assert time.monotonic() < deadline, "the app did not stop"
                    await asyncio.sleep(0.02)

    try:
        asyncio.run(main())
        if after is not None:
            after()
    finally:
        for c in children:
            c.kill()
            c.wait()
        src.close()


async def select(app, pilot, pid: int) -> None:
    """The cursor on the child's row (as test_keys does: typing the filter costs ~2 s a key in TCG)."""
    from schedtop.ui.widgets.task_table import TaskTable

    table = app.query_one(TaskTable)
    await until(pilot, lambda: table.select_tid(pid), 30, f"pid {pid} listed")
    assert app.selected_task().tid == pid


def asking(app) -> Any:
    """The confirmation on top, once its widgets are mounted (pushing it from a thread is not instant)."""
    from schedtop.ui.screens.steer import ConfirmScreen

    screen = app.screen
    return screen if isinstance(screen, ConfirmScreen) and screen.query("#confirm-text") else None


async def confirm(app, pilot, title: str, answer: str) -> str:
    await until(pilot, lambda: asking(app), 10, f"{title} confirmation")
    screen = app.screen
    assert screen.title_text == title, screen.title_text
    message = text(screen.query_one("#confirm-text"))
    await pilot.press(answer)
    await until(pilot, lambda: app.screen is not screen, 10, "confirmation closed")
    return message


async def load(app, pilot) -> int:
    """L, then y: returns the enable_seq the load produced."""
    seq = enable_seq()
    await pilot.press("L")
    await confirm(app, pilot, "Load scheduler", "y")
    await until(pilot, lambda: state() == "enabled" and ops() == "schedtop", LOAD_S, "scheduler enabled")
    await until(pilot, lambda: enable_seq() == seq + 1, 10, "enable_seq + 1")  # bumped just after "enabled"
    return seq + 1


def header(app) -> str:
    return text(app.query_one("#header"))


def stats(app) -> dict:
    part = app.scheduler.part()
    return dict(part.stats) if part is not None else {}


NUM = r"([\d,]+) µs"


def test_load_panel_live_knobs_and_unload() -> None:
    """L asks first (n loads nothing), y loads; the panel shows live rates, depth and
    p50/p99; b S a (per task), } and P retune the running loop without unloading; L y unloads to EEVDF."""
    kids = [sleeper(), sleeper()]
    target = kids[0].pid

    async def body(app, pilot) -> None:
        from schedtop.ui.screens.scx import ScxScreen

        seq0 = enable_seq()
        await pilot.press("L")
        asked = await confirm(app, pilot, "Load scheduler", "n")
        assert "full mode" in asked and "policy deadline" in asked
        await pilot.pause(1.0)
        assert state() == "disabled" and enable_seq() == seq0 and not app.scheduler.running and not scx_children()

        seq = await load(app, pilot)
        assert (SCX / "switch_all").read_text().strip() == "1"  # full mode: every task
        await until(pilot, lambda: "sched_ext: schedtop all" in header(app), 30, "header shows schedtop")

        # The steering keys on a selected child become the loop's per-task knobs while it runs:
        # b boost (weight, latency-critical; and a 1 ms EEVDF slice), S the next slice step
        # (1 -> 3 ms), a pin (the CPU chooser: type 1, Enter).
        await select(app, pilot, target)
        knob = lambda: (stats(app).get("knobs") or {}).get(str(target))  # noqa: E731
        await pilot.press("b")
        await until(pilot, lambda: (knob() or [None] * 4)[2:] == [1000, True], 30, "boost knob in the loop's stats")
        await pilot.press("S")
        await until(pilot, lambda: knob()[0] == 3_000_000, 30, "per-task slice in the loop's stats")
        await pilot.press("a")
        await pilot.press("1", "enter")
        await until(pilot, lambda: knob() == [3_000_000, 1, 1000, True], 30, "pin in the loop's stats")
        assert os.sched_getaffinity(target) == {1}
        # z undoes the pin only: the boost and the slice stay, in the task and in the loop.
        await pilot.press("z")
        await until(pilot, lambda: knob() == [3_000_000, None, 1000, True], 30, "undo kept the other knobs")
        assert os.sched_getaffinity(target) == {0, 1}
        await pilot.press("a")
        await pilot.press("1", "enter")
        await until(pilot, lambda: knob() == [3_000_000, 1, 1000, True], 30, "pinned again")

        await pilot.press("g")
        assert isinstance(app.screen, ScxScreen)
        panel = lambda: text(app.screen.query_one("#scx-panel"))  # noqa: E731

        def live() -> bool:  # per-second rates of the Python loop's work (an idle CPU's wake-ups skip it)
            t = panel()
            d = re.search(r"enqueue → dispatch\s+p50 " + NUM + r"\s+p99 " + NUM, t)
            return bool(re.search(r"^queued\s+[1-9]", t, re.M) and re.search(r"^user dispatches\s+[1-9]", t, re.M)
                        and d and "user-space queue depth" in t)

        await until(pilot, live, 60, "panel with live rates and latency")
        t = panel()
        assert "policy deadline" in t and "slice 5000 µs" in t and "mode full" in t
        p50, p99 = (int(x.replace(",", "")) for x in re.search(r"enqueue → dispatch\s+p50 " + NUM + r"\s+p99 " + NUM,
                                                                 t).groups())
        assert 0 <= p50 <= p99 and p99 > 0
        assert re.search(r"user-space queue depth\s+\d+", t)
        assert re.search(rf"^\s+{target}: 3000 µs, 1, 1000, yes$", t, re.M), t  # the knobs, as the loop has them

        # Global slice: } goes 5000 -> 10000 µs in the running loop.
        await pilot.press("right_curly_bracket")
        await until(pilot, lambda: stats(app).get("slice_ns") == 10_000_000 and "slice 10000 µs" in panel(), 30,
                    "slice 10000 µs in the loop's stats")
        # Policy: P switches deadline -> fifo live: the same load (enable_seq), a new policy.
        await pilot.press("P")
        await until(pilot, lambda: stats(app).get("policy") == "fifo" and "policy fifo" in panel(), 30,
                    "policy fifo in the loop's stats")
        assert state() == "enabled" and ops() == "schedtop" and enable_seq() == seq
        assert stats(app).get("last_error") is None

        # Unload: asks, then EEVDF again; the app goes on.
        child = app.scheduler.supervisor._proc
        await pilot.press("L")  # from the panel: the app's keys work on every screen
        await confirm(app, pilot, "Unload scheduler", "y")
        await until(pilot, lambda: state() == "disabled", 30, "scheduler disabled")
        await until(pilot, lambda: child.poll() is not None and not app.scheduler.running, 30, "child gone")
        await pilot.press("escape")
        assert not isinstance(app.screen, ScxScreen)
        await until(pilot, lambda: "EEVDF" in header(app), 30, "header back to EEVDF")
        assert app.is_running and (app.scheduler.part().exit or {})["reason"] == "stopped"
        frames = app.history.frames
        await until(pilot, lambda: app.history.frames > frames + 1, 30, "app still collecting")

    run_app(body, kids)
    assert state() == "disabled" and not scx_children()


async def ejected(app, pilot, child: subprocess.Popen, reason: str) -> Any:
    """After an ejection: the offer names the reason, the app goes on collecting on EEVDF."""
    await until(pilot, lambda: state() == "disabled", 60, f"ejected ({reason})")
    await until(pilot, lambda: asking(app), 30, "the reload offer")
    offer = app.screen
    assert offer.title_text == "Scheduler ejected" and offer.yes == "Reload"
    msg = text(offer.query_one("#confirm-text"))
    assert reason in msg.lower() and "EEVDF" in msg, msg
    assert any(reason in n.lower() for n in app.notes), f"no notification with the reason: {app.notes}"
    assert (app.scheduler.part().exit or {})["reason"] == "ejected"
    await until(pilot, lambda: child.poll() is not None, 30, "ejected child exited")
    # Behind the offer the app keeps collecting, on EEVDF.
    frames = app.history.frames
    await until(pilot, lambda: app.history.frames > frames + 1 and "EEVDF" in header(app), 30,
                "app collecting on EEVDF")
    return offer


def test_ejection_is_shown_with_a_reload_and_the_app_goes_on() -> None:
    """SysRq-S ejects the app's scheduler: the reason is shown, a reload offered, the app keeps
    running on EEVDF; the reload loads again and L unloads it. Then the watchdog: a stopped loop
    (never continued) is shown as stopped, ejected for the stall, the same offer, declined.
    Quitting leaves no scheduler behind."""
    Path("/proc/sys/kernel/sysrq").write_text("1\n")
    kids = [sleeper()]

    async def body(app, pilot) -> None:
        from schedtop.ui.screens.steer import ConfirmScreen

        seq = await load(app, pilot)
        first = app.scheduler.supervisor._proc
        await until(pilot, lambda: stats(app).get("uptime_s") is not None, 60, "first stats line")
        Path("/proc/sysrq-trigger").write_text("S")
        await ejected(app, pilot, first, "sysrq")
        await pilot.press("y")  # Reload
        await until(pilot, lambda: state() == "enabled" and ops() == "schedtop", LOAD_S, "reloaded")
        await until(pilot, lambda: enable_seq() == seq + 1, 10, "enable_seq + 1 (a new load)")
        assert app.scheduler.supervisor._proc is not first
        await until(pilot, lambda: "sched_ext: schedtop" in header(app), 30, "header shows schedtop again")
        await pilot.press("L")
        await confirm(app, pilot, "Unload scheduler", "y")
        await until(pilot, lambda: state() == "disabled" and not app.scheduler.running, 30, "unloaded")
        assert not asking(app)  # a clean unload offers nothing

        # The watchdog: the loop stopped, runnable tasks wait past timeout_ms (shortened here).
        app.scheduler.options = replace(app.scheduler.options, timeout_ms=2000)
        await load(app, pilot)
        child = app.scheduler.supervisor._proc
        await until(pilot, lambda: stats(app).get("uptime_s") is not None, 60, "first stats line")
        os.kill(child.pid, signal.SIGSTOP)
        try:
            # Told before the ejection (the watcher sees the stop within 0.25 s; the watchdog
            # needs timeout_ms), while the app is still on schedtop's scheduler.
            await until(pilot, lambda: any("loop is stopped" in n for n in app.notes), 30,
                        "a notification that the loop is stopped")
            await until(pilot, lambda: state() == "disabled", 60, "watchdog ejection")
            # Never thawed: the supervisor reads the ejection (and the kernel's reason) itself.
            offer = await ejected(app, pilot, child, "stall")
        finally:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGCONT)
        assert child.returncode == -signal.SIGKILL  # the frozen loop was removed, not thawed
        await pilot.press("n")
        await until(pilot, lambda: app.screen is not offer, 10, "offer declined")
        assert not isinstance(app.screen, ConfirmScreen) and not app.scheduler.running and state() == "disabled"

    run_app(body, kids)
    assert state() == "disabled"
    assert not scx_children(), f"scheduler processes left behind: {scx_children()}"


def policy(pid: int) -> int:
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text[text.rindex(")") + 2:].split()[38])


def ext_enabled(pid: int) -> int:
    for line in Path(f"/proc/{pid}/sched").read_text().splitlines():
        if line.startswith("ext.enabled"):
            return int(float(line.split(":", 1)[1]))
    raise AssertionError(f"no ext.enabled in /proc/{pid}/sched")


def test_partial_mode_e_moves_a_task_into_sched_ext_and_z_undoes_it() -> None:
    """M before L loads in partial mode (switch_all 0); E puts the selected child into
    SCHED_EXT (policy 7, ext.enabled 1), z (undo) takes it back to SCHED_OTHER under EEVDF;
    quitting with the scheduler loaded and the child in EXT unloads it and restores the child."""
    kids = [sleeper()]
    pid = kids[0].pid

    async def body(app, pilot) -> None:
        await pilot.press("M")
        assert app.scheduler.options.partial
        await pilot.press("L")
        asked = await confirm(app, pilot, "Load scheduler", "y")
        assert "partial mode" in asked
        await until(pilot, lambda: state() == "enabled" and ops() == "schedtop", LOAD_S, "scheduler enabled")
        assert (SCX / "switch_all").read_text().strip() == "0"
        await until(pilot, lambda: "sched_ext: schedtop partial" in header(app), 30, "header shows partial")
        assert policy(pid) == 0 and ext_enabled(pid) == 0  # loaded, but EEVDF still runs it

        await select(app, pilot, pid)
        await pilot.press("E")
        await until(pilot, lambda: policy(pid) == 7 and ext_enabled(pid) == 1, 30, "child in SCHED_EXT")
        await until(pilot, lambda: (t := app.selected_task()) is not None and t.tid == pid and t.policy == "EXT",
                    30, "the row says EXT")
        await pilot.press("z")
        await until(pilot, lambda: policy(pid) == 0 and ext_enabled(pid) == 0, 30, "child back to OTHER")
        assert state() == "enabled"  # undo touched the task, not the scheduler
        await pilot.press("E")  # in again, and quit like that: quitting unloads and restores
        await until(pilot, lambda: policy(pid) == 7 and ext_enabled(pid) == 1, 30, "child in SCHED_EXT again")

    def after_quit() -> None:
        assert state() == "disabled" and not scx_children()
        assert policy(pid) == 0 and ext_enabled(pid) == 0  # the journal put it back

    run_app(body, kids, after_quit)


def test_a_profile_moving_a_task_into_ext_tells_the_user_once(tmp_path) -> None:
    """--profile with policy = "ext" and no scheduler loaded: the task is moved (policy 7) and the
    runner's note reaches the screen once, however many polls and matching tasks follow."""
    tag = "tx" + os.urandom(3).hex()
    named = ("import ctypes, sys, time\nctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)\n"
             "while True: time.sleep(0.01)\n")
    kids = [subprocess.Popen([sys.executable, "-c", named, tag]) for _ in range(2)]
    prof = tmp_path / "ext.toml"
    prof.write_text(f'name = "e"\npoll = 0.5\n[[rule]]\nname = "to ext"\ncomm = "{tag}"\npolicy = "ext"\n')

    async def body(app, pilot) -> None:
        assert state() == "disabled"
        app.start_profile(str(prof))  # what --profile does once mounted
        await until(pilot, lambda: all(policy(k.pid) == 7 for k in kids), 30, "both moved into SCHED_EXT")
        await until(pilot, lambda: any("no sched_ext scheduler is loaded" in n for n in app.notes), 30,
                    "the note on screen")
        await pilot.pause(2.0)  # four more polls
        assert sum("no sched_ext scheduler is loaded" in n for n in app.notes) == 1, app.notes

    run_app(body, kids)
