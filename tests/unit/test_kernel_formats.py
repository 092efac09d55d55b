"""sched/debug and /proc/PID/sched as Debian's 6.1 (CFS) and 6.12 (EEVDF) kernels print them.

The fixtures were captured in the lab guest booting each kernel (tests/fixtures/kernel_*.json
says which package and what ran): 3 busy shells pinned to CPU 0, one at nice 5 on CPU 1.
The 6.18 one is this machine's (tests/fixtures/sched_debug.txt)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schedtop.collect import kernel_caps
from schedtop.collect.debugfs import parse_sched_debug, table_format
from schedtop.collect.kernel_caps import KernelCaps, caps_of, fair_from_proc_sched, fair_from_sched_debug, probe
from schedtop.model import Extras, SchedulerInfo, Snapshot, snapshot_from_dict, to_dict

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def _kernel(name: str):
    meta = json.loads((FIX / f"kernel_{name}.json").read_text())
    return meta, (FIX / f"sched_debug_{name}.txt").read_text(), (FIX / f"proc_sched_{name}.txt").read_text()


def test_cfs_6_1_queue_has_no_eevdf_numbers():
    meta, text, _ = _kernel("6.1")
    d = parse_sched_debug(text)
    assert d.fair == "CFS" and d.base_slice_ns is None  # 6.1 has sched_min_granularity, no base slice
    assert [c.cpu for c in d.cpus] == [0, 1]
    cpu0 = [q for q in d.queues() if q.cpu == 0]
    assert {q.pid for q in cpu0} == set(meta["hogs_cpu0"])
    assert cpu0[0].running and sum(q.running for q in cpu0) == 1
    for q in d.queues():
        assert q.eligible is None and q.deadline_ns is None and q.slice_ns is None and q.lag_ns is None
        assert q.vruntime_ns > 0 and q.sum_exec_ns > 0 and q.switches > 0
    # CFS picks the leftmost: after the running task, the queue is in vruntime order
    waiting = [q.vruntime_ns for q in cpu0[1:]]
    assert waiting == sorted(waiting)
    nice5 = next(q for q in d.queues() if q.pid == meta["nice5_cpu1"])
    assert nice5.prio == 125 and nice5.cpu == 1
    # the numbers are the kernel's own: pid 120's row is "4852.915411 318 120 ... 1395.122619"
    first = next(q for q in cpu0 if q.pid == 120)
    assert (first.vruntime_ns, first.switches, first.sum_exec_ns) == (4_852_915_411, 318, 1_395_122_619)


def test_eevdf_6_12_queue_order_lag_and_slice():
    meta, text, _ = _kernel("6.12")
    d = parse_sched_debug(text)
    assert d.fair == "EEVDF" and d.base_slice_ns == 1_400_000
    cpu0 = [q for q in d.queues() if q.cpu == 0]
    assert {q.pid for q in cpu0} == set(meta["hogs_cpu0"])
    assert cpu0[0].running
    keys = [(not q.eligible, q.deadline_ns) for q in cpu0[1:]]
    assert keys == sorted(keys)
    rq0 = d.cpus[0]
    for q in cpu0:
        row = next(r for r in rq0.rows if r.pid == q.pid)
        assert row.group == "/autogroup-1" and q.slice_ns == 1_400_000
        assert q.lag_ns == rq0.avg_vruntime["/autogroup-1"] - q.vruntime_ns
        if not q.eligible:
            assert q.lag_ns < 0


def test_table_format_comes_from_the_header():
    for name, fair in (("6.1", "CFS"), ("6.12", "EEVDF")):
        text = (FIX / f"sched_debug_{name}.txt").read_text()
        header = text.split("runnable tasks:\n", 1)[1].split("\n", 1)[0]
        assert table_format(header) == fair and fair_from_sched_debug(text) == fair
    assert parse_sched_debug((FIX / "sched_debug.txt").read_text()).fair == "EEVDF"  # 6.18


@pytest.mark.parametrize("name", ["6.1", "6.12"])
def test_probe_on_each_kernel_agrees_with_the_guest(name):
    """The probe fed the captured files decides as it did live in that kernel's guest."""
    meta, text, proc = _kernel(name)
    live = meta["caps_in_guest"]
    caps = probe(proc_sched=proc, sched_debug=text, debugfs_entries=set(meta["debugfs_sched"]),
                 release=meta["release"], slice_probe=live["task_slice"])
    assert caps.to_dict() == live
    # without root (no debugfs) /proc alone tells CFS from EEVDF
    assert fair_from_proc_sched(proc) == live["fair"]
    assert probe(proc_sched=proc, sched_debug="", debugfs_entries=None, release=meta["release"],
                 slice_probe=False).fair == live["fair"]


def test_why_not_names_the_reason():
    cfs = KernelCaps(release="6.1.0-50-amd64", fair="CFS", task_slice=False, base_slice=False)
    for feature in ("slice", "base_slice", "eevdf"):
        why = cfs.why_not(feature)
        assert why and "CFS" in why and "6.1.0-50-amd64" in why
    eevdf_old = KernelCaps(release="6.6.0", fair="EEVDF", task_slice=False, base_slice=True)
    assert "6.12" in eevdf_old.why_not("slice") and eevdf_old.why_not("eevdf") is None
    assert eevdf_old.why_not("base_slice") is None
    new = KernelCaps(release="6.18", fair="EEVDF", task_slice=True, base_slice=None)
    assert all(new.why_not(f) is None for f in ("slice", "base_slice", "eevdf"))
    with pytest.raises(ValueError):
        new.why_not("nonsense")


def test_this_kernel_probed_for_real():
    """This machine's 6.18: EEVDF, and a thread of the probe really took a 3 ms slice."""
    caps = kernel_caps.probe()
    assert caps.fair == "EEVDF" and caps.task_slice is True and caps.why_not("slice") is None


def test_caps_travel_in_the_snapshot_and_back():
    snap = Snapshot(ts=1.0, wall=1.0, interval_s=1.0, host="h", kernel="6.1.0", uptime_s=1.0,
                    loadavg=(0.0, 0.0, 0.0), scheduler=SchedulerInfo("eevdf", "absent"), source="procfs", cpus=(), tasks=(),
                    extras=Extras(kernel=KernelCaps("6.1.0", "CFS", False, False, "test")))
    back = snapshot_from_dict(json.loads(json.dumps(to_dict(snap))))
    assert caps_of(back.extras) == caps_of(snap.extras) and caps_of(back.extras).fair == "CFS"
    assert caps_of({}) is None


def test_once_on_a_6_1_recording_says_cfs_and_shows_no_slice():
    """The recording was made by `schedtop --once --record` in the 6.1 guest."""
    from rich.console import Console

    from schedtop.collect.replay import last_good_frame, load_replay
    from schedtop.once import render

    snap, _ = last_good_frame(load_replay(FIX / "session_6.1.jsonl"))
    assert caps_of(snap.extras).fair == "CFS" and snap.kernel == "6.1.0-50-amd64"
    console = Console(width=200, record=True, color_system=None)
    render(snap, console)
    text = console.export_text()
    assert "scheduler CFS (fair)" in text and "EEVDF (fair)" not in text
    assert "Run queues (CFS pick order" in text
    qhead = next(line for line in text.splitlines() if "┃ cpu" in line and "comm" in line)
    assert qhead.split("┃")[1:-1] == [" cpu ", " pid ", " comm     ", " on cpu ", " vruntime ", " wait "]
    head = next(line for line in text.splitlines() if "┃ pid" in line and "tid" in line)
    assert "vruntime" in head and "slice" not in head
