"""`schedtop demo` in a real terminal (tmux): the guest boots in the same terminal,
schedtop's TUI draws inside it over the demo workload under schedtop_min, and `q`
quits schedtop and powers the guest off."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from schedtop.lab import kernel
from schedtop.lab.minimal import sched_ext_state

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.tmux, pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]
HOG_CMDLINE = b"stress-ng\0--cpu\x003\0--quiet"


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True).stdout


def wait_for(session: str, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = tmux("capture-pane", "-p", "-t", session)
        if text in screen:
            return screen
        time.sleep(1)
    raise AssertionError(f"{text!r} not on screen after {timeout:.0f} s:\n{screen}")


def hog_pids() -> set[int]:
    pids = set()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(HOG_CMDLINE):
                pids.add(int(proc.name))
        except OSError:
            pass
    return pids


def start(session: str, demo_args: str) -> None:
    cmd = (f"cd {shlex.quote(str(ROOT))} && {shlex.quote(sys.executable)} -m schedtop demo {demo_args}; "
           "echo DEMO-EXIT=$?; sleep 120")
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "35", cmd)


def test_demo_local_runs_the_workload_under_schedtop_and_cleans_up() -> None:
    before = hog_pids()
    session = f"schedtop-demo-local-{os.getpid()}"
    start(session, "--local --scheduler none")
    try:
        wait_for(session, "q Quit", 120)
        wait_for(session, "stress-ng", 60)  # the hogs show up in schedtop's task table
        assert hog_pids() - before
        tmux("send-keys", "-t", session, "q")
        wait_for(session, "DEMO-EXIT=0", 60)
        assert not (hog_pids() - before), "the demo left its CPU hogs running"
    finally:
        tmux("kill-session", "-t", session)


@pytest.mark.timeout(600)
@pytest.mark.skipif(kernel.cached() is None, reason="no cached lab kernel (schedtop lab fetch)")
@pytest.mark.skipif(sched_ext_state() is not None, reason="this kernel has sched_ext: the demo runs locally")
def test_demo_runs_schedtop_inside_the_guest_and_q_powers_it_off() -> None:
    session = f"schedtop-demo-test-{os.getpid()}"
    start(session, "")
    try:
        wait_for(session, "booting the lab guest", 60)
        # The TUI's footer and header, drawn inside the guest (its hostname is virtme-ng).
        # (each waited for on its own: a capture can land mid-frame)
        wait_for(session, "virtme-ng", 420)
        wait_for(session, f"kernel {kernel.cached().version.split('+')[0]}", 60)
        wait_for(session, "q Quit", 60)
        # The header follows the guest's switch to the project's minimal sched_ext scheduler.
        wait_for(session, "sched_ext: schedtop_min", 180)
        tmux("send-keys", "-t", session, "q")
        wait_for(session, "DEMO-EXIT=0", 120)
    finally:
        tmux("kill-session", "-t", session)


@pytest.mark.timeout(300)
@pytest.mark.skipif(kernel.cached() is None, reason="no cached lab kernel (schedtop lab fetch)")
@pytest.mark.skipif(sched_ext_state() is not None, reason="this kernel has sched_ext: the demo runs locally")
def test_demo_scheduler_scx_loads_the_embedded_scheduler_in_the_guest() -> None:
    """--scheduler scx: the header inside the guest names schedtop's own ops ("schedtop", all
    tasks), and the scheduler's stats lines never draw over the TUI."""
    session = f"schedtop-demo-scx-{os.getpid()}"
    start(session, "--scheduler scx")
    try:
        wait_for(session, "booting the lab guest", 60)
        screen = wait_for(session, "sched_ext: schedtop all", 240)
        assert "q Quit" in screen or "q Quit" in wait_for(session, "q Quit", 60)
        screen = wait_for(session, "sched_ext enabled", 30)
        assert "slice=" not in screen and "queued=" not in screen, f"scheduler output over the TUI:\n{screen}"
        tmux("send-keys", "-t", session, "q")
        screen = wait_for(session, "DEMO-EXIT=0", 120)
        assert "said:" not in screen, screen  # nothing on the scheduler's stderr
    finally:
        tmux("kill-session", "-t", session)
