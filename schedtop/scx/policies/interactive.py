"""Latency-criticality first, in the spirit of scx_lavd.

A task that wakes often and runs briefly each time is probably in a chain
someone is waiting on (input, audio, a compositor, a pipe partner). For every
task the policy keeps two moving averages:

  wake_hz          how often it wakes up (from the gaps between wake-ups)
  run_per_wake_ns  how long it runs from one wake-up to its next sleep

and scores ``lat_crit = log2(1 + wake_hz) * log2(1 + slice / run_per_wake)``.
Both factors must be high for a high score: a task that wakes often but then
burns its whole slice is a CPU hog, and one that runs briefly but rarely does
not need help. The score pulls the deadline earlier (divides the offset over
the vruntime) and shortens the slice to about twice the run per wake. A task
scoring at least ``PREEMPT_AT`` that just woke goes to the head of its
previous CPU and preempts what runs there.
"""

from __future__ import annotations

from math import log2

from schedtop.scx.policy import (
    CPU_ANY, DF_PREEMPT, ENQ_WAKEUP, MAX_SLICE_NS, MIN_SLICE_NS, WEIGHT_DEFAULT, Decision, Policy, TaskIn,
    VruntimeClock, clamp_slice,
)

FORGET_NS = 10_000_000_000
PRUNE_EVERY_NS = 1_000_000_000
_new = tuple.__new__  # Decision(...) has a Python-level __new__: the tuple directly is half the cost
EWMA_OLD = 0.75  # weight of the history in each moving average
PREEMPT_AT = 12.0  # e.g. 1 kHz wake-ups (≈10) x runs of 1/16 slice (≈4) = 40; a hog scores < 1


class InteractivePolicy(VruntimeClock, Policy):
    name = "interactive"
    description = "latency-critical first: wake frequency x short runs (lavd-like)"

    def __init__(self, slice_ns: int = 5_000_000, nr_cpus: int = 1) -> None:
        super().__init__(slice_ns, nr_cpus)
        self.clock = 0
        # pid -> [vruntime, last seen, last wake, wake_hz, burst_ns, run_per_wake_ns, lat_crit]
        self.tasks: dict[int, list] = {}
        self.preempts = 0
        self.next_prune = 0

    def lat_crit(self, wake_hz: float, run_per_wake_ns: float) -> float:
        return log2(1.0 + wake_hz) * log2(1.0 + self.slice_ns / max(run_per_wake_ns, 1000.0))

    def decide(self, task: TaskIn, now_ns: int) -> Decision:
        # O(1) per event: two moving averages and the score, updated in place; the vruntime
        # charge and the score are inlined (a method call costs about as much as the score).
        slice_ns = self.slice_ns
        pid, weight, run_ns = task.pid, task.weight or WEIGHT_DEFAULT, task.run_ns
        s = self.tasks.get(pid)
        clock = self.clock
        if s is None:
            # New task: no history, so neither favoured nor punished.
            s = self.tasks[pid] = [clock, now_ns, 0, 0.0, 0, float(slice_ns), 0.0]
            vr = clock
        else:
            vr = s[0] + run_ns * WEIGHT_DEFAULT // weight
            if vr < clock - slice_ns:
                vr = clock - slice_ns
            elif vr > clock:
                self.clock = vr
            s[0] = vr
        s[4] += run_ns
        woke = task.flags & ENQ_WAKEUP
        if woke:
            enq_ns = task.enq_ns
            if s[2]:
                gap = enq_ns - s[2]
                if gap > 0:
                    s[3] = EWMA_OLD * s[3] + (1 - EWMA_OLD) * (1e9 / gap)
            s[2] = enq_ns
            s[5] = rpw = EWMA_OLD * s[5] + (1 - EWMA_OLD) * s[4]
            s[4] = 0
            s[6] = lc = log2(1.0 + s[3]) * log2(1.0 + slice_ns / (rpw if rpw > 1000.0 else 1000.0))
        elif s[4] > s[5]:
            # Still running since its last wake-up, longer than it used to: it is turning
            # into a hog, so let the score fall now rather than at a wake-up that may not come.
            s[5] = rpw = EWMA_OLD * s[5] + (1 - EWMA_OLD) * s[4]
            s[6] = lc = log2(1.0 + s[3]) * log2(1.0 + slice_ns / (rpw if rpw > 1000.0 else 1000.0))
        else:
            lc = s[6]
        s[1] = now_ns
        deadline = vr + int(slice_ns / (1.0 + lc))
        if lc >= 1.0:
            slice_ns = max(MIN_SLICE_NS, min(slice_ns, int(2 * s[5])))
        else:
            slice_ns = slice_ns * weight // WEIGHT_DEFAULT
        if slice_ns < MIN_SLICE_NS or slice_ns > MAX_SLICE_NS:
            slice_ns = clamp_slice(slice_ns)
        if woke and lc >= PREEMPT_AT and task.cpu >= 0:
            self.preempts += 1
            return _new(Decision, (pid, task.cpu, slice_ns, deadline, task.gen, DF_PREEMPT))
        return _new(Decision, (pid, CPU_ANY, slice_ns, deadline, task.gen, 0))

    def tick(self, now_ns: int) -> None:
        if now_ns < self.next_prune:
            return
        self.next_prune = now_ns + PRUNE_EVERY_NS  # the scan walks every task: not at every tick
        stale = [pid for pid, s in self.tasks.items() if now_ns - s[1] > FORGET_NS]
        for pid in stale:
            del self.tasks[pid]

    def stats(self) -> dict[str, float]:
        return {"tracked": len(self.tasks), "preempts": self.preempts}

    def adopt(self, other: Policy) -> None:
        super().adopt(other)
        clock = getattr(other, "clock", None)
        if isinstance(clock, int):
            self.clock = clock


POLICY = InteractivePolicy
