"""Parsing of the values people type: slices ("3ms"), CPU lists ("0-1,3"), policies ("fifo").

Every parser raises ValueError with one line that says what is allowed, so the CLI, the
profile loader and the TUI all refuse bad input the same way.
"""

from __future__ import annotations

import os
import re

# EEVDF clamps a requested slice to this range (kernel/sched/syscalls.c, 6.12+).
SLICE_MIN_NS = 100_000
SLICE_MAX_NS = 100_000_000
SLICE_RANGE = "0.1ms..100ms"

SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE = 0, 1, 2, 3, 5
SCHED_EXT = 7  # run by the loaded sched_ext (BPF) scheduler; needs CONFIG_SCHED_CLASS_EXT
POLICY_BY_NAME = {
    "other": SCHED_OTHER,
    "normal": SCHED_OTHER,
    "fifo": SCHED_FIFO,
    "rr": SCHED_RR,
    "batch": SCHED_BATCH,
    "idle": SCHED_IDLE,
}
POLICY_NAME = {SCHED_OTHER: "OTHER", SCHED_FIFO: "FIFO", SCHED_RR: "RR", SCHED_BATCH: "BATCH",
               SCHED_IDLE: "IDLE", 6: "DEADLINE", 7: "EXT"}
RT_POLICIES = (SCHED_FIFO, SCHED_RR)
FAIR_POLICIES = (SCHED_OTHER, SCHED_BATCH, SCHED_IDLE)
# Policies whose sched_setattr takes sched_nice and sched_runtime: the kernel's fair_policy()
# counts SCHED_EXT as normal (kernel/sched/sched.h), so a move into EXT sets static_prio from
# sched_nice (pass the current nice or it is reset to 0) and keeps the EEVDF slice for later.
NICE_POLICIES = FAIR_POLICIES + (SCHED_EXT,)

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


def parse_slice(text: str | int | float) -> int:
    """A slice in ns; 0 means "the default" (the kernel's base slice). Range-checked."""
    if isinstance(text, bool):
        raise ValueError(f"slice must be a duration in {SLICE_RANGE} or 'default'")
    if isinstance(text, (int, float)):
        ns = int(text)
    else:
        t = text.strip().lower()
        if t in ("default", "0"):
            return 0
        m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(ns|us|µs|ms|s)?", t)
        if not m:
            raise ValueError(f"bad slice {text!r}: use e.g. 3ms, 500us or 'default' ({SLICE_RANGE})")
        # A bare number is ns, like chrt -T.
        ns = round(float(m.group(1)) * _UNITS[m.group(2) or "ns"])
    if ns == 0:
        return 0
    if not SLICE_MIN_NS <= ns <= SLICE_MAX_NS:
        raise ValueError(f"slice {format_ns(ns)} is out of range: EEVDF allows {SLICE_RANGE} (or 'default')")
    return ns


def format_ns(ns: int) -> str:
    if ns >= 1_000_000:
        return f"{ns / 1_000_000:g}ms"
    if ns >= 1_000:
        return f"{ns / 1_000:g}us"
    return f"{ns}ns"


def online_cpus() -> tuple[int, ...]:
    try:
        with open("/sys/devices/system/cpu/online") as f:
            return parse_cpulist(f.read().strip(), check=False)
    except OSError:
        return tuple(range(os.cpu_count() or 1))


def parse_cpulist(text: str, check: bool = True) -> tuple[int, ...]:
    """'0-1,3' -> (0, 1, 3); 'all' -> every online CPU. With check, CPUs must be online."""
    t = text.strip().lower()
    if t == "all":
        return online_cpus()
    cpus: set[int] = set()
    for part in filter(None, t.split(",")):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if not m:
            raise ValueError(f"bad CPU list {text!r}: use e.g. 0, 0-1, 0,2 or all")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ValueError(f"bad CPU range {part!r} in {text!r}")
        cpus.update(range(lo, hi + 1))
    if not cpus:
        raise ValueError(f"empty CPU list {text!r}")
    if check:
        online = set(online_cpus())
        bad = sorted(cpus - online)
        if bad:
            raise ValueError(f"CPU {format_cpulist(bad)} not online (online: {format_cpulist(sorted(online))})")
    return tuple(sorted(cpus))


def format_cpulist(cpus) -> str:
    cpus = sorted(set(cpus))
    out: list[str] = []
    i = 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        out.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(out)


def parse_policy(text: str) -> int:
    try:
        return POLICY_BY_NAME[text.strip().lower()]
    except KeyError:
        raise ValueError(f"bad policy {text!r}: use one of other, batch, idle, fifo, rr") from None


def check_nice(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -20 <= value <= 19:
        raise ValueError(f"nice {value!r} is out of range: -20..19")
    return value


def check_rt_priority(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 99:
        raise ValueError(f"RT priority {value!r} is out of range: 1..99")
    return value
