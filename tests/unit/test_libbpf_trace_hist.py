"""The latency slot scheme shared by trace.bpf.c and trace_events.py, and its percentiles."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from schedtop.bpf import trace_events as te


@given(st.integers(min_value=0, max_value=(1 << te.LAT_MAX_MSB) - 1), st.sampled_from([te.CPU_SUB_BITS, te.TASK_SUB_BITS]))
def test_value_falls_inside_its_slot(v: int, sub: int) -> None:
    nslots = te.CPU_SLOTS if sub == te.CPU_SUB_BITS else te.TASK_SLOTS
    i = te.lat_slot(v, sub, nslots)
    lo, hi = te.slot_bounds_ns(i, sub)
    assert lo <= v < hi
    assert i < nslots
    if v >= 1 << sub:  # relative width is bounded by the sub-bucket count
        assert (hi - lo) / lo <= 1 / (1 << sub)


def test_slots_tile_the_line() -> None:
    for sub, n in ((te.CPU_SUB_BITS, te.CPU_SLOTS), (te.TASK_SUB_BITS, te.TASK_SLOTS)):
        prev_hi = 0
        for i in range(n):
            lo, hi = te.slot_bounds_ns(i, sub)
            assert lo == prev_hi and hi > lo
            prev_hi = hi


def test_huge_values_clamp_to_the_last_slot() -> None:
    assert te.lat_slot(1 << 50, te.CPU_SUB_BITS, te.CPU_SLOTS) == te.CPU_SLOTS - 1


def test_percentiles_track_exact_ones() -> None:
    rng = random.Random(4)
    values = [int(rng.lognormvariate(10, 1.5)) for _ in range(20000)]  # ns, ~22 µs median
    counts = [0] * te.CPU_SLOTS
    for v in values:
        counts[te.lat_slot(v, te.CPU_SUB_BITS, te.CPU_SLOTS)] += 1
    values.sort()
    got = te.percentiles_us(counts, te.CPU_SUB_BITS, (0.5, 0.9, 0.99), max(values))
    for q, g in zip((0.5, 0.9, 0.99), got):
        exact = values[int(q * len(values)) - 1] / 1000
        assert g is not None and abs(g - exact) / exact < 0.07, (q, g, exact)


def test_percentiles_of_nothing_are_none() -> None:
    assert te.percentiles_us([0] * 10, 2, (0.5, 0.99)) == [None, None]


def test_percentile_never_exceeds_the_exact_max() -> None:
    counts = [0] * te.TASK_SLOTS
    counts[te.lat_slot(1500, te.TASK_SUB_BITS, te.TASK_SLOTS)] = 1
    assert te.percentiles_us(counts, te.TASK_SUB_BITS, (0.99,), 1500) == [1.5]
