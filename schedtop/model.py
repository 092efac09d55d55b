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

from schedtop import kernel_paths

SCHEMA_VERSION = 1

POLICY_NAMES: Mapping[int, str] = kernel_paths.POLICY_NAMES  # policy number -> name, as the table shows it


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


# --- typed parts of Snapshot.extras ------------------------------------------------
# Each tier or watcher builds its part whole and the snapshot carries it under its JSON key
# (`extras.kernel`, `extras.bpf`, ...). A part a snapshot lacks is None and is left out of the
# JSON form, as the dict's keys were. Fields added after recordings were made have defaults,
# so older recordings still load; a part an old or foreign file spells differently is dropped
# rather than failing the whole snapshot (see `Extras.from_json`).


@dataclass(frozen=True, slots=True)
class KernelCaps:
    """What this kernel's fair class can do (collect/kernel_caps.py probes it): `extras.kernel`."""

    release: str
    fair: str  # "EEVDF", "CFS" or "unknown"
    task_slice: bool  # sched_setattr's sched_runtime sets a fair task's slice (6.12+)
    base_slice: bool | None  # debugfs sched/base_slice_ns exists; None: cannot tell (not root)
    why: str = ""  # how `fair` was decided

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> KernelCaps:
        return cls(release=str(d.get("release", "")), fair=str(d.get("fair", "unknown")),
                   task_slice=bool(d.get("task_slice")),
                   base_slice=None if d.get("base_slice") is None else bool(d.get("base_slice")),
                   why=str(d.get("why", "")))

    def why_not(self, feature: str) -> str | None:
        """None when `feature` works here, else the one-line reason it does not.

        feature: "slice" (per-task slice), "base_slice" (the global knob), "eevdf" (the
        eligibility, lag and deadline columns)."""
        cfs = self.fair == "CFS"
        kernel = f"kernel {self.release}" if self.release else "this kernel"
        if feature == "eevdf":
            return f"{kernel} runs CFS: no eligibility, lag or deadline (EEVDF came in 6.6)" if cfs else None
        if feature == "slice":
            if cfs:
                return f"{kernel} runs CFS: no per-task slice (EEVDF with sched_setattr slices came in 6.12)"
            if not self.task_slice:
                return f"{kernel} ignores a per-task slice in sched_setattr (needs 6.12+)"
            return None
        if feature == "base_slice":
            if cfs:
                return f"{kernel} runs CFS: no base_slice_ns (CFS has sched_min_granularity instead)"
            if self.base_slice is False:
                return f"{kernel} has no debugfs sched/base_slice_ns"
            return None
        raise ValueError(f"unknown kernel feature {feature!r}")


@dataclass(frozen=True, slots=True)
class DebugfsPart:
    """What debugfs gave beyond the run queues: `extras.debugfs`."""

    base_slice_ns: int | None = None  # sched/debug's sysctl_sched.sysctl_sched_base_slice


@dataclass(frozen=True, slots=True)
class BpfCpu:
    """One CPU as the BPF tier counted it since it attached."""

    cpu: int
    nr_running: int | None = None  # exact depth from the task iterator
    nr_running_counter: int | None = None  # the per-CPU counter the same events move (a cross-check)
    procfs_estimate: int | None = None  # the estimate it replaced (None when that was exact already)
    lat_count: int = 0
    p50_us: float | None = None
    p90_us: float | None = None
    p99_us: float | None = None
    max_us: float | None = None
    preempted: int = 0
    voluntary: int = 0
    wakeups: int = 0
    migrations: int = 0


@dataclass(frozen=True, slots=True)
class BpfPart:
    """The BPF tier's own state and counters: `extras.bpf`. None fields: not in that recording."""

    mode: str = ""  # "tp_btf" or "raw_tp"
    sample_rate: int = 0  # 1 event in N reaches the stream; 0: no stream
    events: int = 0
    dropped: int = 0
    untracked: int = 0
    lost_user: int | None = None
    backlog: int = 0
    pid_filter: int | None = None  # the tgid latency is limited to
    programs: Mapping[str, str] = field(default_factory=dict)  # program -> how it attached
    warnings: tuple[str, ...] = ()
    load_s: float = 0.0
    blind_tasks: int | None = None
    seeded: int | None = None
    unseen_switch_outs: int | None = None
    cpus: tuple[BpfCpu, ...] = ()


@dataclass(frozen=True, slots=True)
class ScxChange:
    """One load, unload or ejection of a sched_ext scheduler, for markers on a timeline."""

    ts: float  # time.monotonic() of the reading that saw it
    wall: float = 0.0
    kind: str = "load"  # "load", "unload" or "eject"
    ops: str | None = None
    enable_seq: int | None = None
    reason: str | None = None  # the kernel's exit reason, where its log told us
    detail: str | None = None  # the scheduler's own exit message (errors only)
    missed: int = 0  # load/unload pairs between two readings that polling could not see
    label: str = ""


@dataclass(frozen=True, slots=True)
class SchedExtPart:
    """sched_ext's sysfs, its event rates and recent changes: `extras.sched_ext`."""

    version: int = 1
    state: str = "absent"  # as SchedulerInfo.ext_state
    ops: str | None = None
    switch_all: bool | None = None
    enable_seq: int | None = None
    nr_rejected: int | None = None
    hotplug_seq: int | None = None
    events: Mapping[str, int] = field(default_factory=dict)  # root/events, 6.15+
    event_rates: Mapping[str, float] = field(default_factory=dict)  # per second
    changes: tuple[ScxChange, ...] = ()
    exit_reasons: bool = False  # the kernel log is readable, so changes carry reasons
    ctxt_per_s: float | None = None  # system-wide context switches per second
    warning: str | None = None


@dataclass(frozen=True, slots=True)
class StatsPart:
    """What the running sched_ext scheduler serves on its scx_stats socket: `extras.scx_stats`."""

    version: int = 1
    path: str = ""
    ok: bool = False
    top: str | None = None  # the top struct's name
    desc: str = ""
    error: str | None = None
    latency_ms: float | None = None  # how long the stats request took
    metrics: Mapping[str, Any] = field(default_factory=dict)  # dotted path -> value
    kinds: Mapping[str, str] = field(default_factory=dict)  # dotted path -> kind
    descs: Mapping[str, str] = field(default_factory=dict)
    # The OpenMetrics series the server's metadata names (_om_prefix, _om_label, _om_skip):
    om_names: Mapping[str, str] = field(default_factory=dict)  # dotted path -> metric name
    om_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # dotted path -> labels
    om_skip: tuple[str, ...] = ()  # dotted paths the server keeps out of OpenMetrics


@dataclass(frozen=True, slots=True)
class ScxOptionsPart:
    """The options schedtop's scheduler was started with."""

    policy: str | None = None
    partial: bool = False


@dataclass(frozen=True, slots=True)
class ScxPart:
    """schedtop's own scheduler as its supervisor sees it: `extras.scx` (the `g` panel)."""

    running: bool = False  # the child process is alive
    phase: str | None = None  # "loading", "loaded", "failed", "ended"; None in older recordings
    loaded: Mapping[str, Any] = field(default_factory=dict)  # the child's "loaded" report
    stats: Mapping[str, Any] = field(default_factory=dict)  # the child's last stats report
    frozen: str | None = None  # "stopped"/"traced" when the policy loop cannot run
    exit: Mapping[str, Any] | None = None  # the child's exit report
    options: ScxOptionsPart = field(default_factory=ScxOptionsPart)


@dataclass(frozen=True, slots=True)
class CollectorCost:
    """The monitor's own cost for this snapshot, per part: `extras.collector`."""

    procfs_cpu_ms: float = 0.0
    extras_cpu_ms: Mapping[str, float] = field(default_factory=dict)  # per registered part
    threads_read: int = 0
    threads_cached: int = 0
    bpf_cpu_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Extras:
    """The typed parts a snapshot may carry beside its core fields; None: not collected."""

    kernel: KernelCaps | None = None
    debugfs: DebugfsPart | None = None
    bpf: BpfPart | None = None
    sched_ext: SchedExtPart | None = None
    scx_stats: StatsPart | None = None
    scx: ScxPart | None = None
    collector: CollectorCost | None = None
    recorded_source: str | None = None  # a replayed frame: the source it was recorded from

    @classmethod
    def from_json(cls, data: Any, where: str = "Snapshot.extras") -> Extras:
        """The parts of a JSON `extras` object. Unknown keys are ignored and a part that does
        not parse is dropped (an older or foreign recording), so the snapshot still loads."""
        if not isinstance(data, dict):
            raise SchemaError(f"{where}: expected an object, got {type(data).__name__}")
        hints = _hints(cls)
        kwargs = {}
        for f in dataclasses.fields(cls):
            value = data.get(f.name)
            if value is None:
                continue
            try:
                kwargs[f.name] = _build(hints[f.name], value, f"{where}.{f.name}")
            except (SchemaError, TypeError, ValueError):
                continue
        return cls(**kwargs)


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
    # The typed parts of each tier and watcher (BPF counters, sched_ext, scx_stats, ...).
    extras: Extras = field(default_factory=Extras)
    schema: int = SCHEMA_VERSION
    detail: TaskDetail | None = None  # only when a ViewRequest asked for it


# --- JSON form -------------------------------------------------------------


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain JSON-able values (tuples become lists)."""
    if isinstance(obj, Extras):  # a part not collected is left out, as the dict's keys were
        return {f.name: to_dict(v) for f in dataclasses.fields(obj) if (v := getattr(obj, f.name)) is not None}
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
    if tp is Extras:
        return Extras.from_json(value, where)
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
