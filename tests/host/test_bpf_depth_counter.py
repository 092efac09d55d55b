"""The event-maintained per-CPU depth counter (extras.bpf.cpus[].nr_running_counter) holds the
same tasks as the iterator's count (nr_running) on this real kernel: with hogs running before
the programs attach (the attach-time seed), hogs that exit, a runnable hog moved by
sched_setaffinity, and over several collects with this machine's tasks that BPF cannot see
(their switch-outs never fire here: without the blind-task handling the counter kept them and
drifted, 4 against 2 on a CPU).

The two are read apart (counters, iterator, counters again), so another task changing state
between the reads can make one read differ by that task. A read where the counters did not move
and equal the iterator's count is the comparison; a leak would never give one."""

from __future__ import annotations

import os
import time

import pytest

from bpf_workload import busy_cpu, hogs, other_cpu
from schedtop.collect.bpf import OBJECT, BpfTier, open_tier

pytestmark = [pytest.mark.root, pytest.mark.bpf,
              pytest.mark.skipif(not OBJECT.exists(), reason="trace.bpf.o not built (make bpf)")]
MODES = ["tp_btf", "raw_tp"]
BUSY, OTHER = busy_cpu(), other_cpu()  # before the fixture narrows this process's affinity


@pytest.fixture(autouse=True)
def off_the_busy_cpu():
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {OTHER})
    yield
    os.sched_setaffinity(0, before)


def agreed(tier: BpfTier, tries: int = 400) -> tuple[list[int], dict]:
    """One read where the counters held still and equal the iterator's count on every CPU."""
    last = None
    for _ in range(tries):
        before = tier.nr_running_counters()
        recs = tier.task_records()
        after = tier.nr_running_counters()
        it = tier.nr_running(recs)
        if before == after == it:
            return it, recs
        last = (before, it, after)
        time.sleep(0.002)
    raise AssertionError(f"counter never agreed with the iterator (counter, iterator, counter): {last}")


def queued_on(recs: dict, pids: set[int]) -> dict[int, int | None]:
    return {pid: (recs[pid].queued_cpu if pid in recs else None) for pid in pids}


def wait_for(pred, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout:.0f} s")
        time.sleep(0.005)


@pytest.mark.parametrize("mode", MODES)
def test_hogs_running_before_attach_are_counted(mode: str) -> None:
    """The hogs run before the programs attach. One is SCHED_IDLE behind the other three, so it
    usually stays queued through the attach: in tp_btf mode only the attach-time seed can have
    counted it then (no event named it yet)."""
    cpu = BUSY
    with hogs(4, cpu) as procs:
        pids = {p.pid for p in procs}
        idle = procs[0].pid
        os.sched_setscheduler(idle, os.SCHED_IDLE, os.sched_param(0))
        time.sleep(0.1)  # let the three take the CPU from it
        with open_tier(force_raw_tp=mode == "raw_tp") as tier:
            if mode == "tp_btf":
                recs = tier.task_records()
                r = recs.get(idle)
                if r is None or (r.stints == 0 and r.lat_count == 0):  # not run since attach
                    assert r is not None and r.queued_cpu == cpu, "runnable at attach, not seeded"
                    assert tier.depth_counters()["seeded"] >= 1
            for _ in range(5):  # several collects
                # raw_tp has no seed: a hog is learned at its next switch (one slice)
                nr, recs = wait_for(lambda: (lambda a: a if queued_on(a[1], pids) == dict.fromkeys(pids, cpu)
                                             else None)(agreed(tier)), "all hogs counted")
                assert nr[cpu] >= 4
                time.sleep(0.05)


@pytest.mark.parametrize("mode", MODES)
def test_exiting_hogs_leave_the_count(mode: str) -> None:
    cpu = BUSY
    with open_tier(force_raw_tp=mode == "raw_tp") as tier:
        base, _ = agreed(tier)
        with hogs(3, cpu) as procs:
            pids = {p.pid for p in procs}
            wait_for(lambda: queued_on(agreed(tier)[1], pids) == dict.fromkeys(pids, cpu), "hogs counted")
            with_hogs, _ = agreed(tier)
            assert with_hogs[cpu] >= 3
        # killed and reaped: nothing of theirs stays counted, and the counter agrees again
        def gone():
            nr, recs = agreed(tier)
            return nr if all(v is None for v in queued_on(recs, pids).values()) else None
        # a count left behind by an exit would keep the counter above the iterator for good
        wait_for(gone, "hogs uncounted and the counter agreeing")


@pytest.mark.parametrize("mode", MODES)
def test_setaffinity_moves_a_runnable_hog(mode: str) -> None:
    cpu, dest = BUSY, OTHER
    if cpu == dest:
        pytest.skip("needs two CPUs")
    with open_tier(force_raw_tp=mode == "raw_tp") as tier, hogs(3, cpu) as procs:
        pids = {p.pid for p in procs}
        wait_for(lambda: queued_on(agreed(tier)[1], pids) == dict.fromkeys(pids, cpu), "hogs counted")
        mover = procs[0].pid
        os.sched_setaffinity(mover, {dest})  # a runnable (queued or running) task changes CPU
        want = dict.fromkeys(pids, cpu) | {mover: dest}
        nr, _ = wait_for(lambda: (lambda a: a if queued_on(a[1], pids) == want else None)(agreed(tier)),
                         "the moved hog counted on its new CPU")
        assert nr[cpu] >= 2 and nr[dest] >= 1
        os.sched_setaffinity(mover, {cpu})
        wait_for(lambda: queued_on(agreed(tier)[1], pids) == dict.fromkeys(pids, cpu), "the hog back")


@pytest.mark.parametrize("mode", MODES)
def test_counter_does_not_drift_over_collects(mode: str) -> None:
    """Every collect for ~2 s finds an agreeing read, and the counters never go negative: the
    tasks this kernel hides from BPF, counted at their wakeup, are taken back when their CPU's
    next switch shows they left it (before the fix: 4 against 2 on a CPU, growing)."""
    with open_tier(force_raw_tp=mode == "raw_tp") as tier:
        for _ in range(20):
            agreed(tier)
            assert all(int(tier._bss.nr_running[i]) >= 0 for i in range(tier.nr_cpus))
            time.sleep(0.1)
        d = tier.depth_counters()
        # every unseen switch-out took back exactly one count; a blind task is never counted again
        assert d["blind_tasks"] <= d["unseen_switch_outs"] + tier.nr_cpus
