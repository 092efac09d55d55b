"""The loop's book of published plans: what it writes, drops and forgets (no kernel)."""

from __future__ import annotations

import errno

from schedtop.scx.plans import FORGET_EVERY_NS, PlanBook
from schedtop.scx.policy import Plan
from schedtop.scx.protocol import PF_FIFO

TTL = 1_000_000_000


class MapLog:
    """Records the writes PlanBook makes; refuses some pids as a full map would."""

    def __init__(self, full_for: set[int] | None = None) -> None:
        self.map: dict[int, tuple[int, int, int, int]] = {}
        self.full_for = full_for or set()

    def put(self, pid: int, slice_ns: int, lag_ns: int, expires_ns: int, flags: int) -> None:
        if pid in self.full_for:
            raise OSError(errno.E2BIG, "map full")
        self.map[pid] = (slice_ns, lag_ns, expires_ns, flags)

    def drop(self, pid: int) -> None:
        if self.map.pop(pid, None) is None:
            raise OSError(errno.ENOENT, "gone")


def test_plans_are_written_with_their_expiry_and_flags():
    m = MapLog()
    book = PlanBook(m.put, m.drop)
    book.publish(({1: Plan(2_000_000), 2: Plan(5_000_000, -300, True)}, ()), 10, TTL)
    assert m.map == {1: (2_000_000, 0, 10 + TTL, 0), 2: (5_000_000, -300, 10 + TTL, PF_FIFO)}
    assert len(book) == 2 and book.published == 2


def test_unplanned_pids_are_dropped_and_none_drops_all():
    m = MapLog()
    book = PlanBook(m.put, m.drop)
    book.publish(({1: Plan(1), 2: Plan(1), 3: Plan(1)}, ()), 0, TTL)
    book.publish(({}, [2, 99]), 1, TTL)  # 99 was never planned: nothing to drop
    assert set(m.map) == {1, 3}
    book.publish(None, 2, TTL)  # a policy that plans nothing (after a switch)
    assert m.map == {} and len(book) == 0


def test_a_full_map_leaves_the_task_per_event_and_is_counted():
    m = MapLog(full_for={5})
    book = PlanBook(m.put, m.drop)
    book.publish(({5: Plan(1), 6: Plan(1)}, ()), 0, TTL)
    assert set(m.map) == {6} and book.refused == 1 and set(book.expires) == {6}


def test_expired_plans_are_forgotten_without_a_write_and_clear_tolerates_gone_tasks():
    m = MapLog()
    book = PlanBook(m.put, m.drop)
    book.publish(({1: Plan(1)}, ()), 0, TTL)
    book.publish(({2: Plan(1)}, ()), TTL + FORGET_EVERY_NS, TTL)
    assert set(book.expires) == {2}  # BPF ignores 1's expired entry; exit_task deletes it
    del m.map[2]  # its task exited: BPF's exit_task deleted the entry
    book.clear()
    assert len(book) == 0
