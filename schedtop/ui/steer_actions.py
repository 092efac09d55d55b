"""Key bindings and actions of one feature area, mixed into SchedtopApp.

Owned by the steering engineer (issue 5). The app concatenates `BINDINGS` below into its own
(every Binding has an id, so the keymap can remap it) and calls
`steer_mount()` on mount and `steer_unmount()` on exit.

What the host app provides to mixins:
  self.snapshot: Snapshot | None      the latest snapshot shown
  self.selected_task() -> Task | None the task under the cursor
  self.record_action(action: dict)    journal the action into --record output
  self.source                          the live or replay source (LiveSource.add_extra exists on live)

Keys (htop where htop has one): S slice step, a pin (CPU chooser), A thread/process scope,
F7/F8 nice -/+, b boost (nice -10 + 1 ms slice, and nice -10 for its session autogroup
when autogroup is on: that reaches every task of the session, the notification says so), B RT boost (FIFO 88, asks first),
d BATCH, D IDLE, Y policy chooser, z undo, c changes pane. Every change goes through the
session journal first; quitting restores it (unless --keep), a crash leaves it for the next
start or `schedtop restore`.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import Any

from textual import work
from textual.binding import Binding

from schedtop.collect import kernel_caps
from schedtop.steer import units
from schedtop.steer import autogroup
from schedtop.steer.actions import (
    SteerError, TaskParams, TaskRef, Tuning, base_slice_mounted, is_alive, read_base_slice, read_params, ref_for,
)
from schedtop.steer.change import ChangeReport, change, change_base_slice, check
from schedtop.steer.journal import Journal, JournalError, hand_over, summarize
from schedtop.steer.targets import thread_refs

SLICE_STEPS = (500_000, 1_000_000, 3_000_000, 6_000_000, 0)  # 0 = the kernel default
BASE_SLICE_STEPS = (500_000, 1_000_000, 3_000_000, 6_000_000)  # G: then the original value
# Boost also sets the session autogroup's nice: with autogroup on, task nice alone buys nothing
# against another session's hogs (bench/audio.py). The notification says it hits the whole session.
BOOST = Tuning(nice=-10, slice_ns=1_000_000, group=True)
RT_BOOST_PRIO = 88  # PipeWire's rt.prio


def _b(key: str, action: str, description: str, ident: str, tooltip: str, show: bool = False) -> Binding:
    return Binding(key, action, description, show=show, id=f"schedtop.steer.{ident}", tooltip=tooltip)


BINDINGS: list[Binding] = [
    _b("S", "steer_slice", "Slice", "slice", "Step the EEVDF slice: 0.5, 1, 3, 6 ms, default", show=True),
    _b("G", "steer_base_slice", "Base slice", "base_slice",
       "Step the global EEVDF base slice (debugfs, root): 0.5, 1, 3, 6 ms, then back to the original"),
    _b("a", "steer_pin", "Pin", "pin", "Pin to CPUs: one, a list, or all (like htop's a)", show=True),
    _b("A", "steer_scope", "Scope", "scope", "Steer the selected thread only, or every thread of its process"),
    _b("f7", "steer_nice(-1)", "Nice -", "nice_down", "Lower nice by 1: more CPU share (like htop's F7)"),
    _b("f8", "steer_nice(1)", "Nice +", "nice_up", "Raise nice by 1: less CPU share (like htop's F8)"),
    _b("b", "steer_boost", "Boost", "boost", "Fair-class boost: nice -10 and a 1 ms slice (+ its session autogroup's nice -10)", show=True),
    _b("B", "steer_rt_boost", "RT boost", "rt_boost", "SCHED_FIFO 88 like PipeWire (asks first)"),
    _b("d", "steer_demote('batch')", "Batch", "batch", "Demote to SCHED_BATCH: a hog that never preempts"),
    _b("D", "steer_demote('idle')", "Idle", "idle", "Demote to SCHED_IDLE: runs only when the CPU is free"),
    _b("Y", "steer_policy", "Policy", "policy", "Choose a policy: OTHER, BATCH, IDLE, FIFO/RR with a priority"),
    _b("z", "steer_undo", "Undo", "undo", "Revert the last change", show=True),
    _b("c", "steer_changes", "Changes", "changes", "Every active change, with undo", show=True),
]


class SteerActions:
    # --- lifecycle ------------------------------------------------------------------------

    def steer_mount(self) -> None:
        """Called once the app is mounted."""
        self._steer_journal: Journal | None = None
        self._steer_all_threads = False
        self._steer_lock = threading.Lock()  # profile polls vs. quit-time restore
        self._steer_runner = None
        self._steer_timer = None
        self._steer_stopped = False
        self._steer_exec = None  # the profile's BPF exec hook, when one runs
        self._steer_exec_why: str | None = None
        if self._steer_replaying():
            return
        try:
            self._steer_journal = Journal.session()
        except JournalError as exc:
            self.notify(f"steering off: {exc}", severity="error", timeout=10)
            return
        self._steer_offer_recovery()
        spec = getattr(getattr(self, "args", None), "profile", None)
        if spec:
            # After the other mixins have mounted: a bad profile exits the app, cleanly.
            self.call_later(self._steer_start_profile, spec)

    def steer_unmount(self) -> None:
        """Called when the app exits (before the terminal is restored)."""
        self._steer_stopped = True
        if getattr(self, "_steer_timer", None) is not None:
            self._steer_timer.stop()
        j = getattr(self, "_steer_journal", None)
        if j is None:
            return
        with self._steer_lock:  # let an in-flight profile poll finish first
            if not j.steps and not j.path.exists():
                return
            if getattr(getattr(self, "args", None), "keep", False):
                n = hand_over(j)
                msg = f"schedtop: kept changes on {n} thread(s) (--keep); undo with `schedtop restore`"
            else:
                outcomes = j.restore_all()
                fails = [o.line() for o in outcomes if o.status == "failed"]
                msg = f"schedtop: restored on exit: {summarize(outcomes)}" + "".join(f"\n  {f}" for f in fails)
        self.record_action({"type": "steer.restore", "message": msg})
        # The terminal still belongs to Textual here: say it once the app is gone.
        # (sys.stderr is Textual's capture now, so look the real one up at exit time.)
        atexit.register(lambda: print(msg, file=sys.__stderr__, flush=True))

    # --- helpers --------------------------------------------------------------------------

    def _steer_replaying(self) -> bool:
        return bool(getattr(self, "replay", False))

    def _steer_targets(self) -> list[TaskRef] | None:
        if self._steer_replaying():
            self.notify("replay: nothing live to steer", severity="warning")
            return None
        if getattr(self, "_steer_journal", None) is None:
            self.notify("steering is off (no journal; see the earlier error)", severity="error")
            return None
        task = self.selected_task()
        if task is None:
            self.notify("no task selected", severity="warning")
            return None
        whole = self._steer_all_threads or not getattr(self, "thread_mode", True)
        if whole:
            refs = thread_refs(task.pid)
            if not refs:
                self.notify(f"pid {task.pid} has exited", severity="warning")
            return refs or None
        try:
            ref = ref_for(task.tid, task.pid)
        except SteerError as exc:
            self.notify(str(exc), severity="warning")
            return None
        if task.starttime and ref.starttime != task.starttime:
            self.notify(f"pid {task.tid} now belongs to another task: not touched", severity="warning")
            return None
        return [ref]

    def _steer_who(self, refs: list[TaskRef]) -> str:
        if len(refs) == 1:
            return refs[0].label()
        return f"{refs[0].comm or refs[0].pid}[{refs[0].pid}] ({len(refs)} threads)"

    def _steer_apply(self, tuning: Tuning, label: str | None = None, refs: list[TaskRef] | None = None,
                     force: bool = False) -> ChangeReport | None:
        refs = refs if refs is not None else self._steer_targets()
        if not refs:
            return None
        asked, label = label, f"{label or tuning.describe()}: {self._steer_who(refs)}"
        try:
            why = None if force else check(refs, tuning)
        except SteerError:
            why = None  # change() says it
        if why:  # pid 1, a kernel thread, or a change this user could not undo: ask first
            from schedtop.ui.screens.steer import ConfirmScreen

            self.push_screen(ConfirmScreen("Change anyway?", f"{why}.", yes="Change"),
                             lambda yes: yes and self._steer_apply(tuning, asked, refs, force=True))
            return None
        try:
            report = change(refs, tuning, self._steer_journal, label, force=force)
        except (SteerError, JournalError) as exc:
            self.notify(str(exc), severity="error", timeout=8)
            return None
        self._steer_report(report)
        self._steer_scx_route(report, tuning, label)
        return report

    def _steer_scx_route(self, report: ChangeReport, tuning: Tuning, label: str) -> None:
        """While schedtop's sched_ext scheduler runs, the same keys also set its per-task knobs
        (SchedulerController.steer): under sched_ext the EEVDF slice means nothing. RT tasks bypass it."""
        if not self.scheduler.running:
            return
        for r in report.results:
            if not r.ok:
                continue
            if label.startswith("boost"):
                self.scheduler.steer("boost", r.ref.tid)
            elif tuning.policy in (units.SCHED_BATCH, units.SCHED_IDLE):
                self.scheduler.steer("demote", r.ref.tid)
            elif tuning.policy not in units.RT_POLICIES:
                values: dict[str, Any] = {}
                if tuning.slice_ns is not None:
                    values["slice_ns"] = tuning.slice_ns or None
                if tuning.affinity is not None:
                    values["cpu"] = tuning.affinity[0] if len(tuning.affinity) == 1 else None
                if values:
                    self.scheduler.steer("knob", r.ref.tid, **values)

    def _steer_scx_reset(self, outcomes) -> None:
        if not self.scheduler.running:
            return
        j = getattr(self, "_steer_journal", None)
        still = {a.ref.tid: a for a in j.active()} if j is not None else {}
        for o in outcomes:
            if o.status == "restored" and o.group is None and o.base_slice is None:  # no scx knob for those
                self.scheduler.steer("reset", o.ref.tid)
                if o.ref.tid in still:  # an undo of one change: the task's other changes keep their knobs
                    self._steer_scx_resend(still[o.ref.tid])

    def _steer_scx_resend(self, a) -> None:
        """The scheduler knobs for what still differs from the task's original state."""
        try:
            now = read_params(a.ref)
        except SteerError:
            return
        tid, before = a.ref.tid, a.before
        if any(lbl.startswith("boost") for lbl in a.labels):
            self.scheduler.steer("boost", tid)
        elif now.policy in (units.SCHED_BATCH, units.SCHED_IDLE) and now.policy != before.policy:
            self.scheduler.steer("demote", tid)
        values: dict[str, Any] = {}
        if now.slice_ns != before.slice_ns:
            values["slice_ns"] = now.slice_ns or None
        if now.affinity != before.affinity and len(now.affinity) == 1:
            values["cpu"] = now.affinity[0]
        if values:
            self.scheduler.steer("knob", tid, **values)

    def _steer_report(self, report: ChangeReport) -> None:
        errs = report.errors()
        # A session group change hits other tasks too: leave it on screen longer.
        self.notify(report.summary(), severity="error" if errs else "information",
                    timeout=8 if errs or report.groups else 4)
        self.record_action({
            "type": "steer", "label": report.label,
            "tids": [r.ref.tid for r in report.results if r.ok],
            "errors": [r.error for r in errs],
        })

    def _steer_selection(self) -> tuple[list[TaskRef], TaskParams] | None:
        """The target threads and the first one's current parameters (to step from)."""
        refs = self._steer_targets()
        if not refs:
            return None
        try:
            return refs, read_params(refs[0])
        except SteerError as exc:
            self.notify(str(exc), severity="warning")
            return None

    # --- actions --------------------------------------------------------------------------

    def action_steer_slice(self) -> None:
        sel = self._steer_selection()
        if sel is None:
            return
        refs, have = sel
        why = kernel_caps.why_not("slice")  # CFS (6.1) and EEVDF before 6.12 have no per-task slice
        if why:
            self.notify(f"S is unsupported here: {why}", severity="warning")
            return
        if have.policy in units.RT_POLICIES:
            self.notify(f"{self._steer_who(refs)} is {units.POLICY_NAME[have.policy]}: a slice only applies "
                        "to OTHER/BATCH/IDLE (use Y to change the policy)", severity="warning")
            return
        i = SLICE_STEPS.index(have.slice_ns) if have.slice_ns in SLICE_STEPS else len(SLICE_STEPS) - 1
        nxt = SLICE_STEPS[(i + 1) % len(SLICE_STEPS)]
        self._steer_apply(Tuning(slice_ns=nxt), refs=refs)

    def action_steer_base_slice(self) -> None:
        if self._steer_replaying():
            self.notify("replay: nothing live to steer", severity="warning")
            return
        if getattr(self, "_steer_journal", None) is None:
            self.notify("steering is off (no journal; see the earlier error)", severity="error")
            return
        why = kernel_caps.why_not("base_slice")
        if why:
            self.notify(f"G is unsupported here: {why}", severity="warning")
            return
        if os.geteuid() != 0:
            self.notify("the global base slice needs root (debugfs); per-task slices (S) work as any user",
                        severity="error")
            return
        if base_slice_mounted():
            self._steer_base_slice_step()
            return
        from schedtop.ui.screens.steer import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self._steer_base_slice_step()

        self.push_screen(ConfirmScreen(
            "Mount debugfs?",
            "The global base slice lives in debugfs (/sys/kernel/debug/sched/base_slice_ns), which is "
            "not mounted. Mount it now? It stays mounted; the slice itself is put back on quit.",
            yes="Mount"), answered)

    def _steer_base_slice_step(self) -> None:
        j = self._steer_journal
        try:
            now = read_base_slice()
        except SteerError as exc:
            self.notify(str(exc), severity="error", timeout=8)
            return
        active = j.active_base_slice()
        orig = active[0] if active else now
        steps = [s for s in BASE_SLICE_STEPS if s != orig] + [orig]  # the original comes last
        nxt = steps[(steps.index(now) + 1) % len(steps)] if now in steps else steps[0]
        try:
            if active and nxt == orig:  # back at the original: the journal puts it back and forgets it
                out = j.undo_base_slice()
                if out is not None and out.status == "failed":
                    raise SteerError(out.message)
                msg = f"base slice back to {units.format_ns(orig)} (the original)"
            else:
                msg = change_base_slice(nxt, j, current=now)
        except (SteerError, JournalError) as exc:
            self.notify(str(exc), severity="error", timeout=8)
            return
        self.record_action({"type": "steer.base_slice", "ns": nxt})
        self.notify(f"global {msg}")

    def action_steer_pin(self) -> None:
        sel = self._steer_selection()
        if sel is None:
            return
        refs, have = sel
        from schedtop.ui.screens.steer import CpuChooser

        def chosen(cpus: tuple[int, ...] | None) -> None:
            if cpus:
                self._steer_apply(Tuning(affinity=tuple(cpus)), refs=refs)

        self.push_screen(CpuChooser(self._steer_who(refs), have.affinity, units.online_cpus()), chosen)

    def action_steer_scope(self) -> None:
        self._steer_all_threads = not self._steer_all_threads
        self.notify("steering every thread of the process" if self._steer_all_threads
                    else "steering the selected thread only")

    def action_steer_nice(self, delta: int) -> None:
        sel = self._steer_selection()
        if sel is None:
            return
        refs, have = sel
        new = max(-20, min(19, have.nice + delta))
        if new == have.nice:
            self.notify(f"nice is already {new}", severity="warning")
            return
        self._steer_apply(Tuning(nice=new), refs=refs)

    def action_steer_boost(self) -> None:
        sel = self._steer_selection()
        if sel is None:
            return
        refs, have = sel
        if have.policy in units.RT_POLICIES:
            # Boost is the fair-class answer: bring an RT task back to OTHER for it.
            self._steer_apply(Tuning(policy=units.SCHED_OTHER, nice=-10, slice_ns=1_000_000, group=True),
                              "boost", refs)
        else:
            self._steer_apply(BOOST, "boost", refs)

    def action_steer_rt_boost(self) -> None:
        refs = self._steer_targets()
        if not refs:
            return
        from schedtop.ui.screens.steer import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self._steer_apply(Tuning(policy=units.SCHED_FIFO, rt_priority=RT_BOOST_PRIO), "RT boost", refs)

        self.push_screen(ConfirmScreen(
            "RT boost",
            f"Run {self._steer_who(refs)} as SCHED_FIFO {RT_BOOST_PRIO}?\n\n"
            "A FIFO task runs until it blocks: if it spins, it starves every fair task on its CPU "
            "(the kernel keeps 5% back). It is undone on quit, with z, or by `schedtop restore`.",
            yes="Boost"), answered)

    def action_steer_demote(self, which: str) -> None:
        self._steer_apply(Tuning(policy=units.parse_policy(which)))

    def action_steer_policy(self) -> None:
        sel = self._steer_selection()
        if sel is None:
            return
        refs, have = sel
        from schedtop.ui.screens.steer import PolicyChooser

        def chosen(choice: tuple[int, int] | None) -> None:
            if choice is None:
                return
            policy, prio = choice
            self._steer_apply(Tuning(policy=policy, rt_priority=prio or None), refs=refs)

        self.push_screen(PolicyChooser(self._steer_who(refs), have.describe()), chosen)

    def action_steer_undo(self) -> None:
        self.notify(*self._steer_undo_last_text())

    def _steer_undo_last_text(self) -> tuple[str, ...]:
        j = getattr(self, "_steer_journal", None)
        if j is None:
            return ("nothing to undo",)
        try:
            res = j.undo_last()
        except JournalError as exc:
            return (str(exc),)
        if res is None:
            return ("nothing to undo",)
        label, outcomes = res
        self._steer_scx_reset(outcomes)
        self.record_action({"type": "steer.undo", "label": label})
        failed = [o.line() for o in outcomes if o.status == "failed"]
        text = f"undo {label}: {summarize(outcomes)}" + (f" ({failed[0]})" if failed else "")
        return (text,)

    def action_steer_changes(self) -> None:
        if getattr(self, "_steer_journal", None) is None:
            self.notify("no changes (steering is off)", severity="warning")
            return
        from schedtop.ui.screens.changes import ChangesScreen

        self.push_screen(ChangesScreen(self._steer_rows, self._steer_undo_row,
                                       lambda: self._steer_undo_last_text()[0], self._steer_restore_all_text))

    def _steer_rows(self):
        from schedtop.ui.screens.changes import ChangeRow

        j = self._steer_journal
        j.prune()
        rows = []
        for a in j.active():
            try:
                now = read_params(a.ref).describe()
            except SteerError:
                now = "gone"
            rows.append(ChangeRow(f"{a.ref.tid}:{a.ref.starttime}", a.ref.label(),
                                  " + ".join(lbl.split(": ")[0] for lbl in a.labels), a.before.describe(), now))
        for g, labels in j.active_groups():
            cur = autogroup.read(g.member.pid) if is_alive(g.member) else None
            rows.append(ChangeRow(f"group:{g.group}", g.label(),
                                  " + ".join(lbl.split(": ")[0] for lbl in labels),
                                  f"session nice {g.nice}", f"session nice {cur.nice}" if cur else "?"))
        base = j.active_base_slice()
        if base is not None:
            try:
                cur_base = units.format_ns(read_base_slice())
            except SteerError:
                cur_base = "?"
            rows.append(ChangeRow("base_slice", "kernel (every fair task)", "global base slice",
                                  f"base slice {units.format_ns(base[0])}", f"base slice {cur_base}"))
        return rows

    def _steer_undo_row(self, key: str) -> str:
        if key == "base_slice":
            out = self._steer_journal.undo_base_slice()
            self.record_action({"type": "steer.undo_base_slice"})
            return out.line() if out else "nothing to undo"
        if key.startswith("group:"):
            out = self._steer_journal.undo_group(int(key.split(":")[1]))
            self.record_action({"type": "steer.undo_group", "group": int(key.split(":")[1])})
            return out.line() if out else "nothing to undo"
        tid, st = (int(x) for x in key.split(":"))
        for a in self._steer_journal.active():
            if (a.ref.tid, a.ref.starttime) == (tid, st):
                out = self._steer_journal.undo_task(a.ref)
                self._steer_scx_reset([out] if out else [])
                self.record_action({"type": "steer.undo_task", "tid": tid})
                return out.line() if out else "nothing to undo"
        return "nothing to undo"

    def _steer_restore_all_text(self) -> str:
        outcomes = self._steer_journal.restore_all()
        self._steer_scx_reset(outcomes)
        self.record_action({"type": "steer.restore", "message": summarize(outcomes)})
        return f"restore all: {summarize(outcomes)}"

    def action_scx_ext(self) -> None:
        """Move the selected thread (or process, with A) into SCHED_EXT, or an EXT one back out.

        Both are ordinary steering changes (schedtop.steer.change through the session journal):
        shown in the changes pane, reverted by z, on quit and by `schedtop restore`. Into EXT only
        while schedtop's scheduler runs in partial mode (otherwise it would not be what schedules
        the task); out of EXT always (the safe direction), back to the journaled policy."""
        if self._steer_replaying():
            self.notify("replay: no live scheduler to drive", severity="warning")
            return
        from schedtop.steer import ext

        refs = self._steer_targets()  # the steering keys' targets: scope (A), pid reuse, journal
        if not refs:
            return
        try:
            on = read_params(refs[0]).policy != units.SCHED_EXT  # live, not the snapshot's
        except SteerError as exc:
            self.notify(str(exc), severity="warning")
            return
        if on and not (self.scheduler.running and self.scheduler.options.partial):
            self.notify("moving tasks into SCHED_EXT needs the scheduler loaded in partial mode", severity="warning")
            return
        if on:
            tuning, label = ext.INTO, ext.INTO_LABEL
        else:
            tuning, label = ext.out_tuning(refs[0], [self._steer_journal, *self._steer_shared_journal()]), ext.OUT_LABEL
        report = self._steer_apply(tuning, label, refs)
        if report is not None and report.changed:
            self.record_action({"type": "scx.ext", "pid": refs[0].tid, "on": on, "label": report.label})

    @staticmethod
    def _steer_shared_journal() -> list[Any]:
        """`schedtop set`'s journal, so E takes a task moved in by `schedtop set --ext` back out to
        its old policy too (the shared journal keeps that step for `schedtop restore`)."""
        try:
            return [Journal.shared()]
        except JournalError:
            return []

    # --- crash recovery and profiles ------------------------------------------------------

    def _steer_offer_recovery(self) -> None:
        try:
            found, problems = Journal.scan()
        except JournalError as exc:
            self.notify(str(exc), severity="error")
            return
        for p in problems:  # refused or moved aside: said once, never a crash at start
            self.notify(p, severity="error", timeout=15)
        orphans = [j for j in found if j.owner is not None and len(j)]
        if not orphans:
            return
        n = sum(len(j) for j in orphans)
        pids = ", ".join(str(j.owner[0]) for j in orphans if j.owner)
        from schedtop.ui.screens.steer import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if not yes:
                self.notify("left as they are: `schedtop restore` undoes them later")
                return
            outs = [o for j in orphans for o in j.restore_all()]
            self.notify(f"restored the crashed session's changes: {summarize(outs)}")
            self.record_action({"type": "steer.recover", "message": summarize(outs)})

        self.push_screen(ConfirmScreen(
            "Restore after a crash?",
            f"A previous schedtop session (pid {pids}) ended without restoring its changes to "
            f"{n} thread(s). Put them back as they were?", yes="Restore", no="Leave"), answered)

    def _steer_start_profile(self, spec: str) -> None:
        from schedtop.steer.profiles import ProfileError, ProfileRunner, load

        try:
            prof = load(spec)
        except ProfileError as exc:
            msg = f"schedtop: {exc}"
            atexit.register(lambda: print(msg, file=sys.__stderr__, flush=True))
            self.exit(2, return_code=2)
            return
        self._steer_runner = ProfileRunner(prof, self._steer_journal)
        self._steer_notes_said = 0
        self.notify(f"profile {prof.name}: applying live ({len(prof.rules)} rules)")
        self._steer_profile_poll()
        self._steer_timer = self.set_interval(prof.poll_s, self._steer_profile_poll)
        if not getattr(getattr(self, "args", None), "no_bpf", False):
            self._steer_exec_hook()

    @work(thread=True, group="steer-exec", exclusive=True, exit_on_error=False)
    def _steer_exec_hook(self) -> None:
        """Between polls, tune what the BPF exec/rename hook reports as soon as it happens
        (the interval poll stays: it catches whatever the hook dropped or cannot see)."""
        from schedtop.steer.exec_watch import open_watch

        hook, why = open_watch()
        self._steer_exec = hook
        self._steer_exec_why = why
        if hook is None:
            return
        try:
            while not self._steer_stopped:
                hits = hook.wait(200)
                if not hits or self._steer_stopped:
                    continue
                with self._steer_lock:
                    if self._steer_stopped:
                        return
                    reports = self._steer_runner.poll_pids(e.tgid for e in hits)
                    notes = self._steer_new_notes()
                if not self._steer_hand_over(notes, reports):
                    return
        finally:
            hook.close()

    @work(thread=True, group="steer-profile", exclusive=True, exit_on_error=False)
    def _steer_profile_poll(self) -> None:
        runner = self._steer_runner
        if runner is None or self._steer_stopped:
            return
        with self._steer_lock:
            if self._steer_stopped:
                return
            reports = runner.poll()
            notes = self._steer_new_notes()
        self._steer_hand_over(notes, reports)

    def _steer_hand_over(self, notes: list[str], reports: list[Any]) -> bool:
        """From a poller thread to the app's: notes as warnings, then each report. False once
        the app is shutting down (the journal already has every change)."""
        try:
            for note in notes:
                self.call_from_thread(self.notify, note, severity="warning", timeout=10)
            for rep in reports:
                self.call_from_thread(self._steer_report, rep)
        except RuntimeError:
            return False
        return True

    def _steer_new_notes(self) -> list[str]:
        """The runner's one-off notes not shown yet (e.g. SCHED_EXT with no scheduler loaded);
        called under _steer_lock, from either poller."""
        runner = self._steer_runner
        new = runner.notes[self._steer_notes_said:]
        self._steer_notes_said = len(runner.notes)
        return new

    def steer_status(self) -> dict[str, Any]:
        """For the status bar or tests: what steering is doing right now."""
        j = getattr(self, "_steer_journal", None)
        hook = getattr(self, "_steer_exec", None)
        return {"changed": len(j) if j else 0, "all_threads": getattr(self, "_steer_all_threads", False),
                "profile": self._steer_runner.profile.name if getattr(self, "_steer_runner", None) else None,
                "exec_hook": hook.mode if hook is not None else getattr(self, "_steer_exec_why", None)}
