"""First in, first out: tasks run in the order the kernel queued them, each for one global slice.

The simplest useful policy and a baseline for the others: no per-task state,
so it cannot be unfair in any way that depends on history, only on arrival.
"""

from __future__ import annotations

from schedtop.scx.policy import CPU_ANY, Decision, Policy, TaskIn


class FifoPolicy(Policy):
    name = "fifo"
    description = "first in, first out, one global slice"

    def decide(self, task: TaskIn, now_ns: int) -> Decision:
        # enq_ns is the kernel's enqueue time: an order every CPU agrees on.
        return Decision(task.pid, CPU_ANY, self.slice_ns, task.enq_ns, task.gen, 0)


POLICY = FifoPolicy
