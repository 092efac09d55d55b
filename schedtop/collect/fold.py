"""Fold thread rows into process rows: the task table's per-process mode.

One function for the live source and for replays, so a recording made in
thread mode can be shown either way. Idempotent: folding process rows again
gives the same rows (nr_threads is summed, not counted).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from schedtop.model import Task, ViewRequest

# A folded process shows its most active thread's state: running beats blocked beats the rest.
_STATE_RANK = {"R": 0, "D": 1}


def _worst(values: Iterable[float | None]) -> float | None:
    return max((v for v in values if v is not None), default=None)


def rows_for(tasks: tuple[Task, ...], request: ViewRequest | None) -> tuple[Task, ...]:
    """The rows a request asks for: the threads as collected, or folded into processes.
    The sources call this (live and replay alike); the view shows what it is given."""
    return tasks if request is None or request.threads else fold_processes(tasks)


def fold_processes(tasks: Sequence[Task]) -> tuple[Task, ...]:
    """One row per pid: the main thread's identity (policy, nice, affinity, vruntime, ...)
    with the threads' times and rates summed; in first-seen pid order."""
    groups: dict[int, list[Task]] = {}
    for t in tasks:
        groups.setdefault(t.pid, []).append(t)
    out = []
    for pid, members in groups.items():
        main = next((m for m in members if m.tid == pid), members[0])
        if len(members) == 1 and main.tid == pid:
            out.append(main)
            continue
        state = min((m.state for m in members), key=lambda s: _STATE_RANK.get(s, 9))
        if _STATE_RANK.get(state, 9) >= _STATE_RANK.get(main.state, 9):
            state = main.state
        out.append(replace(
            main,
            tid=pid,
            state=state,
            cpu_pct=sum(m.cpu_pct for m in members),
            runtime_ns=sum(m.runtime_ns for m in members),
            wait_ns=sum(m.wait_ns for m in members),
            timeslices=sum(m.timeslices for m in members),
            wait_ns_per_s=sum(m.wait_ns_per_s for m in members),
            vol_cs_per_s=sum(m.vol_cs_per_s for m in members),
            invol_cs_per_s=sum(m.invol_cs_per_s for m in members),
            nr_threads=sum(m.nr_threads for m in members),
            # Latency (BPF tier): the worst thread speaks for the process.
            lat_p50_us=_worst(m.lat_p50_us for m in members),
            lat_p99_us=_worst(m.lat_p99_us for m in members),
            lat_max_us=_worst(m.lat_max_us for m in members),
        ))
    return tuple(out)
