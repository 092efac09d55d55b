"""A number never loses its leading digits: a recording built here with absurd values
(CPU% 1234.5, vruntime 1e8 s, nice 1000, a folded process busy on 12 CPUs) is shown at
80 and 200 columns, and every cell still starts with the number's first digits."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from tuikit import replay_source, wait_for

from schedtop.collect.fold import fold_processes
from schedtop.collect.replay import Recorder, ReplaySource, load_replay
from schedtop.ui.app import SchedtopApp
from schedtop.ui.widgets.format import OVERFLOW, fit_number, fmt_vruntime
from schedtop.ui.widgets.task_table import TaskTable

BIG_PID = 424242


def _recording(tmp_path):
    """The fixture session's first frame plus three tasks the kernel would never give."""
    snap = replay_source().replay.snapshots[0]
    base = snap.tasks[0]
    huge = replace(base, pid=BIG_PID, tid=BIG_PID, comm="hugecpu", cpu_pct=1234.5, vruntime_ns=10**17,
                   nice=1000, prio=1000, nr_threads=1)
    # one process with 12 busy threads: folded, its CPU% is 12 x 99.9
    threads = [replace(base, pid=BIG_PID + 1, tid=BIG_PID + 1 + i, comm="wide", cpu_pct=99.9,
                       vruntime_ns=123_456_789_012_345) for i in range(12)]
    path = tmp_path / "big.jsonl"
    rec = Recorder(path)
    rec.snapshot(replace(snap, tasks=(huge, *threads, *snap.tasks)))
    rec.close()
    return path


def test_fit_number_switches_unit_before_it_cuts():
    assert fit_number(1234.5, 5, 1) == "1234"  # the decimal goes first
    assert fit_number(123456.0, 5, 1) == "123k"
    assert fit_number(1000, 3, 0) == "1k"
    assert fit_number(-1000, 3, 0) == "-1k"
    assert fmt_vruntime(10**17) == "100000000s"  # 1e8 s in 10 cells
    assert fmt_vruntime(10**17, 8) == "100000ks"
    assert fmt_vruntime(1_967_000_000) == "1.967s"
    assert fit_number(1e40, 3, 0) == OVERFLOW * 3  # the mark, never a tail of digits


def _cell(table: TaskTable, tid: int, key: str) -> str:
    row = next(t for t in table.rows if t.tid == tid)
    pos = 0
    line = table.row_text(row)
    for col, w in table._columns:
        if col.key == key:
            return line[pos:pos + w].strip()
        pos += w + 1
    raise KeyError(key)


@pytest.mark.parametrize("size", [(80, 30), (200, 50)])
def test_big_numbers_keep_their_leading_digits(tmp_path, size):
    app = SchedtopApp(ReplaySource(load_replay(_recording(tmp_path))), delay=1.0, paused=True)

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, lambda: app.snapshot is not None)
            table = app.query_one(TaskTable)
            shown = {c.key for c in table.visible_columns()}
            assert _cell(table, BIG_PID, "cpu_pct") == "1234"  # was "234.5"
            if "vruntime" in shown:
                assert _cell(table, BIG_PID, "vruntime") == "100000000s"  # was "000000.000"
            if "nice" in shown:
                assert _cell(table, BIG_PID, "nice") == "1k"  # was "000"
            if "prio" in shown:
                assert _cell(table, BIG_PID, "prio") == "1k"
            if "vruntime" in shown:
                assert _cell(table, BIG_PID + 1, "vruntime") == "123456.79s"
            # process view: the 12 busy threads fold into one row of 1198.8%
            await pilot.press("t")
            await wait_for(pilot, lambda: not table.thread_mode)
            folded = next(t for t in fold_processes(app.snapshot.tasks) if t.pid == BIG_PID + 1)
            assert round(folded.cpu_pct, 1) == 1198.8
            assert _cell(table, BIG_PID + 1, "cpu_pct") == "1199"  # was "198.8"
            assert _cell(table, BIG_PID, "cpu_pct") == "1234"

    asyncio.run(main())


@pytest.mark.parametrize("width", [80, 200])
def test_once_text_keeps_whole_numbers(tmp_path, width):
    from rich.console import Console

    from schedtop.collect.replay import last_good_frame
    from schedtop.once import render

    snap, _ = last_good_frame(load_replay(_recording(tmp_path)))
    console = Console(width=width, record=True, color_system=None)
    render(snap, console)
    text = console.export_text()
    row = next(line for line in text.splitlines() if "hugecpu" in line)
    assert "1234.5" in row  # whole, on its row: a narrow terminal drops columns, not digits
    if width >= 200:
        assert "100000000.00s" in row and " 1000 " in row
    assert max(len(line) for line in text.splitlines()) <= width
