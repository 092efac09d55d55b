"""A profile in the live app: its poll thread's reports reach the screen as notifications (the
session posts them as messages from its own thread), the task is tuned for real, and quitting
gives the change back."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from tuikit import capture_notifications, run_live, wait_for


def _nice(pid: int) -> int:
    data = Path(f"/proc/{pid}/stat").read_text()
    return int(data[data.rindex(")") + 2:].split()[16])


def test_the_profile_threads_reports_are_notified_and_quit_restores(tmp_path, monkeypatch):
    monkeypatch.setenv("SCHEDTOP_STATE_DIR", str(tmp_path / "state"))
    tag = "tq" + uuid.uuid4().hex[:6]
    code = ("import ctypes,sys,time; ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0);"
            "print('ok', flush=True); time.sleep(600)")
    kid = subprocess.Popen([sys.executable, "-c", code, tag], stdout=subprocess.PIPE, text=True)
    assert kid.stdout is not None
    kid.stdout.readline()
    prof = tmp_path / "p.toml"
    prof.write_text(f'name = "t"\npoll = 0.2\n[[rule]]\ncomm = "{tag}"\nnice = 5\n')
    try:
        async def body(app, pilot):
            seen = capture_notifications(app)
            app.start_profile(str(prof))
            assert seen[0] == ("profile t: applying live (1 rules)", "information")
            await wait_for(pilot, lambda: ("profile t: rule 1: 1 thread changed", "information") in seen, 15)
            assert _nice(kid.pid) == 5
            assert app.steering.status()["profile"] == "t"
            await pilot.press("q")

        run_live(body, pids=(kid.pid,))
        assert _nice(kid.pid) == 0  # restored on quit
        assert not list((tmp_path / "state").glob("session-*.json"))
    finally:
        kid.kill()
        kid.wait()
