"""On a CFS kernel (Debian 12's 6.1) the UI shows only what the kernel gave.

The queue comes from sched/debug captured on 6.1 in the lab guest (tests/fixtures), the
capabilities from the probe run there. This machine runs 6.18, so for the S and G keys the
probe's answer is replaced by the one the 6.1 guest gave (no CFS kernel runs in-process here).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from schedtop.collect import kernel_caps
from schedtop.collect.debugfs import parse_sched_debug
from schedtop.collect.kernel_caps import KernelCaps
from schedtop.collect.replay import Recorder, ReplaySource, load_replay
from schedtop.ui.app import SchedtopApp
from schedtop.ui.screens.queue import QueueScreen
from schedtop.ui.widgets.task_table import TaskTable
from tuikit import capture_notifications, replay_source, run_live, run_pilot, wait_for

FIX = Path(__file__).resolve().parents[1] / "fixtures"
META = json.loads((FIX / "kernel_6.1.json").read_text())
CFS = KernelCaps.from_dict(META["caps_in_guest"])


def _cfs_recording(tmp_path: Path) -> Path:
    """The fixture session's frames as a 6.1 machine would give them: CFS queue, no se.slice."""
    queues = parse_sched_debug((FIX / "sched_debug_6.1.txt").read_text()).queues()
    path = tmp_path / "cfs.jsonl"
    rec = Recorder(path)
    for snap in replay_source().replay.snapshots[:2]:
        rec.snapshot(replace(snap, kernel=META["release"], queues=queues,
                             tasks=tuple(replace(t, slice_ns=None) for t in snap.tasks),
                             extras=replace(snap.extras, kernel=CFS)))
    rec.close()
    return path


def test_queue_view_on_cfs_has_no_eevdf_columns_and_says_why(tmp_path):
    app = SchedtopApp(ReplaySource(load_replay(_cfs_recording(tmp_path))), delay=1.0, paused=True)

    async def body(pilot):
        await wait_for(pilot, lambda: app.snapshot is not None)
        table = app.query_one(TaskTable)
        assert "slice" not in {c.key for c in table.visible_columns()}  # no column of dashes
        app.push_screen(QueueScreen(0))
        await wait_for(pilot, lambda: isinstance(app.screen, QueueScreen) and app.screen.query("#queue-text"))
        await pilot.pause()
        text = app.screen.query_one("#queue-text").render().plain
        head = next(line for line in text.splitlines() if "PID" in line)
        assert head.split() == ["PID", "COMMAND", "VRUNTIME", "WAIT", "PRI"]
        for word in ("ELIG", "DEADLINE", "LAG", "SLICE"):
            assert word not in text
        assert "runs CFS: no eligibility, lag or deadline" in text and META["release"] in text
        assert app.screen.query_one("#queue-body").border_title == "CFS run queue"
        rows = [line for line in text.splitlines() if line[2:9].strip().isdigit()]
        assert [int(r[2:9]) for r in rows] == META["hogs_cpu0"]  # running first, then by vruntime
        assert rows[0].startswith(">R") and "4.852915s" in rows[0]  # the kernel's own tree-key

    run_pilot(app, body, (120, 40))


@pytest.mark.skipif(os.geteuid() != 0, reason="steering keys need the session journal (root)")
def test_s_and_g_say_unsupported_on_cfs(monkeypatch):
    monkeypatch.setattr(kernel_caps, "current", lambda: CFS)
    child = subprocess.Popen(["sleep", "60"])
    try:
        async def body(app, pilot):
            seen = capture_notifications(app)
            table = app.query_one(TaskTable)
            await wait_for(pilot, lambda: table.select_tid(child.pid))
            before = Path(f"/proc/{child.pid}/sched").read_text()
            await pilot.press("S")
            await pilot.press("G")
            await wait_for(pilot, lambda: len(seen) >= 2)
            assert seen[0][0].startswith("S is unsupported here: kernel 6.1.0-50-amd64 runs CFS")
            assert seen[1][0].startswith("G is unsupported here: kernel 6.1.0-50-amd64 runs CFS")
            assert Path(f"/proc/{child.pid}/sched").read_text().count("se.slice") == before.count("se.slice")
            assert not app.steering.journal.active()  # nothing was changed, nothing journaled

        run_live(body, pids=(child.pid,))
    finally:
        child.kill()
        child.wait()
