"""The one snapshot type: frozen dataclasses that collectors build and widgets render.

Everything here is plain data (no I/O), so snapshots can be recorded to JSON
Lines, replayed, compared in tests and handed across threads without locks.

Schema versioning: ``SCHEMA_VERSION`` is bumped on any incompatible change to
the JSON form. Adding a field with a default is compatible (old files load,
the field takes its default); removing or retyping one is not.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1

# Policy numbers from include/uapi/linux/sched.h; 7 is SCHED_EXT.
POLICY_NAMES: Mapping[int, str] = {
    0: "OTHER",
    1: "FIFO",
    2: "RR",
    3: "BATCH",
    5: "IDLE",
    6: "DEADLINE",
    7: "EXT",
}


@dataclass(frozen=True, slots=True)
class CpuStat:
    """One CPU's run queue as seen in one interval."""

    cpu: int
    util_pct: float  # busy share of the last interval, 0..100
    nr_running: int  # runnable tasks, including the one on the CPU
    nr_running_exact: bool  # True from debugfs or BPF, False when estimated from /proc
    curr_pid: int | None = None  # the task running now (None: idle or unknown)
    curr_comm: str = ""
    switches_per_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Task:
    """One thread (tid) or, in process mode, one process with its threads folded in."""

    pid: int  # tgid
    tid: int
    comm: str
    state: str  # R, S, D, ...
    policy: str  # OTHER/BATCH/IDLE/FIFO/RR/DEADLINE/EXT
    nice: int
    prio: int  # kernel prio as in /proc/PID/sched (100..139 for fair, <100 for RT)
    rt_priority: int
    cpu: int  # last CPU it ran on
    affinity: tuple[int, ...]
    vruntime_ns: int | None = None  # se.vruntime; None where unreadable
    slice_ns: int | None = None  # se.slice
    cpu_pct: float = 0.0
    runtime_ns: int = 0  # schedstat field 1: time on CPU
    wait_ns: int = 0  # schedstat field 2: time waiting on a run queue
    timeslices: int = 0  # schedstat field 3
    wait_ns_per_s: float = 0.0  # run-queue wait per second of wall time
    vol_cs_per_s: float = 0.0
    invol_cs_per_s: float = 0.0
    nr_threads: int = 1  # >1 only for folded process rows
    # Run-queue latency from the BPF tier; None on the procfs tier.
    lat_p50_us: float | None = None
    lat_p99_us: float | None = None
    lat_max_us: float | None = None
    # BPF tier, since it attached: mean on-CPU stint (the slice actually used) and the share
    # of switches-out that were preemptions (the rest blocked voluntarily).
    slice_used_us: float | None = None
    preempt_pct: float | None = None
    ext_enabled: bool | None = None  # /proc/PID/sched ext.enabled, where the kernel has it
    starttime: int = 0  # /proc stat field 22, clock ticks: tells a reused pid apart


@dataclass(frozen=True, slots=True)
class QueuedTask:
    """A task on a CPU's fair run queue (debugfs sched/debug 'runnable tasks'), EEVDF or CFS."""

    cpu: int
    pid: int
    comm: str
    running: bool  # the '>R' row: on the CPU now
    eligible: bool | None  # None: the kernel runs CFS (6.1), which has no eligibility
    vruntime_ns: int
    deadline_ns: int | None  # None on CFS
    slice_ns: int | None  # None on CFS
    sum_exec_ns: int
    switches: int
    prio: int
    wait_ns: int
    lag_ns: int | None = 0  # avg_vruntime - vruntime; positive means owed CPU time; None on CFS


@dataclass(frozen=True, slots=True)
class Histogram:
    """A latency histogram: bucket upper bounds in µs with counts, plus percentiles."""

    bounds_us: tuple[float, ...] = ()
    counts: tuple[int, ...] = ()
    total: int = 0
    p50_us: float | None = None
    p90_us: float | None = None
    p99_us: float | None = None
    max_us: float | None = None


@dataclass(frozen=True, slots=True)
class SchedulerInfo:
    """Which scheduler is in charge, from /sys/kernel/sched_ext."""

    kind: str  # "eevdf", "sched_ext" (someone else's) or "schedtop"
    ext_state: str  # "absent", "disabled", "enabled", "enabling", "disabling"
    ops_name: str | None = None
    switch_all: bool | None = None
    enable_seq: int | None = None
    nr_rejected: int | None = None
    hotplug_seq: int | None = None
    events: Mapping[str, int] = field(default_factory=dict)  # root/events, 6.15+

    @property
    def label(self) -> str:
        if self.kind == "eevdf":
            return "EEVDF (fair)"
        mode = "" if self.switch_all is None else (" all" if self.switch_all else " partial")
        return f"sched_ext: {self.ops_name or '?'}{mode}"


@dataclass(frozen=True, slots=True)
class ViewRequest:
    """What the view asks of the next collect. The UI builds one per poll and hands it to
    `collect(request)`; nothing the UI thread sets on a source is read by the collector."""

    threads: bool = True  # one row per thread; False folds them into one row per process
    detail_tid: int | None = None  # read this task's full /proc sched (the detail screen, the side pane)


@dataclass(frozen=True, slots=True)
class TaskDetail:
    """The followed task's /proc/PID/task/TID/sched, every field as the kernel prints it."""

    pid: int
    tid: int
    fields: Mapping[str, str] = field(default_factory=dict)  # {} once the task is gone


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one collection interval produced."""

    ts: float  # time.monotonic() of collection
    wall: float  # time.time()
    interval_s: float  # time since the previous snapshot
    host: str
    kernel: str
    uptime_s: float
    loadavg: tuple[float, float, float]
    scheduler: SchedulerInfo
    cpus: tuple[CpuStat, ...]
    tasks: tuple[Task, ...]
    queues: tuple[QueuedTask, ...] = ()
    latency: Histogram | None = None  # system-wide run-queue latency (BPF tier)
    source: str = "procfs"  # "procfs", "procfs+debugfs", "bpf", "replay"
    warnings: tuple[str, ...] = ()
    # Per-tier extras that old readers can ignore (bpf counters, scx stats, ...).
    extras: Mapping[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION
    detail: TaskDetail | None = None  # only when a ViewRequest asked for it


# --- JSON form -------------------------------------------------------------


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain JSON-able values (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


class SchemaError(ValueError):
    """A JSON document that is not a valid snapshot of a known schema."""


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _build(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arm in args:
            if arm is type(None):
                continue
            try:
                return _build(arm, value, where)
            except SchemaError as exc:
                errors.append(str(exc))
        raise SchemaError(errors[0] if errors else f"{where}: bad value {value!r}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise SchemaError(f"{where}: expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise SchemaError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_build(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin in (collections.abc.Mapping, dict) or tp is Any:
        if tp is not Any and not isinstance(value, dict):
            raise SchemaError(f"{where}: expected an object")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SchemaError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp in (int, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise SchemaError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    raise SchemaError(f"{where}: unsupported type {tp!r}")


def from_dict(cls: type, data: Any, where: str | None = None) -> Any:
    """Rebuild a dataclass tree from ``to_dict`` output, checking every type."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise SchemaError(f"{where}: expected an object, got {type(data).__name__}")
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SchemaError(f"{where}: missing field {f.name!r}")
            continue
        kwargs[f.name] = _build(hints[f.name], data[f.name], f"{where}.{f.name}")
    return cls(**kwargs)


def snapshot_from_dict(data: Any) -> Snapshot:
    if isinstance(data, dict):
        schema = data.get("schema", SCHEMA_VERSION)
        if not isinstance(schema, int) or isinstance(schema, bool):
            raise SchemaError(f"Snapshot.schema: expected int, got {schema!r}")
        if schema > SCHEMA_VERSION:
            raise SchemaError(
                f"snapshot schema {schema} is newer than this schedtop understands "
                f"({SCHEMA_VERSION}); upgrade schedtop"
            )
        extras = data.get("extras")
        if isinstance(extras, dict) and "sched_detail" in extras and "detail" not in data:
            # Recordings before TaskDetail kept the followed task's fields in extras.
            data = {**data, "extras": {k: v for k, v in extras.items() if k != "sched_detail"},
                    "detail": extras["sched_detail"]}
    return from_dict(Snapshot, data)
