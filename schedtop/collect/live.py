"""The live source: procfs (+ debugfs as root, + the BPF tier when it loads) -> Snapshot.

`collect()` is called from one worker thread, never the UI thread. The first
call primes the rate counters (its rates are 0); every later call turns the
counter deltas since the previous call into per-second rates.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from schedtop import kernel_paths
from schedtop.collect import debugfs, kernel_caps
from schedtop.collect.fold import rows_for
from schedtop.collect.procfs import ProcfsReader, ThreadSample
from schedtop.collect.sched_ext import SCHED_EXT_SYSFS, read_scheduler_info
from schedtop.model import (
    POLICY_NAMES,
    CollectorCost,
    CpuStat,
    DebugfsPart,
    Extras,
    Histogram,
    QueuedTask,
    SchedExtPart,
    SchedulerInfo,
    ScxPart,
    Snapshot,
    StatsPart,
    Task,
    TaskDetail,
    ViewRequest,
)

log = logging.getLogger(__name__)

CLK_TCK = os.sysconf("SC_CLK_TCK")
FAIR_POLICIES = (0, 3, 5)  # OTHER, BATCH, IDLE: EEVDF tasks, which have a slice


# Rates of a thread whose counters did not move (a shared constant: identity marks "unchanged").
ZERO = (0.0, 0.0, 0.0, 0.0, 0)
# A thread whose change detector did not move keeps its cached procfs sample. The detector
# is its debugfs row (root) or its raw stat+schedstat bytes. Neither shows everything
# (a row lacks policy and affinity; stat lacks affinity and slice), so every thread is
# still re-read once per REFRESH_EVERY collects; invalidate(tid) forces it at once.
REFRESH_EVERY = 10

# The parts of Snapshot.extras that others fill through add_extra(), and the type of each.
PART_TYPES: Mapping[str, type] = {"sched_ext": SchedExtPart, "scx_stats": StatsPart, "scx": ScxPart}


@dataclass(slots=True)
class _Draft:
    """One collect's pieces while they are gathered; build() makes the Snapshot, once, whole."""

    ts: float
    wall: float
    interval_s: float
    host: str
    kernel: str
    uptime_s: float
    loadavg: tuple[float, float, float]
    scheduler: SchedulerInfo
    cpus: tuple[CpuStat, ...]
    tasks: tuple[Task, ...]
    queues: tuple[QueuedTask, ...]
    source: str
    warnings: list[str]
    detail: TaskDetail | None
    parts: dict[str, Any]  # Extras field -> part
    own: dict[str, Any]  # CollectorCost field -> value
    latency: Histogram | None = None

    def build(self) -> Snapshot:
        # The monitor's own cost is the last part, so nothing changes after the snapshot is built.
        return Snapshot(
            ts=self.ts, wall=self.wall, interval_s=self.interval_s, host=self.host, kernel=self.kernel,
            uptime_s=self.uptime_s, loadavg=self.loadavg, scheduler=self.scheduler, cpus=self.cpus,
            tasks=self.tasks, queues=self.queues, latency=self.latency, source=self.source,
            warnings=tuple(self.warnings), extras=Extras(**self.parts, collector=CollectorCost(**self.own)),
            detail=self.detail,
        )


class LiveSource:
    """Collects Snapshots of this machine. See the module docstring for the threading rule."""

    def __init__(
        self,
        pids: Sequence[int] = (),
        threads: bool = True,
        use_bpf: bool = True,
        procfs_root: str = kernel_paths.PROC,
        use_debugfs: bool | None = None,
        sched_ext_root: str = SCHED_EXT_SYSFS,
        bpf_wait: float | None = None,
    ) -> None:
        """use_bpf opens the BPF tier in a background thread started here, so loading it
        overlaps whatever the caller does next (the TUI imports Textual meanwhile).
        bpf_wait: how long a collect() waits for that thread while it is still running;
        None waits until it is done (the first snapshot carries BPF data), 0 never waits
        (the TUI: a procfs frame now, BPF from the first collect after the tier is up;
        `bpf_pending` says when to ask again).

        pids only narrows the task rows. The BPF tier is never opened with a pid_filter:
        the CPU panel's run-queue depth, current task and latency percentiles describe
        the whole machine, and a filtered tier would measure latency for -p's tasks only.
        """
        self.pids = tuple(pids)
        self.default_request = ViewRequest(threads=threads)  # for collect() without a request
        self._reader = ProcfsReader(procfs_root)
        self._sched_ext_root = sched_ext_root
        self._use_bpf = use_bpf
        self._lock = threading.Lock()
        self._extras: dict[str, Callable[[], Any]] = {}
        self._tier: Any = None
        self._bpf_wait = bpf_wait
        self._tier_thread: threading.Thread | None = None
        self._tier_warnings: list[str] = []  # from the opening thread; moved to _warnings by collect()
        self._warnings: list[str] = []  # standing ones, repeated in every snapshot
        self._prev_ts: float | None = None
        self._prev_cpu: list[tuple[float, float]] | None = None
        self._prev: dict[tuple[int, int], ThreadSample] = {}
        # tid -> (change detector, sample): its debugfs row, or its raw stat+schedstat bytes
        self._cache: dict[int, tuple[Any, ThreadSample]] = {}
        self._rows: dict[int, tuple[ThreadSample, Task]] = {}  # tid -> (sample, its zero-rate row)
        self._invalid: set[int] = set()
        self._invalid_lock = threading.Lock()
        self._n = 0
        self._reads = 0
        self._tid_pid: dict[int, int] = {}  # the last /proc listing, tid -> pid
        self._prev_rq_switches: dict[int, int] = {}
        uname = os.uname()
        self.host, self.kernel = uname.nodename, uname.release
        if use_debugfs is None:
            use_debugfs = self._reader.live
        self._debugfs = False
        if use_debugfs:
            try:
                debugfs.ensure_mounted()
                self._debugfs = True
            except debugfs.DebugfsUnavailable as exc:
                self._warnings.append(str(exc))
            except Exception as exc:  # mount(8) missing, timeout: degrade, never crash
                self._warnings.append(f"debugfs: {exc}")
        if use_bpf:
            self._tier_thread = threading.Thread(target=self._open_tier, name="schedtop-bpf-open", daemon=True)
            self._tier_thread.start()

    # --- API ---------------------------------------------------------------

    @property
    def sched_ext_root(self) -> str:
        """Where this source reads sched_ext's sysfs (a test's fake directory, or the kernel's)."""
        return self._sched_ext_root

    @property
    def source(self) -> str:
        return "procfs+debugfs" if self._debugfs else "procfs"

    @property
    def bpf_tier(self) -> Any:
        """The open BpfTier (sample rate, counters, event stream), or None: --no-bpf,
        failed to open (the snapshot warnings say why), still opening, or closed."""
        t = self._tier_thread
        return None if t is not None and t.is_alive() else self._tier

    @property
    def bpf_pending(self) -> bool:
        """True while the BPF tier is still being opened in the background."""
        t = self._tier_thread
        return t is not None and t.is_alive()

    def add_extra(self, name: str, fn: Callable[[], Any]) -> None:
        """Put fn()'s part into every Snapshot.extras.<name> (name: one of PART_TYPES; fn returns
        that type, or None for no part); its exceptions become warnings. Safe from any thread:
        collect() iterates a copy, so this never waits for a collect."""
        if name not in PART_TYPES:
            raise ValueError(f"no snapshot part {name!r} (parts: {', '.join(PART_TYPES)})")
        self._extras = {**self._extras, name: fn}

    def remove_extra(self, name: str) -> None:
        self._extras = {k: v for k, v in self._extras.items() if k != name}

    def invalidate(self, tid: int | None = None) -> None:
        """Re-read this thread (or all) from procfs next collect: call after changing its
        policy or affinity, which the debugfs row used as a change detector does not show."""
        with self._invalid_lock:
            if tid is None:
                self._cache = {}
            else:
                self._invalid.add(tid)

    def close(self) -> None:
        t = self._tier_thread
        if t is not None:
            t.join()  # an attach in flight finishes, then the tier it made is closed below
        with self._lock:
            tier, self._tier = self._tier, None
        if tier is not None:
            try:
                tier.close()
            except Exception as exc:  # closing must not raise into the app's exit path
                log.warning("closing the BPF tier: %s", exc)

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def collect(self, request: ViewRequest | None = None) -> Snapshot:
        """One snapshot, built whole: procfs/debugfs, then the BPF tier's parts, then the
        monitor's own cost. The request says which rows and which detail the view wants."""
        request = request or self.default_request
        with self._lock:
            t = self._tier_thread
            if t is not None:
                if t.is_alive():
                    t.join(self._bpf_wait)
                if not t.is_alive():
                    self._tier_thread = None
                    self._warnings.extend(self._tier_warnings)
            d = self._collect(request)
            if self._tier is not None and self._tier_thread is None:
                t0 = time.thread_time()
                try:
                    r = self._tier.read(d.cpus, d.tasks)
                except Exception as exc:
                    d.warnings.append(f"BPF tier: {exc}")
                else:
                    d.cpus, d.tasks, d.latency, d.source = r.cpus, r.tasks, r.latency, "bpf"
                    d.warnings.extend(r.warnings)
                    d.parts["bpf"] = r.part
                d.own["bpf_cpu_ms"] = (time.thread_time() - t0) * 1e3
            return d.build()

    # --- internals ---------------------------------------------------------

    def _open_tier(self) -> None:
        # In its own thread (started by __init__): loading and attaching takes ~0.1 s,
        # mostly in the kernel's verifier, so it runs alongside the caller's start-up.
        # Only this thread writes _tier/_tier_warnings until collect() or close() joins it.
        try:
            from schedtop.collect.bpf import BpfUnavailable, open_tier
        except ImportError as exc:
            self._tier_warnings.append(f"BPF tier not available ({exc}); procfs only")
            return
        try:
            self._tier = open_tier()
        except BpfUnavailable as exc:
            self._tier_warnings.append(f"BPF tier off: {exc}")
        except Exception as exc:
            self._tier_warnings.append(f"BPF tier failed to open: {exc}")

    def _collect(self, request: ViewRequest) -> _Draft:
        """Everything procfs and debugfs gave, with the registered parts: collect() adds the BPF
        tier's and builds the Snapshot from it."""
        t_cpu = time.thread_time()
        warnings = list(self._warnings)
        cpu_times = self._reader.cpu_times()
        now = time.monotonic()
        wall = time.time()
        dt = now - self._prev_ts if self._prev_ts is not None else 0.0

        rq = None
        if self._debugfs:
            try:
                rq = debugfs.read_sched_debug()
            except debugfs.DebugfsUnavailable as exc:
                warnings.append(str(exc))
        samples = self._read_threads(rq)

        rates: dict[tuple[int, int], tuple[float, float, float, float, int]] = {}
        prev = self._prev
        new_prev: dict[tuple[int, int], ThreadSample] = {}
        for s in samples:
            key = (s.tid, s.stat.starttime)  # starttime tells a reused tid apart
            new_prev[key] = s
            p = prev.get(key)
            if p is None or p is s or dt <= 0:
                rates[key] = ZERO
                continue
            st, pst = s.stat, p.stat
            ss, pss = s.schedstat, p.schedstat
            sc, psc = s.sched, p.sched
            if ss is not None and pss is not None:
                cpu_pct = (ss.runtime_ns - pss.runtime_ns) / (dt * 1e7)
                wait = (ss.wait_ns - pss.wait_ns) / dt
            else:
                ticks = st.utime_ticks + st.stime_ticks - pst.utime_ticks - pst.stime_ticks
                cpu_pct, wait = ticks / CLK_TCK / dt * 100.0, 0.0
            if sc is not None and psc is not None:
                vol = (sc.nr_voluntary - psc.nr_voluntary) / dt
                invol = (sc.nr_involuntary - psc.nr_involuntary) / dt
                sw = sc.nr_switches - psc.nr_switches
            else:
                vol = invol = 0.0
                sw = 0
            rates[key] = (max(cpu_pct, 0.0), max(wait, 0.0), max(vol, 0.0), max(invol, 0.0), max(sw, 0))
        self._prev = new_prev
        self._n += 1

        cpus = self._cpus(cpu_times, dt, rq, samples, rates)
        if rq is None and self._reader.live:
            warnings.append("per-CPU run-queue length, current task and switches/s are estimates "
                            "(exact ones need root for debugfs)")
        queues: tuple[QueuedTask, ...] = rq.queues() if rq is not None else ()

        shown = samples
        if self.pids:
            wanted = set(self.pids)
            shown = [s for s in samples if s.pid in wanted]
        # Folded here, not in the view: the BPF tier then sums whole processes.
        tasks = rows_for(self._thread_rows(shown, rates), request)

        parts: dict[str, Any] = {}
        if self._reader.live:  # EEVDF or CFS, per-task slice, base slice: probed once per process
            parts["kernel"] = kernel_caps.current()
        if rq is not None and rq.base_slice_ns is not None:
            parts["debugfs"] = DebugfsPart(base_slice_ns=rq.base_slice_ns)
        detail = self._detail(request.detail_tid, samples) if request.detail_tid is not None else None
        # The monitor's own cost, per part, so it can be shown and benchmarked.
        own: dict[str, Any] = {"procfs_cpu_ms": (time.thread_time() - t_cpu) * 1e3, "extras_cpu_ms": {},
               "threads_read": self._reads, "threads_cached": len(samples) - self._reads}
        for name, fn in list(self._extras.items()):
            t = time.thread_time()
            try:
                part = fn()
                if part is not None and not isinstance(part, PART_TYPES[name]):
                    raise TypeError(f"got a {type(part).__name__}, not a {PART_TYPES[name].__name__}")
                parts[name] = part
            except Exception as exc:  # another area's bug must not stop the monitor
                warnings.append(f"{name}: {type(exc).__name__}: {exc}")
            own["extras_cpu_ms"][name] = (time.thread_time() - t) * 1e3

        self._prev_ts = now
        self._prev_cpu = cpu_times
        return _Draft(
            ts=now,
            wall=wall,
            interval_s=dt,
            host=self.host,
            kernel=self.kernel,
            uptime_s=self._reader.uptime(),
            loadavg=self._reader.loadavg(),
            scheduler=read_scheduler_info(self._sched_ext_root),
            cpus=cpus,
            tasks=tasks,
            queues=queues,
            source="procfs+debugfs" if rq is not None else "procfs",  # what this snapshot really used
            warnings=warnings,
            detail=detail,
            parts=parts,
            own=own,
        )

    def _read_threads(self, rq: debugfs.SchedDebug | None) -> list[ThreadSample]:
        """Every thread (estimates need them all); with debugfs, the followed ones only.
        Unchanged threads come from the cache instead of being read and parsed again."""
        reader = self._reader
        fps = rq.fingerprints if rq is not None else {}
        with self._invalid_lock:
            cache, invalid = self._cache, self._invalid
            self._invalid = set()
        new_cache: dict[int, tuple[Any, ThreadSample]] = {}
        turn = self._n % REFRESH_EVERY
        reads = 0
        samples: list[ThreadSample] = []
        for pid, tid in self._pairs(rq):
            if rq is None:
                # No debugfs: the raw stat+schedstat bytes are the change detector (they
                # move when the thread runs, wakes or is retuned); sched is read only then.
                stat_data, ss_data = reader.probe(pid, tid)
                if stat_data is None:
                    continue
                probe = (stat_data, ss_data)
                c = cache.get(tid)
                if (c is None or c[0] != probe or c[1].pid != pid or tid in invalid
                        or tid % REFRESH_EVERY == turn):
                    reads += 1
                    s = reader.thread_from(pid, tid, stat_data, ss_data)
                    if s is None:
                        continue
                    # A refresh that found nothing new keeps the same sample, so its table
                    # row is reused too (a new, equal sample would rebuild the row twice).
                    c = (probe, s if c is None or s != c[1] else c[1])
                samples.append(c[1])
                new_cache[tid] = c
                continue
            fp = fps.get(tid)
            if fp is not None:
                c = cache.get(tid)
                if c is not None and c[0] == fp and c[1].pid == pid and tid not in invalid:
                    if tid % REFRESH_EVERY == turn:
                        # Its turn: re-read what the row does not show (policy, rt prio,
                        # affinity); sched and schedstat cannot have moved.
                        st = reader.stat(pid, tid)
                        if st is None:
                            continue
                        aff = reader.affinity(pid, tid)
                        if st != c[1].stat or aff != c[1].affinity:
                            c = (fp, replace(c[1], stat=st, affinity=aff))
                    samples.append(c[1])
                    new_cache[tid] = c
                    continue
            s = reader.thread(pid, tid)
            reads += 1
            if s is not None:
                if fp is not None and s.sched is not None and s.sched.slice_ns is None \
                        and s.stat.policy in FAIR_POLICIES:
                    # /proc/PID/sched omits se.slice for SCHED_IDLE; its debugfs row has it.
                    row = debugfs.parse_row(*fp)
                    if row is not None:
                        s = replace(s, sched=replace(s.sched, slice_ns=row.slice_ns))
                # A row can change while its task sleeps: its E/N column is the eligibility
                # against its run queue's average, which moves as others run (N->E flips
                # failed test_unchanged_threads_are_cached_but_changes_show 5 in 30 under
                # load). A re-read that finds nothing new keeps the same sample, so the
                # table row is reused.
                c = cache.get(tid)
                if c is not None and c[1] == s:
                    s = c[1]
                samples.append(s)
                if fp is not None:
                    new_cache[tid] = (fp, s)
            elif fp is not None:
                self._tid_pid = {}  # debugfs lists it, /proc not where we looked: list again
        with self._invalid_lock:
            if self._cache is cache:  # not cleared by invalidate() meanwhile
                self._cache = new_cache
        self._reads = reads
        return samples

    def _pairs(self, rq: debugfs.SchedDebug | None) -> list[tuple[int, int]]:
        """(pid, tid) of every thread to read. debugfs lists every task by tid, so when it
        shows no tid we have not seen, the last /proc listing is reused (minus the dead)."""
        if rq is None or self.pids:
            pids = (self.pids if rq is not None else ()) or self._reader.pids()
            return [(pid, tid) for pid in pids for tid in self._reader.tids(pid)]
        fps = rq.fingerprints
        known = self._tid_pid
        if known and fps.keys() <= known.keys():
            self._tid_pid = {t: p for t, p in known.items() if t in fps}
        else:
            reader = self._reader
            self._tid_pid = {tid: pid for pid in reader.pids() for tid in reader.tids(pid)}
        return [(p, t) for t, p in self._tid_pid.items()]

    def _cpus(self, cpu_times, dt, rq, samples, rates) -> tuple[CpuStat, ...]:
        n = len(cpu_times)
        util = [0.0] * n
        if self._prev_cpu is not None and len(self._prev_cpu) == n:
            for i, ((busy, total), (pbusy, ptotal)) in enumerate(zip(cpu_times, self._prev_cpu, strict=True)):
                d = total - ptotal
                util[i] = min(max((busy - pbusy) / d * 100.0, 0.0), 100.0) if d > 0 else 0.0
        comm_of = {s.tid: s.stat.comm for s in samples}
        if rq is not None:
            out = []
            by_cpu = {c.cpu: c for c in rq.cpus}
            new_sw = {}
            for i in range(n):
                c = by_cpu.get(i)
                if c is None:
                    out.append(CpuStat(i, util[i], 0, False))
                    continue
                new_sw[i] = c.nr_switches
                prev_sw = self._prev_rq_switches.get(i)
                sw = (c.nr_switches - prev_sw) / dt if prev_sw is not None and dt > 0 else 0.0
                # The '>R' row and '.curr->pid' are printed moments apart and may differ;
                # the row wins so the CPU panel agrees with the queue view.
                row = next((r for r in c.rows if r.state == ">R"), None)
                curr = row.pid if row else (c.curr_pid or None)  # pid 0 is the idle task
                comm = row.comm if row else (comm_of.get(curr, "") if curr else "")
                out.append(CpuStat(i, util[i], c.nr_running, True, curr, comm, max(sw, 0.0)))
            self._prev_rq_switches = new_sw
            return tuple(out)
        # Estimates: R-state threads by last CPU; the busiest one is taken as current.
        nr = [0] * n
        sw = [0.0] * n
        best: list[tuple[float, int, str] | None] = [None] * n
        for s in samples:
            c = s.stat.cpu
            if not 0 <= c < n:
                continue
            r = rates.get((s.tid, s.stat.starttime))
            if r is not None and dt > 0:
                sw[c] += r[4] / dt
            if s.stat.state == "R":
                nr[c] += 1
                pct = r[0] if r else 0.0
                if best[c] is None or pct > best[c][0]:
                    best[c] = (pct, s.tid, s.stat.comm)
        out = []
        for i in range(n):
            b = best[i]
            out.append(CpuStat(i, util[i], nr[i], False, b[1] if b else None, b[2] if b else "", sw[i]))
        return tuple(out)

    @staticmethod
    def _task(s: ThreadSample, r: tuple[float, float, float, float, int]) -> Task:
        st, sched, ss = s.stat, s.sched, s.schedstat
        return Task(
            pid=s.pid,
            tid=s.tid,
            comm=st.comm,
            state=st.state,
            policy=POLICY_NAMES.get(st.policy, str(st.policy)),
            nice=st.nice,
            prio=st.prio,
            rt_priority=st.rt_priority,
            cpu=st.cpu,
            affinity=s.affinity,
            vruntime_ns=sched.vruntime_ns if sched else None,
            slice_ns=sched.slice_ns if sched else None,
            cpu_pct=r[0],
            runtime_ns=ss.runtime_ns if ss else 0,
            wait_ns=ss.wait_ns if ss else 0,
            timeslices=ss.timeslices if ss else 0,
            wait_ns_per_s=r[1],
            vol_cs_per_s=r[2],
            invol_cs_per_s=r[3],
            ext_enabled=sched.ext_enabled if sched else None,
            starttime=st.starttime,
        )

    def _thread_rows(self, samples, rates) -> tuple[Task, ...]:
        # An unchanged sample with zero rates gives the same row as last time: reuse it.
        old, rows = self._rows, {}
        out = []
        for s in samples:
            r = rates.get((s.tid, s.stat.starttime), ZERO)
            if r is ZERO:
                c = old.get(s.tid)
                if c is None or c[0] is not s:
                    c = (s, self._task(s, ZERO))
                rows[s.tid] = c
                out.append(c[1])
            else:
                out.append(self._task(s, r))
        self._rows = rows
        return tuple(out)

    def _detail(self, tid: int, samples: Sequence[ThreadSample]) -> TaskDetail:
        pid = next((s.pid for s in samples if s.tid == tid), tid)
        return TaskDetail(pid, tid, self._reader.sched_fields(pid, tid))
