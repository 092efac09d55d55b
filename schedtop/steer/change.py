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
    can_set_nice,
    cannot_undo,
    check_tuning,
    has_cap_sys_nice,
    read_params,
    special_task,
    target_params,
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
    unchanged: bool = False  # it already was as asked: nothing changed, nothing journaled
    needs_force: bool = False  # refused until confirmed: pid 1, a kernel thread, or not undoable


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
        return sum(1 for r in self.results if r.ok and not r.unchanged)

    @property
    def unchanged(self) -> int:
        return sum(1 for r in self.results if r.unchanged)

    def errors(self) -> list[Result | GroupResult]:
        return [r for r in self.results if not r.ok and not r.gone] + [g for g in self.groups if not g.ok]

    def summary(self) -> str:
        n, errs = self.changed, self.errors()
        if n or not self.groups or errs:
            text = f"{self.label}: {n} thread{'s' if n != 1 else ''} changed"
            if self.unchanged:
                text += f", {self.unchanged} already so"
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


def refusal(ref: TaskRef, have: TaskParams, want: TaskParams) -> str | None:
    """Why this change waits for a confirmation (--force, or a yes in the TUI): a task that is
    pid 1 or a kernel thread, or a change this user could not undo. None: go ahead."""
    return special_task(ref) or cannot_undo(ref, have, want)


def check(refs: list[TaskRef], tuning: Tuning) -> str | None:
    """For a caller that asks first (the TUI): the reason the first target would be refused
    without force, or None when change() would go ahead."""
    check_tuning(tuning)
    for ref in refs:
        try:
            have = read_params(ref)
        except SteerError:
            continue
        want = target_params(have, tuning)
        if want != have:
            why = refusal(ref, have, want)
            if why:
                return why
    g_target = tuning.group_target()
    if g_target is not None and not has_cap_sys_nice():
        for ref in refs:
            g = autogroup.read(ref.pid)
            if g is not None and g_target > g.nice and g.nice < 0 and not can_set_nice(ref.tid, g.nice):
                return (f"session nice {g.nice} -> {g_target} of pid {ref.pid}'s session cannot be undone by you: "
                        "going back below 0 needs root or CAP_SYS_NICE")
    return None


def change(refs: list[TaskRef], tuning: Tuning, journal: Journal, label: str | None = None,
           force: bool = False) -> ChangeReport:
    """Journal, apply, read back; all under the state dir's lock, so sessions sharing a task
    see each other's changes in the order the kernel got them. A thread already as asked is
    not journaled (unchanged=True); pid 1, kernel threads and changes this user could not undo
    are refused (needs_force=True) unless ``force``."""
    check_tuning(tuning)
    label = label or tuning.describe()
    with journal.transaction():
        return _change(refs, tuning, journal, label, force)


def _change(refs: list[TaskRef], tuning: Tuning, journal: Journal, label: str, force: bool) -> ChangeReport:
    befores: list[tuple[TaskRef, TaskParams]] = []
    wants: list[TaskParams] = []
    results: list[Result] = []
    group_only: list[tuple[TaskRef, TaskParams]] = []
    thread_knobs = not replace(tuning, group=False, group_nice=None).is_empty()
    for ref in refs:
        try:
            have = read_params(ref)
        except SteerError as exc:
            results.append(Result(ref, False, error=str(exc), errno=exc.errno, gone=isinstance(exc, TaskGone)))
            continue
        want = target_params(have, tuning)
        if want == have:
            if not thread_knobs:  # only session groups change: the threads just lead to them
                group_only.append((ref, have))
            else:
                results.append(Result(ref, True, before=have, after=have, unchanged=True))
            continue
        why = None if force else refusal(ref, have, want)
        if why:
            results.append(Result(ref, False, before=have, error=f"not changed: {why}", errno=errno.EPERM,
                                  needs_force=True))
            continue
        befores.append((ref, have))
        wants.append(want)
    group_refs = befores or group_only or [(r.ref, r.before) for r in results if r.unchanged]
    groups, notes = _groups(group_refs, tuning)
    if not befores and not groups:
        return ChangeReport(label, tuple(results), None, (), tuple(notes))
    step = journal.record(label, befores, groups, wants=wants, group_want=tuning.group_target())
    failed: list[TaskRef] = []
    for (ref, before), want in zip(befores, wants):
        try:
            after = apply_tuning(ref, tuning, before)
            results.append(Result(ref, True, before=before, after=after))
            journal.settle(step, ref, after)
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
        if g is not None and g.id not in seen and g.nice != tuning.group_target():  # already so: a no-op
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
    with journal.transaction():
        before = read_base_slice() if current is None else current
        if before == ns:
            return f"base slice is already {format_ns(ns)}"
        sid = journal.record_base_slice(label or f"base slice {format_ns(ns)}", before, ns)
        try:
            msg = set_base_slice(ns)
        except SteerError:
            journal.forget_step(sid)
            raise
    return f"{msg} (was {format_ns(before)})"
