"""The policy interface: one queued task in, one dispatch decision out.

A policy is plain Python: no ctypes, no I/O, no clock of its own. The loop
(schedtop/scx/loop.py) decodes each record the BPF side queued, calls
``decide`` once for it, and sends the ``Decision`` back through the user ring
buffer. The kernel then keeps decided tasks in vtime-ordered DSQs keyed by
``Decision.deadline``, so a policy orders tasks just by the deadline it
returns; it never has to hold tasks itself.

Writing your own (``schedtop scx --policy my.py``)::

    from schedtop.scx.policy import Policy, Decision, CPU_ANY

    class Policy(Policy):          # the loader takes the class named Policy,
        name = "lifo"              # or a module-level POLICY instance
        def decide(self, task, now_ns):
            return Decision(task.pid, CPU_ANY, self.slice_ns, -now_ns & MAX_DEADLINE, task.gen, 0)

A policy may also publish plans (``plan``): per-task parameters the BPF side
applies itself, so a planned task does not cross to user space at every
enqueue. BPF keys a planned task as a vruntime policy keys what it decides
(``vtime + min(exec_runtime, 100 * slice)``, plus the plan's ``lag_ns``) or,
with ``fifo``, by its enqueue time, so planned and decided tasks share one
order. A plan lasts ``plan_ttl_ns``; then the task crosses once (its weight,
its behaviour are seen again) and may be planned again::

    def plan(self, now_ns):
        seen, self.seen = self.seen, {}     # pids decided since the last call
        return {pid: Plan(self.slice_ns) for pid in seen}, ()

Rules the loop relies on:
  - ``decide`` must be fast (the loop's budget is a few µs per task) and must
    return a Decision for the same pid and gen it was given; a policy that
    raises unloads the scheduler cleanly and the error is reported.
  - ``tick`` runs at least every loop wake-up (≤ 100 ms apart) for ageing.
  - ``stats`` returns a small dict of numbers shown beside the counters.
  - ``plan`` (optional) runs every few ms between batches and returns
    (plans to publish, pids to unplan); ``None`` means "decide everything per
    event". Tasks with a knob from the TUI or CLI are always decided per event.
  - Values are plain ints; times are nanoseconds of CLOCK_MONOTONIC.
"""

from __future__ import annotations

from typing import NamedTuple

CPU_ANY = -1  # the decision leaves the CPU to the first one free (shared DSQ)
MAX_DEADLINE = (1 << 64) - 1

# Decision.flags, mirrored in bpf/scx.h (SCHEDTOP_DF_*).
DF_PREEMPT = 1  # latency-critical: put it at the head of its CPU and preempt

# TaskIn.flags carries the kernel's enqueue flags; this one is worth naming.
ENQ_WAKEUP = 1  # SCX_ENQ_WAKEUP: the task just woke up

DEFAULT_SLICE_NS = 5_000_000
MIN_SLICE_NS = 100_000  # shorter slices cost more in switches than they save
MAX_SLICE_NS = 100_000_000
WEIGHT_DEFAULT = 100  # p->scx.weight of a nice-0 task (range 1..10000)


class TaskIn(NamedTuple):
    """One task the kernel handed to user space (scx.h: struct scx_queued)."""

    pid: int  # thread id
    cpu: int  # the CPU it last ran on
    nr_cpus_allowed: int
    weight: int  # 1..10000, 100 for nice 0
    flags: int  # SCX_ENQ_* of this enqueue
    exec_runtime: int  # ns on CPU since it last went to sleep
    run_ns: int  # ns on CPU since its previous enqueue (the stint just ended)
    vtime: int  # vruntime: weighted runtime (x 100/weight), kept by BPF, at most one slice behind its clock
    gen: int  # enqueue generation; a decision with an older gen is cancelled
    enq_ns: int  # when it was queued (bpf_ktime_get_ns)
    comm_raw: bytes | str  # as the kernel sent it (NUL-padded); read .comm

    @property
    def comm(self) -> str:
        """The command name. Decoded on demand: most policies never look at it, and
        building a TaskIn straight from the ring record is 3x cheaper without it."""
        raw = self.comm_raw
        if isinstance(raw, str):
            return raw
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


class Decision(NamedTuple):
    """Where and how long a task runs (scx.h: struct scx_dispatched)."""

    pid: int
    cpu: int  # CPU_ANY or a CPU the task may run on
    slice_ns: int
    deadline: int  # order inside the DSQ: smaller runs first
    gen: int
    flags: int = 0  # DF_*


class Plan(NamedTuple):
    """What BPF applies by itself to a planned task (scx.h: struct scx_plan)."""

    slice_ns: int
    lag_ns: int = 0  # added to the deadline: < 0 runs sooner, > 0 later
    fifo: bool = False  # order by enqueue time instead of by vruntime


Plans = tuple[dict[int, Plan], "tuple[int, ...] | list[int] | set[int]"]


class PolicyError(Exception):
    """A policy that cannot be loaded or broke a rule of the interface."""


def clamp_slice(ns: int) -> int:
    return MIN_SLICE_NS if ns < MIN_SLICE_NS else MAX_SLICE_NS if ns > MAX_SLICE_NS else ns


class Policy:
    """Base class: FIFO order, global slice, any CPU. Subclasses override ``decide``."""

    name = "base"
    description = ""

    def __init__(self, slice_ns: int = DEFAULT_SLICE_NS, nr_cpus: int = 1) -> None:
        self.slice_ns = clamp_slice(int(slice_ns))
        self.nr_cpus = max(1, int(nr_cpus))

    def decide(self, task: TaskIn, now_ns: int) -> Decision:
        return Decision(task.pid, CPU_ANY, self.slice_ns, task.enq_ns, task.gen, 0)

    def tick(self, now_ns: int) -> None:
        """Periodic hook (ageing, pruning); runs between batches, never per task."""

    def stats(self) -> dict[str, float]:
        return {}

    plan_ttl_ns = 1_000_000_000

    def plan(self, now_ns: int) -> Plans | None:
        """Plans to publish and pids to unplan; None: every task is decided per event."""
        return None

    def set_slice(self, slice_ns: int) -> None:
        """The global slice knob: the base every per-task slice derives from."""
        self.slice_ns = clamp_slice(int(slice_ns))

    def adopt(self, other: "Policy") -> None:
        """Called when switching policy live: take over shared settings of the old one."""
        self.slice_ns = other.slice_ns
        self.nr_cpus = other.nr_cpus


class VruntimeClock:
    """The vruntime bookkeeping shared by the vtime policies: charge a task for the CPU
    time it used (scaled by 100/weight), cap a sleeper's credit at one slice behind the
    clock, and advance the clock (the largest vruntime handed out)."""

    clock = 0

    def charge(self, vr: int | None, run_ns: int, weight: int, slice_ns: int) -> int:
        if vr is None:
            vr = self.clock  # a new task starts at the clock: no credit, no debt
        else:
            vr += run_ns * WEIGHT_DEFAULT // weight
        floor = self.clock - slice_ns
        if vr < floor:
            vr = floor
        if vr > self.clock:
            self.clock = vr
        return vr
