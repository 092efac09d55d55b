"""The undo journal: every change is written down (atomically) before it is made.

One JSON file per writer in a state directory owned by the user and mode 0700:
  /var/lib/schedtop (root) or $XDG_STATE_HOME/schedtop (others); $SCHEDTOP_STATE_DIR overrides.
  session-<pid>-<starttime>.json  a TUI or `profile apply --watch` run; restored when it exits.
                                  If its owner is dead (crash, kill -9), it is an orphan that the
                                  next start offers to restore and `schedtop restore` restores.
  cli.json                        `schedtop set` changes; they persist until `schedtop restore`.
  .lock                           flock'd around every read-modify-write of any of them.

A journal holds two things:
  steps  one user action each, with every thread's parameters just before it: what undo (z)
         steps back through, and the labels the changes pane shows.
  held   per task (pid + start time) and per attribute (policy, affinity, slice, nice; a
         session group's nice; the global base slice): the value this journal set, when it
         first and last set it, and the value before its first change.

Several sessions share one task through `held`: the files together are the shared state. The
journal whose first change came earliest holds the true original; a later one holds the value
it found. A session that ends gives back only what it holds, and only while the value is still
the one the latest holder set: if another session changed it after, it is left to that one
(which inherits the true original when it was the later one); if something outside schedtop
changed it, it is left alone and said. A pid that now names another task is never touched.

Every file is opened with O_NOFOLLOW and checked on the opened descriptor (regular file, owned
by the state dir's owner, not writable by group or others, one link); a refused file is never
acted on, a file that is not a journal is moved aside to *.bad, and neither stops the others.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import stat
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

from schedtop.collect.procfs import same_process
from schedtop.steer import autogroup
from schedtop.steer.actions import (
    SteerError, TaskGone, TaskParams, TaskRef, read_base_slice, read_params, set_base_slice, set_params, starttime_of,
)
from schedtop.steer.autogroup import GroupEntry
from schedtop.steer.units import POLICY_NAME, RT_POLICIES, format_cpulist, format_ns

JOURNAL_VERSION = 2
MAX_JOURNAL_BYTES = 32 << 20  # a profile on a busy box for a week stays far below this
TASK_ATTRS = ("sched", "affinity", "slice", "nice")  # restore order: policy before slice and nice
ATTR_WORD = {"sched": "policy", "affinity": "affinity", "slice": "slice", "nice": "nice",
             "group_nice": "session nice", "base_slice": "base slice"}
GLOBAL_KEY = "global"
PID_MAX = 1 << 22  # the kernel's PID_MAX_LIMIT
CPU_MAX = 8192  # CONFIG_NR_CPUS upper bound
KNOWN_POLICIES = (0, 1, 2, 3, 5, 7)


class JournalError(Exception):
    """The state directory or a journal file is unusable; the message names the file."""


class JournalRefused(JournalError):
    """A file schedtop did not write (symlink, foreign owner, writable by others): never acted on."""


class JournalCorrupt(JournalError):
    """A file that is not a journal (bad JSON, wrong structure, values out of range)."""


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
    """Create the state dir 0700; refuse one owned by someone else, a symlink, or one others
    could write to (what they put there could say anything about the "original" values)."""
    try:
        path.mkdir(parents=True, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        raise JournalError(f"cannot create state dir {path}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise JournalError(f"state dir {path} is not a directory (a symlink?): refusing")
    if st.st_uid != os.geteuid():
        raise JournalError(f"state dir {path} is owned by uid {st.st_uid}, not {os.geteuid()}: refusing")
    if st.st_mode & 0o022:
        raise JournalError(f"state dir {path} is writable by others (mode {stat.S_IMODE(st.st_mode):04o}): "
                           "refusing its journals; check its files, then chmod 700 it")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)  # readable by others only: nothing there can be forged, just tighten
    return path


# --- the directory lock ----------------------------------------------------------------------

_LOCKS: dict[str, list] = {}  # dir -> [RLock, depth, fd]
_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def dir_lock(d: Path) -> Iterator[None]:
    """flock on d/.lock, re-entrant within the process (flock on a second fd would deadlock)."""
    with _LOCKS_GUARD:
        slot = _LOCKS.setdefault(str(d), [threading.RLock(), 0, -1])
    slot[0].acquire()
    try:
        if slot[1] == 0:
            try:
                fd = os.open(d / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise JournalError(f"cannot lock {d / '.lock'}: {exc.strerror}") from None
            fcntl.flock(fd, fcntl.LOCK_EX)
            slot[2] = fd
        slot[1] += 1
        try:
            yield
        finally:
            slot[1] -= 1
            if slot[1] == 0:
                os.close(slot[2])
                slot[2] = -1
    finally:
        slot[0].release()


# --- entries ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    ref: TaskRef
    before: TaskParams
    attrs: tuple[str, ...] | None = None  # what this step changed; None: unknown (version 1)


@dataclass(frozen=True, slots=True)
class Step:
    id: int
    ts: float
    label: str
    entries: tuple[Entry, ...]
    groups: tuple[GroupEntry, ...] = ()  # session autogroups whose nice this step changed
    base_slice: int | None = None  # the global EEVDF base slice (ns) before this step, if it changed it


@dataclass(frozen=True, slots=True)
class Held:
    """One attribute of one target that this journal changed."""

    key: str  # task:TID:STARTTIME, group:ID or global
    attr: str  # TASK_ATTRS, group_nice or base_slice
    original: Any  # the value before this journal's first change (the true original if first is earliest)
    value: Any  # the value this journal set last; None: unknown (a version-1 journal)
    first: int  # ns: this journal's first change of it
    last: int  # ns: its latest change (the latest holder's value is the one in effect)
    ref: TaskRef | None = None  # the task, or the group's member to reach it by
    group: int | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    ref: TaskRef
    status: str  # restored, gone, reused, failed, kept (another session has it now), changed (by others)
    message: str = ""
    group: GroupEntry | None = None  # set when this is a session group's nice, not a thread
    base_slice: int | None = None  # set when this is the global base slice (the value put back)

    def line(self) -> str:
        text = {"restored": "restored", "gone": "gone (exited)", "reused": "pid reused by another task: left alone",
                "failed": "FAILED", "kept": "left to another session", "changed": "changed since: left alone"}[
            self.status]
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


def task_key(ref: TaskRef) -> str:
    return f"task:{ref.tid}:{ref.starttime}"


def attr_of(p: TaskParams, attr: str) -> Any:
    if attr == "sched":
        return (p.policy, p.rt_priority, p.reset_on_fork)
    if attr == "affinity":
        return tuple(sorted(p.affinity))
    return p.slice_ns if attr == "slice" else p.nice


def with_attr(p: TaskParams, attr: str, v: Any) -> TaskParams:
    if attr == "sched":
        return replace(p, policy=v[0], rt_priority=v[1], reset_on_fork=v[2])
    if attr == "affinity":
        return replace(p, affinity=tuple(v))
    return replace(p, slice_ns=v) if attr == "slice" else replace(p, nice=v)


def fmt_value(attr: str, v: Any) -> str:
    if v is None:
        return "?"
    if attr == "sched":
        name = POLICY_NAME.get(v[0], str(v[0]))
        return f"{name} {v[1]}" if v[0] in RT_POLICIES else name
    if attr == "affinity":
        return f"cpus {format_cpulist(v)}"
    if attr in ("slice", "base_slice"):
        return format_ns(v)
    return f"{v:+d}" if attr in ("nice", "group_nice") else str(v)


# --- reading a file safely --------------------------------------------------------------------


def _read_file(path: Path) -> bytes | None:
    """The file's bytes, or None when it does not exist. Checks are made on the opened fd, so a
    file swapped in after a path check cannot slip through."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise JournalRefused(f"{path}: refused: a symbolic link (never followed); remove it") from None
        raise JournalError(f"{path}: cannot open: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise JournalRefused(f"{path}: refused: not a regular file")
        me = os.geteuid()
        if st.st_uid != me:
            who = "root" if me == 0 else f"uid {me}"
            raise JournalRefused(f"{path}: refused: owned by uid {st.st_uid}, not {who}, so schedtop did not "
                                 "write it; check it and remove it")
        if st.st_mode & 0o022:
            raise JournalRefused(f"{path}: refused: writable by group or others (mode "
                                 f"{stat.S_IMODE(st.st_mode):04o}), so anyone could have written it")
        if st.st_nlink != 1:
            raise JournalRefused(f"{path}: refused: it has {st.st_nlink} hard links")
        chunks, size = [], 0
        while size <= MAX_JOURNAL_BYTES:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            chunks.append(b)
            size += len(b)
    except OSError as exc:
        raise JournalError(f"{path}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > MAX_JOURNAL_BYTES:
        raise JournalCorrupt(f"{path}: not a usable journal: larger than {MAX_JOURNAL_BYTES >> 20} MB")
    return b"".join(chunks)


class _Bad(Exception):
    """What is wrong, with where: 'steps[0].entries[1].task: "starttime" is missing'."""


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        text = repr(v)
        return f"the number {text if len(text) <= 24 else text[:21] + '...'}"
    if isinstance(v, str):
        return "a string"
    return "a list" if isinstance(v, list) else "an object"


def _obj(v: Any, where: str) -> dict:
    if not isinstance(v, dict):
        raise _Bad(f"{where} is {_kind(v)}, not an object")
    return v


def _get(d: dict, k: str, where: str) -> Any:
    if k not in d:
        raise _Bad(f"{where}: {k!r} is missing")
    return d[k]


def _int(v: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Bad(f"{where} is {_kind(v)}, not an integer")
    if not lo <= v <= hi:
        raise _Bad(f"{where} is {v}, outside {lo}..{hi}")
    return v


def _list(v: Any, where: str) -> list:
    if not isinstance(v, list):
        raise _Bad(f"{where} is {_kind(v)}, not a list")
    return v


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise _Bad(f"{where} is {_kind(v)}, not a string")
    return v[:256]


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise _Bad(f"{where} is {_kind(v)}, not true/false")
    return v


def _ref(v: Any, where: str) -> TaskRef:
    d = _obj(v, where)
    return TaskRef(pid=_int(_get(d, "pid", where), f"{where}.pid", 1, PID_MAX),
                   tid=_int(_get(d, "tid", where), f"{where}.tid", 1, PID_MAX),
                   starttime=_int(_get(d, "starttime", where), f"{where}.starttime", 0, 1 << 62),
                   comm=_str(d.get("comm", ""), f"{where}.comm"))


def _attr_value(attr: str, v: Any, where: str) -> Any:
    if attr == "sched":
        t = _list(v, where)
        if len(t) != 3:
            raise _Bad(f"{where} has {len(t)} items, not 3 (policy, priority, reset_on_fork)")
        pol = _int(t[0], f"{where}[0]", 0, 7)
        if pol not in KNOWN_POLICIES:
            raise _Bad(f"{where}[0] is policy {pol}, which schedtop never sets")
        return (pol, _int(t[1], f"{where}[1]", 0, 99), _bool(t[2], f"{where}[2]"))
    if attr == "affinity":
        cpus = _list(v, where)
        if not 1 <= len(cpus) <= CPU_MAX:
            raise _Bad(f"{where} has {len(cpus)} CPUs, not 1..{CPU_MAX}")
        return tuple(sorted({_int(c, f"{where}[{i}]", 0, CPU_MAX - 1) for i, c in enumerate(cpus)}))
    if attr in ("slice", "base_slice"):
        return _int(v, where, 0 if attr == "slice" else 1, 10**11)
    return _int(v, where, -20, 19)  # nice, group_nice


def _params(v: Any, where: str) -> TaskParams:
    d = _obj(v, where)
    sched = _attr_value("sched", [_get(d, "policy", where), _get(d, "rt_priority", where),
                                  d.get("reset_on_fork", False)], f"{where}.(policy, rt_priority, reset_on_fork)")
    return TaskParams(policy=sched[0], rt_priority=sched[1], reset_on_fork=sched[2],
                      nice=_attr_value("nice", _get(d, "nice", where), f"{where}.nice"),
                      affinity=_attr_value("affinity", _get(d, "affinity", where), f"{where}.affinity"),
                      slice_ns=_attr_value("slice", _get(d, "slice_ns", where), f"{where}.slice_ns"))


def _group(v: Any, where: str) -> GroupEntry:
    d = _obj(v, where)
    return GroupEntry(group=_int(_get(d, "group", where), f"{where}.group", 0, 1 << 62),
                      nice=_int(_get(d, "nice", where), f"{where}.nice", -20, 19),
                      member=_ref(_get(d, "member", where), f"{where}.member"))


def _ts(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _Bad(f"{where} is {_kind(v)}, not a time")
    return float(v)


def _parse(raw: bytes) -> tuple[list[Step], dict[tuple[str, str], Held]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Bad(f"not UTF-8 (byte {exc.start})") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise _Bad("JSON nested too deep") from None
    except ValueError as exc:
        raise _Bad(f"not JSON ({exc})") from None
    d = _obj(data, "the top level")
    version = _get(d, "version", "the top level")
    if version not in (1, JOURNAL_VERSION) or isinstance(version, bool):
        raise _Bad(f"unknown journal version {_kind(version) if not isinstance(version, int) else version}")
    steps = []
    seen_ids: set[int] = set()
    for i, s in enumerate(_list(_get(d, "steps", "the top level"), "steps")):
        w = f"steps[{i}]"
        s = _obj(s, w)
        sid = _int(_get(s, "id", w), f"{w}.id", 0, 1 << 62)
        if sid in seen_ids:
            raise _Bad(f"{w}.id {sid} appears twice")
        seen_ids.add(sid)
        entries = []
        for k, e in enumerate(_list(_get(s, "entries", w), f"{w}.entries")):
            we = f"{w}.entries[{k}]"
            e = _obj(e, we)
            attrs = None
            if "attrs" in e:
                attrs = tuple(_str(a, f"{we}.attrs[{n}]") for n, a in enumerate(_list(e["attrs"], f"{we}.attrs")))
                bad = [a for a in attrs if a not in TASK_ATTRS]
                if bad:
                    raise _Bad(f"{we}.attrs names {bad[0]!r}, not one of {', '.join(TASK_ATTRS)}")
            entries.append(Entry(_ref(_get(e, "task", we), f"{we}.task"),
                                 _params(_get(e, "before", we), f"{we}.before"), attrs))
        groups = tuple(_group(g, f"{w}.groups[{k}]") for k, g in enumerate(_list(s.get("groups", []), f"{w}.groups")))
        base = s.get("base_slice")
        steps.append(Step(sid, _ts(_get(s, "ts", w), f"{w}.ts"), _str(_get(s, "label", w), f"{w}.label"),
                          tuple(entries), groups,
                          None if base is None else _attr_value("base_slice", base, f"{w}.base_slice")))
    if version == 1:
        return steps, _held_from_v1(steps)
    held: dict[tuple[str, str], Held] = {}
    for i, h in enumerate(_list(_get(d, "held", "the top level"), "held")):
        w = f"held[{i}]"
        h = _obj(h, w)
        key, attr = _str(_get(h, "key", w), f"{w}.key"), _str(_get(h, "attr", w), f"{w}.attr")
        ref = group = None
        if key.startswith("task:"):
            if attr not in TASK_ATTRS:
                raise _Bad(f"{w}.attr is {attr!r}, not one of {', '.join(TASK_ATTRS)}")
            ref = _ref(_get(h, "task", w), f"{w}.task")
            if key != task_key(ref):
                raise _Bad(f"{w}.key {key!r} does not name its task")
        elif key.startswith("group:"):
            if attr != "group_nice":
                raise _Bad(f"{w}.attr is {attr!r}, not 'group_nice'")
            ref = _ref(_get(h, "member", w), f"{w}.member")
            group = _int(_get(h, "group", w), f"{w}.group", 0, 1 << 62)
            if key != f"group:{group}":
                raise _Bad(f"{w}.key {key!r} does not name its group")
        elif key == GLOBAL_KEY:
            if attr != "base_slice":
                raise _Bad(f"{w}.attr is {attr!r}, not 'base_slice'")
        else:
            raise _Bad(f"{w}.key {key[:40]!r} is not task:TID:START, group:ID or global")
        if (key, attr) in held:
            raise _Bad(f"{w} repeats {key} {attr}")
        value = _get(h, "value", w)
        held[(key, attr)] = Held(
            key, attr, _attr_value(attr, _get(h, "original", w), f"{w}.original"),
            None if value is None else _attr_value(attr, value, f"{w}.value"),
            _int(_get(h, "first", w), f"{w}.first", 0, 1 << 63), _int(_get(h, "last", w), f"{w}.last", 0, 1 << 63),
            ref, group)
    return steps, held


def _held_from_v1(steps: list[Step]) -> dict[tuple[str, str], Held]:
    """A version-1 journal saved whole parameters per step: it holds every attribute, with the
    value it set unknown (restored whatever it is now, as version 1 did)."""
    held: dict[tuple[str, str], Held] = {}
    for s in steps:
        ns = int(s.ts * 1e9)
        for e in s.entries:
            for a in TASK_ATTRS:
                held.setdefault((task_key(e.ref), a), Held(task_key(e.ref), a, attr_of(e.before, a), None,
                                                           ns, ns, e.ref))
        for g in s.groups:
            held.setdefault((f"group:{g.group}", "group_nice"),
                            Held(f"group:{g.group}", "group_nice", g.nice, None, ns, ns, g.member, g.group))
        if s.base_slice is not None:
            held.setdefault((GLOBAL_KEY, "base_slice"), Held(GLOBAL_KEY, "base_slice", s.base_slice, None, ns, ns))
    return held


def set_aside(path: Path) -> Path:
    """Rename a file that is not a journal to *.bad (kept for the user, out of every scan)."""
    bad = path.with_name(path.name + ".bad")
    n = 1
    while bad.exists():
        n += 1
        bad = path.with_name(f"{path.name}.bad{n}")
    os.rename(path, bad)
    return bad


# --- the journal -------------------------------------------------------------------------------


def _ref_json(r: TaskRef) -> dict:
    return {"pid": r.pid, "tid": r.tid, "starttime": r.starttime, "comm": r.comm}


def _json_value(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _self_ref() -> tuple[int, int]:
    pid = os.getpid()
    return pid, starttime_of(pid, pid) or 0


def _owner_of(p: Path) -> tuple[int, int] | None:
    """(pid, starttime) from session-PID-START.json; None for anything else."""
    try:
        _, pid, st = p.stem.split("-")
        return int(pid), int(st)
    except ValueError:
        return None


class Journal:
    """A journal file. Every mutation takes the directory's lock, re-reads the file, changes it
    and writes it back atomically (temp file, fsync, rename, fsync of the directory)."""

    def __init__(self, path: Path, owner: tuple[int, int] | None, set_aside_bad: bool = True) -> None:
        self._tlock = threading.RLock()  # the TUI's profile worker and its keys share a journal
        self._depth = 0
        self.path = path
        self.owner = owner
        self.steps: list[Step] = []
        self.held: dict[tuple[str, str], Held] = {}
        self.problems: list[str] = []  # files moved aside on the way: the caller says them once
        self._set_aside_bad = set_aside_bad
        self._pre: dict[int, dict[tuple[str, str], Held | None]] = {}  # step -> holdings before it
        self._dirty = False
        self._load()

    def who(self) -> str:
        return "schedtop set" if self.owner is None else f"session pid {self.owner[0]}"

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
            owner = _owner_of(p)
            if owner is not None:
                out.append((p, owner[0], owner[1], same_process(*owner)))
        return out

    @staticmethod
    def scan(directory: Path | None = None, set_aside_bad: bool = True) -> tuple[list["Journal"], list[str]]:
        """What `schedtop restore` acts on: every orphaned session journal and cli.json, each
        read on its own. Returns (the good ones with something in them, one line per file that
        was refused or moved aside): one bad file never hides the others."""
        d = ensure_dir(directory) if directory else state_dir()
        found, problems = [], []
        paths = [(p, (pid, st)) for p, pid, st, alive in Journal.sessions(d) if not alive]
        for p, owner in paths + [(d / "cli.json", None)]:
            try:
                j = Journal(p, owner, set_aside_bad)
            except JournalError as exc:
                problems.append(str(exc))
                continue
            problems.extend(j.problems)
            if j.held or j.steps:
                found.append(j)
        return found, problems

    @staticmethod
    def orphans(directory: Path | None = None) -> list["Journal"]:
        """Session journals whose owner process is gone (crash, kill -9). A live session
        restores its own changes. Unusable files are skipped here (scan() reports them)."""
        return [j for j in Journal.scan(directory)[0] if j.owner is not None]

    # --- file I/O ------------------------------------------------------------------------

    def _load(self) -> None:
        self.steps, self.held = [], {}
        raw = _read_file(self.path)
        if raw is None:
            return
        try:
            self.steps, self.held = _parse(raw)
        except _Bad as exc:
            msg = f"{self.path}: not a usable journal: {exc}"
            if not self._set_aside_bad:
                raise JournalCorrupt(msg) from None
            try:
                bad = set_aside(self.path)
            except OSError as err:
                raise JournalCorrupt(f"{msg}; cannot move it aside: {err.strerror}") from None
            self.problems.append(f"{msg}; moved aside to {bad.name}, nothing in it was used")

    def _data(self) -> dict:
        return {
            "version": JOURNAL_VERSION,
            "owner": None if self.owner is None else {"pid": self.owner[0], "starttime": self.owner[1]},
            "steps": [
                {"id": s.id, "ts": s.ts, "label": s.label,
                 "entries": [{"task": _ref_json(e.ref), "before": e.before.to_json(),
                              **({"attrs": list(e.attrs)} if e.attrs is not None else {})} for e in s.entries],
                 **({"groups": [g.to_json() for g in s.groups]} if s.groups else {}),
                 **({"base_slice": s.base_slice} if s.base_slice is not None else {})}
                for s in self.steps
            ],
            "held": [
                {"key": h.key, "attr": h.attr, "original": _json_value(h.original), "value": _json_value(h.value),
                 "first": h.first, "last": h.last,
                 **({"task": _ref_json(h.ref)} if h.key.startswith("task:") else {}),
                 **({"member": _ref_json(h.ref), "group": h.group} if h.key.startswith("group:") else {})}
                for h in self.held.values()
            ],
        }

    def _save(self) -> None:
        self._dirty = False
        if not self.steps and not self.held:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return
        d = self.path.parent
        fd, tmp = tempfile.mkstemp(prefix=".journal-", dir=d)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self._data(), f, indent=1)
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
        """The directory lock, the file re-read on the outermost entry, written back on each
        exit that changed it. Nested entries (a change() around record()) share the lock."""
        with self._tlock, dir_lock(self.path.parent):
            if self._depth == 0:
                self._load()
            self._depth += 1
            before = (list(self.steps), dict(self.held))
            try:
                yield
            finally:
                self._depth -= 1
            if self._dirty or (self.steps, self.held) != before:
                self._save()

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """Hold the shared lock across journal writes and the syscalls between them, so two
        sessions' changes of one task are ordered the same in the journals and in the kernel."""
        return self._locked()

    def _peers(self) -> list["Journal"]:
        """Every other readable journal in the directory (live or not), under the lock."""
        d = self.path.parent
        out = []
        for p in [d / "cli.json", *sorted(d.glob("session-*.json"))]:
            if p == self.path:
                continue
            try:
                j = Journal(p, _owner_of(p), set_aside_bad=False)
            except JournalError:
                continue  # scan() reports it; it holds nothing we can trust
            if j.held:
                out.append(j)
        return out

    @staticmethod
    def _save_peers(peers: list["Journal"]) -> None:
        for p in peers:
            if p._dirty:
                p._save()

    def _seq(self) -> int:
        return max(time.time_ns(), max((h.last for h in self.held.values()), default=0) + 1)

    # --- changes -------------------------------------------------------------------------

    def record(self, label: str, entries: list[tuple[TaskRef, TaskParams]],
               groups: list[GroupEntry] | None = None, wants: list[TaskParams] | None = None,
               group_want: int | None = None) -> int:
        """Write the originals down (durably) before the caller changes anything. ``wants``: what
        each thread is about to get (only attributes that differ are journaled, and a thread
        with none is left out); without it every attribute is held, value unknown."""
        with self._locked():
            sid = max((s.id for s in self.steps), default=0) + 1
            now = self._seq()
            pre: dict[tuple[str, str], Held | None] = {}
            out = []
            for i, (ref, before) in enumerate(entries):
                want = wants[i] if wants is not None else None
                attrs = tuple(a for a in TASK_ATTRS if want is None or attr_of(want, a) != attr_of(before, a))
                if not attrs:
                    continue  # a no-op for this thread: nothing to undo
                out.append(Entry(ref, before, attrs if want is not None else None))
                for a in attrs:
                    self._hold(pre, task_key(ref), a, attr_of(before, a),
                               None if want is None else attr_of(want, a), now, ref, None)
            for g in groups or ():
                self._hold(pre, f"group:{g.group}", "group_nice", g.nice, group_want, now, g.member, g.group)
            self.steps.append(Step(sid, time.time(), label, tuple(out), tuple(groups or ())))
            self._pre[sid] = pre
        return sid

    def _hold(self, pre: dict, key: str, attr: str, before: Any, value: Any, now: int,
              ref: TaskRef | None, group: int | None) -> None:
        k = (key, attr)
        pre.setdefault(k, self.held.get(k))
        h = self.held.get(k)
        if h is None:
            self.held[k] = Held(key, attr, before, value, now, now, ref, group)
        else:
            self.held[k] = replace(h, value=value, last=now, ref=ref or h.ref)

    def record_base_slice(self, label: str, before_ns: int, want_ns: int | None = None) -> int:
        """Write the global base slice's current value down before the caller changes it."""
        with self._locked():
            sid = max((s.id for s in self.steps), default=0) + 1
            pre: dict[tuple[str, str], Held | None] = {}
            self._hold(pre, GLOBAL_KEY, "base_slice", before_ns, want_ns, self._seq(), None, None)
            self.steps.append(Step(sid, time.time(), label, (), (), before_ns))
            self._pre[sid] = pre
        return sid

    def settle(self, step_id: int, ref: TaskRef, after: TaskParams) -> None:
        """After a change: hold what the kernel actually made of it (read back)."""
        with self._locked():
            step = next((s for s in self.steps if s.id == step_id), None)
            entry = next((e for e in step.entries if e.ref == ref), None) if step else None
            for a in (entry.attrs or ()) if entry else ():
                h = self.held.get((task_key(ref), a))
                if h is not None and h.value != attr_of(after, a):
                    self.held[(task_key(ref), a)] = replace(h, value=attr_of(after, a))

    def _unhold(self, step_id: int, keys: set[str] | None) -> None:
        """Put the holdings of these keys (None: all) back as they were before the step."""
        for k, old in self._pre.get(step_id, {}).items():
            if keys is None or k[0] in keys:
                if old is None:
                    self.held.pop(k, None)
                else:
                    self.held[k] = old

    def forget_step(self, step_id: int) -> None:
        """Drop a whole step whose change did not happen."""
        with self._locked():
            gone = next((s for s in self.steps if s.id == step_id), None)
            self.steps = [s for s in self.steps if s.id != step_id]
            if step_id in self._pre:
                self._unhold(step_id, None)
            elif gone is not None:  # a step from disk: let go of what no other step names
                self._drop_unnamed({task_key(e.ref) for e in gone.entries} | {f"group:{g.group}" for g in gone.groups}
                                   | ({GLOBAL_KEY} if gone.base_slice is not None else set()))

    def forget(self, step_id: int, refs: list[TaskRef], groups: list[int] = ()) -> None:
        """Drop threads (and group ids) from a step whose change did not happen (it failed)."""
        drop = {(r.tid, r.starttime) for r in refs}
        with self._locked():
            self._filter(lambda s, e: not (s.id == step_id and (e.ref.tid, e.ref.starttime) in drop),
                         lambda s, g: not (s.id == step_id and g.group in groups))
            self._unhold(step_id, {task_key(r) for r in refs} | {f"group:{g}" for g in groups})

    def _filter(self, keep, keep_group=lambda s, g: True, keep_base=True) -> None:
        steps = []
        for s in self.steps:
            entries = tuple(e for e in s.entries if keep(s, e))
            groups = tuple(g for g in s.groups if keep_group(s, g))
            base = s.base_slice if keep_base else None
            if entries or groups or base is not None:
                steps.append(Step(s.id, s.ts, s.label, entries, groups, base))
        self.steps = steps

    def _drop_unnamed(self, keys: set[str]) -> None:
        named = {task_key(e.ref) for s in self.steps for e in s.entries}
        named |= {f"group:{g.group}" for s in self.steps for g in s.groups}
        named |= {GLOBAL_KEY} if any(s.base_slice is not None for s in self.steps) else set()
        self.held = {k: h for k, h in self.held.items() if h.key not in keys - named}

    def _drop_keys(self, keys: set[str]) -> None:
        """Forget these targets entirely: their holdings and their step entries."""
        self.held = {k: h for k, h in self.held.items() if h.key not in keys}
        self._filter(lambda s, e: task_key(e.ref) not in keys, lambda s, g: f"group:{g.group}" not in keys,
                     keep_base=GLOBAL_KEY not in keys)

    def prune(self) -> int:
        """Drop threads that exited or whose pid now names another task, and session groups
        with no member left. Returns how many."""
        with self._locked():
            gone = set()
            for h in self.held.values():
                if h.key.startswith("task:") and starttime_of(h.ref.pid, h.ref.tid) != h.ref.starttime:
                    gone.add(h.key)
                elif h.key.startswith("group:") and autogroup.reach(GroupEntry(h.group, h.original, h.ref)) is None:
                    gone.add(h.key)
            for s in self.steps:  # entries of a version-1 journal or a half-forgotten step
                for e in s.entries:
                    if starttime_of(e.ref.pid, e.ref.tid) != e.ref.starttime:
                        gone.add(task_key(e.ref))
            self._drop_keys(gone)
        return len(gone)

    # --- what is active --------------------------------------------------------------------

    def active_groups(self) -> list[tuple[GroupEntry, tuple[str, ...]]]:
        """Per session group: its original nice and the labels that changed it."""
        out = []
        for h in self.held.values():
            if h.key.startswith("group:"):
                labels = tuple(s.label for s in self.steps if any(g.group == h.group for g in s.groups))
                out.append((GroupEntry(h.group, h.original, h.ref), labels))
        return out

    def active_base_slice(self) -> tuple[int, tuple[str, ...]] | None:
        """The global base slice's original value and the labels that changed it."""
        h = self.held.get((GLOBAL_KEY, "base_slice"))
        if h is None:
            return None
        return h.original, tuple(s.label for s in self.steps if s.base_slice is not None)

    def active(self) -> list[ActiveChange]:
        """Per thread: its original parameters and the labels of the steps that changed it."""
        by_task: dict[str, ActiveChange] = {}
        for s in self.steps:
            for e in s.entries:
                k = task_key(e.ref)
                if not any((k, a) in self.held for a in TASK_ATTRS):
                    continue
                if k in by_task:
                    a = by_task[k]
                    by_task[k] = ActiveChange(a.ref, a.before, a.labels + (s.label,), s.id)
                else:
                    before = e.before
                    for attr in TASK_ATTRS:
                        h = self.held.get((k, attr))
                        if h is not None:
                            before = with_attr(before, attr, h.original)
                    by_task[k] = ActiveChange(e.ref, before, (s.label,), s.id)
        return list(by_task.values())

    def __len__(self) -> int:
        return len({h.key for h in self.held.values()})

    # --- giving changes back ---------------------------------------------------------------

    def _release(self, h: Held, peers: list["Journal"], to: Any = None) -> tuple[str, str, bool]:
        """Give one holding back: (status, message, keep it). ``to``: undo to this value and
        keep holding (an undo of a later step); None: let go of it (restore, or its only step)."""
        k = (h.key, h.attr)
        word = ATTR_WORD[h.attr]
        others = [(p, p.held[k]) for p in peers if k in p.held]
        if to is None and others:
            ep, eh = min(others, key=lambda x: x[1].first)
            if h.first < eh.first:  # the one that came first had the true original: hand it on
                ep.held[k] = replace(eh, original=h.original, first=h.first)
                ep._dirty = True
        top = max(others, key=lambda x: x[1].last, default=None)
        if top is not None and top[1].last > h.last:
            return "kept", f"{word} left to {top[0].who()}, which changed it after this one", False
        try:
            cur = _current(h)
        except _Missing as gone:
            return gone.status, "", False
        except SteerError as exc:
            return "failed", f"{word}: {exc}", True
        target = to if to is not None else (top[1].value if top is not None else h.original)
        if target is None:
            target = h.original
        if cur == target:
            return "restored", "", False
        if h.value is not None and cur != h.value:
            return ("changed", f"{word} is {fmt_value(h.attr, cur)}, not {fmt_value(h.attr, h.value)} as set here: "
                    f"changed outside schedtop since, left alone (it was {fmt_value(h.attr, h.original)})", False)
        try:
            _apply(h, target, self._fair_slice(h.key) if h.attr == "sched" else None)
        except _Missing as gone:
            return gone.status, "", False
        except SteerError as exc:
            if os.geteuid() != 0 and exc.errno in (errno.EPERM, errno.EACCES) and h.key != GLOBAL_KEY:
                # This user can never undo it: say it once, do not ask again at every start.
                return "failed", (f"{word} not put back to {fmt_value(h.attr, target)}: {exc}; "
                                  "dropped from the journal (this user cannot undo it)"), False
            return "failed", f"{word}: {exc}", True
        return "restored", "", False

    def _fair_slice(self, key: str) -> int | None:
        """The slice to give a task leaving FIFO/RR: an RT task's se.slice is not the one it had
        (6.18 shows 1.4 ms after a 1 ms slice), so take ours: the one set, or the last one seen."""
        h = self.held.get((key, "slice"))
        if h is not None and h.value is not None:
            return h.value
        for s in reversed(self.steps):
            for e in s.entries:
                if task_key(e.ref) == key and e.before.policy not in RT_POLICIES:
                    return e.before.slice_ns
        return None

    def _release_keys(self, keys: list[str], peers: list["Journal"]) -> list[Outcome]:
        outs = []
        for key in keys:
            hs = [self.held[(key, a)] for a in (*TASK_ATTRS, "group_nice", "base_slice") if (key, a) in self.held]
            results = []
            for h in hs:
                status, msg, keep = self._release(h, peers)
                if not keep:
                    del self.held[(h.key, h.attr)]
                results.append((status, msg))
                if status in ("gone", "reused"):
                    for rest in hs:
                        self.held.pop((rest.key, rest.attr), None)
                    break
            outs.append(_outcome(hs[0], results))
            if not any(k[0] == key for k in self.held):
                self._drop_keys({key})
        return outs

    def _keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for h in sorted(self.held.values(), key=lambda h: (not h.key.startswith("task:"), h.key == GLOBAL_KEY)):
            seen.setdefault(h.key)
        return list(seen)

    def restore_all(self) -> list[Outcome]:
        """Give back everything this journal holds (see the module doc for the sharing rules).
        What failed stays journaled, except what this user can never undo (said once)."""
        with self._locked():
            peers = self._peers()
            outs = self._release_keys(self._keys(), peers)
            if not self.held:
                self.steps = []
            self._save_peers(peers)
        return outs

    def undo_task(self, ref: TaskRef) -> Outcome | None:
        """Put one thread back to its original state (the changes pane's per-row undo)."""
        with self._locked():
            if not any(h.key == task_key(ref) for h in self.held.values()):
                return None
            peers = self._peers()
            out = self._release_keys([task_key(ref)], peers)[0]
            self._save_peers(peers)
        return out

    def undo_group(self, group: int) -> Outcome | None:
        """Put one session group's nice back (the changes pane's per-row undo)."""
        with self._locked():
            if (f"group:{group}", "group_nice") not in self.held:
                return None
            peers = self._peers()
            out = self._release_keys([f"group:{group}"], peers)[0]
            self._save_peers(peers)
        return out

    def undo_base_slice(self) -> Outcome | None:
        """Put the global base slice back to its original value (the changes pane's row undo)."""
        with self._locked():
            if (GLOBAL_KEY, "base_slice") not in self.held:
                return None
            peers = self._peers()
            out = self._release_keys([GLOBAL_KEY], peers)[0]
            self._save_peers(peers)
        return out

    def undo_last(self) -> tuple[str, list[Outcome]] | None:
        """Revert the newest step. None when there is nothing to undo."""
        with self._locked():
            if not self.steps:
                return None
            step = self.steps[-1]
            earlier = self.steps[:-1]
            peers = self._peers()
            targets: list[tuple[Held, Any, Any]] = []  # (holding, value to undo to or None, its row)
            for e in step.entries:
                for a in e.attrs or TASK_ATTRS:
                    h = self.held.get((task_key(e.ref), a))
                    if h is not None:
                        again = any(task_key(x.ref) == h.key and (x.attrs is None or a in x.attrs)
                                    for s in earlier for x in s.entries)
                        targets.append((h, attr_of(e.before, a) if again else None, e))
            for g in step.groups:
                h = self.held.get((f"group:{g.group}", "group_nice"))
                if h is not None:
                    again = any(x.group == g.group for s in earlier for x in s.groups)
                    targets.append((h, g.nice if again else None, g))
            if step.base_slice is not None and (GLOBAL_KEY, "base_slice") in self.held:
                again = any(s.base_slice is not None for s in earlier)
                targets.append((self.held[(GLOBAL_KEY, "base_slice")], step.base_slice if again else None, None))
            by_key: dict[str, list[tuple[str, str]]] = {}
            first_of: dict[str, Held] = {}
            keep_entry: set[str] = set()
            for h, to, _row in targets:
                status, msg, keep = self._release(h, peers, to)
                k = (h.key, h.attr)
                if to is not None and status == "restored":
                    self.held[k] = replace(h, value=to)  # still held: an earlier step changed it too
                elif to is not None and status == "kept":
                    pass  # another session changed it since: ours stays held for its earlier steps
                elif not keep:
                    self.held.pop(k, None)
                else:
                    keep_entry.add(h.key)
                by_key.setdefault(h.key, []).append((status, msg))
                first_of.setdefault(h.key, h)
            self.steps.pop()
            if keep_entry:  # keep what could not be undone, for restore to try again
                self.steps.append(Step(step.id, step.ts, step.label,
                                       tuple(e for e in step.entries if task_key(e.ref) in keep_entry),
                                       tuple(g for g in step.groups if f"group:{g.group}" in keep_entry),
                                       step.base_slice if GLOBAL_KEY in keep_entry else None))
            if not self.steps:
                self.held = {}
            self._save_peers(peers)
        return step.label, [_outcome(first_of[k], r) for k, r in by_key.items()]


class _Missing(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


def _group_entry(h: Held) -> GroupEntry:
    return GroupEntry(h.group, h.original, h.ref)


def _current(h: Held) -> Any:
    if h.key == GLOBAL_KEY:
        return read_base_slice()
    if h.key.startswith("group:"):
        pid = autogroup.reach(_group_entry(h))
        g = autogroup.read(pid) if pid is not None else None
        if g is None:
            raise _Missing("gone")
        return g.nice
    st = starttime_of(h.ref.pid, h.ref.tid)
    if st is None:
        raise _Missing("gone")
    if st != h.ref.starttime:
        raise _Missing("reused")
    try:
        return attr_of(read_params(h.ref), h.attr)
    except SteerError as exc:
        if exc.errno == errno.ESRCH:
            raise _Missing("gone") from None
        raise


def _apply(h: Held, value: Any, fair_slice: int | None = None) -> None:
    if h.key == GLOBAL_KEY:
        set_base_slice(value)
        return
    if h.key.startswith("group:"):
        pid = autogroup.reach(_group_entry(h))
        if pid is None:
            raise _Missing("gone")
        try:
            autogroup.set_nice(pid, value)
        except TaskGone:
            raise _Missing("gone") from None
        return
    try:
        have = read_params(h.ref)
        want = with_attr(have, h.attr, value)
        if have.policy in RT_POLICIES and want.policy not in RT_POLICIES and fair_slice is not None:
            want = replace(want, slice_ns=fair_slice)
        set_params(h.ref, want, have)
    except SteerError as exc:
        if exc.errno == errno.ESRCH:
            raise _Missing("gone") from None
        raise


def _outcome(h: Held, results: list[tuple[str, str]]) -> Outcome:
    """One target's attributes in one Outcome: the worst status, every message."""
    statuses = [s for s, _ in results]
    for status in ("gone", "reused", "failed", "restored", "changed", "kept"):
        if status in statuses:
            break
    msg = "; ".join(m for _, m in results if m)
    ref = h.ref or GLOBAL_REF
    if h.key == GLOBAL_KEY:
        return Outcome(GLOBAL_REF, status, msg, base_slice=h.original)
    if h.key.startswith("group:"):
        return Outcome(ref, status, msg, group=_group_entry(h))
    return Outcome(ref, status, msg)


GLOBAL_REF = TaskRef(0, 0, 0, "kernel")  # what a machine-wide setting's Outcome names

STATUS_WORDS = {"restored": "restored", "gone": "gone", "reused": "reused", "failed": "failed",
                "kept": "left to another session", "changed": "changed by someone else (left alone)"}


def summarize(outcomes: list[Outcome]) -> str:
    """Threads first ("3 restored, 1 gone"), then session groups apart: they are not threads."""
    order = ("restored", "gone", "reused", "kept", "changed", "failed")
    parts = []
    for groups in (False, True):
        counts: dict[str, int] = {}
        for o in outcomes:
            if (o.group is not None) == groups and o.base_slice is None:
                counts[o.status] = counts.get(o.status, 0) + 1
        text = ", ".join(f"{counts[k]} {STATUS_WORDS[k]}" for k in order if counts.get(k))
        if text:
            parts.append(f"session groups: {text}" if groups else text)
    for o in outcomes:
        if o.base_slice is not None:
            parts.append(f"global base slice {format_ns(o.base_slice)}: {STATUS_WORDS[o.status]}")
    return "; ".join(parts) or "nothing to restore"


def hand_over(session: Journal, shared: Journal | None = None) -> int:
    """--keep: move a session's steps and holdings into the shared journal, so the changes stay
    but `schedtop restore` can still undo them (and the next start does not call it a crash)."""
    shared = shared or Journal.shared(session.path.parent)
    with session._locked(), shared._locked():
        steps, held = list(session.steps), dict(session.held)
        session.steps, session.held = [], {}
        base = max((s.id for s in shared.steps), default=0)
        shared.steps.extend(replace(s, id=base + i + 1) for i, s in enumerate(steps))
        for k, h in held.items():
            o = shared.held.get(k)
            if o is None:
                shared.held[k] = h
            else:  # both changed it: the earlier keeps the original, the later the value
                first = h if h.first < o.first else o
                last = h if h.last > o.last else o
                shared.held[k] = replace(last, original=first.original, first=first.first)
    return len({h.key for h in held.values() if h.key.startswith("task:")})  # threads, as callers say
