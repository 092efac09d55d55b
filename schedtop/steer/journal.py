"""The undo journal: every change is written down (atomically) before it is made.

One JSON file per writer in a state directory owned by the user and mode 0700:
  /var/lib/schedtop (root) or $XDG_STATE_HOME/schedtop (others); $SCHEDTOP_STATE_DIR overrides.
  session-<pid>-<starttime>.json  a TUI or `profile apply --watch` run; restored when it exits.
                                  If its owner is dead (crash, kill -9), it is an orphan that the
                                  next start offers to restore and `schedtop restore` restores.
  cli.json                        `schedtop set` changes; they persist until `schedtop restore`.

A journal is a list of steps (one user action each). Each step holds, per thread, the
parameters it had just before that step, and the thread's start time: a pid that was reused
by another task is never touched. Undo pops the last step; restore puts every thread back to
its state before its first step.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from schedtop.steer import autogroup
from schedtop.steer.actions import SteerError, TaskParams, TaskRef, set_base_slice, set_params, starttime_of
from schedtop.steer.units import format_ns
from schedtop.steer.autogroup import GroupEntry

JOURNAL_VERSION = 1


class JournalError(Exception):
    """The state directory or a journal file is unusable; the message names the file."""


def state_dir(create: bool = True) -> Path:
    env = os.environ.get("SCHEDTOP_STATE_DIR")
    if env:
        path = Path(env)
    elif os.geteuid() == 0:
        path = Path("/var/lib/schedtop")
    else:
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        path = Path(base) / "schedtop"
    if create:
        ensure_dir(path)
    return path


def ensure_dir(path: Path) -> Path:
    """Create the state dir 0700 and refuse one owned by someone else."""
    try:
        path.mkdir(parents=True, mode=0o700, exist_ok=True)
        st = path.stat()
    except OSError as exc:
        raise JournalError(f"cannot create state dir {path}: {exc.strerror}") from None
    if st.st_uid != os.geteuid():
        raise JournalError(f"state dir {path} is owned by uid {st.st_uid}, not {os.geteuid()}: refusing")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)  # someone loosened it; the journal says what we may touch
    return path


@dataclass(frozen=True, slots=True)
class Entry:
    ref: TaskRef
    before: TaskParams


@dataclass(frozen=True, slots=True)
class Step:
    id: int
    ts: float
    label: str
    entries: tuple[Entry, ...]
    groups: tuple[GroupEntry, ...] = ()  # session autogroups whose nice this step changed
    base_slice: int | None = None  # the global EEVDF base slice (ns) before this step, if it changed it


@dataclass(frozen=True, slots=True)
class Outcome:
    ref: TaskRef
    status: str  # restored, gone, reused, failed
    message: str = ""
    group: GroupEntry | None = None  # set when this is a session group's nice, not a thread
    base_slice: int | None = None  # set when this is the global base slice (the value put back)

    def line(self) -> str:
        text = {"restored": "restored", "gone": "gone (exited)", "reused": "pid reused by another task: left alone",
                "failed": "FAILED"}[self.status]
        if self.base_slice is not None:
            who = f"global base slice {format_ns(self.base_slice)}"
        elif self.group is not None:
            who = f"{self.group.label()} nice {self.group.nice}"
            text = "gone (no member left)" if self.status == "gone" else text
        else:
            who = self.ref.label()
        return f"{who}: {text}" + (f": {self.message}" if self.message else "")


@dataclass(frozen=True, slots=True)
class ActiveChange:
    """One thread that differs from its original state, for the changes pane."""

    ref: TaskRef
    before: TaskParams
    labels: tuple[str, ...]
    last_step: int


def _ref_json(r: TaskRef) -> dict:
    return {"pid": r.pid, "tid": r.tid, "starttime": r.starttime, "comm": r.comm}


def _ref_from(d: dict) -> TaskRef:
    return TaskRef(pid=int(d["pid"]), tid=int(d["tid"]), starttime=int(d["starttime"]), comm=str(d.get("comm", "")))


def _self_ref() -> tuple[int, int]:
    pid = os.getpid()
    return pid, starttime_of(pid, pid) or 0


class Journal:
    """A journal file. Every mutation takes the lock, re-reads the file, changes it and writes
    it back atomically (temp file, fsync, rename, fsync of the directory)."""

    def __init__(self, path: Path, owner: tuple[int, int] | None) -> None:
        self._tlock = threading.RLock()  # the TUI's profile worker and its keys share a journal
        self.path = path
        self.owner = owner
        self.steps: list[Step] = []
        if path.exists():
            self._load()

    # --- opening -------------------------------------------------------------------------

    @classmethod
    def session(cls, directory: Path | None = None) -> "Journal":
        d = ensure_dir(directory) if directory else state_dir()
        pid, st = _self_ref()
        return cls(d / f"session-{pid}-{st}.json", (pid, st))

    @classmethod
    def shared(cls, directory: Path | None = None) -> "Journal":
        return cls((ensure_dir(directory) if directory else state_dir()) / "cli.json", None)

    @staticmethod
    def sessions(directory: Path | None = None) -> list[tuple[Path, int, int, bool]]:
        """Every session journal: (path, owner pid, owner start time, owner alive)."""
        d = ensure_dir(directory) if directory else state_dir()
        out = []
        for p in sorted(d.glob("session-*.json")):
            try:
                _, pid, st = p.stem.split("-")
                pid, st = int(pid), int(st)
            except ValueError:
                continue
            out.append((p, pid, st, _alive(pid, st)))
        return out

    @staticmethod
    def orphans(directory: Path | None = None) -> list["Journal"]:
        """Session journals whose owner process is gone (crash, kill -9). A live session
        restores its own changes."""
        return [Journal(p, (pid, st)) for p, pid, st, alive in Journal.sessions(directory) if not alive]

    # --- file I/O ------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
            if data.get("version") != JOURNAL_VERSION:
                raise ValueError(f"unknown journal version {data.get('version')!r}")
            self.steps = [
                Step(id=int(s["id"]), ts=float(s["ts"]), label=str(s["label"]),
                     entries=tuple(Entry(_ref_from(e["task"]), TaskParams.from_json(e["before"]))
                                   for e in s["entries"]),
                     groups=tuple(GroupEntry.from_json(g) for g in s.get("groups", ())),
                     base_slice=None if s.get("base_slice") is None else int(s["base_slice"]))
                for s in data["steps"]
            ]
        except FileNotFoundError:
            self.steps = []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise JournalError(f"{self.path}: unreadable journal: {exc}") from None

    def _save(self) -> None:
        data = {
            "version": JOURNAL_VERSION,
            "owner": None if self.owner is None else {"pid": self.owner[0], "starttime": self.owner[1]},
            "steps": [
                {"id": s.id, "ts": s.ts, "label": s.label,
                 "entries": [{"task": _ref_json(e.ref), "before": e.before.to_json()} for e in s.entries],
                 **({"groups": [g.to_json() for g in s.groups]} if s.groups else {}),
                 **({"base_slice": s.base_slice} if s.base_slice is not None else {})}
                for s in self.steps
            ],
        }
        d = self.path.parent
        fd, tmp = tempfile.mkstemp(prefix=".journal-", dir=d)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)  # the rename itself must survive a crash
        finally:
            os.close(dfd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._tlock.acquire()
        lock = os.open(self.path.parent / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._load()
            before = list(self.steps)
            yield
            if self.steps == before:
                pass  # nothing changed: no write, no fsync
            elif self.steps:
                self._save()
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
        finally:
            os.close(lock)
            self._tlock.release()

    # --- changes -------------------------------------------------------------------------

    def record(self, label: str, entries: list[tuple[TaskRef, TaskParams]],
               groups: list[GroupEntry] | None = None) -> int:
        """Write the originals down (durably) before the caller changes anything."""
        with self._locked():
            sid = max((s.id for s in self.steps), default=0) + 1
            self.steps.append(Step(sid, time.time(), label, tuple(Entry(r, b) for r, b in entries),
                                   tuple(groups or ())))
        return sid

    def record_base_slice(self, label: str, before_ns: int) -> int:
        """Write the global base slice's current value down before the caller changes it."""
        with self._locked():
            sid = max((s.id for s in self.steps), default=0) + 1
            self.steps.append(Step(sid, time.time(), label, (), (), before_ns))
        return sid

    def forget_step(self, step_id: int) -> None:
        """Drop a whole step whose change did not happen."""
        with self._locked():
            self.steps = [s for s in self.steps if s.id != step_id]

    def forget(self, step_id: int, refs: list[TaskRef], groups: list[int] = ()) -> None:
        """Drop threads (and group ids) from a step whose change did not happen (it failed)."""
        drop = {(r.tid, r.starttime) for r in refs}
        with self._locked():
            self._filter(lambda s, e: not (s.id == step_id and (e.ref.tid, e.ref.starttime) in drop),
                         lambda s, g: not (s.id == step_id and g.group in groups))

    def _filter(self, keep, keep_group=lambda s, g: True, keep_base=True) -> None:
        steps = []
        for s in self.steps:
            entries = tuple(e for e in s.entries if keep(s, e))
            groups = tuple(g for g in s.groups if keep_group(s, g))
            base = s.base_slice if keep_base else None
            if entries or groups or base is not None:
                steps.append(Step(s.id, s.ts, s.label, entries, groups, base))
        self.steps = steps

    def prune(self) -> int:
        """Drop threads that exited or whose pid now names another task, and session groups
        with no member left. Returns how many."""
        n = 0
        with self._locked():
            before = sum(len(s.entries) + len(s.groups) for s in self.steps)
            self._filter(lambda s, e: starttime_of(e.ref.pid, e.ref.tid) == e.ref.starttime,
                         lambda s, g: autogroup.reach(g) is not None)
            n = before - sum(len(s.entries) + len(s.groups) for s in self.steps)
        return n

    def active_groups(self) -> list[tuple[GroupEntry, tuple[str, ...]]]:
        """Per session group: its original nice (first step) and the labels that changed it."""
        by_id: dict[int, tuple[GroupEntry, tuple[str, ...]]] = {}
        for s in self.steps:
            for g in s.groups:
                first, labels = by_id.get(g.group, (g, ()))
                by_id[g.group] = (first, labels + (s.label,))
        return list(by_id.values())

    def active_base_slice(self) -> tuple[int, tuple[str, ...]] | None:
        """The global base slice's original value (first step) and the labels that changed it."""
        steps = [s for s in self.steps if s.base_slice is not None]
        return (steps[0].base_slice, tuple(s.label for s in steps)) if steps else None

    def undo_base_slice(self) -> Outcome | None:
        """Put the global base slice back to its original value (the changes pane's row undo)."""
        with self._locked():
            got = self.active_base_slice()
            if got is None:
                return None
            out = _restore_base(got[0])
            if out.status != "failed":
                self._filter(lambda s, e: True, keep_base=False)
        return out

    def active(self) -> list[ActiveChange]:
        """Per thread: its original parameters and the labels of the steps that changed it."""
        by_task: dict[tuple[int, int], ActiveChange] = {}
        for s in self.steps:
            for e in s.entries:
                k = (e.ref.tid, e.ref.starttime)
                if k in by_task:
                    a = by_task[k]
                    by_task[k] = ActiveChange(a.ref, a.before, a.labels + (s.label,), s.id)
                else:
                    by_task[k] = ActiveChange(e.ref, e.before, (s.label,), s.id)
        return list(by_task.values())

    def undo_last(self) -> tuple[str, list[Outcome]] | None:
        """Revert the newest step. None when there is nothing to undo."""
        with self._locked():
            if not self.steps:
                return None
            step = self.steps[-1]
            outcomes = [_restore_one(e) for e in step.entries]
            failed = {(o.ref.tid, o.ref.starttime) for o in outcomes if o.status == "failed"}
            g_out = [_restore_group(g) for g in step.groups]
            g_failed = {o.group.group for o in g_out if o.status == "failed"}
            b_out = [] if step.base_slice is None else [_restore_base(step.base_slice)]
            b_failed = step.base_slice if any(o.status == "failed" for o in b_out) else None
            self.steps.pop()
            if failed or g_failed or b_failed is not None:  # keep what could not be undone
                self.steps.append(Step(step.id, step.ts, step.label,
                                       tuple(e for e in step.entries if (e.ref.tid, e.ref.starttime) in failed),
                                       tuple(g for g in step.groups if g.group in g_failed), b_failed))
        return step.label, outcomes + g_out + b_out

    def undo_group(self, group: int) -> Outcome | None:
        """Put one session group's nice back (the changes pane's per-row undo)."""
        with self._locked():
            first = next((g for s in self.steps for g in s.groups if g.group == group), None)
            if first is None:
                return None
            out = _restore_group(first)
            if out.status != "failed":
                self._filter(lambda s, e: True, lambda s, g: g.group != group)
        return out

    def undo_task(self, ref: TaskRef) -> Outcome | None:
        """Put one thread back to its original state (the changes pane's per-row undo)."""
        key = (ref.tid, ref.starttime)
        with self._locked():
            first = next((e for s in self.steps for e in s.entries if (e.ref.tid, e.ref.starttime) == key), None)
            if first is None:
                return None
            out = _restore_one(first)
            if out.status != "failed":
                self._filter(lambda s, e: (e.ref.tid, e.ref.starttime) != key)
        return out

    def restore_all(self) -> list[Outcome]:
        """Every thread back to its state before its first change. Failed ones stay journaled."""
        with self._locked():
            firsts: dict[tuple[int, int], Entry] = {}
            for s in self.steps:
                for e in s.entries:
                    firsts.setdefault((e.ref.tid, e.ref.starttime), e)
            outcomes = [_restore_one(e) for e in firsts.values()]
            failed = {(o.ref.tid, o.ref.starttime) for o in outcomes if o.status == "failed"}
            gfirst: dict[int, GroupEntry] = {}
            for s in self.steps:
                for g in s.groups:
                    gfirst.setdefault(g.group, g)
            g_out = [_restore_group(g) for g in gfirst.values()]
            g_failed = {o.group.group for o in g_out if o.status == "failed"}
            base = self.active_base_slice()
            b_out = [] if base is None else [_restore_base(base[0])]
            self._filter(lambda s, e: (e.ref.tid, e.ref.starttime) in failed,
                         lambda s, g: g.group in g_failed,
                         keep_base=any(o.status == "failed" for o in b_out))
        return outcomes + g_out + b_out

    def __len__(self) -> int:
        return (len({(e.ref.tid, e.ref.starttime) for s in self.steps for e in s.entries})
                + len({g.group for s in self.steps for g in s.groups})
                + (1 if any(s.base_slice is not None for s in self.steps) else 0))


def _alive(pid: int, starttime: int) -> bool:
    """The same process, and not a zombie: a just-killed owner lingers as Z until reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
        fields = data[data.rindex(")") + 2:].split()
        return int(fields[19]) == starttime and fields[0] not in ("Z", "X")
    except (OSError, ValueError, IndexError):
        return False


def _restore_one(e: Entry) -> Outcome:
    st = starttime_of(e.ref.pid, e.ref.tid)
    if st is None:
        return Outcome(e.ref, "gone")
    if st != e.ref.starttime:
        return Outcome(e.ref, "reused")
    try:
        set_params(e.ref, e.before)
    except SteerError as exc:
        if exc.errno == errno.ESRCH:
            return Outcome(e.ref, "gone")
        return Outcome(e.ref, "failed", str(exc))
    return Outcome(e.ref, "restored")


def _restore_group(g: GroupEntry) -> Outcome:
    status, message = autogroup.restore(g)
    return Outcome(g.member, status, message, group=g)


GLOBAL_REF = TaskRef(0, 0, 0, "kernel")  # what a machine-wide setting's Outcome names


def _restore_base(ns: int) -> Outcome:
    try:
        set_base_slice(ns)
    except SteerError as exc:
        return Outcome(GLOBAL_REF, "failed", str(exc), base_slice=ns)
    return Outcome(GLOBAL_REF, "restored", base_slice=ns)


def summarize(outcomes: list[Outcome]) -> str:
    """Threads first ("3 restored, 1 gone"), then session groups apart: they are not threads."""
    order = ("restored", "gone", "reused", "failed")
    parts = []
    for groups in (False, True):
        counts: dict[str, int] = {}
        for o in outcomes:
            if (o.group is not None) == groups and o.base_slice is None:
                counts[o.status] = counts.get(o.status, 0) + 1
        text = ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k))
        if text:
            parts.append(f"session groups: {text}" if groups else text)
    for o in outcomes:
        if o.base_slice is not None:
            parts.append(f"global base slice {format_ns(o.base_slice)}: {o.status}")
    return "; ".join(parts) or "nothing to restore"


def hand_over(session: Journal, shared: Journal | None = None) -> int:
    """--keep: move a session's steps into the shared journal, so the changes stay but
    `schedtop restore` can still undo them (and the next start does not call it a crash)."""
    shared = shared or Journal.shared(session.path.parent)
    with session._locked():
        steps = list(session.steps)
        session.steps = []
    if not steps:
        return 0
    with shared._locked():
        base = max((s.id for s in shared.steps), default=0)
        shared.steps.extend(Step(base + i + 1, s.ts, s.label, s.entries, s.groups, s.base_slice)
                            for i, s in enumerate(steps))
    return len({(e.ref.tid, e.ref.starttime) for s in steps for e in s.entries})  # threads, as callers say
