"""Live knobs: per-task overrides the loop applies around the policy.

The policy decides; the knobs then override what the user asked to pin down:
  - slice:  a per-task slice (the global slice is the policy's own knob),
  - pin:    dispatch only to one CPU's DSQ (BPF bounces it if the affinity forbids),
  - boost:  a heavier weight and the latency-critical flag (head of its CPU, preempt),
  - demote: a light weight, never latency-critical.
Pure Python, no I/O: the loop mirrors the table into the BPF ``task_knobs``
map so the BPF fast paths honour pins and boosts too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from schedtop.scx.policy import DF_PREEMPT, Decision, TaskIn, clamp_slice

BOOST_WEIGHT = 1000  # p->scx.weight of about nice -10
DEMOTE_WEIGHT = 10  # about nice +10


@dataclass(frozen=True, slots=True)
class TaskKnob:
    slice_ns: int | None = None
    cpu: int | None = None  # pinned CPU
    weight: int | None = None
    latcrit: bool = False

    @property
    def empty(self) -> bool:
        return self == TaskKnob()


class KnobError(ValueError):
    """A knob request that makes no sense (bad pid, CPU, slice)."""


class Knobs:
    def __init__(self, nr_cpus: int = 1) -> None:
        self.nr_cpus = nr_cpus
        self.tasks: dict[int, TaskKnob] = {}

    def get(self, pid: int) -> TaskKnob | None:
        return self.tasks.get(pid)

    def set(self, pid: int, **changes: object) -> TaskKnob:
        if pid <= 0:
            raise KnobError(f"bad pid {pid}")
        cpu = changes.get("cpu")
        if cpu is not None and not 0 <= int(cpu) < self.nr_cpus:  # type: ignore[arg-type]
            raise KnobError(f"no CPU {cpu} (this machine has {self.nr_cpus})")
        slice_ns = changes.get("slice_ns")
        if slice_ns is not None:
            changes["slice_ns"] = clamp_slice(int(slice_ns))  # type: ignore[arg-type]
        knob = replace(self.tasks.get(pid, TaskKnob()), **changes)  # type: ignore[arg-type]
        if knob.empty:
            self.tasks.pop(pid, None)
        else:
            self.tasks[pid] = knob
        return knob

    def boost(self, pid: int) -> TaskKnob:
        return self.set(pid, weight=BOOST_WEIGHT, latcrit=True)

    def demote(self, pid: int) -> TaskKnob:
        return self.set(pid, weight=DEMOTE_WEIGHT, latcrit=False)

    def clear(self, pid: int) -> None:
        self.tasks.pop(pid, None)

    def task_in(self, task: TaskIn) -> TaskIn:
        """The task as the policy should see it (weight override)."""
        knob = self.tasks.get(task.pid)
        if knob is None or knob.weight is None:
            return task
        return task._replace(weight=knob.weight)

    def decision_out(self, decision: Decision) -> Decision:
        """The decision with the user's overrides on top."""
        knob = self.tasks.get(decision.pid)
        if knob is None:
            return decision
        if knob.slice_ns is not None:
            decision = decision._replace(slice_ns=knob.slice_ns)
        if knob.cpu is not None:
            decision = decision._replace(cpu=knob.cpu)
        if knob.latcrit:
            decision = decision._replace(flags=decision.flags | DF_PREEMPT, deadline=0)
        elif knob.weight is not None and knob.weight < 100:
            decision = decision._replace(flags=decision.flags & ~DF_PREEMPT)
        return decision
