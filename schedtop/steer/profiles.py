"""Tuning profiles: TOML rules that match tasks by name, executable or cgroup and retune them.

    name = "audio"
    [[rule]]
    comm = ["pipewire*", "jackd"]   # the process's name (glob; a list means any of them)
    thread = "data-loop*"           # the thread's own name (optional)
    exe = "/usr/bin/pipewire*"      # /proc/PID/exe (optional)
    cgroup = "*pipewire*"           # any line of /proc/PID/cgroup (optional)
    policy = "fifo"                 # other, batch, idle, fifo, rr, ext
    priority = 88                   # fifo/rr only, 1..99
    nice = -11
    slice = "1ms"                   # EEVDF slice, 0.1ms..100ms or "default"
    affinity = "0-1"
    group_nice = -11                # the session autogroup's nice, -20..19 (every task of the session)

All selectors given in a rule must match; the first matching rule wins for a thread. A
profile is checked completely at load; any error names the file, the line and the reason.

policy = "ext" moves the threads into SCHED_EXT (the journaled move of `schedtop set --ext`:
restore puts the original policy back). It takes nice (the BPF scheduler sees it as weight) and
affinity, not priority or slice (the sched_ext scheduler orders tasks and picks slices). On a
kernel without sched_ext such a profile does not load: file:line says why, before anything
is changed. With sched_ext but no scheduler loaded the kernel runs SCHED_EXT threads under
EEVDF; the runner notes that once.

group_nice sets the nice of each matched thread's session autogroup (what the TUI's fair boost
does, through the same journal): with kernel.sched_autogroup_enabled=1 a thread's nice only
ranks it inside its session. Threads in no session group (the init session) or in a cpu
cgroup get a note instead (see autogroup.py). Each session is set once per run; a rule with
group_nice alone journals no thread.

Applying is live: `ProfileRunner.poll()` rescans /proc and tunes threads it has not seen
(or whose name changed, e.g. after exec), always through the journal.

    gamemode = "games"              # top level: the rule a GameMode-registered game gets

A game that GameMode registers (gamemode.py) gets the named rule whatever its name or exe:
`ProfileRunner.pin()` applies it to every thread of that process (and to threads it starts
later, at each poll); `unpin()` gives exactly those changes back when the game unregisters
or exits.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Iterable

from schedtop.collect.procfs import same_process, stat_at
from schedtop.steer import autogroup, units
from schedtop.steer.actions import SteerError, TaskParams, TaskRef, Tuning, sched_ext_available, target_params
from schedtop.steer.change import ChangeReport, change
from schedtop.steer.journal import TASK_ATTRS, Journal, Outcome, attr_of, with_attr
from schedtop.tomlfile import read_text_file, toml_loads

SELECTORS = ("comm", "thread", "exe", "cgroup")
SETTINGS = ("policy", "priority", "nice", "slice", "affinity", "group_nice")
RULE_KEYS = ("name",) + SELECTORS + SETTINGS
TOP_KEYS = ("name", "description", "poll", "gamemode", "rule")


# Bounds on what a profile may hold: a real one is a few KiB, a few rules, a few globs each.
MAX_PROFILE_BYTES = 1 << 20
MAX_RULES = 1000
MAX_GLOBS = 1000  # in the whole profile; each selector's globs are compiled into one regex


class ProfileError(ValueError):
    """file:line: reason"""


@dataclass(frozen=True, slots=True)
class Rule:
    index: int
    name: str
    comm: tuple[str, ...] = ()
    thread: tuple[str, ...] = ()
    exe: tuple[str, ...] = ()
    cgroup: tuple[str, ...] = ()
    tuning: Tuning = field(default_factory=Tuning)

    @property
    def label(self) -> str:
        return self.name or f"rule {self.index + 1}"


@dataclass(frozen=True, slots=True)
class Profile:
    path: str
    name: str
    description: str
    poll_s: float
    rules: tuple[Rule, ...]
    gamemode: int | None = None  # index of the rule a GameMode-registered game gets

    @property
    def game_rule(self) -> Rule | None:
        return self.rules[self.gamemode] if self.gamemode is not None else None

    @property
    def uses_ext(self) -> bool:
        return any(r.tuning.policy == units.SCHED_EXT for r in self.rules)

    def describe(self) -> list[str]:
        out = [f"profile {self.name}: {len(self.rules)} rule(s), polling every {self.poll_s:g}s"]
        for r in self.rules:
            sel = "; ".join(f"{k} {'|'.join(getattr(r, k))}" for k in SELECTORS if getattr(r, k))
            out.append(f"  {r.label}: {sel} -> {r.tuning.describe()}")
        if self.game_rule is not None:
            out.append(f"  GameMode games get rule {self.game_rule.label} (schedtop profile apply {self.name} --gamemode)")
        return out


# --- loading ---------------------------------------------------------------------------------


def _key_lines(text: str) -> dict[tuple[int | None, str], int]:
    """(rule index or None for the top level, key) -> 1-based line, for error messages."""
    out: dict[tuple[int | None, str], int] = {}
    rule: int | None = None
    count = -1
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if re.match(r"\[\[\s*rule\s*\]\]", s):
            count += 1
            rule = count
            out.setdefault((rule, "[[rule]]"), n)
            continue
        if s.startswith("["):
            rule = None
            out.setdefault((None, s), n)
            continue
        m = re.match(r"([A-Za-z0-9_\-\"']+)\s*=", s)
        if m:
            out.setdefault((rule, m.group(1).strip("\"'")), n)
    return out


def builtin_path(name: str) -> Path | None:
    """A shipped profile by name ("audio", "gaming")."""
    p = resources.files("schedtop.steer") / "profiles" / f"{name}.toml"
    return Path(str(p)) if p.is_file() else None


def builtin_names() -> list[str]:
    d = resources.files("schedtop.steer") / "profiles"
    return sorted(p.name[:-5] for p in d.iterdir() if p.name.endswith(".toml"))


def resolve_path(spec: str) -> Path:
    p = Path(spec)
    if p.exists() or "/" in spec or spec.endswith(".toml"):
        return p
    return builtin_path(spec) or p


def load(spec: str | os.PathLike, here: bool = True) -> Profile:
    """Read and check a profile. ``here``: also check it against this kernel (policy "ext"
    needs sched_ext); off only to describe a profile, e.g. `schedtop profile list`."""
    path = resolve_path(str(spec))
    text = read_text_file(path, MAX_PROFILE_BYTES, ProfileError)
    return parse(text, str(path), has_ext=sched_ext_available() if here else None)


def parse(text: str, path: str = "<profile>", has_ext: bool | None = None) -> Profile:
    """``has_ext``: whether this kernel has sched_ext; False refuses policy "ext" at its line,
    None does not judge (a pure check of the file)."""
    data = toml_loads(text, path, ProfileError)
    lines = _key_lines(text)

    def fail(rule: int | None, key: str, reason: str) -> ProfileError:
        n = lines.get((rule, key)) or lines.get((rule, "[[rule]]")) or 1
        return ProfileError(f"{path}:{n}: {reason}")

    for k in data:
        if k not in TOP_KEYS:
            raise fail(None, k if (None, k) in lines else f"[{k}]", f"unknown key {_value(k)} (allowed: {', '.join(TOP_KEYS)})")
    name = data.get("name", Path(path).stem)
    if not isinstance(name, str):
        raise fail(None, "name", "name must be a string")
    desc = data.get("description", "")
    if not isinstance(desc, str):
        raise fail(None, "description", "description must be a string")
    poll = data.get("poll", 1.0)
    if isinstance(poll, bool) or not isinstance(poll, (int, float)) or not 0.1 <= poll <= 3600:
        raise fail(None, "poll", f"poll must be seconds in 0.1..3600, got {_value(poll)}")
    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, list) or not raw_rules:
        raise fail(None, "rule", "a profile needs at least one [[rule]]")
    if len(raw_rules) > MAX_RULES:
        raise fail(None, "rule", f"{len(raw_rules)} rules: at most {MAX_RULES}")
    rules = []
    globs = 0
    for i, r in enumerate(raw_rules):
        if not isinstance(r, dict):
            raise fail(None, "rule", f"rule {i + 1} is {type(r).__name__} {_value(r)}: each rule must be "
                                     "a table, written [[rule]] with its keys below")
        rule = _rule(i, r, fail)
        globs += sum(len(getattr(rule, k)) for k in SELECTORS)
        if globs > MAX_GLOBS:
            raise fail(i, "[[rule]]", f"over {MAX_GLOBS} globs in the profile (at rule {i + 1}): "
                                      "merge them into fewer patterns")
        if rule.tuning.policy == units.SCHED_EXT and has_ext is False:
            # Refused here, not per task later: every matching task would fail with EINVAL.
            raise fail(i, "policy", "policy \"ext\" needs a kernel with sched_ext (CONFIG_SCHED_CLASS_EXT); "
                                    "this kernel has none (no /sys/kernel/sched_ext)")
        rules.append(rule)
    game = data.get("gamemode")
    gamemode = None
    if game is not None:
        named = [r.index for r in rules if r.name == game] if isinstance(game, str) else []
        if not named:
            raise fail(None, "gamemode", f"gamemode must name a rule of this profile (its name = ...), got {_value(game)}")
        gamemode = named[0]
    return Profile(path=path, name=name, description=str(desc), poll_s=float(poll), rules=tuple(rules),
                   gamemode=gamemode)


def _globs(i, key, value, fail) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise fail(i, key, f"{key} must be a glob string or a list of them")
    if len(value) > MAX_GLOBS:
        raise fail(i, key, f"{len(value)} globs in {key}: at most {MAX_GLOBS} in the profile")
    return tuple(value)


def _value(v: object, n: int = 30) -> str:
    """A value from the file for a message: short, one line."""
    r = repr(v) if not isinstance(v, (list, dict)) else ("[...]" if isinstance(v, list) else "{...}")
    return r if len(r) <= n else r[: n - 3] + "..."


def _policy(text: str) -> int:
    if text.strip().lower() == "ext":
        return units.SCHED_EXT
    try:
        return units.parse_policy(text)
    except ValueError:
        raise ValueError(f"bad policy {text!r}: use one of other, batch, idle, fifo, rr, ext") from None


def _rule(i: int, r: dict, fail) -> Rule:
    for k in r:
        if k not in RULE_KEYS:
            raise fail(i, k, f"unknown key {_value(k)} in rule {i + 1} (allowed: {', '.join(RULE_KEYS)})")
    sel = {k: _globs(i, k, r[k], fail) for k in SELECTORS if k in r}
    if not sel:
        raise fail(i, "[[rule]]", f"rule {i + 1} matches everything: give comm, thread, exe or cgroup")
    policy = prio = nice = slice_ns = aff = group_nice = None
    try:
        if "policy" in r:
            if not isinstance(r["policy"], str):
                raise ValueError("policy must be a string: other, batch, idle, fifo, rr, ext")
            policy = _policy(r["policy"])
    except ValueError as exc:
        raise fail(i, "policy", str(exc)) from None
    if "priority" in r:
        if policy == units.SCHED_EXT:
            raise fail(i, "priority", "priority is for fifo/rr: under policy \"ext\" the sched_ext scheduler "
                                      "orders the tasks (nice sets their weight)")
        if policy not in units.RT_POLICIES:
            raise fail(i, "priority", "priority needs policy = \"fifo\" or \"rr\"")
        try:
            prio = units.check_rt_priority(r["priority"])
        except ValueError as exc:
            raise fail(i, "priority", str(exc)) from None
    elif policy in units.RT_POLICIES:
        prio = 88  # PipeWire's rt.prio default
    if "nice" in r:
        try:
            nice = units.check_nice(r["nice"])
        except ValueError as exc:
            raise fail(i, "nice", str(exc)) from None
    if "slice" in r:
        try:
            if isinstance(r["slice"], bool) or not isinstance(r["slice"], (str, int)):
                raise ValueError("slice must be a duration like \"3ms\" or \"default\"")
            slice_ns = units.parse_slice(r["slice"])
        except ValueError as exc:
            raise fail(i, "slice", str(exc)) from None
        if policy in units.RT_POLICIES:
            raise fail(i, "slice", "slice applies to other/batch/idle, not to fifo/rr")
        if policy == units.SCHED_EXT:
            raise fail(i, "slice", "slice is the EEVDF slice: under policy \"ext\" the sched_ext scheduler "
                                   "picks the slice (schedtop scx: its slice knob)")
    if "affinity" in r:
        try:
            if not isinstance(r["affinity"], str):
                raise ValueError("affinity must be a CPU list string like \"0-1\"")
            # Not checked against this machine's CPUs: a profile travels between machines.
            aff = units.parse_cpulist(r["affinity"], check=False)
        except ValueError as exc:
            raise fail(i, "affinity", str(exc)) from None
    if "group_nice" in r:
        g = r["group_nice"]
        if isinstance(g, bool) or not isinstance(g, int):
            raise fail(i, "group_nice", f"group_nice must be an integer -20..19, got {_value(g)}")
        if not -20 <= g <= 19:
            raise fail(i, "group_nice", f"group_nice {_value(g)} is out of range: -20..19")
        group_nice = g
    tuning = Tuning(policy=policy, rt_priority=prio, nice=nice, slice_ns=slice_ns, affinity=aff,
                    group_nice=group_nice)
    if tuning.is_empty():
        raise fail(i, "[[rule]]", f"rule {i + 1} changes nothing: give policy, nice, slice, affinity or group_nice")
    name = r.get("name", "")
    if not isinstance(name, str):
        raise fail(i, "name", "name must be a string")
    return Rule(index=i, name=name, tuning=tuning, **sel)


# --- live application ------------------------------------------------------------------------


def _read(path: str) -> str:
    try:  # a name is any bytes its owner chose: never let one stop the poll
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _comm_and_start(pid: int, tid: int) -> tuple[str, int] | None:
    """The thread's name and start time, both from its stat line."""
    st = stat_at(f"/proc/{pid}/task/{tid}/stat")
    return (st.comm, st.starttime) if st is not None else None


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:  # kernel threads have none; other users' need root
        return ""


@functools.lru_cache(maxsize=4096)
def _matcher(globs: tuple[str, ...]):
    """One compiled regex for a selector's globs: fnmatch's own cache holds 32768 patterns,
    so matching every thread against a long list would recompile them on every poll."""
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs)).match


def _any(globs: tuple[str, ...], value: str) -> bool:
    return _matcher(globs)(value) is not None


@dataclass(frozen=True, slots=True)
class Pin:
    """A process that gets one rule whatever its name (a GameMode-registered game)."""

    pid: int
    starttime: int
    comm: str
    rule: Rule
    label: str  # the journal's label for its changes


class ProfileRunner:
    """Applies a profile to existing tasks, then to new ones on each poll. ``pins_only``: poll
    only the pinned processes (the TUI's GameMode games, with no profile applied)."""

    def __init__(self, profile: Profile, journal: Journal, pins_only: bool = False) -> None:
        self.profile = profile
        self.pins_only = pins_only
        self.pins: dict[int, Pin] = {}
        self._pin_refs: dict[int, dict[str, TaskRef]] = {}  # pid -> the threads its pin changed
        self._pin_groups: dict[int, set[int]] = {}  # pid -> session groups its pin changed
        self._pin_base: dict[int, TaskParams] = {}  # pid -> its main thread before the pin
        self.journal = journal
        self.seen: dict[tuple[int, int], str] = {}  # (tid, starttime) -> comm it was judged with
        self.applied = 0
        self.errors: list[str] = []
        self.notes: list[str] = []  # said once each, e.g. SCHED_EXT with no scheduler loaded
        self._ext_noted = False
        # Session groups (None: "in no group") a group_nice was already given to or noted for.
        # Once per runner, like a thread: every cc1 of a build must not journal its group again.
        self._groups_done: set[int | None] = set()
        self._needs_exe = any(r.exe for r in profile.rules)
        self._needs_cg = any(r.cgroup for r in profile.rules)

    def match(self, proc_comm: str, thread_comm: str, exe: str, cgroup: str) -> Rule | None:
        for r in self.profile.rules:
            if r.comm and not _any(r.comm, proc_comm):
                continue
            if r.thread and not _any(r.thread, thread_comm):
                continue
            if r.exe and not _any(r.exe, exe):
                continue
            if r.cgroup and not any(_any(r.cgroup, line.split(":", 2)[-1]) for line in cgroup.splitlines()):
                continue
            return r
        return None

    def poll(self) -> list[ChangeReport]:
        """Every process on the machine: tasks not judged yet (new, or renamed) get the first
        matching rule; tasks gone since the last poll are forgotten."""
        if self.pins_only:
            return self._scan(sorted(self.pins))
        return self._scan(None)

    def pin(self, pid: int, rule: Rule, label: str) -> list[ChangeReport]:
        """Give every thread of process ``pid`` ``rule`` now (judged again even if a poll saw
        it), and its new threads at each poll, until unpin(). [] when it is gone already."""
        st = stat_at(f"/proc/{pid}/stat")
        if st is None or st.state in ("Z", "X"):
            return []
        self.pins[pid] = Pin(pid, st.starttime, st.comm, rule, label)
        self._pin_refs.setdefault(pid, {})
        self._pin_groups.setdefault(pid, set())
        try:
            tids = {int(t) for t in os.listdir(f"/proc/{pid}/task")}
        except OSError:
            tids = set()
        for key in [k for k in self.seen if k[0] in tids]:
            del self.seen[key]
        return self._scan([pid])

    def unpin(self, pid: int) -> list[Outcome]:
        """Give back what the pin of ``pid`` changed (its threads, and its session group unless
        another pin shares it); the threads stay judged, so a poll does not tune them again."""
        pin = self.pins.pop(pid, None)
        refs = self._pin_refs.pop(pid, {})
        groups = self._pin_groups.pop(pid, set())
        self._pin_base.pop(pid, None)
        if pin is None:
            return []
        outs = [o for o in map(self.journal.undo_task, refs.values()) if o is not None]
        for g in sorted(groups):
            heir = next((p for p in self.pins if self.pin_alive(self.pins[p])
                         and (ag := autogroup.read(p)) is not None and ag.id == g), None)
            if heir is not None:  # another game still runs in that session: it keeps the group's nice
                self._pin_groups[heir].add(g)
                continue
            o = self.journal.undo_group(g)
            self._groups_done.discard(g)
            if o is not None:
                outs.append(o)
        return outs

    def pin_alive(self, pin: Pin) -> bool:
        return same_process(pin.pid, pin.starttime)

    def _pinned(self, pin: Pin, rep: ChangeReport) -> None:
        """Remember what a pin changed, for unpin(). A thread the game started after its main
        thread was tuned inherited the rule's values at clone (nice, slice, policy): nothing to
        change, but it is journaled all the same, with the main thread's values from before the
        pin for exactly those attributes, so unpin() and restore give it back too."""
        refs = self._pin_refs[pin.pid]
        for r in rep.results:
            if r.ok and not r.unchanged:
                refs[f"{r.ref.tid}:{r.ref.starttime}"] = r.ref
                if r.ref.tid == pin.pid and r.before is not None:
                    self._pin_base[pin.pid] = r.before
        self._pin_groups[pin.pid].update(g.entry.group for g in rep.groups if g.ok)
        base = self._pin_base.get(pin.pid)
        born = [r for r in rep.results if r.unchanged and r.after is not None and r.ref.tid != pin.pid
                and f"{r.ref.tid}:{r.ref.starttime}" not in refs]
        if base is None or not born:
            return
        tuned = target_params(base, pin.rule.tuning)
        attrs = [a for a in TASK_ATTRS if attr_of(tuned, a) != attr_of(base, a)]
        entries, wants = [], []
        for r in born:
            now = r.after
            assert now is not None
            if all(attr_of(now, a) == attr_of(tuned, a) for a in attrs):
                before = now
                for a in attrs:
                    before = with_attr(before, a, attr_of(base, a))
                entries.append((r.ref, before))
                wants.append(now)
                refs[f"{r.ref.tid}:{r.ref.starttime}"] = r.ref
        if entries:
            self.journal.record(f"{pin.label} (thread started with the rule)", entries, wants=wants)

    def poll_pids(self, pids: Iterable[int]) -> list[ChangeReport]:
        """Only these processes, at once: the exec hook's path (exec_watch.py) between polls."""
        return self._scan(sorted(set(pids)))

    def _scan(self, only: list[int] | None) -> list[ChangeReport]:
        me = os.getpid()
        groups: dict[tuple[int, int], list[TaskRef]] = {}  # (rule, pinned pid or -1) -> threads
        alive: set[tuple[int, int]] = set()
        names = os.listdir("/proc") if only is None else [str(p) for p in only]
        for name in names:
            if not name.isdigit() or int(name) == me:
                continue
            pid = int(name)
            proc_comm = _read(f"/proc/{pid}/comm").rstrip("\n")
            pin = self.pins.get(pid)
            if pin is not None and not self.pin_alive(pin):
                pin = None  # the pid names another process now: judged by the rules
            exe = cg = None
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for t in tids:
                tid = int(t)
                got = _comm_and_start(pid, tid)  # one read per thread per poll
                if got is None:
                    continue
                comm, st = got
                key = (tid, st)
                alive.add(key)
                if self.seen.get(key) == comm:
                    continue
                self.seen[key] = comm
                if exe is None:
                    exe = _exe(pid) if self._needs_exe else ""
                    cg = _read(f"/proc/{pid}/cgroup") if self._needs_cg else ""
                if pin is not None:
                    groups.setdefault((pin.rule.index, pid), []).append(TaskRef(pid, tid, st, comm))
                    continue
                rule = self.match(proc_comm, comm, exe, cg or "")
                if rule is not None:
                    groups.setdefault((rule.index, -1), []).append(TaskRef(pid, tid, st, comm))
        gone = [key for key in self.seen if key not in alive] if only is None else []
        for key in gone:
            del self.seen[key]
        if gone and len(self.journal):
            self.journal.prune()  # a profile on a busy box sees many short-lived tasks: keep the file small
        reports = []
        for (idx, pinned), refs in sorted(groups.items()):
            rule = self.profile.rules[idx]
            pin = self.pins.get(pinned)
            tuning, sessions = rule.tuning, set()
            if tuning.group_nice is not None:
                sessions = {g.id if g else None for g in map(autogroup.read, (r.pid for r in refs))}
                if sessions <= self._groups_done:
                    tuning = replace(tuning, group_nice=None)
                    if tuning.is_empty():
                        continue
            label = pin.label if pin is not None else f"profile {self.profile.name}: {rule.label}"
            try:
                rep = change(refs, tuning, self.journal, label)
            except SteerError as exc:  # refused before anything changed (e.g. no sched_ext after all)
                self.errors.append(f"{label}: {exc}")
                continue
            self._groups_done |= sessions
            if pin is not None:
                self._pinned(pin, rep)
            self.applied += rep.changed
            self.errors.extend(r.error for r in rep.errors())
            reports.append(rep)
            if rep.changed and rule.tuning.policy == units.SCHED_EXT and not self._ext_noted:
                from schedtop.steer.ext import note_after_move

                self._ext_noted = True
                note = note_after_move()
                if note:
                    self.notes.append(note)
        return reports
