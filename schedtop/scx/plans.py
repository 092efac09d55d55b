"""The plans in force: what the loop published into BPF's ``task_plans`` map, and until when.

A policy's ``plan()`` returns plans to publish and pids to unplan (see schedtop/scx/policy.py).
The book writes them (one map update per newly planned task, about once per task per
``plan_ttl_ns``), forgets them when they expire (BPF ignores an expired plan, and its
``exit_task`` deletes a dead task's entry), and unplans everything when the policy changes
or the global slice moves, so no task keeps a plan the policy did not make.
"""

from __future__ import annotations

from collections.abc import Callable

from schedtop.scx.policy import Plans
from schedtop.scx.protocol import PF_FIFO

Put = Callable[[int, int, int, int, int], None]  # pid, slice_ns, lag_ns, expires_ns, flags
Drop = Callable[[int], None]

FORGET_EVERY_NS = 1_000_000_000  # the expiry scan walks every entry: not at every pass


class PlanBook:
    def __init__(self, put: Put, drop: Drop) -> None:
        self._put, self._drop = put, drop
        self.expires: dict[int, int] = {}
        self.published = 0
        self.refused = 0  # map full (E2BIG) or a task gone: those stay per event
        self._next_forget = 0

    def publish(self, plans: Plans | None, now_ns: int, ttl_ns: int) -> None:
        if plans is None:
            if self.expires:
                self.clear()
            return
        updates, drops = plans
        if updates:
            put, expires = self._put, self.expires
            until = now_ns + ttl_ns
            for pid, p in updates.items():
                try:
                    put(pid, p.slice_ns, p.lag_ns, until, PF_FIFO if p.fifo else 0)
                except OSError:
                    self.refused += 1
                    continue
                expires[pid] = until
            self.published += len(updates)
        for pid in drops:
            if self.expires.pop(pid, None) is not None:
                self._unplan(pid)
        if now_ns >= self._next_forget:
            self._next_forget = now_ns + FORGET_EVERY_NS
            for pid in [pid for pid, until in self.expires.items() if until <= now_ns]:
                del self.expires[pid]

    def clear(self) -> None:
        for pid in self.expires:
            self._unplan(pid)
        self.expires.clear()

    def _unplan(self, pid: int) -> None:
        try:
            self._drop(pid)
        except OSError:
            pass  # gone with its task (exit_task deleted it)

    def __len__(self) -> int:
        return len(self.expires)
