"""debugfs sched/debug parser on text captured on this machine (tests/fixtures/make_fixtures.py)."""

from __future__ import annotations

import json
from pathlib import Path

from schedtop.collect.debugfs import parse_row, parse_sched_debug

FIX = Path(__file__).resolve().parents[1] / "fixtures"
TEXT = (FIX / "sched_debug.txt").read_text()
META = json.loads((FIX / "sched_debug.json").read_text())
HOGS = {int(k): v for k, v in META["hogs"].items()}


def test_cpus_and_counters():
    d = parse_sched_debug(TEXT)
    assert [c.cpu for c in d.cpus] == [0, 1]
    assert d.base_slice_ns == 1_400_000
    for c in d.cpus:
        assert c.nr_switches > 0
        assert "/" in c.avg_vruntime
        queued = [r for r in c.rows if r.state in ("R", ">R")]
        # .nr_running counts every class; the table is the fair tasks: never more.
        assert len(queued) <= c.nr_running
        assert sum(r.state == ">R" for r in c.rows) <= 1


def test_hogs_on_cpu0_with_custom_slice():
    d = parse_sched_debug(TEXT)
    cpu0 = d.cpus[0]
    rows = {r.pid: r for r in cpu0.rows if r.pid in HOGS}
    assert set(rows) == set(HOGS)
    assert cpu0.nr_running >= 3
    for pid, r in rows.items():
        assert r.comm == HOGS[pid]
        assert r.state in ("R", ">R")
        assert r.prio == 120
        assert r.group in cpu0.avg_vruntime
    custom = [r for r in rows.values() if r.custom_slice]
    assert [r.comm for r in custom] == ["fix-hog3ms"]
    assert custom[0].slice_ns == META["custom_slice_ns"]
    assert all(r.slice_ns == 1_400_000 for r in rows.values() if not r.custom_slice)


def test_queue_order_and_lag():
    d = parse_sched_debug(TEXT)
    q = [t for t in d.queues() if t.cpu == 0]
    assert {t.pid for t in q} >= set(HOGS)
    assert sum(t.running for t in q) == 1 and q[0].running
    waiting = q[1:]
    # EEVDF pick order: eligible before not eligible, then earliest deadline.
    keys = [(not t.eligible, t.deadline_ns) for t in waiting]
    assert keys == sorted(keys)
    cpu0 = d.cpus[0]
    for t in q:
        row = next(r for r in cpu0.rows if r.pid == t.pid)
        assert t.lag_ns == cpu0.avg_vruntime[row.group] - t.vruntime_ns
        # Eligible means lag >= 0 (v_i <= V) on the task's own cfs_rq, up to weight rounding.
        if not t.eligible:
            assert t.lag_ns < 0


def test_sleeping_rows_are_not_queued():
    d = parse_sched_debug(TEXT)
    queued = {t.pid for t in d.queues()}
    sleeping = {parse_row(0, line).pid for line in TEXT.splitlines()
                if line[:3] in (" S ", " I ", " D ") and parse_row(0, line)}
    assert sleeping  # the table lists sleeping tasks too...
    assert not sleeping & queued  # ...but they are not on a run queue
    assert all(r.state in ("R", ">R") for c in d.cpus for r in c.rows)


def test_row_edge_cases():
    assert parse_row(0, "") is None
    assert parse_row(0, " S            task   PID       vruntime   eligible    deadline") is None
    r = parse_row(3, " R my comm with   123     -1.048576   N          -1.040501           0.700000         0.000000         2     100         0.000000")
    assert r is not None and r.comm == "my comm with" and r.vruntime_ns == -1_048_576 and r.group == "/"


def test_truncated_text_is_partial_not_an_error():
    d = parse_sched_debug(TEXT[: len(TEXT) // 2])
    assert len(d.cpus) >= 1
    assert parse_sched_debug("").cpus == ()


def test_group_path_with_spaces_and_slash_comm():
    line = (" R    /usr/bin/foo   321     10.000000   E          11.400000           1.400000"
            "         5.000000        3     120         0.000000         0.000000         0.000000"
            "   0      0        /user.slice/my app.scope")
    r = parse_row(1, line)
    assert r is not None and r.comm == "/usr/bin/foo" and r.pid == 321
    assert r.group == "/user.slice/my app.scope"
    assert r.slice_ns == 1_400_000 and r.sum_exec_ns == 5_000_000 and r.switches == 3
