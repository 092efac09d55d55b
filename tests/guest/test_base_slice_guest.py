"""The global EEVDF base slice, journaled like every change, on a kernel whose debugfs lets
root write it (the lab guest; this host's lockdown refuses it, see tests/host/test_base_slice_refusal.py).

The CLI (`schedtop set --base-slice`, `schedtop restore`) and the TUI's G key with its
changes-pane row and quit-time restore, checked in /sys/kernel/debug/sched/base_slice_ns.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel

KNOB = Path("/sys/kernel/debug/sched/base_slice_ns")
SCHEDTOP = os.path.join(os.path.dirname(sys.executable), "schedtop")


@pytest.fixture(autouse=True)
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("SCHEDTOP_STATE_DIR", str(tmp_path / "state"))
    if not KNOB.parent.is_dir():
        subprocess.run(["mount", "-t", "debugfs", "none", "/sys/kernel/debug"], check=True)
    orig = int(KNOB.read_text())
    yield tmp_path / "state"
    KNOB.write_text(str(orig))  # whatever happened, the guest's other tests get it back


def schedtop(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SCHEDTOP, *args], capture_output=True, text=True, timeout=120)


def test_cli_base_slice_is_journaled_and_restored(state):
    orig = int(KNOB.read_text())
    want = 3_000_000 if orig != 3_000_000 else 6_000_000
    r = schedtop("set", "--base-slice", f"{want // 1000}us")
    assert r.returncode == 0, r.stderr
    assert int(KNOB.read_text()) == want
    assert "undo with `schedtop restore`" in r.stdout and "(was " in r.stdout
    assert (state / "cli.json").exists()
    listing = schedtop("restore", "--list")
    assert listing.returncode == 0
    r = schedtop("restore")
    assert r.returncode == 0, r.stderr
    assert int(KNOB.read_text()) == orig
    assert "global base slice" in r.stdout and "restored" in r.stdout
    assert schedtop("restore").stdout.strip() == "nothing to restore"
    bad = schedtop("set", "--base-slice", "500ms")
    assert bad.returncode == 2 and "0.1ms..100ms" in bad.stderr and int(KNOB.read_text()) == orig


def test_g_key_steps_the_base_slice_and_quit_puts_it_back(state):
    from schedtop.collect.live import LiveSource
    from schedtop.steer.journal import Journal
    from schedtop.ui.app import SchedtopApp

    orig = int(KNOB.read_text())
    src = LiveSource(use_bpf=False)
    app = SchedtopApp(src, delay=0.5)
    seen: list[int] = []

    async def until(pilot, cond, timeout=60.0):
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, "not in time"
            await pilot.pause(0.1)

    async def main() -> None:
        async with app.run_test(size=(140, 45)) as pilot:
            await until(pilot, lambda: app.snapshot is not None)
            for _ in range(2):
                before = int(KNOB.read_text())
                await pilot.press("G")
                await until(pilot, lambda: int(KNOB.read_text()) != before)
                seen.append(int(KNOB.read_text()))
            j = Journal.session()
            assert j.active_base_slice() is not None and j.active_base_slice()[0] == orig
            rows = app.steering.rows()
            row = next(r for r in rows if r.key == "base_slice")
            assert row.what == "global base slice" and row.before.endswith(
                app_fmt(orig)) and row.now.endswith(app_fmt(seen[-1]))
            # Round the steps: the last one is the original, and then nothing is journaled.
            for _ in range(4):
                if int(KNOB.read_text()) == orig:
                    break
                before = int(KNOB.read_text())
                await pilot.press("G")
                await until(pilot, lambda: int(KNOB.read_text()) != before)
            assert int(KNOB.read_text()) == orig and Journal.session().active_base_slice() is None
            assert all(r.key != "base_slice" for r in app.steering.rows())
            await pilot.press("G")  # and round again
            await until(pilot, lambda: int(KNOB.read_text()) != orig)
            app.exit(0)
            deadline = time.monotonic() + 60
            while app.is_running:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)

    try:
        asyncio.run(main())
    finally:
        src.close()
    steps = [500_000, 1_000_000, 3_000_000, 6_000_000]
    assert seen[0] == (steps[0] if orig != steps[0] else steps[1]) and seen[1] in steps
    assert int(KNOB.read_text()) == orig  # the app's quit restored it
    assert not list(state.glob("session-*.json"))


def app_fmt(ns: int) -> str:
    from schedtop.steer.units import format_ns

    return format_ns(ns)
