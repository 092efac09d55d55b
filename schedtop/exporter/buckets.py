"""The run-queue latency bucket layout of the exported histograms, and the fold of the BPF tier's
fine slots into it.

The layout is part of the exporter's interface (dashboards and recording rules name its `le`
values), so it never changes: two buckets per octave, upper bounds 2^k ns and 1.5 * 2^k ns for
k = 10..33, i.e. 1.024 µs, 1.536 µs, 2.048 µs, ... 8.59 s, 12.9 s, then +Inf (48 finite buckets).
Each bound is a boundary of the BPF tier's slots (bpf/trace.h: 8 log-linear slots per octave per
CPU, 4 per task), so every slot falls whole into one bucket and the exported counts are exact,
not interpolated. A bucket counts latencies below its bound (the kernel's ns are integers, so
"<= le" and "< le" differ by one nanosecond). `histogram_quantile` of these buckets lands in the
same bucket as the TUI's percentile computed from the fine slots: they agree within one bucket,
a factor of at most 1.5.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from functools import cache

from schedtop.bpf.trace_events import slot_bounds_ns

FIRST_OCTAVE, LAST_OCTAVE = 10, 33
BOUNDS_NS: tuple[int, ...] = tuple(sorted(
    [1 << k for k in range(FIRST_OCTAVE, LAST_OCTAVE + 1)]
    + [3 << (k - 1) for k in range(FIRST_OCTAVE, LAST_OCTAVE + 1)]))
# The `le` label of each finite bucket (seconds, as Python prints the float), then "+Inf".
LE_LABELS: tuple[str, ...] = tuple(repr(ns / 1e9) for ns in BOUNDS_NS) + ("+Inf",)


@cache
def slot_to_bucket(sub_bits: int, nslots: int) -> tuple[int, ...]:
    """For each fine slot of a histogram with `sub_bits` sub-buckets per octave, the index of the
    bucket it belongs in (len(BOUNDS_NS) is +Inf). The last slot also holds everything above it."""
    out = []
    for i in range(nslots):
        high = slot_bounds_ns(i, sub_bits)[1]
        b = bisect_left(BOUNDS_NS, high)
        if i == nslots - 1 and b < len(BOUNDS_NS):
            b = len(BOUNDS_NS)  # the catch-all slot has no upper bound
        out.append(b)
    return tuple(out)


def fold(slots: Sequence[int], sub_bits: int) -> list[int]:
    """Per-bucket counts (len(BOUNDS_NS) + 1, the last one +Inf) of the fine slot counts."""
    where = slot_to_bucket(sub_bits, len(slots))
    out = [0] * (len(BOUNDS_NS) + 1)
    for i, v in enumerate(slots):
        if v:
            out[where[i]] += v
    return out


def cumulative(counts: Sequence[int]) -> list[tuple[str, float]]:
    """(le, cumulative count) pairs as prometheus_client's HistogramMetricFamily takes them."""
    out, acc = [], 0
    for le, v in zip(LE_LABELS, counts, strict=True):
        acc += v
        out.append((le, float(acc)))
    return out
