"""The default policy: virtual runtime plus a deadline, in the manner of scx_rustland.

Each task has a virtual runtime that grows by the CPU time it used, scaled by
100/weight, so a heavier (lower nice) task ages more slowly. A task that slept
may not come back with more than one slice of credit: its vruntime is clamped
to at least ``clock - slice``, where ``clock`` is the largest vruntime a task
started running with. The BPF side keeps that vruntime (``TaskIn.vtime``), so
that a planned task, which BPF queues by itself, is keyed in the same order.
The deadline adds the CPU time the task used since it last slept (capped at
100 slices), so a task that wakes often and runs briefly sorts before a CPU hog
with the same vruntime. The slice scales with weight.

Every task it decides is planned with that slice: BPF then applies the same
deadline itself until the plan expires (``plan_ttl_ns``), and the task crosses
to user space about once a second instead of at every wake-up.
``schedtop scx --per-event`` decides every event here instead.
"""

from __future__ import annotations

from schedtop.scx.policy import CPU_ANY, WEIGHT_DEFAULT, Decision, Plan, Plans, Policy, TaskIn, clamp_slice

# Decision(...) runs a Python-level __new__; building the tuple directly is half the cost
# (0.23 -> 0.13 µs). A user's policy need not bother: this is the hot path of the default.
_new = tuple.__new__


class DeadlinePolicy(Policy):
    name = "deadline"
    description = "vruntime + deadline, weight-scaled slice (rustland-style)"

    def __init__(self, slice_ns: int = 5_000_000, nr_cpus: int = 1) -> None:
        super().__init__(slice_ns, nr_cpus)
        self.seen: dict[int, int] = {}  # pid -> slice, decided since the last plan()
        self.planned = 0

    def decide(self, task: TaskIn, now_ns: int) -> Decision:
        slice_ns = self.slice_ns
        cap = 100 * slice_ns
        run = task.exec_runtime if task.exec_runtime < cap else cap
        deadline = task.vtime + run
        weight = task.weight or WEIGHT_DEFAULT
        if weight != WEIGHT_DEFAULT:
            slice_ns = clamp_slice(slice_ns * weight // WEIGHT_DEFAULT)
        self.seen[task.pid] = slice_ns
        return _new(Decision, (task.pid, CPU_ANY, slice_ns, deadline, task.gen, 0))

    def plan(self, now_ns: int) -> Plans | None:
        seen, self.seen = self.seen, {}
        self.planned += len(seen)
        return {pid: Plan(s) for pid, s in seen.items()}, ()

    def stats(self) -> dict[str, float]:
        return {"plans_published": self.planned}


POLICY = DeadlinePolicy
