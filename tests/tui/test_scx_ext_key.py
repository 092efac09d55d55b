"""E (into/out of SCHED_EXT) on the live app without schedtop's scheduler loaded in partial
mode: refused with the guard's message, and neither the task nor the journal changes.
(The accepted path needs a sched_ext kernel: the guest's Pilot test covers it.)"""

from __future__ import annotations

import subprocess

import pytest

from schedtop.ui.widgets.task_table import TaskTable
from tuikit import capture_notifications, run_live, wait_for

REFUSAL = "moving tasks into SCHED_EXT needs the scheduler loaded in partial mode"


def _policy_nice(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[38]), int(fields[16])


@pytest.fixture
def child(tmp_path, monkeypatch):
    monkeypatch.setenv("SCHEDTOP_STATE_DIR", str(tmp_path / "state"))
    p = subprocess.Popen(["chrt", "-b", "0", "nice", "-n", "5", "sleep", "300"])
    yield p
    p.kill()
    p.wait()


def test_e_is_refused_unless_loaded_in_partial_mode(child, tmp_path):
    async def body(app, pilot):
        seen = capture_notifications(app)
        await wait_for(pilot, lambda: any(t.tid == child.pid for t in app.query_one(TaskTable).rows), 10)
        app.query_one(TaskTable).select_tid(child.pid)
        assert app.selected_task().tid == child.pid
        before = _policy_nice(child.pid)
        await pilot.press("E")  # nothing loaded
        await pilot.press("M")  # partial for the next load, but still not loaded
        assert app.scheduler.options.partial and not app.scheduler.running
        await pilot.press("E")
        assert [s for s in seen if s[0] == REFUSAL] == [(REFUSAL, "warning")] * 2
        assert _policy_nice(child.pid) == before == (3, 5)
        assert app.steering.journal is not None and app.steering.journal.steps == []

    run_live(body, pids=(child.pid,))
    assert not list((tmp_path / "state").glob("session-*.json"))  # nothing journaled, nothing left
