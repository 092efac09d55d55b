"""One user action on a set of threads: journal first, then the syscalls, then read back.

The TUI keys, `schedtop set` and profiles all come through `change()`, so every change is
undoable the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

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
from schedtop.steer.journal import Journal


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

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.ok or r.gone for r in self.results) and any(r.ok for r in self.results)

    @property
    def changed(self) -> int:
        return sum(1 for r in self.results if r.ok)

    def errors(self) -> list[Result]:
        return [r for r in self.results if not r.ok and not r.gone]

    def summary(self) -> str:
        n, errs = self.changed, self.errors()
        text = f"{self.label}: {n} thread{'s' if n != 1 else ''} changed"
        gone = sum(1 for r in self.results if r.gone)
        if gone:
            text += f", {gone} gone"
        if errs:
            text += f", {len(errs)} failed: {errs[0].error}"
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
    step = journal.record(label, befores)  # durable before the first syscall
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
    if failed:
        journal.forget(step, failed)
    return ChangeReport(label, tuple(results), step)


def _unchanged(ref: TaskRef, before: TaskParams) -> bool:
    try:
        return read_params(ref) == before
    except SteerError:
        return True
