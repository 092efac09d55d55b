"""First in, first out: tasks run in the order the kernel queued them, each for one global slice.

The simplest useful policy and a baseline for the others: no per-task state,
so it cannot be unfair in any way that depends on history, only on arrival.
"""

from __future__ import annotations

from schedtop.scx.policy import CPU_ANY, Decision, Plan, Plans, Policy, TaskIn


class FifoPolicy(Policy):
    name = "fifo"
    description = "first in, first out, one global slice"

    def __init__(self, slice_ns: int = 5_000_000, nr_cpus: int = 1) -> None:
        super().__init__(slice_ns, nr_cpus)
        self.seen: set[int] = set()

    def decide(self, task: TaskIn, now_ns: int) -> Decision:
        # enq_ns is the kernel's enqueue time: an order every CPU agrees on.
        self.seen.add(task.pid)
        return Decision(task.pid, CPU_ANY, self.slice_ns, task.enq_ns, task.gen, 0)

    def plan(self, now_ns: int) -> Plans | None:
        # The same order in BPF: by enqueue time, one global slice.
        seen, self.seen = self.seen, set()
        plan = Plan(self.slice_ns, 0, True)
        return dict.fromkeys(seen, plan), ()


POLICY = FifoPolicy
