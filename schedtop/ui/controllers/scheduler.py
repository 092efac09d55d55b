"""schedtop's own sched_ext scheduler, as the TUI drives it: options for the next load, the
supervised child, its knobs, and what it reports.

The child (schedtop.scx.supervisor) never waits on the app and the app never waits on it:
the supervisor's threads call back here, and this posts small Messages to the app.

What the user is told follows what happened, not what was asked for. A load that never
reached the kernel (no sched_ext, another scheduler loaded, a policy that does not import)
is a failed load, said once; only a scheduler that did load and then went is an ejection
with a reload offered. Before loading, sched_ext's sysfs says whether there is anything to
try: on a kernel without sched_ext, or while another scheduler runs, nothing is started.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from textual.message import Message
from textual.notifications import SeverityLevel

from schedtop.collect.sched_ext import SCHED_EXT_SYSFS, SCHEDTOP_OPS, read_scheduler_info
from schedtop.model import SchedulerInfo, ScxOptionsPart, ScxPart
from schedtop.scx.policies import next_shipped
from schedtop.scx.supervisor import ScxOptions, ScxState, ScxSupervisor

SLICE_STEPS_US = (500, 1000, 2000, 3000, 5000, 10000, 20000)

Post = Callable[[Message], object]
Record = Callable[[dict[str, Any]], None]


def load_refusal(info: SchedulerInfo | None) -> str | None:
    """Why loading schedtop's scheduler cannot work right now, from what was last collected;
    None when it is worth trying (the child still has the last word)."""
    if info is None:
        return None
    if info.ext_state == "absent":
        return ("this kernel has no sched_ext (CONFIG_SCHED_CLASS_EXT): nothing was loaded; "
                "`schedtop demo` boots a kernel that has it")
    if info.ext_state in ("enabled", "enabling") and info.ops_name:
        if info.ops_name == SCHEDTOP_OPS:
            return "schedtop's scheduler is already loaded by another process (`schedtop scx`?): nothing was loaded"
        return (f"sched_ext already runs another scheduler, {info.ops_name}: nothing was loaded "
                "(unload it first)")
    return None


class SchedulerController:
    """Plain object: no Textual app, screen or widget. `post` is the app's post_message
    (safe from any thread), `record` puts an action into the --record file."""

    class Note(Message):
        """A line for the user (a notification)."""

        def __init__(self, text: str, severity: SeverityLevel = "information", timeout: float = 5) -> None:
            super().__init__()
            self.text, self.severity, self.timeout = text, severity, timeout

    class Exited(Message):
        """The child ended. `loaded`: it had loaded (so this is an unload or an ejection);
        False: it never got that far (a failed load)."""

        def __init__(self, exit_: Mapping[str, Any], loaded: bool) -> None:
            super().__init__()
            self.exit, self.loaded = dict(exit_), loaded

    def __init__(self, post: Post, record: Record, options: ScxOptions | None = None,
                 supervisor: type[ScxSupervisor] = ScxSupervisor, sched_ext_root: str = SCHED_EXT_SYSFS) -> None:
        self._post = post
        self.sched_ext_root = sched_ext_root
        self._record = record
        self.options = options or ScxOptions()
        self._make = supervisor
        self._sup: ScxSupervisor | None = None
        self._reported: object = None
        self._frozen: str | None = None

    # --- what others read -------------------------------------------------------------

    @property
    def supervisor(self) -> ScxSupervisor | None:
        return self._sup

    @property
    def running(self) -> bool:
        """The child process is alive (loading, loaded, or exiting)."""
        return self._sup is not None and self._sup.running

    @property
    def loaded(self) -> bool:
        """The child said the kernel took the scheduler, and has not reported an exit since."""
        sup = self._sup
        return sup is not None and sup.running and bool(sup.state.loaded) and sup.state.exit is None

    def part(self) -> ScxPart | None:
        """Snapshot.extras.scx: what the panel (g) shows and a recording keeps; None before a load."""
        sup = self._sup
        if sup is None:
            return None
        v = sup.view()
        return ScxPart(
            running=v.running,
            phase=("loaded" if self.loaded else "loading" if v.running and v.exit is None
                   else "failed" if v.exit is not None and not v.loaded else "ended"),
            loaded=dict(v.loaded),
            stats=dict(v.stats),
            frozen=v.frozen,
            exit=dict(v.exit) if v.exit else None,
            options=ScxOptionsPart(policy=v.options.policy, partial=v.options.partial),
        )

    def refusal(self) -> str | None:
        """load_refusal() of what sysfs says now (a few small reads: a snapshot could be a
        second old, from before the last unload)."""
        return load_refusal(read_scheduler_info(self.sched_ext_root))

    def load_question(self) -> str:
        opts = self.options
        mode = ("partial mode: only tasks you move to SCHED_EXT (E)" if opts.partial
                else "full mode: EVERY task on this machine")
        return (f"Load schedtop's sched_ext scheduler, policy {opts.policy}, {mode}?\n\n"
                f"A Python loop will decide which task runs next. If it stalls for {opts.timeout_ms} ms the kernel "
                "ejects it and EEVDF takes over again; unloading (L) or quitting does the same.")

    # --- actions ----------------------------------------------------------------------

    def load(self) -> None:
        # A second child would only be refused by the kernel and orphan the first; one that has
        # reported its exit (ejected, still shutting down) has let go of sched_ext already.
        old = self._sup
        if old is not None and old.running and old.state.exit is None:
            self._note("schedtop's scheduler is already loaded", "warning")
            return
        if old is not None and old.running:
            # Its exit is reported but the process lingers (frozen by SIGSTOP, or still shutting
            # down). It goes first: on kernels before per-scheduler unregistration, its link
            # closing later would unload whatever scheduler runs then, the new one included.
            def replace_old() -> None:
                old.stop()
                if self._sup is old:
                    self._start()

            threading.Thread(target=replace_old, name="scx-replace", daemon=True).start()
            return
        self._start()

    def _start(self) -> None:
        sup = self._make(self.options, on_change=self._changed)
        self._sup = sup
        self._reported = None
        self._frozen = None
        sup.start()
        self._record({"type": "scx.load", "policy": self.options.policy, "partial": self.options.partial})
        self._note(f"loading schedtop's scheduler ({self.options.policy})")

    def unload(self) -> None:
        sup = self._sup
        if sup is None:
            return
        self._record({"type": "scx.unload"})
        threading.Thread(target=sup.stop, name="scx-unload", daemon=True).start()

    def close(self) -> None:
        """On exit: the scheduler goes with the app."""
        sup = self._sup
        if sup is not None and sup.running:
            sup.stop()

    def next_policy(self) -> None:
        name = next_shipped(self.options.policy)
        self.options = replace(self.options, policy=name)
        sup = self._sup
        if sup is not None and self.running:  # a loading child takes it once it runs
            sup.options = self.options
            sup.send(cmd="policy", name=name)
            self._record({"type": "scx.policy", "name": name})
            self._note(f"scheduler policy: {name}")
        else:
            self._note(f"policy for the next load: {name}")

    def step_slice(self, direction: int) -> None:
        cur = self.options.slice_us
        steps = SLICE_STEPS_US
        idx = min(range(len(steps)), key=lambda i: abs(steps[i] - cur))
        new = steps[max(0, min(len(steps) - 1, idx + direction))]
        self.options = replace(self.options, slice_us=new)
        sup = self._sup
        if sup is not None and self.running:
            sup.options = self.options
            sup.send(cmd="slice", ns=new * 1000)
            self._record({"type": "scx.slice", "ns": new * 1000})
            self._note(f"scheduler slice: {new} µs")
        else:
            self._note(f"slice for the next load: {new} µs")

    def toggle_mode(self) -> None:
        self.options = replace(self.options, partial=not self.options.partial)
        mode = "partial (SCHED_EXT tasks only)" if self.options.partial else "full (every task)"
        note = "; unload and load again to switch" if self.running else ""
        self._note(f"next load: {mode} mode{note}")

    def steer(self, what: str, pid: int, **values: Any) -> bool:
        """For the steering keys: while schedtop's scheduler is loaded, slice/pin/boost/demote/
        reset become its per-task knobs. ``what`` is knob|boost|demote|reset; values as in
        schedtop.scx.knobs (slice_ns, cpu, weight, latcrit). False when no child runs."""
        sup = self._sup
        if sup is None or not self.running:
            return False
        ok = sup.send(cmd=what, pid=pid, **values)
        if ok:
            self._record({"type": "scx.knob", "what": what, "pid": pid, **values})
        return ok

    # --- from the supervisor's threads ------------------------------------------------

    def _changed(self, state: ScxState) -> None:
        # A replaced supervisor's reader (its child ejected, the user already reloaded) must
        # not report that exit again.
        sup = self._sup
        if sup is None or state is not sup.state:
            return
        if state.frozen != self._frozen:
            self._frozen = state.frozen
            if state.frozen and state.exit is None:
                self._note(f"schedtop's policy loop is {state.frozen}: tasks wait, and the kernel "
                           f"ejects the scheduler after {self.options.timeout_ms} ms", "warning")
        if state.exit is not None and state.exit is not self._reported:
            self._reported = state.exit
            self._record({"type": "scx.exit", **state.exit})
            self._post(self.Exited(state.exit, loaded=bool(state.loaded)))

    def _note(self, text: str, severity: SeverityLevel = "information", timeout: float = 5) -> None:
        self._post(self.Note(text, severity, timeout))
