"""The policy loop: records from the kernel in, decisions back, nothing else on its path.

``Core`` is the hot path without any I/O (records in, packed decisions out),
so the host benchmark drives exactly the code the guest runs. ``Loop`` adds
the rings, commands, stats and the ways it can end:

  - the kernel ejects the scheduler (watchdog, error, SysRq-S): exit_rec says why;
  - the policy raises: the scheduler is detached cleanly and the error reported;
  - stop() (SIGINT/SIGTERM, the TUI's unload).

Never waiting on anyone: the loop blocks only in poll() on the ring. Stats
are published by swapping one reference (``latest``); whoever shows them (a
printer thread, the TUI's reader) runs elsewhere. Commands arrive through a
deque that the loop drains between batches.

Page faults: a fault in the loop can wait on a kthread the loop itself would
have to schedule. The BPF side never routes kthreads or our own threads via
user space, and here ``harden()`` locks all memory (MCL_CURRENT|MCL_FUTURE:
new arenas are populated when mapped, not when touched) and freezes then
disables the GC (no collection pause, no touching old objects). The loop
counts its own faults (getrusage RUSAGE_THREAD); after warm-up it must be 0.
"""

from __future__ import annotations

import collections
import ctypes
import gc
import os
import resource
import threading
import time
from array import array
from dataclasses import dataclass
from typing import Any, Callable

from schedtop.scx.knobs import Knobs
from schedtop.scx.plans import PlanBook
from schedtop.scx.policy import Policy, TaskIn
from schedtop.scx.protocol import PID_HEARTBEAT

BATCH = 512  # records per read: bounds the time between two looks at commands
LAT_SAMPLES = 4096  # ring of enqueue->decision latencies (ns)
# Faults before warm-up are the cost of starting, not of running: the first seconds, and
# the first real bursts (measured in the guest: the first burst of a workload costs a
# few minor faults with no RSS growth; after it, zero over 20 s of mixed load).
WARMUP_S = 2.0
WARMUP_DECISIONS = 1000
# With plans most enqueues never reach the loop: warm once it has decided in this many passes.
WARMUP_BATCHES = 20
POLL_MS = 100
WATCH_MAX = 64  # tasks whose BPF-side state the stats carry ("watch" command)

MCL_CURRENT, MCL_FUTURE = 1, 2


class PolicyFailed(Exception):
    """The policy raised inside decide/tick; carries the one-line reason."""


def policy_error_text(policy: Policy, exc: BaseException) -> str:
    tb = exc.__traceback__
    where = ""
    while tb is not None:  # the innermost frame: the policy's own line
        where = f" at {os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return f"policy {policy.name!r} raised {type(exc).__name__}: {exc}{where}"


class Core:
    """Decode -> knobs -> policy -> knobs -> pack. No I/O."""

    def __init__(self, policy: Policy, knobs: Knobs) -> None:
        self.policy = policy
        self.knobs = knobs
        self.lat = array("q", bytes(8 * LAT_SAMPLES))  # preallocated: no growth in the hot path
        self.lat_i = 0
        self.decisions = 0
        self.batches = 0  # calls that decided something: wake-ups of the loop with work

    def handle(self, recs: list, now_ns: int, out: list) -> None:
        """Decide each record; append the decisions (pid, cpu, slice_ns, deadline, gen, flags)
        to ``out``, ready for DecisionRing.push."""
        decide = self.policy.decide
        knobs = self.knobs
        knobbed = knobs.tasks
        task_in, decision_out = knobs.task_in, knobs.decision_out
        append = out.append
        new = tuple.__new__
        lat, i = self.lat, self.lat_i
        n = 0
        for rec in recs:
            pid = rec[0]
            if pid == PID_HEARTBEAT:
                continue
            task = new(TaskIn, rec)  # a record is a TaskIn already: same fields, same order
            if pid in knobbed:
                d = decision_out(decide(task_in(task), now_ns))
            else:
                d = decide(task, now_ns)
            if d[0] != pid or d[4] != rec[8]:
                raise PolicyFailed(f"policy {self.policy.name!r} returned a decision for pid {d[0]} gen {d[4]} "
                                   f"when given pid {pid} gen {rec[8]}")
            append(d)
            lat[i] = now_ns - rec[9]
            i += 1
            if i == LAT_SAMPLES:
                i = 0
            n += 1
        self.decisions += n
        self.batches += n > 0
        self.lat_i = i

    def latency_us(self) -> tuple[float | None, float | None]:
        """p50/p99 of enqueue -> decision sent, over the last LAT_SAMPLES decisions."""
        n = min(self.decisions, LAT_SAMPLES)
        if not n:
            return None, None
        vals = sorted(self.lat[:n] if self.decisions < LAT_SAMPLES else self.lat)
        return vals[n // 2] / 1000, vals[min(n - 1, (n * 99) // 100)] / 1000


def _grow_stack(depth: int = 900) -> None:
    """Touch C stack now, before mlockall: the main thread's stack grows on demand,
    and a growth fault later would be a page fault in the loop. repr() of nested
    lists recurses in C (a few hundred bytes a level)."""
    import sys

    nested: list = []
    for _ in range(depth):
        nested = [nested]
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, depth + 200))
    try:
        repr(nested)
    finally:
        sys.setrecursionlimit(old)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
PR_SET_THP_DISABLE = 41
HEAP_RESERVE = 16 << 20  # the loop's steady state fits in far less (RSS is reported)


def _reserve_heap(libc: ctypes.CDLL, size: int = HEAP_RESERVE) -> None:
    """Grow malloc's heap once and keep it: every later allocation reuses locked,
    already-populated memory instead of growing the heap (each new page would be a
    fault, counted or not). With PYTHONMALLOC=malloc (cli.py re-execs with it) this
    covers Python objects too; pymalloc would unmap and remap its own arenas."""
    libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)  # never give freed heap back
    libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)  # small and mid blocks come from the heap
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    chunk = 128 << 10
    blocks = [libc.malloc(chunk) for _ in range(size // chunk)]
    for b in blocks:
        if b:
            libc.free(b)


def harden() -> str | None:
    """Pre-grown stack and heap, mlockall, GC frozen and off. Returns a warning when
    mlockall is refused."""
    _grow_stack()
    gc.collect()
    gc.freeze()
    gc.disable()
    libc = ctypes.CDLL(None, use_errno=True)
    # No transparent huge pages: khugepaged collapsing the locked heap under the loop
    # shows up as sporadic minor faults (and a fault is a wait we do not control).
    libc.prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)
    _reserve_heap(libc)
    if libc.mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
        return f"mlockall failed: {os.strerror(ctypes.get_errno())} (page faults may stall the loop)"
    return None


def thread_faults() -> int:
    ru = resource.getrusage(resource.RUSAGE_THREAD)
    return ru.ru_minflt + ru.ru_majflt


def thread_major_faults() -> int:
    return resource.getrusage(resource.RUSAGE_THREAD).ru_majflt


def hist_percentile(hist: list[int], q: float) -> float | None:
    """A percentile (µs) from log2 buckets: bucket b is [2^(b-1), 2^b) µs; midpoint interpolation."""
    total = sum(hist)
    if not total:
        return None
    want = q * total
    seen = 0
    for b, n in enumerate(hist):
        if seen + n >= want and n:
            lo = 0.0 if b == 0 else float(1 << (b - 1))
            hi = 1.0 if b == 0 else float(1 << b)
            return lo + (hi - lo) * ((want - seen) / n)
        seen += n
    return float(1 << (len(hist) - 1))


class TaskCtxReader:
    """The per-task state the BPF side keeps (task storage ``task_ctxs``), read by pidfd:
    what the scheduler actually gave a task, not what the policy meant to give it.
    Field offsets come from the object's BTF, so a reordered struct stays right."""

    FIELDS = {"slice_start": "slice_ns", "last_used": "last_stint_ns", "gen": "trips", "run_ns": "run_ns"}

    def __init__(self, sched: Any) -> None:
        from schedtop.bpf.btf import Btf

        self.map = sched.obj.map("task_ctxs")
        fields = Btf.of_object(sched.obj).struct_fields("task_ctx")
        self.offsets = {out: fields[name].offset for name, out in self.FIELDS.items() if name in fields}

    def read(self, pid: int) -> dict[str, int] | None:
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return None  # gone
        try:
            raw = self.map.lookup(fd)
        except OSError:
            return None
        finally:
            os.close(fd)
        if raw is None:
            return None
        return {out: int.from_bytes(raw[off:off + 8], "little") for out, off in self.offsets.items()}


@dataclass(frozen=True, slots=True)
class Outcome:
    reason: str  # "stopped", "ejected", "policy", "error"
    text: str
    code: int  # process exit status for the CLI


class Loop:
    def __init__(self, sched: Any, policy: Policy, knobs: Knobs, stats_interval: float = 1.0,
                 plans: bool = True) -> None:
        self.sched = sched
        self.plans_on = plans  # False: every task is decided per event (--per-event)
        self.book = PlanBook(sched.put_plan, sched.drop_plan) if plans else None
        self.core = Core(policy, knobs)
        self.knobs = knobs
        self.stats_interval = stats_interval
        self.commands: collections.deque[dict] = collections.deque()
        self.backlog: collections.deque[tuple] = collections.deque()
        self.latest: dict[str, Any] = {}
        self.on_stats: Callable[[dict[str, Any]], None] | None = None
        self.tid = 0
        self.watched: tuple[int, ...] = ()
        self._ctx_reader: TaskCtxReader | None = None
        self._stop = threading.Event()
        self.warnings: list[str] = []

    @property
    def policy(self) -> Policy:
        return self.core.policy

    # --- called from other threads -------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def command(self, cmd: dict) -> None:
        self.commands.append(cmd)

    # --- the loop --------------------------------------------------------------------------

    def run(self, attach: bool = True, harden_memory: bool = True) -> Outcome:
        from schedtop.scx.rings import DecisionRing, QueuedReader

        self.tid = threading.get_native_id()
        sched = self.sched
        reader = QueuedReader(sched.queued_map.fd, sched.queued_map.max_entries)
        ring = DecisionRing(sched.dispatched_map.fd, sched.dispatched_map.max_entries)
        push = ring.push  # straight into the ring's memory, one producer store per batch
        read, wait = reader.read, reader.wait
        core, backlog, commands = self.core, self.backlog, self.commands
        monotonic_ns = time.monotonic_ns
        out: list[tuple] = []
        book = self.book
        if harden_memory:
            warn = harden()
            if warn:
                self.warnings.append(warn)
        outcome: Outcome | None = None
        try:
            if attach:
                sched.attach(self.tid)
            else:
                sched.live.loop_tid = self.tid
            started = time.monotonic()
            self._stats_t0 = started
            self._stats_prev = (sched.counters_dict(), started, os.times())
            self._cost_prev = (time.thread_time(), 0, 0)
            next_stats = started + self.stats_interval
            next_tick = 0
            fault_base = None
            exit_rec = sched.exit_rec
            while not self._stop.is_set():
                if exit_rec.kind:
                    info = sched.exit_info()
                    outcome = Outcome("ejected", f"the kernel ejected the scheduler: {info.text}", 2)
                    break
                if commands:
                    self._apply_commands()
                if not backlog:
                    wait(POLL_MS)
                recs = read(BATCH)
                now = monotonic_ns()
                if recs:
                    core.handle(recs, now, out)
                    backlog.extend(out)
                    out.clear()
                    if book is not None:  # after the decisions: the plan is there for the next enqueue
                        policy = core.policy
                        book.publish(policy.plan(now), now, policy.plan_ttl_ns)
                if backlog:
                    push(backlog)  # stops when full: BPF has not drained yet; order kept
                sched.live.user_pending = len(backlog)
                if backlog:
                    os.sched_yield()  # let this CPU run ops.dispatch and drain
                if now >= next_tick:
                    core.policy.tick(now)
                    next_tick = now + POLL_MS * 1_000_000
                t = time.monotonic()
                if t >= next_stats:
                    if fault_base is None and t - started >= WARMUP_S and (
                            core.decisions >= WARMUP_DECISIONS or (book is not None and core.batches >= WARMUP_BATCHES)):
                        fault_base = thread_faults()
                    self._publish(t, fault_base)
                    next_stats = t + self.stats_interval
            if outcome is None:
                outcome = Outcome("stopped", "unloaded", 0)
        except PolicyFailed as exc:
            outcome = Outcome("policy", str(exc), 3)
        except Exception as exc:  # the policy (decide/tick) or a bug: unload cleanly, say why
            outcome = Outcome("policy", policy_error_text(core.policy, exc), 3)
        finally:
            if outcome is not None:
                self.latest = {**self.latest, "exit": outcome.text, "exit_reason": outcome.reason}
            ring.close()
            reader.close()
        return outcome

    # --- between batches -----------------------------------------------------------------

    def _apply_commands(self) -> None:
        from schedtop.scx.knobs import KnobError
        from schedtop.scx.policies import load_policy
        from schedtop.scx.policy import PolicyError

        while self.commands:
            cmd = self.commands.popleft()
            try:
                self._apply(cmd, load_policy)
                self.latest = {**self.latest, "last_command": cmd.get("cmd"), "last_error": None}
            except (KnobError, PolicyError, OSError, ValueError, KeyError, TypeError) as exc:
                self.latest = {**self.latest, "last_command": cmd.get("cmd"), "last_error": str(exc)}

    def _apply(self, cmd: dict, load_policy: Callable[..., Policy]) -> None:
        what = cmd["cmd"]
        sched, knobs = self.sched, self.knobs
        if what == "slice":
            self.core.policy.set_slice(int(cmd["ns"]))
            sched.set_slice(self.core.policy.slice_ns)
            if self.book is not None:
                self.book.clear()  # the plans carry the old slice: each task crosses and is planned anew
        elif what == "policy":
            new = load_policy(cmd["name"], slice_ns=self.core.policy.slice_ns, nr_cpus=self.core.policy.nr_cpus)
            new.adopt(self.core.policy)
            self.core.policy = new
            if self.book is not None:
                self.book.clear()  # the old policy's plans are not the new one's
        elif what in ("knob", "boost", "demote", "reset"):
            pid = int(cmd["pid"])
            if what == "knob":
                fields = {k: cmd[k] for k in ("slice_ns", "cpu", "weight", "latcrit") if k in cmd}
                knob = knobs.set(pid, **fields)
            elif what == "boost":
                knob = knobs.boost(pid)
            elif what == "demote":
                knob = knobs.demote(pid)
            else:
                knobs.clear(pid)
                knob = None
            if knob is None:
                sched.put_knob(pid, None, None, False)
            else:
                sched.put_knob(pid, knob.slice_ns, knob.cpu, knob.latcrit)
        elif what == "watch":
            pids = tuple(int(p) for p in cmd["pids"])
            if len(pids) > WATCH_MAX or any(p <= 0 for p in pids):
                raise ValueError(f"watch takes at most {WATCH_MAX} pids > 0")
            if pids and self._ctx_reader is None:
                self._ctx_reader = TaskCtxReader(sched)
            self.watched = pids
        elif what == "stop":
            self._stop.set()
        else:
            raise ValueError(f"unknown command {what!r}")

    def _publish(self, t: float, fault_base: int | None) -> None:
        sched = self.sched
        counters = sched.counters_dict()
        prev_counters, prev_t, prev_times = self._stats_prev
        times = os.times()
        dt = max(t - prev_t, 1e-6)
        rates = {k: (counters[k] - prev_counters.get(k, 0)) / dt for k in counters if k.startswith("nr_")}
        cpu_pct = 100.0 * ((times.user - prev_times.user) + (times.system - prev_times.system)) / dt
        p50, p99 = self.core.latency_us()
        stints = counters["nr_stints"] - prev_counters.get("nr_stints", 0)
        stint_ms = (counters["stint_ns"] - prev_counters.get("stint_ns", 0)) / stints / 1e6 if stints else None
        hist = sched.latency_hist()
        faults = thread_faults()
        self._stats_prev = (counters, t, times)
        # The loop thread's own CPU per decision (this runs in the loop thread): what the
        # design costs per task that crosses to user space, stats and commands included.
        cpu_s, prev_decisions, prev_batches = self._cost_prev
        now_cpu = time.thread_time()
        decided = self.core.decisions - prev_decisions
        batches = self.core.batches - prev_batches
        self._cost_prev = (now_cpu, self.core.decisions, self.core.batches)
        self.latest = {
            "policy": self.core.policy.name,
            "slice_ns": self.core.policy.slice_ns,
            "partial": sched.cfg.partial,
            "uptime_s": round(t - self._stats_t0, 3),
            "counters": counters,
            "rates": rates,
            "user_queue": len(self.backlog),
            "avg_timeslice_ms": stint_ms,  # CPU time per stint of scheduled tasks, last interval
            "decisions": self.core.decisions,
            # where the tasks went (cumulative): decided per event by the policy, in BPF's fast
            # path (idle CPU, kthreads, boosted), congested (ring full: BPF's own vtime order),
            # planned (BPF applying a plan the policy published, without a crossing)
            "paths": {"per_event": counters["nr_user_dispatches"], "fast": counters["nr_kernel_dispatches"],
                      "congested": counters["nr_congested"], "planned": counters.get("nr_planned", 0)},
            "plans": {"in_force": len(self.book), "published": self.book.published, "refused": self.book.refused}
            if self.book is not None else None,
            "loop_us_per_decision": round((now_cpu - cpu_s) * 1e6 / decided, 2) if decided else None,
            "decisions_per_wakeup": round(decided / batches, 2) if batches else None,
            "decide_p50_us": p50,
            "decide_p99_us": p99,
            "dispatch_p50_us": hist_percentile(hist, 0.50),
            "dispatch_p99_us": hist_percentile(hist, 0.99),
            "page_faults": faults,
            "page_faults_after_warmup": None if fault_base is None else faults - fault_base,
            "major_faults": thread_major_faults(),
            "allocator": os.environ.get("PYTHONMALLOC", "pymalloc"),
            "cpu_pct": round(cpu_pct, 2),
            "rss_kb": _rss_kb(),
            "policy_stats": self.core.policy.stats(),
            "knobs": {str(pid): [k.slice_ns, k.cpu, k.weight, k.latcrit] for pid, k in self.knobs.tasks.items()},
            "tasks": self._watched_tasks(),
            "warnings": list(self.warnings),
            "last_command": self.latest.get("last_command"),
            "last_error": self.latest.get("last_error"),
        }
        if self.on_stats is not None:
            self.on_stats(self.latest)


    def _watched_tasks(self) -> dict[str, dict[str, int] | None]:
        """BPF's own view of each watched task (the slice it set at the task's last start,
        that stint's length, its trips to user space); None for a task that is gone."""
        reader = self._ctx_reader
        if reader is None or not self.watched:
            return {}
        return {str(pid): reader.read(pid) for pid in self.watched}


def _rss_kb() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
