"""Parsing of the values people type: slices ("3ms"), CPU lists ("0-1,3"), policies ("fifo").

Every parser raises ValueError with one line that says what is allowed, so the CLI, the
profile loader and the TUI all refuse bad input the same way.
"""

from __future__ import annotations

import math
import os
import re

from schedtop.kernel_paths import (  # the policy numbers, named once
    POLICY_NAMES,
    SCHED_BATCH,
    SCHED_EXT,
    SCHED_FIFO,
    SCHED_IDLE,
    SCHED_OTHER,
    SCHED_RR,
)

# EEVDF clamps a requested slice to this range (kernel/sched/syscalls.c, 6.12+).
SLICE_MIN_NS = 100_000
SLICE_MAX_NS = 100_000_000
SLICE_RANGE = "0.1ms..100ms"

POLICY_BY_NAME = {
    "other": SCHED_OTHER,
    "normal": SCHED_OTHER,
    "fifo": SCHED_FIFO,
    "rr": SCHED_RR,
    "batch": SCHED_BATCH,
    "idle": SCHED_IDLE,
}
POLICY_NAME = POLICY_NAMES
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
        if (isinstance(text, float) and not math.isfinite(text)) or not 0 <= text <= SLICE_MAX_NS:
            raise ValueError(f"slice {_number(text)} ns is out of range: EEVDF allows {SLICE_RANGE} (or 'default')")
        ns = int(text)
    else:
        t = text.strip().lower()
        if t in ("default", "0"):
            return 0
        m = re.fullmatch(r"([0-9]{0,20}\.?[0-9]{1,20})\s*(ns|us|µs|ms|s)?", t)
        if not m:
            raise ValueError(f"bad slice {_short(text)}: use e.g. 3ms, 500us or 'default' ({SLICE_RANGE})")
        # A bare number is ns, as chrt -T takes it; out of range, the message says so and
        # names the unit the user most likely meant.
        bare = float(m.group(1))
        if m.group(2) is None and bare != 0 and not SLICE_MIN_NS <= bare <= SLICE_MAX_NS:
            hint = f"; did you mean {m.group(1)}ms?" if 0.1 <= bare <= 100 else ""
            raise ValueError(f"slice {_short(m.group(1), 24, quote=False)} is nanoseconds (a bare number is ns, "
                             f"as in chrt -T): out of range {SLICE_RANGE}{hint}")
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


# The kernel's largest CONFIG_NR_CPUS (arch/x86/Kconfig: 8192): no CPU number is above it, so a
# CPU list that is not checked against this machine (a profile) is still bounded by it.
MAX_CPUS = 8192
_CPU_DIGITS = len(str(MAX_CPUS))
MAX_CPULIST_CHARS = 65536  # "0,1,2,...,8191" is about 40 000


def _read_cpulist(path: str) -> tuple[int, ...] | None:
    try:
        with open(path) as f:
            return parse_cpulist(f.read(4096).strip(), check=False)
    except (OSError, ValueError):
        return None


def online_cpus() -> tuple[int, ...]:
    return _read_cpulist("/sys/devices/system/cpu/online") or tuple(range(os.cpu_count() or 1))


def possible_cpus() -> tuple[int, ...]:
    """Every CPU this kernel can ever bring online (hotplug included)."""
    return _read_cpulist("/sys/devices/system/cpu/possible") or online_cpus()


def parse_cpulist(text: str, check: bool = True) -> tuple[int, ...]:
    """'0-1,3' -> (0, 1, 3); 'all' -> every online CPU. With check, CPUs must be online.

    Bounded before anything is built: a CPU above this kernel's possible CPUs (with check) or
    above MAX_CPUS (without) is refused, so '0-99999999999' costs no memory."""
    t = text.strip().lower()
    if t == "all":
        return online_cpus()
    if len(t) > MAX_CPULIST_CHARS:
        raise ValueError(f"CPU list of {len(t)} characters is too long (at most {MAX_CPULIST_CHARS})")
    limit = max(possible_cpus()) if check else MAX_CPUS - 1
    cpus: set[int] = set()
    for part in filter(None, t.split(",")):
        m = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", part.strip())  # [0-9], not \d: "٣" is no CPU number
        if not m:
            raise ValueError(f"bad CPU list {_short(text)}: use e.g. 0, 0-1, 0,2 or all")
        for num in filter(None, m.groups()):  # the length first: int() of 10**6 digits is slow
            if len(num.lstrip("0")) > _CPU_DIGITS or int(num) > limit:
                raise ValueError(f"CPU {_short(num, 24, quote=False)} does not exist: {_cpu_bound(check, limit)}")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ValueError(f"bad CPU range {_short(part.strip())} in {_short(text)}")
        cpus.update(range(lo, hi + 1))
    if not cpus:
        raise ValueError(f"empty CPU list {_short(text)}")
    if check:
        online = set(online_cpus())
        bad = sorted(cpus - online)
        if bad:
            raise ValueError(f"CPU {format_cpulist(bad)} not online (online: {format_cpulist(sorted(online))})")
    return tuple(sorted(cpus))


def _cpu_bound(check: bool, limit: int) -> str:
    if check:
        return f"this machine's CPUs are {format_cpulist(possible_cpus())}"
    return f"CPU numbers stop at {limit} (the kernel's largest NR_CPUS)"


def _number(v: int | float) -> str:
    """A number for a message: str() of a 5000-digit int raises, and would not fit one line."""
    if isinstance(v, int) and abs(v) >= 10**15:
        return f"{'-' if v < 0 else ''}(a {len(str(abs(v))) if v.bit_length() < 14000 else 'huge'}-digit number)"
    return repr(v)


def _short(text: str, n: int = 40, quote: bool = True) -> str:
    """repr() of what the user typed, cut so one bad value stays one line."""
    r = repr(text) if quote else text
    return r if len(r) <= n else r[: n - 4] + ("...'" if quote else "...")


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
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"nice {_short(repr(value), quote=False)} is not a number: give an integer -20..19")
    if not -20 <= value <= 19:
        raise ValueError(f"nice {_number(value)} is out of range: -20..19")
    return value


def check_rt_priority(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"RT priority {_short(repr(value), quote=False)} is not a number: give an integer 1..99")
    if not 1 <= value <= 99:
        raise ValueError(f"RT priority {_number(value)} is out of range: 1..99")
    return value
