"""SCHED_EXT as a steering action: into the loaded sched_ext scheduler, and back.

Moving a thread into SCHED_EXT is an ordinary journaled policy change (Tuning(policy=7)), so
undo, `schedtop restore` and the TUI's exit put back what the thread had before: its policy,
RT priority, nice and slice. Moving it out on purpose (the TUI's E on an EXT task) goes back
to the policy the journal saw before the move in, not to a fixed SCHED_OTHER.

In partial mode (SCX_OPS_SWITCH_PARTIAL) the BPF scheduler runs only SCHED_EXT threads; in
full mode it runs every thread whatever its policy. With no BPF scheduler loaded a SCHED_EXT
thread runs under EEVDF (the kernel keeps its policy), so a crash of the scheduler strands
nothing.
"""

from __future__ import annotations

from schedtop.collect.sched_ext import read_scheduler_info
from schedtop.steer.actions import SCHED_EXT_SYSFS, TaskRef, Tuning
from schedtop.steer.journal import Journal
from schedtop.steer.units import RT_POLICIES, SCHED_EXT, SCHED_OTHER

INTO = Tuning(policy=SCHED_EXT)
INTO_LABEL = "into SCHED_EXT"
OUT_LABEL = "out of SCHED_EXT"


def policy_before(ref: TaskRef, journals: list[Journal]) -> tuple[int, int] | None:
    """(policy, RT priority) the thread had before its newest journaled move into SCHED_EXT.

    The newest step whose saved state is not EXT is the one that moved it in (later steps,
    such as a nice change while in EXT, saved EXT as their 'before')."""
    key = (ref.tid, ref.starttime)
    for j in journals:
        for step in reversed(j.steps):
            for e in step.entries:
                if (e.ref.tid, e.ref.starttime) == key and e.before.policy != SCHED_EXT:
                    return e.before.policy, e.before.rt_priority
    return None


def out_tuning(ref: TaskRef, journals: list[Journal]) -> Tuning:
    """The change that takes a thread out of SCHED_EXT: back to its journaled policy (BATCH,
    IDLE, FIFO 50, ...), or SCHED_OTHER when no journal saw it go in."""
    found = policy_before(ref, journals)
    if found is None:
        return Tuning(policy=SCHED_OTHER)
    policy, prio = found
    return Tuning(policy=policy, rt_priority=prio if policy in RT_POLICIES else None)


def note_after_move(root: str = SCHED_EXT_SYSFS) -> str | None:
    """What a user who just moved threads into SCHED_EXT should know, or None."""
    info = read_scheduler_info(root)  # the collector's reader of the same sysfs
    if info.ext_state != "enabled":
        return ("note: no sched_ext scheduler is loaded: SCHED_EXT threads run under EEVDF until one is "
                "(`schedtop scx --partial` runs only them)")
    if info.switch_all:
        return f"note: {info.ops_name or 'the BPF scheduler'} runs in full mode: it runs every thread, SCHED_EXT or not"
    return None
