"""ctypes mirrors of bpf/trace.h, the histogram slot scheme, and sampled-event decoding.

tests/host/test_bpf_layout.py compares every struct here with the compiled object's BTF,
so trace.h and this file cannot drift apart unnoticed.
"""

from __future__ import annotations

import ctypes
import itertools
import struct
from bisect import bisect_left
from dataclasses import dataclass
from typing import NamedTuple, Sequence

c_u8, c_u32, c_s32, c_u64 = ctypes.c_uint8, ctypes.c_uint32, ctypes.c_int32, ctypes.c_uint64

TASK_COMM_LEN = 16
MAX_CPUS = 512
LAT_MAX_MSB = 35
CPU_SUB_BITS = 3
CPU_SLOTS = (LAT_MAX_MSB - CPU_SUB_BITS + 2) << CPU_SUB_BITS
TASK_SUB_BITS = 2
TASK_SLOTS = (LAT_MAX_MSB - TASK_SUB_BITS + 2) << TASK_SUB_BITS

EV_SWITCH, EV_WAKEUP, EV_WAKEUP_NEW, EV_MIGRATE, EV_WAKING = 1, 2, 3, 4, 5
EVENT_NAMES = {EV_SWITCH: "switch", EV_WAKEUP: "wakeup", EV_WAKEUP_NEW: "wakeup_new", EV_MIGRATE: "migrate",
               EV_WAKING: "waking"}


class Event(ctypes.Structure):
    _fields_ = [
        ("ts_ns", c_u64),
        ("prev_state", c_u64),
        ("lat_ns", c_u64),
        ("type", c_u32),
        ("cpu", c_u32),
        ("pid", c_u32),
        ("tgid", c_u32),
        ("prio", c_u32),
        ("next_pid", c_u32),
        ("next_tgid", c_u32),
        ("next_prio", c_u32),
        ("target_cpu", c_u32),
        ("orig_cpu", c_u32),
        ("comm", c_u8 * TASK_COMM_LEN),
        ("next_comm", c_u8 * TASK_COMM_LEN),
    ]


class CpuStatRec(ctypes.Structure):
    _fields_ = [
        ("lat_slots", c_u64 * CPU_SLOTS),
        ("lat_count", c_u64),
        ("lat_sum_ns", c_u64),
        ("lat_max_ns", c_u64),
        ("switches", c_u64),
        ("preempted", c_u64),
        ("voluntary", c_u64),
        ("wakeups", c_u64),
        ("migrations", c_u64),
    ]


class TaskRec(ctypes.Structure):
    _fields_ = [
        ("pid", c_u32),
        ("tgid", c_u32),
        ("queued_cpu", c_u32),
        ("pad", c_u32),
        ("oncpu_ns", c_u64),
        ("stints", c_u64),
        ("preempted", c_u64),
        ("voluntary", c_u64),
        ("lat_count", c_u64),
        ("lat_sum_ns", c_u64),
        ("lat_max_ns", c_u64),
        ("lat_slots", c_u32 * TASK_SLOTS),
    ]


class TraceBss(ctypes.Structure):
    _fields_ = [
        ("nr_running", c_s32 * MAX_CPUS),
        ("curr_pid", c_u32 * MAX_CPUS),
        ("events", c_u64),
        ("dropped", c_u64),
        ("untracked", c_u64),
    ]


# C names of the mirrored structs (BTF name -> ctypes class), for the layout test.
MIRRORS: dict[str, type[ctypes.Structure]] = {
    "event": Event,
    "cpu_stat": CpuStatRec,
    "task_rec": TaskRec,
    "trace_bss": TraceBss,
}


# --- histogram slots ---------------------------------------------------------------------------


def lat_slot(v: int, sub: int, nslots: int) -> int:
    """The slot trace.bpf.c puts a latency of v ns in (the same arithmetic)."""
    if v < (1 << sub):
        return v
    shift = v.bit_length() - 1 - sub
    idx = ((shift + 1) << sub) + ((v >> shift) & ((1 << sub) - 1))
    return idx if idx < nslots else nslots - 1


def slot_bounds_ns(idx: int, sub: int) -> tuple[int, int]:
    """[low, high) in ns of a slot."""
    if idx < (1 << sub):
        return idx, idx + 1
    shift = (idx >> sub) - 1
    low = ((1 << sub) + (idx & ((1 << sub) - 1))) << shift
    return low, low + (1 << shift)


def percentiles_us(
    counts: Sequence[int], sub: int, qs: Sequence[float], max_ns: int | None = None
) -> list[float | None]:
    """Percentiles (0..1) in µs from slot counts, interpolated linearly inside the slot
    and never above the exact max when it is known."""
    cum = list(itertools.accumulate(counts))
    total = cum[-1] if cum else 0
    if total <= 0:
        return [None for _ in qs]
    out: list[float | None] = []
    for q in qs:
        rank = max(1.0, q * total)
        i = bisect_left(cum, rank)
        before = cum[i - 1] if i else 0
        low, high = slot_bounds_ns(i, sub)
        frac = (rank - before) / counts[i] if counts[i] else 1.0
        v = low + (high - low) * frac
        if max_ns is not None:
            v = min(v, max_ns)
        out.append(v / 1000.0)
    return out


# --- sampled events ----------------------------------------------------------------------------

EVENT_STRUCT = struct.Struct("<QQQ10I16s16s")
assert EVENT_STRUCT.size == ctypes.sizeof(Event)


@dataclass(frozen=True, slots=True)
class SchedEvent:
    """One sampled event. ts_ns is CLOCK_MONOTONIC (bpf_ktime_get_ns).
    switch: pid/comm/prio/prev_state are prev's, next_* the incoming task, lat_ns its
    run-queue latency (0 if unknown). wakeup/wakeup_new: target_cpu is the task's CPU.
    migrate: orig_cpu -> target_cpu."""

    ts_ns: int
    kind: str
    cpu: int
    pid: int
    tgid: int
    prio: int
    comm: str
    prev_state: int = 0
    lat_ns: int = 0
    next_pid: int = 0
    next_tgid: int = 0
    next_prio: int = 0
    next_comm: str = ""
    target_cpu: int = 0
    orig_cpu: int = 0


def _comm(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def decode_event(fields: tuple) -> SchedEvent:
    """From EVENT_STRUCT.unpack(...) of one ring-buffer record."""
    (ts, prev_state, lat, typ, cpu, pid, tgid, prio, npid, ntgid, nprio, target, orig, comm, ncomm) = fields
    return SchedEvent(
        ts_ns=ts,
        kind=EVENT_NAMES.get(typ, str(typ)),
        cpu=cpu,
        pid=pid,
        tgid=tgid,
        prio=prio,
        comm=_comm(comm),
        prev_state=prev_state,
        lat_ns=lat,
        next_pid=npid,
        next_tgid=ntgid,
        next_prio=nprio,
        next_comm=_comm(ncomm),
        target_cpu=target,
        orig_cpu=orig,
    )


TASK_HEAD = struct.Struct("<IIIIQQQQQQQ")  # TaskRec without its slots
assert TASK_HEAD.size == TaskRec.lat_slots.offset


class TaskStats(NamedTuple):
    """One task_rec as read from the iterator (cumulative since attach)."""

    pid: int
    tgid: int
    queued_cpu: int | None  # the CPU whose run queue counts it now; None: not runnable
    oncpu_ns: int
    stints: int
    preempted: int
    voluntary: int
    lat_count: int
    lat_sum_ns: int
    lat_max_ns: int
    slots: Sequence[int]  # TASK_SLOTS counts (a memoryview cast to u32)


def task_stats(buf: memoryview, off: int = 0) -> TaskStats:
    h = TASK_HEAD.unpack_from(buf, off)
    slots = buf[off + TASK_HEAD.size : off + ctypes.sizeof(TaskRec)].cast("I")
    return TaskStats(h[0], h[1], h[2] - 1 if h[2] else None, *h[4:], slots)
