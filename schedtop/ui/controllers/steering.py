"""Steering as the TUI drives it: the session journal, what a key acts on, apply, undo and
restore, the crash-recovery offer, a profile's poll and exec-hook threads, and the per-task
knobs of schedtop's sched_ext scheduler that the same keys set while it runs.

Every change goes through the session journal first; closing the session restores it (or
hands it to `schedtop restore` with --keep), a crash leaves it for the next start.

A call from the UI thread returns a Reply: what to tell the user, in order, and at most one
question or choice a change waits on (its `answer` comes back here). So a key's effect is
known when its handler returns. The profile's threads post Note messages through `post`.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol

from textual.message import Message
from textual.notifications import SeverityLevel

from schedtop.collect import kernel_caps
from schedtop.model import Task
from schedtop.scx.supervisor import ScxOptions
from schedtop.steer import autogroup, units
from schedtop.steer import ext as ext_moves
from schedtop.steer.actions import (
    SteerError,
    TaskParams,
    TaskRef,
    Tuning,
    base_slice_mounted,
    is_alive,
    read_base_slice,
    read_params,
    ref_for,
)
from schedtop.steer.change import ChangeReport, change, change_base_slice, check
from schedtop.steer.journal import ActiveChange, Journal, JournalError, Outcome, hand_over, summarize
from schedtop.steer.profiles import ProfileError, ProfileRunner, load
from schedtop.steer.targets import thread_refs

SLICE_STEPS = (500_000, 1_000_000, 3_000_000, 6_000_000, 0)  # 0 = the kernel default
BASE_SLICE_STEPS = (500_000, 1_000_000, 3_000_000, 6_000_000)  # G: then the original value
# Boost also sets the session autogroup's nice: with autogroup on, task nice alone buys nothing
# against another session's hogs (bench/audio.py). The notification says it hits the whole session.
BOOST = Tuning(nice=-10, slice_ns=1_000_000, group=True)
RT_BOOST_PRIO = 88  # PipeWire's rt.prio
EXT_REFUSAL = "moving tasks into SCHED_EXT needs the scheduler loaded in partial mode"
EXEC_WAIT_MS = 200  # how often the exec-hook thread looks up from the ring to see if it should stop

Post = Callable[[Message], object]
Record = Callable[[dict[str, Any]], None]


class Note(Message, namespace="steering"):
    """A line for the user (a notification): returned in a Reply, or posted from a thread."""

    def __init__(self, text: str, severity: SeverityLevel = "information", timeout: float = 5) -> None:
        super().__init__()
        self.text, self.severity, self.timeout = text, severity, timeout


@dataclass(frozen=True, slots=True)
class Ask:
    """A yes/no question a change waits on."""

    title: str
    text: str
    yes: str
    answer: Callable[[bool], Reply]
    no: str = "No"


@dataclass(frozen=True, slots=True)
class ChooseCpus:
    """Which CPUs to pin `who` to (None: cancelled)."""

    who: str
    current: tuple[int, ...]
    online: tuple[int, ...]
    answer: Callable[[tuple[int, ...] | None], Reply]


@dataclass(frozen=True, slots=True)
class ChoosePolicy:
    """Which (policy, RT priority) for `who` (None: cancelled)."""

    who: str
    current: str
    answer: Callable[[tuple[int, int] | None], Reply]


@dataclass(frozen=True, slots=True)
class ChangeRow:
    key: str  # "tid:starttime", "group:ID" for a session autogroup's nice, or "base_slice"
    task: str
    what: str
    before: str
    now: str


@dataclass(frozen=True, slots=True)
class ShowChanges:
    """The changes pane: its rows and the undo calls it makes."""

    rows: Callable[[], list[ChangeRow]]
    undo_row: Callable[[str], str]
    undo_last: Callable[[], str]
    restore_all: Callable[[], str]


@dataclass(frozen=True, slots=True)
class Quit:
    """The session cannot go on (a profile that does not load): say `text` after the terminal
    is given back, and end with `code`."""

    text: str
    code: int


Item = Note | Ask | ChooseCpus | ChoosePolicy | ShowChanges | Quit
Reply = list[Item]


@dataclass(frozen=True, slots=True)
class Target:
    """What a key acts on: the task under the cursor, and whether the view shows processes
    (then every thread of its process is steered, as with the scope key)."""

    task: Task | None
    processes: bool = False


class Knobs(Protocol):
    """What steering needs of schedtop's sched_ext scheduler (the SchedulerController)."""

    @property
    def running(self) -> bool: ...

    @property
    def options(self) -> ScxOptions: ...

    def steer(self, what: str, pid: int, **values: Any) -> bool: ...


class _Say(Exception):
    """Raised on the way to a change that cannot happen: the note says why."""

    def __init__(self, note: Note) -> None:
        super().__init__(note.text)
        self.note = note


P = ParamSpec("P")


def _replies(fn: Callable[P, Reply]) -> Callable[P, Reply]:
    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> Reply:
        try:
            return fn(*args, **kwargs)
        except _Say as say:
            return [say.note]

    return run


def who(refs: list[TaskRef]) -> str:
    if len(refs) == 1:
        return refs[0].label()
    return f"{refs[0].comm or refs[0].pid}[{refs[0].pid}] ({len(refs)} threads)"


class SteeringSession:
    """Plain object: no Textual app, screen or widget. `post` is the app's post_message (safe
    from any thread), `record` puts an action into the --record file, `knobs` is schedtop's
    sched_ext scheduler. `live` is False for a replay: nothing to steer. `keep`: on close,
    hand the changes to `schedtop restore` instead of restoring them. `exec_hook`: a profile
    also listens to the BPF exec/rename hook between its polls."""

    def __init__(self, post: Post, record: Record, knobs: Knobs, *, live: bool = True, keep: bool = False,
                 exec_hook: bool = True, gamemode: bool = True) -> None:
        self._post = post
        self._record = record
        self._knobs = knobs
        self.live = live
        self.keep = keep
        self._use_exec_hook = exec_hook
        self.journal: Journal | None = None  # opened by start(); None: steering is off
        self.all_threads = False  # the scope key: every thread of the selected task's process
        self._lock = threading.Lock()  # a profile's threads vs. each other and the restore on close
        self._stopped = threading.Event()
        self._runner: ProfileRunner | None = None
        self._notes_said = 0
        self._threads: list[threading.Thread] = []
        self._exec_mode: str | None = None  # the exec hook's attach mode, or why it does not run
        self._closed = False
        self._use_gamemode = gamemode  # GameMode's games get the game rule while it runs (gamemode.py)
        self._games: Any = None  # the GameFollower, once the session bus answered
        self.gamemode_state: str | None = None  # why GameMode is not followed, or None
        self._gm_thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> Reply:
        """Open the session journal and offer to restore what a crashed session left. Once,
        when the app runs (the answers need a screen)."""
        if not self.live:
            return []
        try:
            self.journal = Journal.session()
        except JournalError as exc:
            return [Note(f"steering off: {exc}", "error", 10)]
        if self._use_gamemode:  # a thread of its own, not a profile's (_threads)
            self._gm_thread = threading.Thread(target=self._gamemode_loop, args=(self.journal,),
                                               name="steer-gamemode", daemon=True)
            self._gm_thread.start()
        return self._recovery()

    def close(self) -> str | None:
        """Stop the profile's threads and give every change back (or hand it over with keep).
        What was done, to be said once the terminal is the user's again; None if nothing was."""
        if self._closed:
            return None
        self._closed = True
        self._stopped.set()
        journal = self.journal
        if journal is None:
            return None
        with self._lock:  # let an in-flight profile poll finish first
            if not journal.steps and not journal.path.exists():
                return None
            if self.keep:
                n = hand_over(journal)
                msg = f"schedtop: kept changes on {n} thread(s) (--keep); undo with `schedtop restore`"
            else:
                outcomes = journal.restore_all()
                fails = [o.line() for o in outcomes if o.status == "failed"]
                msg = f"schedtop: restored on exit: {summarize(outcomes)}" + "".join(f"\n  {f}" for f in fails)
        self._record({"type": "steer.restore", "message": msg})
        for t in [*self._threads, *([self._gm_thread] if self._gm_thread else [])]:
            t.join(timeout=1.0)  # the exec hook looks up every EXEC_WAIT_MS and closes its ring
        return msg

    def status(self) -> dict[str, Any]:
        """What steering is doing right now."""
        runner = self._runner
        return {"changed": len(self.journal) if self.journal is not None else 0, "all_threads": self.all_threads,
                "profile": runner.profile.name if runner is not None else None, "exec_hook": self._exec_mode,
                "gamemode": self.gamemode_state, "games": [g.label() for g in self.games()]}

    def games(self) -> list[Any]:
        """The games in game mode now (gamemode.Game), for the header."""
        return self._games.games() if self._games is not None else []

    # --- what a key acts on ---------------------------------------------------------------

    def _journal(self) -> Journal:
        if not self.live:
            raise _Say(Note("replay: nothing live to steer", "warning"))
        if self.journal is None:
            raise _Say(Note("steering is off (no journal; see the earlier error)", "error"))
        return self.journal

    def targets(self, target: Target) -> list[TaskRef]:
        """The threads a key changes: the selected one, or its whole process (scope key, or a
        view of processes). Raises _Say when there is nothing to change."""
        self._journal()
        task = target.task
        if task is None:
            raise _Say(Note("no task selected", "warning"))
        if self.all_threads or target.processes:
            refs = thread_refs(task.pid)
            if not refs:
                raise _Say(Note(f"pid {task.pid} has exited", "warning"))
            return refs
        try:
            ref = ref_for(task.tid, task.pid)
        except SteerError as exc:
            raise _Say(Note(str(exc), "warning")) from None
        if task.starttime and ref.starttime != task.starttime:
            raise _Say(Note(f"pid {task.tid} now belongs to another task: not touched", "warning"))
        return [ref]

    def _selection(self, target: Target) -> tuple[list[TaskRef], TaskParams]:
        """The target threads and the first one's current parameters (to step from)."""
        refs = self.targets(target)
        try:
            return refs, read_params(refs[0])
        except SteerError as exc:
            raise _Say(Note(str(exc), "warning")) from None

    # --- changes --------------------------------------------------------------------------

    @_replies
    def apply(self, tuning: Tuning, refs: list[TaskRef], label: str | None = None, force: bool = False) -> Reply:
        """Change `refs` as `tuning` says, journaled first. A change the kernel or this user
        could not take back (pid 1, a kernel thread, a raise without root) is asked first."""
        return self._apply(tuning, refs, label, force)[0]

    def _apply(self, tuning: Tuning, refs: list[TaskRef], label: str | None = None,
               force: bool = False) -> tuple[Reply, ChangeReport | None]:
        journal = self._journal()
        text = f"{label or tuning.describe()}: {who(refs)}"
        try:
            why = None if force else check(refs, tuning)
        except SteerError:
            why = None  # change() says it
        if why:
            def answer(yes: bool) -> Reply:
                return self.apply(tuning, refs, label, force=True) if yes else []

            return [Ask("Change anyway?", f"{why}.", "Change", answer)], None
        try:
            report = change(refs, tuning, journal, text, force=force)
        except (SteerError, JournalError) as exc:
            return [Note(str(exc), "error", 8)], None
        note = self._report(report)
        self._knobs_for(report, tuning, text)
        return [note], report

    def _report(self, report: ChangeReport) -> Note:
        errs = report.errors()
        self._record({
            "type": "steer", "label": report.label,
            "tids": [r.ref.tid for r in report.results if r.ok],
            "errors": [r.error for r in errs],
        })
        # A session group change hits other tasks too: leave it on screen longer.
        return Note(report.summary(), "error" if errs else "information", 8 if errs or report.groups else 4)

    @_replies
    def step_slice(self, target: Target) -> Reply:
        """S: the next of SLICE_STEPS after the task's slice now."""
        refs, have = self._selection(target)
        why = kernel_caps.why_not("slice")  # CFS (6.1) and EEVDF before 6.12 have no per-task slice
        if why:
            return [Note(f"S is unsupported here: {why}", "warning")]
        if have.policy in units.RT_POLICIES:
            return [Note(f"{who(refs)} is {units.POLICY_NAME[have.policy]}: a slice only applies "
                         "to OTHER/BATCH/IDLE (use Y to change the policy)", "warning")]
        i = SLICE_STEPS.index(have.slice_ns) if have.slice_ns in SLICE_STEPS else len(SLICE_STEPS) - 1
        return self.apply(Tuning(slice_ns=SLICE_STEPS[(i + 1) % len(SLICE_STEPS)]), refs)

    @_replies
    def pin(self, target: Target) -> Reply:
        """a: choose CPUs, then pin."""
        refs, have = self._selection(target)

        def answer(cpus: tuple[int, ...] | None) -> Reply:
            return self.apply(Tuning(affinity=tuple(cpus)), refs) if cpus else []

        return [ChooseCpus(who(refs), have.affinity, units.online_cpus(), answer)]

    def toggle_scope(self) -> Reply:
        """A: the selected thread only, or every thread of its process."""
        self.all_threads = not self.all_threads
        return [Note("steering every thread of the process" if self.all_threads
                     else "steering the selected thread only")]

    @_replies
    def nice(self, target: Target, delta: int) -> Reply:
        refs, have = self._selection(target)
        new = max(-20, min(19, have.nice + delta))
        if new == have.nice:
            return [Note(f"nice is already {new}", "warning")]
        return self.apply(Tuning(nice=new), refs)

    @_replies
    def boost(self, target: Target) -> Reply:
        """b: the fair-class boost (an RT task is brought back to OTHER for it)."""
        refs, have = self._selection(target)
        if have.policy in units.RT_POLICIES:
            return self.apply(Tuning(policy=units.SCHED_OTHER, nice=-10, slice_ns=1_000_000, group=True),
                              refs, "boost")
        return self.apply(BOOST, refs, "boost")

    @_replies
    def rt_boost(self, target: Target) -> Reply:
        """B: SCHED_FIFO RT_BOOST_PRIO, asked first."""
        refs = self.targets(target)

        def answer(yes: bool) -> Reply:
            if not yes:
                return []
            return self.apply(Tuning(policy=units.SCHED_FIFO, rt_priority=RT_BOOST_PRIO), refs, "RT boost")

        return [Ask("RT boost",
                    f"Run {who(refs)} as SCHED_FIFO {RT_BOOST_PRIO}?\n\n"
                    "A FIFO task runs until it blocks: if it spins, it starves every fair task on its CPU "
                    "(the kernel keeps 5% back). It is undone on quit, with z, or by `schedtop restore`.",
                    "Boost", answer)]

    @_replies
    def demote(self, target: Target, which: str) -> Reply:
        """d/D: SCHED_BATCH or SCHED_IDLE."""
        return self.apply(Tuning(policy=units.parse_policy(which)), self.targets(target))

    @_replies
    def choose_policy(self, target: Target) -> Reply:
        """Y: any policy, with a priority for FIFO/RR."""
        refs, have = self._selection(target)

        def answer(choice: tuple[int, int] | None) -> Reply:
            if choice is None:
                return []
            policy, prio = choice
            return self.apply(Tuning(policy=policy, rt_priority=prio or None), refs)

        return [ChoosePolicy(who(refs), have.describe(), answer)]

    @_replies
    def step_base_slice(self) -> Reply:
        """G: the global EEVDF base slice, 0.5, 1, 3, 6 ms, then the original (root, debugfs)."""
        journal = self._journal()
        why = kernel_caps.why_not("base_slice")
        if why:
            return [Note(f"G is unsupported here: {why}", "warning")]
        if os.geteuid() != 0:
            return [Note("the global base slice needs root (debugfs); per-task slices (S) work as any user", "error")]
        if base_slice_mounted():
            return self._base_slice_step(journal)

        def answer(yes: bool) -> Reply:
            return self._base_slice_step(journal) if yes else []

        return [Ask("Mount debugfs?",
                    "The global base slice lives in debugfs (/sys/kernel/debug/sched/base_slice_ns), which is "
                    "not mounted. Mount it now? It stays mounted; the slice itself is put back on quit.",
                    "Mount", answer)]

    def _base_slice_step(self, journal: Journal) -> Reply:
        try:
            now = read_base_slice()
        except SteerError as exc:
            return [Note(str(exc), "error", 8)]
        active = journal.active_base_slice()
        orig = active[0] if active else now
        steps = [s for s in BASE_SLICE_STEPS if s != orig] + [orig]  # the original comes last
        nxt = steps[(steps.index(now) + 1) % len(steps)] if now in steps else steps[0]
        try:
            if active and nxt == orig:  # back at the original: the journal puts it back and forgets it
                out = journal.undo_base_slice()
                if out is not None and out.status == "failed":
                    raise SteerError(out.message)
                msg = f"base slice back to {units.format_ns(orig)} (the original)"
            else:
                msg = change_base_slice(nxt, journal, current=now)
        except (SteerError, JournalError) as exc:
            return [Note(str(exc), "error", 8)]
        self._record({"type": "steer.base_slice", "ns": nxt})
        return [Note(f"global {msg}")]

    @_replies
    def toggle_ext(self, target: Target) -> Reply:
        """E: move the target into SCHED_EXT, or an EXT one back out.

        Both are ordinary steering changes through the session journal: shown in the changes
        pane, reverted by undo, on close and by `schedtop restore`. Into EXT only while
        schedtop's scheduler runs in partial mode (otherwise it would not be what schedules the
        task); out of EXT always (the safe direction), back to the journaled policy."""
        if not self.live:
            return [Note("replay: no live scheduler to drive", "warning")]
        refs = self.targets(target)
        journal = self._journal()
        try:
            into = read_params(refs[0]).policy != units.SCHED_EXT  # live, not the snapshot's
        except SteerError as exc:
            return [Note(str(exc), "warning")]
        if into and not (self._knobs.running and self._knobs.options.partial):
            return [Note(EXT_REFUSAL, "warning")]
        if into:
            tuning, label = ext_moves.INTO, ext_moves.INTO_LABEL
        else:
            tuning, label = ext_moves.out_tuning(refs[0], [journal, *_shared_journal()]), ext_moves.OUT_LABEL
        reply, report = self._apply(tuning, refs, label)
        if report is not None and report.changed:
            self._record({"type": "scx.ext", "pid": refs[0].tid, "on": into, "label": report.label})
        return reply

    # --- undo, restore and the changes pane -------------------------------------------------

    def undo_last(self) -> str:
        """z: revert the newest change."""
        journal = self.journal
        if journal is None:
            return "nothing to undo"
        try:
            res = journal.undo_last()
        except JournalError as exc:
            return str(exc)
        if res is None:
            return "nothing to undo"
        label, outcomes = res
        self._knobs_reset(outcomes)
        self._record({"type": "steer.undo", "label": label})
        failed = [o.line() for o in outcomes if o.status == "failed"]
        return f"undo {label}: {summarize(outcomes)}" + (f" ({failed[0]})" if failed else "")

    def changes(self) -> Reply:
        """c: the changes pane."""
        if self.journal is None:
            return [Note("no changes (steering is off)", "warning")]
        return [ShowChanges(self.rows, self.undo_row, self.undo_last, self.restore_all)]

    def rows(self) -> list[ChangeRow]:
        """Every active change: threads, session groups, the base slice; what each was and is now."""
        journal = self.journal
        if journal is None:
            return []
        journal.prune()
        rows = []
        for a in journal.active():
            try:
                now = read_params(a.ref).describe()
            except SteerError:
                now = "gone"
            rows.append(ChangeRow(f"{a.ref.tid}:{a.ref.starttime}", a.ref.label(),
                                  " + ".join(lbl.split(": ")[0] for lbl in a.labels), a.before.describe(), now))
        for g, labels in journal.active_groups():
            cur = autogroup.read(g.member.pid) if is_alive(g.member) else None
            rows.append(ChangeRow(f"group:{g.group}", g.label(),
                                  " + ".join(lbl.split(": ")[0] for lbl in labels),
                                  f"session nice {g.nice}", f"session nice {cur.nice}" if cur else "?"))
        base = journal.active_base_slice()
        if base is not None:
            try:
                cur_base = units.format_ns(read_base_slice())
            except SteerError:
                cur_base = "?"
            rows.append(ChangeRow("base_slice", "kernel (every fair task)", "global base slice",
                                  f"base slice {units.format_ns(base[0])}", f"base slice {cur_base}"))
        return rows

    def undo_row(self, key: str) -> str:
        """Undo one row of rows() by its key."""
        journal = self.journal
        if journal is None:
            return "nothing to undo"
        if key == "base_slice":
            out = journal.undo_base_slice()
            self._record({"type": "steer.undo_base_slice"})
            return out.line() if out else "nothing to undo"
        if key.startswith("group:"):
            group = int(key.split(":")[1])
            out = journal.undo_group(group)
            self._record({"type": "steer.undo_group", "group": group})
            return out.line() if out else "nothing to undo"
        tid, st = (int(x) for x in key.split(":"))
        for a in journal.active():
            if (a.ref.tid, a.ref.starttime) == (tid, st):
                out = journal.undo_task(a.ref)
                self._knobs_reset([out] if out else [])
                self._record({"type": "steer.undo_task", "tid": tid})
                return out.line() if out else "nothing to undo"
        return "nothing to undo"

    def restore_all(self) -> str:
        journal = self.journal
        if journal is None:
            return "nothing to restore"
        outcomes = journal.restore_all()
        self._knobs_reset(outcomes)
        self._record({"type": "steer.restore", "message": summarize(outcomes)})
        return f"restore all: {summarize(outcomes)}"

    def _recovery(self) -> Reply:
        """What a crashed session left behind, offered back; files refused or moved aside said once."""
        try:
            found, problems = Journal.scan()
        except JournalError as exc:
            return [Note(str(exc), "error")]
        out: Reply = [Note(p, "error", 15) for p in problems]
        orphans = [j for j in found if j.owner is not None and len(j)]
        if not orphans:
            return out
        n = sum(len(j) for j in orphans)
        pids = ", ".join(str(j.owner[0]) for j in orphans if j.owner)

        def answer(yes: bool) -> Reply:
            if not yes:
                return [Note("left as they are: `schedtop restore` undoes them later")]
            outs = [o for j in orphans for o in j.restore_all()]
            self._record({"type": "steer.recover", "message": summarize(outs)})
            return [Note(f"restored the crashed session's changes: {summarize(outs)}")]

        out.append(Ask("Restore after a crash?",
                       f"A previous schedtop session (pid {pids}) ended without restoring its changes to "
                       f"{n} thread(s). Put them back as they were?", "Restore", answer, no="Leave"))
        return out

    # --- schedtop's sched_ext scheduler ------------------------------------------------------

    def _knobs_for(self, report: ChangeReport, tuning: Tuning, label: str) -> None:
        """While schedtop's sched_ext scheduler runs, the same keys also set its per-task knobs:
        under sched_ext the EEVDF slice means nothing. RT tasks bypass it."""
        if not self._knobs.running:
            return
        for r in report.results:
            if not r.ok:
                continue
            if label.startswith("boost"):
                self._knobs.steer("boost", r.ref.tid)
            elif tuning.policy in (units.SCHED_BATCH, units.SCHED_IDLE):
                self._knobs.steer("demote", r.ref.tid)
            elif tuning.policy not in units.RT_POLICIES:
                values: dict[str, Any] = {}
                if tuning.slice_ns is not None:
                    values["slice_ns"] = tuning.slice_ns or None
                if tuning.affinity is not None:
                    values["cpu"] = tuning.affinity[0] if len(tuning.affinity) == 1 else None
                if values:
                    self._knobs.steer("knob", r.ref.tid, **values)

    def _knobs_reset(self, outcomes: list[Outcome]) -> None:
        if not self._knobs.running:
            return
        still = {a.ref.tid: a for a in self.journal.active()} if self.journal is not None else {}
        for o in outcomes:
            if o.status == "restored" and o.group is None and o.base_slice is None:  # no scx knob for those
                self._knobs.steer("reset", o.ref.tid)
                if o.ref.tid in still:  # an undo of one change: the task's other changes keep their knobs
                    self._knobs_resend(still[o.ref.tid])

    def _knobs_resend(self, a: ActiveChange) -> None:
        """The scheduler knobs for what still differs from the task's original state."""
        try:
            now = read_params(a.ref)
        except SteerError:
            return
        tid, before = a.ref.tid, a.before
        if any(lbl.startswith("boost") for lbl in a.labels):
            self._knobs.steer("boost", tid)
        elif now.policy in (units.SCHED_BATCH, units.SCHED_IDLE) and now.policy != before.policy:
            self._knobs.steer("demote", tid)
        values: dict[str, Any] = {}
        if now.slice_ns != before.slice_ns:
            values["slice_ns"] = now.slice_ns or None
        if now.affinity != before.affinity and len(now.affinity) == 1:
            values["cpu"] = now.affinity[0]
        if values:
            self._knobs.steer("knob", tid, **values)

    # --- profiles -----------------------------------------------------------------------------

    def start_profile(self, spec: str) -> Reply:
        """Apply a profile live: a poll of every task now and every `poll` seconds, and between
        polls what the BPF exec/rename hook reports, each on a thread of its own."""
        journal = self.journal
        if not self.live or journal is None:
            return []  # a replay steers nothing; without a journal start() said why
        try:
            prof = load(spec)
        except ProfileError as exc:
            return [Quit(f"schedtop: {exc}", 2)]
        runner = ProfileRunner(prof, journal)
        with self._lock:
            self._runner = runner  # a runner started before this one sees it is replaced and stops
            self._notes_said = 0
        self._spawn(f"steer-profile-{prof.name}", self._poll_loop, runner, prof.poll_s)
        if self._use_exec_hook:
            self._spawn(f"steer-exec-{prof.name}", self._exec_loop, runner)
        return [Note(f"profile {prof.name}: applying live ({len(prof.rules)} rules)")]

    def _spawn(self, name: str, fn: Callable[..., None], *args: Any) -> None:
        t = threading.Thread(target=fn, args=args, name=name, daemon=True)
        self._threads.append(t)
        t.start()

    def _over(self, runner: ProfileRunner) -> bool:
        return self._stopped.is_set() or self._runner is not runner

    def _poll_loop(self, runner: ProfileRunner, every: float) -> None:
        due = time.monotonic()
        said = ""
        while True:
            with self._lock:
                if self._over(runner):
                    return
                try:
                    reports = runner.poll()
                except Exception as exc:  # a thread must not die silently: said once, the next poll tries again
                    reports, said = [], self._say_once(f"profile {runner.profile.name}: {exc}", said)
                notes = self._new_notes(runner)
            if not self._hand_over(notes, reports):
                return
            due = max(due + every, time.monotonic())
            if self._stopped.wait(due - time.monotonic()):
                return

    def _exec_loop(self, runner: ProfileRunner) -> None:
        """Between polls, tune what the BPF exec/rename hook reports as soon as it happens
        (the poll stays: it catches whatever the hook dropped or cannot see)."""
        from schedtop.steer.exec_watch import open_watch

        hook, why = open_watch()
        self._exec_mode = hook.mode if hook is not None else why
        if hook is None:
            return
        try:
            while not self._over(runner):
                hits = hook.wait(EXEC_WAIT_MS)
                if not hits:
                    continue
                with self._lock:
                    if self._over(runner):
                        return
                    reports = runner.poll_pids(e.tgid for e in hits)
                    notes = self._new_notes(runner)
                if not self._hand_over(notes, reports):
                    return
        finally:
            hook.close()

    def _gamemode_loop(self, journal: Journal) -> None:
        """While GameMode runs on the session bus, its registered games get the game rule: the
        --profile's (its `gamemode = RULE`) or the shipped gaming profile's, on a runner that
        polls only the games. No session bus: said in status(), not as an error (most terminals
        over ssh have none)."""
        from schedtop.steer import gamemode

        try:
            bus = gamemode.GameModeBus(gamemode.connect())
            _, shipped = gamemode.game_rule("gaming")
        except (gamemode.GameModeError, ProfileError, ValueError, OSError) as exc:
            self.gamemode_state = f"off: {exc}"
            return

        def rule() -> Any:
            prof = self._runner.profile if self._runner is not None else None
            return prof.game_rule if prof is not None and prof.game_rule is not None else shipped

        runner = ProfileRunner(load("gaming"), journal, pins_only=True)
        follower = gamemode.GameFollower(bus, runner, rule, self._lock, self._stopped)
        self._games = follower
        polled = time.monotonic()
        try:
            lines = follower.start()
            while not self._stopped.is_set():
                self._post_games(lines)
                lines = follower.step(0.2)
                if runner.pins and time.monotonic() - polled >= 1.0:  # threads a game started since
                    polled = time.monotonic()
                    with self._lock:
                        if self._stopped.is_set():
                            return
                        reports = runner.poll()
                    if not self._hand_over((), reports):
                        return
        except Exception as exc:  # the bus went away: said once, the journal keeps what was done
            self.gamemode_state = f"off: {exc}"
            self._post(Note(f"gamemode: {exc}", "warning", 10))
        finally:
            bus.close()

    def _post_games(self, lines: list[str]) -> None:
        for line in lines:
            if "waiting for" not in line:  # GameMode not running is the usual case: not worth a note
                self._post(Note(line))

    def _say_once(self, text: str, said: str) -> str:
        if text != said:
            self._post(Note(text, "error", 10))
        return text

    def _new_notes(self, runner: ProfileRunner) -> list[str]:
        """The runner's one-off notes not posted yet (e.g. SCHED_EXT with no scheduler loaded);
        under self._lock, from either thread."""
        new = runner.notes[self._notes_said:]
        self._notes_said = len(runner.notes)
        return new

    def _hand_over(self, notes: Iterable[str], reports: list[ChangeReport]) -> bool:
        """Notes as warnings, then each report, posted to the app. False once the app no longer
        takes messages (it is shutting down; the journal already has every change)."""
        for msg in [*(Note(n, "warning", 10) for n in notes), *(self._report(r) for r in reports)]:
            if self._post(msg) is False:
                return False
        return True


def _shared_journal() -> list[Journal]:
    """`schedtop set`'s journal, so E takes a task moved in by `schedtop set --ext` back out to
    its old policy too (the shared journal keeps that step for `schedtop restore`)."""
    try:
        return [Journal.shared()]
    except JournalError:
        return []
