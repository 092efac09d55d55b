"""Key bindings and actions of one feature area, mixed into SchedtopApp.

Owned by the embedded-scheduler engineer (issue 6). The app concatenates `BINDINGS` below into its own
(every Binding has an id, so the keymap can remap it) and calls
`scx_mount()` on mount and `scx_unmount()` on exit.

What the host app provides to mixins:
  self.snapshot: Snapshot | None      the latest snapshot shown
  self.selected_task() -> Task | None the task under the cursor
  self.record_action(action: dict)    journal the action into --record output
  self.source                          the live or replay source (LiveSource.add_extra exists on live)

The scheduler runs as a supervised child (schedtop.scx.supervisor): the app
never waits on it and it never waits on the app. Keys: L load/unload (asks
first), P next policy (live, no unload), { } global slice, E move the selected
task in/out of SCHED_EXT (partial mode; a journaled steering change, undone by z,
on quit and by `schedtop restore`), g the scheduler panel. When the
kernel ejects the scheduler the reason is shown and a reload offered; the app
goes on under EEVDF. The steering keys (slice, pin, boost, demote) can route
to the scheduler's per-task knobs through ``scx_steer`` while it is loaded.
"""

from __future__ import annotations

from typing import Any

from textual.binding import Binding

SLICE_STEPS_US = (500, 1000, 2000, 3000, 5000, 10000, 20000)


def _b(key: str, action: str, description: str, ident: str, tooltip: str, show: bool = False) -> Binding:
    return Binding(key, action, description, show=show, id=f"schedtop.scx.{ident}", tooltip=tooltip)


BINDINGS: list[Binding] = [
    _b("L", "scx_toggle", "sched_ext", "toggle", "Load / unload schedtop's own sched_ext scheduler (asks first)",
       show=True),
    _b("P", "scx_policy", "Scx policy", "policy", "Switch the scheduler's policy live: deadline, fifo, interactive"),
    _b("left_curly_bracket", "scx_slice(-1)", "Scx slice -", "slice_down", "Shorter global slice of schedtop's scheduler"),
    _b("right_curly_bracket", "scx_slice(1)", "Scx slice +", "slice_up", "Longer global slice of schedtop's scheduler"),
    _b("M", "scx_mode", "Scx mode", "mode", "Full (every task) or partial (SCHED_EXT tasks only) for the next load"),
    _b("E", "scx_ext", "In/out of EXT", "ext", "Partial mode: move the selected task into or out of SCHED_EXT"),
    _b("g", "scx_panel", "Scx panel", "panel", "schedtop's scheduler: counters, queue depth, latency"),
]


class ScxActions:
    def scx_mount(self) -> None:
        """Called once the app is mounted."""
        from schedtop.scx.supervisor import ScxOptions

        self._scx_sup = None
        self._scx_options = ScxOptions()
        self._scx_reported: object = None
        self._scx_frozen: str | None = None
        source = getattr(self, "source", None)
        if source is not None and hasattr(source, "add_extra"):
            source.add_extra("scx", self.scx_extras)

    def scx_unmount(self) -> None:
        """Called when the app exits (before the terminal is restored)."""
        if self._scx_sup is not None and self._scx_sup.running:
            self._scx_sup.stop()

    # --- what others read ---------------------------------------------------------------

    def scx_extras(self) -> dict[str, Any]:
        sup = getattr(self, "_scx_sup", None)
        if sup is None:
            return {}
        return sup.extras()

    @property
    def scx_running(self) -> bool:
        sup = getattr(self, "_scx_sup", None)
        return bool(sup is not None and sup.running)

    def scx_steer(self, what: str, pid: int, **values: Any) -> bool:
        """For the steering keys: while schedtop's scheduler runs, slice/pin/boost/demote/reset
        become its per-task knobs. ``what`` is knob|boost|demote|reset; values as in
        schedtop.scx.knobs (slice_ns, cpu, weight, latcrit). False when not loaded."""
        if not self.scx_running:
            return False
        ok = self._scx_sup.send(cmd=what, pid=pid, **values)
        if ok:
            self.record_action({"type": "scx.knob", "what": what, "pid": pid, **values})
        return ok

    # --- actions --------------------------------------------------------------------------

    def _scx_live_only(self) -> bool:
        if getattr(self, "replay", False):
            self.notify("replay: no live scheduler to drive", severity="warning")
            return False
        return True

    def action_scx_toggle(self) -> None:
        if not self._scx_live_only():
            return
        from schedtop.ui.screens.steer import ConfirmScreen

        if self.scx_running:
            def unload(yes: bool | None) -> None:
                if yes:
                    self._scx_stop()

            self.push_screen(ConfirmScreen("Unload scheduler", "Unload schedtop's scheduler and go back to EEVDF?",
                                           yes="Unload"), unload)
            return
        opts = self._scx_options
        mode = "partial mode: only tasks you move to SCHED_EXT (E)" if opts.partial else \
            "full mode: EVERY task on this machine"

        def load(yes: bool | None) -> None:
            if yes:
                self._scx_start()

        self.push_screen(ConfirmScreen(
            "Load scheduler",
            f"Load schedtop's sched_ext scheduler, policy {opts.policy}, {mode}?\n\n"
            f"A Python loop will decide which task runs next. If it stalls for {opts.timeout_ms} ms the kernel "
            "ejects it and EEVDF takes over again; unloading (L) or quitting does the same.",
            yes="Load"), load)

    def _scx_start(self) -> None:
        from schedtop.scx.supervisor import ScxSupervisor

        # A second child would only be refused by the kernel and orphan the first; one that has
        # reported its exit (ejected, still shutting down) has let go of sched_ext already.
        if self.scx_running and self._scx_sup.state.exit is None:
            self.notify("schedtop's scheduler is already loaded", severity="warning")
            return
        old = self._scx_sup
        if old is not None and old.running:
            # Its exit is reported but the process lingers (frozen by SIGSTOP, or still shutting
            # down). It goes first: on kernels before per-scheduler unregistration, its link
            # closing later would unload whatever scheduler runs then, the new one included.
            def replace() -> None:
                old.stop()
                try:
                    self.call_from_thread(self._scx_start)
                except RuntimeError:
                    pass  # the app is gone

            self.run_worker(replace, thread=True, group="scx", exit_on_error=False)
            return
        self._scx_sup = ScxSupervisor(self._scx_options, on_change=self._scx_changed)
        self._scx_reported = None
        self._scx_frozen = None
        self._scx_sup.start()
        self.record_action({"type": "scx.load", "policy": self._scx_options.policy,
                            "partial": self._scx_options.partial})
        self.notify(f"loading schedtop's scheduler ({self._scx_options.policy})")

    def _scx_stop(self) -> None:
        sup = self._scx_sup
        if sup is None:
            return
        self.record_action({"type": "scx.unload"})
        self.run_worker(sup.stop, thread=True, group="scx", exit_on_error=False)

    def _scx_changed(self, state: Any) -> None:
        # The supervisor's reader thread: hand over to the app's thread. A replaced supervisor's
        # reader (its child ejected, the user already reloaded) must not report that exit again.
        sup = self._scx_sup
        if sup is None or state is not sup.state:
            return
        if state.frozen != self._scx_frozen:
            self._scx_frozen = state.frozen
            if state.frozen and state.exit is None:
                try:
                    self.call_from_thread(
                        self.notify, f"schedtop's policy loop is {state.frozen}: tasks wait, and the kernel "
                        f"ejects the scheduler after {self._scx_options.timeout_ms} ms", severity="warning")
                except RuntimeError:
                    pass
        if state.exit is not None and state.exit is not self._scx_reported:
            self._scx_reported = state.exit
            try:
                self.call_from_thread(self._scx_exited, dict(state.exit))
            except RuntimeError:
                pass  # the app is gone

    def _scx_exited(self, exit_: dict[str, Any]) -> None:
        self.record_action({"type": "scx.exit", **exit_})
        if exit_.get("reason") == "stopped":
            self.notify("schedtop's scheduler unloaded: back on EEVDF")
            return
        from schedtop.ui.screens.steer import ConfirmScreen

        # The kernel's and the policy's words, not markup: a task name or exception text with
        # brackets would vanish, or raise MarkupError and take the app down.
        text = str(exit_.get("text"))  # plain: dialogs and notifications never read markup
        self.notify(f"scheduler gone: {text}", severity="error", timeout=15)

        def reload(yes: bool | None) -> None:
            if yes:
                self._scx_start()

        self.push_screen(ConfirmScreen(
            "Scheduler ejected", f"{text}\n\nThe machine runs on EEVDF again. Reload schedtop's scheduler?",
            yes="Reload"), reload)

    def action_scx_policy(self) -> None:
        from dataclasses import replace

        from schedtop.scx.policies import next_shipped

        name = next_shipped(self._scx_options.policy)
        self._scx_options = replace(self._scx_options, policy=name)
        if self.scx_running:
            self._scx_sup.options = self._scx_options
            self._scx_sup.send(cmd="policy", name=name)
            self.record_action({"type": "scx.policy", "name": name})
            self.notify(f"scheduler policy: {name}")
        else:
            self.notify(f"policy for the next load: {name}")

    def action_scx_slice(self, direction: int) -> None:
        from dataclasses import replace

        cur = self._scx_options.slice_us
        steps = SLICE_STEPS_US
        idx = min(range(len(steps)), key=lambda i: abs(steps[i] - cur))
        new = steps[max(0, min(len(steps) - 1, idx + direction))]
        self._scx_options = replace(self._scx_options, slice_us=new)
        if self.scx_running:
            self._scx_sup.options = self._scx_options
            self._scx_sup.send(cmd="slice", ns=new * 1000)
            self.record_action({"type": "scx.slice", "ns": new * 1000})
            self.notify(f"scheduler slice: {new} µs")
        else:
            self.notify(f"slice for the next load: {new} µs")

    def action_scx_mode(self) -> None:
        from dataclasses import replace

        self._scx_options = replace(self._scx_options, partial=not self._scx_options.partial)
        mode = "partial (SCHED_EXT tasks only)" if self._scx_options.partial else "full (every task)"
        note = "; unload and load again to switch" if self.scx_running else ""
        self.notify(f"next load: {mode} mode{note}")

    def action_scx_ext(self) -> None:
        """Move the selected thread (or process, with A) into SCHED_EXT, or an EXT one back out.

        Both are ordinary steering changes (schedtop.steer.change through the session journal):
        shown in the changes pane, reverted by z, on quit and by `schedtop restore`. Into EXT only
        while schedtop's scheduler runs in partial mode (otherwise it would not be what schedules
        the task); out of EXT always (the safe direction), back to the journaled policy."""
        if not self._scx_live_only():
            return
        from schedtop.steer import ext
        from schedtop.steer.actions import SteerError, read_params
        from schedtop.steer.units import SCHED_EXT

        refs = self._steer_targets()  # the steering keys' targets: scope (A), pid reuse, journal
        if not refs:
            return
        try:
            on = read_params(refs[0]).policy != SCHED_EXT  # live, not the snapshot's
        except SteerError as exc:
            self.notify(str(exc), severity="warning")
            return
        if on and not (self.scx_running and self._scx_options.partial):
            self.notify("moving tasks into SCHED_EXT needs the scheduler loaded in partial mode", severity="warning")
            return
        if on:
            tuning, label = ext.INTO, ext.INTO_LABEL
        else:
            tuning, label = ext.out_tuning(refs[0], [self._steer_journal, *self._scx_shared_journal()]), ext.OUT_LABEL
        report = self._steer_apply(tuning, label, refs)
        if report is not None and report.changed:
            self.record_action({"type": "scx.ext", "pid": refs[0].tid, "on": on, "label": report.label})

    @staticmethod
    def _scx_shared_journal() -> list[Any]:
        """`schedtop set`'s journal, so E takes a task moved in by `schedtop set --ext` back out to
        its old policy too (the shared journal keeps that step for `schedtop restore`)."""
        from schedtop.steer.journal import Journal, JournalError

        try:
            return [Journal.shared()]
        except JournalError:
            return []

    def action_scx_panel(self) -> None:
        from schedtop.ui.screens.scx import ScxScreen

        self.push_screen(ScxScreen())
