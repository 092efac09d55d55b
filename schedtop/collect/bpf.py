"""The BPF tier: loads bpf/trace.bpf.c and turns its counters into Snapshot fields.

``open_tier()`` either returns a working ``BpfTier`` or raises ``BpfUnavailable`` with
one clear reason (not root, no BTF, object not built, libbpf missing, verifier
rejection); LiveSource then stays on procfs and shows the reason. Each program is
attached on its own; a failure of a non-essential one is a warning, not a fallback.

What enrich() fills in:
  CpuStat.nr_running (exact: the tasks BPF holds as running or queued on each CPU, kept
  across wakeup/switch/migrate, seeded at attach; the per-CPU counters moved by the same
  events are reported beside it as a cross-check, extras.bpf.cpus[].nr_running_counter),
  nr_running_exact, curr_pid, switches_per_s;
  Task.lat_p50_us/lat_p99_us/lat_max_us, slice_used_us, preempt_pct (cumulative since
  the tier attached, so a quiet task keeps its numbers);
  Snapshot.latency: the system-wide histogram of the last interval (the p99 sparkline);
  Snapshot.extras.bpf (BpfPart): sample rate, event and drop counters, per-CPU percentiles, programs.

Threading: enrich() runs in LiveSource's collector thread; set_sample_rate() and
events() may be called from any thread.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from schedtop.bpf import objects
from schedtop.model import BpfCpu, BpfPart, CpuStat, Histogram, Snapshot, Task

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_RATE = 128  # 1 event in 128, like scxtop
MAX_SAMPLE_RATE = 1 << 20
OBJECT = objects.path("trace")
TRACEPOINTS = ("sched_wakeup", "sched_wakeup_new", "sched_switch", "sched_migrate_task", "sched_waking")
BTF_PROGS = ("handle_wakeup", "handle_wakeup_new", "handle_switch", "handle_migrate", "handle_waking")
RAW_PROGS = ("handle_raw_wakeup", "handle_raw_wakeup_new", "handle_raw_switch", "handle_raw_migrate",
             "handle_raw_waking")
WAKING_PROGS = ("handle_waking", "handle_raw_waking")  # stream only: not loaded without events
ESSENTIAL = ("handle_switch", "handle_raw_switch")  # without switch there is no latency/depth
EVENT_BACKLOG = 200_000  # sampled events kept for events() between drains

# capability bits (include/uapi/linux/capability.h)
CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39


@dataclass(frozen=True, slots=True)
class BpfReading:
    """One interval as the tier read it: the rows it made exact, the histogram, its own part."""

    cpus: tuple[CpuStat, ...]
    tasks: tuple[Task, ...]
    latency: Histogram
    part: BpfPart
    warnings: tuple[str, ...]


class BpfUnavailable(Exception):
    """The BPF tier cannot run here; str() is the reason, one line, with the fix."""


def _caps() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def _check_privileges() -> None:
    caps = _caps()
    has = lambda bit: bool(caps >> bit & 1)  # noqa: E731
    if has(CAP_SYS_ADMIN) or (has(CAP_BPF) and has(CAP_PERFMON)):
        return
    who = f"uid {os.geteuid()}"
    raise BpfUnavailable(
        f"needs root (CAP_BPF+CAP_PERFMON or CAP_SYS_ADMIN); running as {who} without them: "
        "run schedtop with sudo for exact run queues and latencies"
    )


def check_ready(path: Path) -> Path:
    """Everything a schedtop BPF object needs before it is opened: privileges, kernel BTF, the
    built object and libbpf >= 1.4. Raises BpfUnavailable with the reason and the fix."""
    _check_privileges()
    if not Path("/sys/kernel/btf/vmlinux").exists():
        raise BpfUnavailable("kernel has no BTF (/sys/kernel/btf/vmlinux; needs CONFIG_DEBUG_INFO_BTF)")
    if not path.exists():
        raise BpfUnavailable(objects.missing(path))
    try:
        from schedtop.bpf import libbpf

        libbpf.load_libbpf()
    except Exception as exc:  # LibbpfNotFound carries its own fix
        raise BpfUnavailable(str(exc)) from None
    return path


def open_tier(
    pid_filter: int | None = None,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    *,
    events: bool = True,
    ring_bytes: int = 4 << 20,
    object_path: Path | str | None = None,
    force_raw_tp: bool = False,
) -> BpfTier:
    """Load and attach the tracing programs. pid_filter (a tgid) limits latency, per-task
    data and events to one process; run-queue depth always counts every task."""
    path = check_ready(Path(object_path) if object_path else OBJECT)
    from schedtop.bpf import libbpf
    from schedtop.bpf.btf import Btf

    use_btf = not force_raw_tp
    if use_btf:
        try:
            with Btf.vmlinux() as vm:
                missing = [tp for tp in TRACEPOINTS if not vm.has_tracepoint(tp)]
        except libbpf.BpfError as exc:
            raise BpfUnavailable(f"cannot read kernel BTF: {exc}") from None
        if missing:
            log.info("tp_btf targets missing (%s): using raw_tp", ", ".join(missing))
            use_btf = False
    try:
        return BpfTier(path, use_btf, pid_filter, sample_rate, events, ring_bytes)
    except libbpf.BpfError as exc:
        if use_btf:  # e.g. a kernel whose tp_btf programs the verifier refuses
            log.info("tp_btf load failed, trying raw_tp: %s", exc)
            try:
                tier = BpfTier(path, False, pid_filter, sample_rate, events, ring_bytes)
                tier.warnings.append(f"tp_btf programs failed ({_first_line(exc)}); using raw_tp")
                return tier
            except libbpf.BpfError as exc2:
                exc = exc2
        raise BpfUnavailable(_reason(exc)) from None


def _text(exc: BaseException) -> str:
    """An OSError's message without the "[Errno N]" prefix."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _first_line(exc: BaseException) -> str:
    text = _text(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _reason(exc: BaseException) -> str:
    """One line: the failing call, plus the verifier's verdict when it rejected us (the last
    log line that is neither an instruction, a libbpf line nor the 'processed' summary)."""
    lines = [ln.strip() for ln in _text(exc).splitlines() if ln.strip()]
    head = lines[0] if lines else _text(exc)
    verdict = [
        ln for ln in lines[1:]
        if not ln.startswith(("libbpf:", "processed ", ";", "-- ")) and not ln[:1].isdigit()
    ]
    progs = [m.group(1) for ln in lines if (m := re.search(r"prog '([^']+)': failed to load", ln))]
    where = f" in program {progs[-1]}" if progs else ""
    if verdict:
        return f"{head} (verifier{where}: {verdict[-1]})"
    return head


class BpfTier:
    def __init__(
        self, path: Path, use_btf: bool, pid_filter: int | None, sample_rate: int, events: bool, ring_bytes: int
    ) -> None:
        from schedtop.bpf import libbpf
        from schedtop.bpf import trace_events as te

        self._te = te
        self._lock = threading.Lock()
        self.warnings: list[str] = []
        self.mode = "tp_btf" if use_btf else "raw_tp"
        self.programs: dict[str, str] = {}
        t0 = time.monotonic()
        self._obj = libbpf.BpfObject.open(path)
        try:
            self._setup(libbpf, te, use_btf, pid_filter, sample_rate, events, ring_bytes)
        except BaseException:
            self._obj.close()
            raise
        self.load_s = time.monotonic() - t0
        self._prev_hist: list[int] | None = None
        self._prev_cpu: dict[int, tuple[int, float]] = {}
        self._backlog: collections.deque = collections.deque(maxlen=EVENT_BACKLOG)
        self._lost_user = 0
        self._events_seen = 0
        self._pct_cache: dict[tuple[int, int, int], tuple[int, tuple[float | None, float | None]]] = {}

    def _setup(self, libbpf, te, use_btf, pid_filter, sample_rate, events, ring_bytes) -> None:
        from schedtop.bpf.btf import Btf
        from schedtop.bpf.globals import Globals

        obj = self._obj
        unused = RAW_PROGS if use_btf else BTF_PROGS
        for name in unused:
            obj.program(name).autoload = False
        if not events:
            for name in WAKING_PROGS:
                obj.program(name).autoload = False
        if not use_btf:
            obj.program("dump_tasks").autoload = False  # iterators need BTF
            obj.program("seed_tasks").autoload = False
            obj.map("task_store").set_autocreate(False)
        else:
            obj.map("task_hash").set_autocreate(False)
        if not events:
            ring_bytes = 4096 * 4  # the stream is compiled out; keep the map tiny
        obj.map("events").set_max_entries(_pow2_pages(ring_bytes))

        ro, data, bss = Globals(obj, ".rodata"), Globals(obj, ".data"), Globals(obj, ".bss")
        ro.var("targ_tgid", ctypes.c_uint32).value = pid_filter or 0
        ro.var("targ_events", ctypes.c_bool).value = bool(events)
        data.var("sample_rate", ctypes.c_uint32).value = _clamp_rate(sample_rate)
        obj.load()

        # after load: the maps' mmap, shared with the kernel
        self._bss = bss.var("g", te.TraceBss)
        self._blind = bss.var("blind_tasks", ctypes.c_uint64)
        self._seeded = bss.var("seeded", ctypes.c_uint64)
        self._unseen = bss.var("unseen_switch_outs", ctypes.c_uint64)
        self._rate = data.var("sample_rate", ctypes.c_uint32)
        self._cpu_stats = obj.map("cpu_stats")
        self._task_hash = None if use_btf else obj.map("task_hash")
        ctx_fields = Btf.of_object(obj).struct_fields("task_ctx")
        self._task_off = ctx_fields["rec"].offset
        self._queued_off = ctx_fields["queued_cpu"].offset
        self._iter = None
        # switch first: a task is then learned when it runs, and a wakeup seen before the
        # switch handler existed cannot leave a count behind.
        order = ("handle_switch", "handle_migrate", "handle_wakeup", "handle_wakeup_new")
        if events:
            order += ("handle_waking",)
        links, errors = {}, {}
        for base in order:
            name = base if use_btf else base.replace("handle_", "handle_raw_")
            try:
                links[name] = obj.program(name).attach()
                self.programs[name] = "attached"
            except libbpf.BpfError as exc:
                errors[name] = exc
                self.programs[name] = f"failed: {_first_line(exc)}"
                self.warnings.append(f"{name}: {_first_line(exc)}")
        if not any(name in links for name in ESSENTIAL):
            raise libbpf.BpfError(errors[next(iter(errors))].errno if errors else 22,
                                  "sched_switch did not attach: " + "; ".join(self.warnings))
        if use_btf:
            self._seed(libbpf)
            try:
                self._iter = obj.program("dump_tasks").attach_iter()
                self.programs["dump_tasks"] = "attached"
            except libbpf.BpfError as exc:
                self.programs["dump_tasks"] = f"failed: {_first_line(exc)}"
                self.warnings.append(f"per-task data off: {_first_line(exc)}")
        self._reader = libbpf.RingReader(obj.map("events")) if events else None
        self.pid_filter = pid_filter
        self.nr_cpus = os.cpu_count() or 1

    def _seed(self, libbpf) -> None:
        """Count the tasks already runnable at attach (after the handlers attached, so none
        is missed between the two); without it they count from their next switch-in."""
        try:
            with self._obj.program("seed_tasks").attach_iter() as link:
                link.read_iter()
        except libbpf.BpfError as exc:
            self.warnings.append(f"depth seed off (counts build up as tasks run): {_first_line(exc)}")

    # --- live knobs --------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return int(self._rate.value)

    def set_sample_rate(self, n: int) -> int:
        """1 event in n goes to the ring buffer (0 stops it); returns the rate set."""
        self._rate.value = _clamp_rate(n)
        return self.sample_rate

    # --- reading -----------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """events/dropped/untracked: the kernel side's (dropped = ring buffer full);
        lost_user: events read from the ring but lost when the tier's own backlog overflowed."""
        b = self._bss
        return {"events": int(b.events), "dropped": int(b.dropped), "untracked": int(b.untracked),
                "lost_user": self._lost_user}

    def depth_counters(self) -> dict[str, int]:
        """blind_tasks: tasks found invisible to BPF (woken and switched in where we saw it,
        but never switched out where we could: not counted in any depth); seeded: tasks
        already runnable at attach that the seed counted; unseen_switch_outs: counted runners
        that left their CPU without a switch-out we saw (their count taken back there)."""
        return {"blind_tasks": int(self._blind.value), "seeded": int(self._seeded.value),
                "unseen_switch_outs": int(self._unseen.value)}

    def nr_running_counters(self) -> list[int]:
        """The in-kernel per-CPU counters, moved by the events themselves (seeded at attach in
        tp_btf mode). They hold the same tasks as nr_running(): tasks invisible to BPF (no
        switch-out of theirs ever fires; see blind_tasks) are uncounted at the next switch
        on their CPU. Read apart from the iterator, so a task changing state between the
        two reads can make them differ by that task."""
        return [max(0, int(self._bss.nr_running[i])) for i in range(self.nr_cpus)]

    def nr_running(self, recs: dict[int, Any] | None = None) -> list[int]:
        """Exact runnable tasks per CPU: the tasks BPF holds as queued on each CPU. The
        iterator walks the live task list, so a task that exits simply vanishes; the
        per-CPU counters (nr_running_counters) are kept as a cross-check."""
        if recs is None:
            recs = self.task_records()
        nr = [0] * self.nr_cpus
        for r in recs.values():
            if r.queued_cpu is not None and r.queued_cpu < self.nr_cpus:
                nr[r.queued_cpu] += 1
        return nr

    def cpu_stats(self) -> list[Any]:
        raw = self._cpu_stats.lookup_percpu(0) or []
        return [self._te.CpuStatRec.from_buffer_copy(r) for r in raw[: self.nr_cpus]]

    def task_records(self) -> dict[int, Any]:
        """tid -> TaskStats for every task seen since attach."""
        te = self._te
        size = ctypes.sizeof(te.TaskRec)
        out: dict[int, Any] = {}
        if self._iter is not None:
            blob = memoryview(self._iter.read_iter())
            for off in range(0, len(blob) - size + 1, size):
                r = te.task_stats(blob, off)
                out[r.pid] = r
        elif self._task_hash is not None:
            for key, value in self._task_hash.lookup_batch():
                r = te.task_stats(memoryview(value)[self._task_off : self._task_off + size])
                pid = int.from_bytes(key, "little")
                q = int.from_bytes(value[self._queued_off : self._queued_off + 4], "little")
                out[pid] = r._replace(pid=pid, queued_cpu=q - 1 if q else None)
        return out

    def _pump(self) -> None:
        """Move ring-buffer records into the backlog so the kernel side never backs up."""
        if self._reader is None:
            return
        te = self._te
        recs = self._reader.read_fixed(te.EVENT_STRUCT)
        room = EVENT_BACKLOG - len(self._backlog)
        if len(recs) > room:
            self._lost_user += len(recs) - room
        self._backlog.extend(recs)
        self._events_seen += len(recs)

    def events(self) -> list[Any]:
        """Sampled events (SchedEvent, oldest first) since the previous call."""
        with self._lock:
            self._pump()
            raw = list(self._backlog)
            self._backlog.clear()
        decode = self._te.decode_event
        return [decode(r) for r in raw]

    def wait_events(self, timeout_ms: int) -> bool:
        """Block until the ring buffer has records (for a dedicated export thread)."""
        return self._reader.wait(timeout_ms) if self._reader is not None else False

    # --- the snapshot ------------------------------------------------------------------

    def enrich(self, snap: Snapshot) -> Snapshot:
        """`snap` with this tier's reading in it (LiveSource builds its snapshot from read())."""
        r = self.read(snap.cpus, snap.tasks)
        return replace(snap, cpus=r.cpus, tasks=r.tasks, latency=r.latency, source="bpf",
                       warnings=snap.warnings + r.warnings, extras=replace(snap.extras, bpf=r.part))

    def read(self, cpus_in: tuple[CpuStat, ...], tasks_in: tuple[Task, ...]) -> BpfReading:
        """The procfs rows with what BPF knows better, this interval's histogram and the tier's part."""
        te = self._te
        with self._lock:
            self._pump()
        now = time.monotonic()
        cstats = self.cpu_stats()
        recs = self.task_records()
        nr = self.nr_running(recs)
        counters_nr = self.nr_running_counters()

        # system-wide histogram of this interval (sum over CPUs, minus the last reading)
        total = [0] * te.CPU_SLOTS
        for cs in cstats:
            for i, v in enumerate(cs.lat_slots):
                if v:
                    total[i] += v
        prev = self._prev_hist
        self._prev_hist = total
        interval = [a - b for a, b in zip(total, prev)] if prev is not None else total
        latency = _histogram(interval, te)

        cpus = []
        per_cpu_extra = []
        for c in cpus_in:
            if c.cpu < len(cstats):
                cs = cstats[c.cpu]
                last = self._prev_cpu.get(c.cpu)
                sw = c.switches_per_s
                if last is not None and now > last[1]:
                    sw = (cs.switches - last[0]) / (now - last[1])
                self._prev_cpu[c.cpu] = (cs.switches, now)
                curr = int(self._bss.curr_pid[c.cpu]) or None
                cpus.append(replace(
                    c,
                    nr_running=nr[c.cpu] if c.cpu < len(nr) else c.nr_running,
                    nr_running_exact=True,
                    curr_pid=curr,
                    curr_comm=c.curr_comm if curr == c.curr_pid else _comm_of(tasks_in, curr),
                    switches_per_s=max(sw, 0.0),
                ))
                p50, p90, p99 = te.percentiles_us(cs.lat_slots, te.CPU_SUB_BITS, (0.5, 0.9, 0.99), cs.lat_max_ns)
                per_cpu_extra.append(BpfCpu(
                    cpu=c.cpu, nr_running=nr[c.cpu] if c.cpu < len(nr) else None,
                    nr_running_counter=counters_nr[c.cpu] if c.cpu < len(counters_nr) else None,
                    procfs_estimate=c.nr_running if not c.nr_running_exact else None,
                    lat_count=int(cs.lat_count), p50_us=p50, p90_us=p90, p99_us=p99,
                    max_us=cs.lat_max_ns / 1000.0 if cs.lat_count else None,
                    preempted=int(cs.preempted), voluntary=int(cs.voluntary),
                    wakeups=int(cs.wakeups), migrations=int(cs.migrations),
                ))
            else:
                cpus.append(c)

        if len(self._pct_cache) > 4 * max(len(tasks_in), 1024):
            self._pct_cache.clear()  # rows that went away
        tasks = tuple(self._task(t, recs) for t in tasks_in)

        counters = self.counters()
        depth = self.depth_counters()
        part = BpfPart(
            mode=self.mode,
            sample_rate=self.sample_rate,
            events=counters["events"],
            dropped=counters["dropped"],
            untracked=counters["untracked"],
            lost_user=counters["lost_user"],
            backlog=len(self._backlog),
            pid_filter=self.pid_filter,
            programs=dict(self.programs),
            warnings=tuple(self.warnings),
            load_s=round(self.load_s, 4),
            blind_tasks=depth["blind_tasks"],
            seeded=depth["seeded"],
            unseen_switch_outs=depth["unseen_switch_outs"],
            cpus=tuple(per_cpu_extra),
        )
        return BpfReading(tuple(cpus), tasks, latency, part, tuple(f"BPF: {w}" for w in self.warnings))

    def _task(self, t: Task, recs: dict[int, Any]) -> Task:
        te = self._te
        if t.nr_threads > 1:  # a folded process row: every thread of the tgid
            group = [r for r in recs.values() if r.tgid == t.pid]
            if not group:
                return t
            slots: Any = [sum(col) for col in zip(*(r.slots for r in group))]
            oncpu, stints = sum(r.oncpu_ns for r in group), sum(r.stints for r in group)
            pre, vol = sum(r.preempted for r in group), sum(r.voluntary for r in group)
            count, mx = sum(r.lat_count for r in group), max(r.lat_max_ns for r in group)
        else:
            r = recs.get(t.tid)
            if r is None:
                return t
            oncpu, stints, pre, vol, count, mx, slots = (
                r.oncpu_ns, r.stints, r.preempted, r.voluntary, r.lat_count, r.lat_max_ns, r.slots)
        p50 = p99 = None
        if count:
            key = (t.tid, t.starttime, t.nr_threads)
            hit = self._pct_cache.get(key)
            if hit is not None and hit[0] == count:  # no new samples: same percentiles
                p50, p99 = hit[1]
            else:
                p50, p99 = te.percentiles_us(slots, te.TASK_SUB_BITS, (0.5, 0.99), mx)
                self._pct_cache[key] = (count, (p50, p99))
        return replace(
            t,
            lat_p50_us=p50,
            lat_p99_us=p99,
            lat_max_us=mx / 1000.0 if count else None,
            slice_used_us=oncpu / stints / 1000.0 if stints else None,
            preempt_pct=100.0 * pre / (pre + vol) if pre + vol else None,
        )

    def close(self) -> None:
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
            self._obj.close()

    def __enter__(self) -> BpfTier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _comm_of(tasks: tuple[Task, ...], tid: int | None) -> str:
    if not tid:
        return ""
    return next((t.comm for t in tasks if t.tid == tid), "")


def _clamp_rate(n: int) -> int:
    return max(0, min(int(n), MAX_SAMPLE_RATE))


def _pow2_pages(n: int) -> int:
    """Ring buffer sizes must be a power of two and a multiple of the page size."""
    size = max(n, 4096 * 4)
    return 1 << (size - 1).bit_length()


def _histogram(counts: list[int], te: Any) -> Histogram:
    """Octave buckets in µs for display ([0,1), [1,2), [2,4), ... µs); percentiles from the
    fine slots. An interval without wakeups has total 0 and no percentiles."""
    total = sum(counts)
    p50, p90, p99 = te.percentiles_us(counts, te.CPU_SUB_BITS, (0.5, 0.9, 0.99))
    octaves: dict[int, int] = {}
    max_slot = -1
    for i, v in enumerate(counts):
        if not v:
            continue
        lo, hi = te.slot_bounds_ns(i, te.CPU_SUB_BITS)
        mid_us = (lo + hi) / 2000.0
        k = 0 if mid_us < 1 else int(mid_us).bit_length()
        octaves[k] = octaves.get(k, 0) + v
        max_slot = i
    if not octaves:
        return Histogram(total=0)
    top = max(octaves)
    bounds = tuple(float(1 << k) for k in range(top + 1))  # upper bounds: 1, 2, 4, ... µs
    cnts = tuple(octaves.get(k, 0) for k in range(top + 1))
    max_us = te.slot_bounds_ns(max_slot, te.CPU_SUB_BITS)[1] / 1000.0
    return Histogram(bounds_us=bounds, counts=cnts, total=total, p50_us=p50, p90_us=p90, p99_us=p99,
                     max_us=max_us)
