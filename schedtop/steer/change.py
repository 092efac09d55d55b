"""One user action on a set of threads: journal first, then the syscalls, then read back.

The TUI keys, `schedtop set` and profiles all come through `change()`, so every change is
undoable the same way.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, replace

from schedtop.steer import autogroup
from schedtop.steer.actions import (
    SteerError,
    TaskGone,
    TaskParams,
    TaskRef,
    Tuning,
    apply_tuning,
    check_tuning,
    read_params,
)
from schedtop.steer.autogroup import GroupEntry
from schedtop.steer.journal import Journal


@dataclass(frozen=True, slots=True)
class GroupResult:
    """A session autogroup's nice: changed (ok), or why not (error, or a note when skipped)."""

    entry: GroupEntry
    ok: bool
    after: int | None = None
    error: str = ""
    errno: int = 0

    def line(self) -> str:
        e = self.entry
        if self.ok:
            return f"{e.label()}: nice {e.nice} -> {self.after} (every task of that session)"
        return f"{e.label()}: {self.error}"


@dataclass(frozen=True, slots=True)
class Result:
    ref: TaskRef
    ok: bool
    before: TaskParams | None = None
    after: TaskParams | None = None
    error: str = ""
    errno: int = 0
    gone: bool = False


@dataclass(frozen=True, slots=True)
class ChangeReport:
    label: str
    results: tuple[Result, ...]
    step_id: int | None
    groups: tuple[GroupResult, ...] = ()
    notes: tuple[str, ...] = ()  # why a requested group nice was not applied (autogroup off, cgroup)

    @property
    def ok(self) -> bool:
        if not self.results:  # a group-nice-only change touches no thread: its groups say
            return bool(self.groups) and all(g.ok for g in self.groups)
        return (all(r.ok or r.gone for r in self.results) and any(r.ok for r in self.results)
                and all(g.ok for g in self.groups))

    @property
    def changed(self) -> int:
        return sum(1 for r in self.results if r.ok)

    def errors(self) -> list[Result | GroupResult]:
        return [r for r in self.results if not r.ok and not r.gone] + [g for g in self.groups if not g.ok]

    def summary(self) -> str:
        n, errs = self.changed, self.errors()
        if self.results or not self.groups:
            text = f"{self.label}: {n} thread{'s' if n != 1 else ''} changed"
        else:
            text = self.label  # the group part below says what changed
        gone = sum(1 for r in self.results if r.gone)
        if gone:
            text += f", {gone} gone"
        for g in self.groups:
            if g.ok:
                text += (f"; session {g.entry.label().split(' ')[0]} nice {g.entry.nice} -> {g.after}: "
                         "applies to every task of that session")
        if errs:
            text += f", {len(errs)} failed: {errs[0].error}"
        for note in self.notes:
            text += f"; no group nice: {note}"
        return text


def change(refs: list[TaskRef], tuning: Tuning, journal: Journal, label: str | None = None) -> ChangeReport:
    check_tuning(tuning)
    label = label or tuning.describe()
    befores: list[tuple[TaskRef, TaskParams]] = []
    results: list[Result] = []
    for ref in refs:
        try:
            befores.append((ref, read_params(ref)))
        except SteerError as exc:
            results.append(Result(ref, False, error=str(exc), errno=exc.errno, gone=isinstance(exc, TaskGone)))
    if not befores:
        return ChangeReport(label, tuple(results), None)
    groups, notes = _groups(befores, tuning)
    if replace(tuning, group=False, group_nice=None).is_empty():
        # Only session groups change (a profile's group_nice alone): the threads just lead to
        # them, so none is journaled; a restore must not later reset what schedtop never set.
        befores = []
        if not groups:
            return ChangeReport(label, tuple(results), None, (), tuple(notes))
    step = journal.record(label, befores, groups)  # durable before the first syscall
    failed: list[TaskRef] = []
    for ref, before in befores:
        try:
            after = apply_tuning(ref, tuning, before)
            results.append(Result(ref, True, before=before, after=after))
        except SteerError as exc:
            if _unchanged(ref, before):  # a half-done change (policy set, pin refused) stays journaled
                failed.append(ref)
            results.append(Result(ref, False, before=before, error=str(exc), errno=exc.errno,
                                  gone=isinstance(exc, TaskGone)))
    g_results: list[GroupResult] = []
    g_failed: list[int] = []
    for g in groups:
        # After the threads: a refused thread nice (EPERM) is refused for the group as well.
        try:
            autogroup.set_nice(g.member.pid, tuning.group_target())
            now = autogroup.read(g.member.pid)
            g_results.append(GroupResult(g, True, after=now.nice if now else None))
        except SteerError as exc:
            now = autogroup.read(g.member.pid)
            if now is None or now.nice == g.nice:
                g_failed.append(g.group)
            g_results.append(GroupResult(g, False, error=str(exc), errno=exc.errno))
    if failed or g_failed:
        journal.forget(step, failed, g_failed)
    return ChangeReport(label, tuple(results), step, tuple(g_results), tuple(notes))


def _groups(befores: list[tuple[TaskRef, TaskParams]], tuning: Tuning) -> tuple[list[GroupEntry], list[str]]:
    """The distinct session groups of the targets, each with one member to reach it by."""
    if tuning.group_target() is None:
        return [], []
    seen: dict[int, GroupEntry] = {}
    notes: list[str] = []
    for ref, _ in befores:
        why = autogroup.why_not(ref.pid)
        if why is not None:
            if why not in notes:
                notes.append(why)
            continue
        g = autogroup.read(ref.pid)
        if g is not None and g.id not in seen:
            seen[g.id] = GroupEntry(g.id, g.nice, ref)
    return list(seen.values()), notes


def _unchanged(ref: TaskRef, before: TaskParams) -> bool:
    try:
        return read_params(ref) == before
    except SteerError:
        return True


def change_base_slice(ns: int, journal: Journal, label: str | None = None, current: int | None = None) -> str:
    """Set the global EEVDF base slice, journaled like every change: the value it had is
    written down first, so undo, quit and `schedtop restore` put it back. ``current``: the
    value the caller has just read (spares a second debugfs read)."""
    from schedtop.steer.actions import read_base_slice, set_base_slice
    from schedtop.steer.units import SLICE_MAX_NS, SLICE_MIN_NS, SLICE_RANGE, format_ns

    if not SLICE_MIN_NS <= ns <= SLICE_MAX_NS:
        raise SteerError(f"base slice {format_ns(ns)} is out of range ({SLICE_RANGE})", errno.ERANGE)
    before = read_base_slice() if current is None else current
    if before == ns:
        return f"base slice is already {format_ns(ns)}"
    sid = journal.record_base_slice(label or f"base slice {format_ns(ns)}", before)
    try:
        msg = set_base_slice(ns)
    except SteerError:
        journal.forget_step(sid)
        raise
    return f"{msg} (was {format_ns(before)})"
