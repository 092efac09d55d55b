"""The main view: CPU bars, latency panel, task table and side pane, filter box, status, and the keys
that act on it (the view's own, steering and schedtop's scheduler on the selected task, the BPF
and sched_ext areas' keys). Bound here, none of them acts from another screen; the App keeps the
app-wide keys (quit, help, pause, the replay's stepping) and the palette."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import on
from textual.app import ComposeResult
from textual.binding import ActiveBinding, Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Input

from schedtop.model import Task
from schedtop.ui import bpf_actions, ext_actions
from schedtop.ui.controllers.steering import Target
from schedtop.ui.screens.detail import DetailScreen
from schedtop.ui.screens.queue import QueueScreen
from schedtop.ui.widgets.cpu_panel import CpuPanel
from schedtop.ui.widgets.filter_box import FilterBox
from schedtop.ui.widgets.header import SchedHeader
from schedtop.ui.widgets.latency import LatencyPanel
from schedtop.ui.widgets.status import StatusBar
from schedtop.ui.widgets.task_pane import TaskPane
from schedtop.ui.widgets.task_table import COLUMNS, TaskTable

if TYPE_CHECKING:
    from schedtop.ui.app import SchedtopApp

SORT_KEYS = [c.key for c in COLUMNS]


def _b(key: str, action: str, description: str, ident: str, tooltip: str, show: bool = True, **kw: Any) -> Binding:
    return Binding(key, action, description, show=show, id=f"schedtop.{ident}", tooltip=tooltip, **kw)


VIEW_BINDINGS: list[Binding] = [
    _b("slash", "filter", "Filter", "filter", "Filter by command name or pid"),
    _b("escape", "clear_filter", "Clear filter", "clear_filter", "Clear the filter and follow", show=False),
    _b("enter", "detail", "Detail", "detail", "Detail of the selected task: sparklines and /proc sched fields"),
    _b("e", "queue", "Queue", "queue", "The selected task's CPU run queue in EEVDF order, with lag"),
    _b("t", "threads", "Threads", "threads", "Toggle one row per thread / per process"),
    _b("f", "follow", "Follow", "follow", "Show only the selected task's process (toggle)"),
    _b("greater_than_sign", "sort(1)", "Sort →", "sort_next", "Sort by the next column"),
    _b("less_than_sign", "sort(-1)", "Sort ←", "sort_prev", "Sort by the previous column", show=False),
    _b("i", "sort_invert", "Invert sort", "sort_invert", "Reverse the sort order", show=False),
    _b("u", "sort_by('cpu_pct')", "Sort CPU%", "sort_cpu", "Sort by CPU%", show=False),
    _b("w", "sort_by('wait')", "Sort wait", "sort_wait", "Sort by run-queue wait per second", show=False),
]


def _steer(key: str, action: str, description: str, ident: str, tooltip: str, show: bool = False) -> Binding:
    return Binding(key, action, description, show=show, id=f"schedtop.steer.{ident}", tooltip=tooltip)


# Steering (SteeringSession), htop's keys where htop has one.
STEER_BINDINGS: list[Binding] = [
    _steer("S", "steer_slice", "Slice", "slice", "Step the EEVDF slice: 0.5, 1, 3, 6 ms, default", show=True),
    _steer("G", "steer_base_slice", "Base slice", "base_slice",
           "Step the global EEVDF base slice (debugfs, root): 0.5, 1, 3, 6 ms, then back to the original"),
    _steer("a", "steer_pin", "Pin", "pin", "Pin to CPUs: one, a list, or all (like htop's a)", show=True),
    _steer("A", "steer_scope", "Scope", "scope", "Steer the selected thread only, or every thread of its process"),
    _steer("f7", "steer_nice(-1)", "Nice -", "nice_down", "Lower nice by 1: more CPU share (like htop's F7)"),
    _steer("f8", "steer_nice(1)", "Nice +", "nice_up", "Raise nice by 1: less CPU share (like htop's F8)"),
    _steer("b", "steer_boost", "Boost", "boost",
           "Fair-class boost: nice -10 and a 1 ms slice (+ its session autogroup's nice -10)", show=True),
    _steer("B", "steer_rt_boost", "RT boost", "rt_boost", "SCHED_FIFO 88 like PipeWire (asks first)"),
    _steer("d", "steer_demote('batch')", "Batch", "batch", "Demote to SCHED_BATCH: a hog that never preempts"),
    _steer("D", "steer_demote('idle')", "Idle", "idle", "Demote to SCHED_IDLE: runs only when the CPU is free"),
    _steer("Y", "steer_policy", "Policy", "policy", "Choose a policy: OTHER, BATCH, IDLE, FIFO/RR with a priority"),
    _steer("z", "steer_undo", "Undo", "undo", "Revert the last change", show=True),
    _steer("c", "steer_changes", "Changes", "changes", "Every active change, with undo", show=True),
]


def _scx(key: str, action: str, description: str, ident: str, tooltip: str, show: bool = False) -> Binding:
    return Binding(key, action, description, show=show, id=f"schedtop.scx.{ident}", tooltip=tooltip)


# schedtop's own sched_ext scheduler (SchedulerController); E is a steering change (SteeringSession).
SCHEDULER_BINDINGS: list[Binding] = [
    _scx("L", "scx_toggle", "sched_ext", "toggle", "Load / unload schedtop's own sched_ext scheduler (asks first)",
         show=True),
    _scx("P", "scx_policy", "Scx policy", "policy", "Switch the scheduler's policy live: deadline, fifo, interactive"),
    _scx("left_curly_bracket", "scx_slice(-1)", "Scx slice -", "slice_down",
         "Shorter global slice of schedtop's scheduler"),
    _scx("right_curly_bracket", "scx_slice(1)", "Scx slice +", "slice_up",
         "Longer global slice of schedtop's scheduler"),
    _scx("M", "scx_mode", "Scx mode", "mode", "Full (every task) or partial (SCHED_EXT tasks only) for the next load"),
    _scx("E", "scx_ext", "In/out of EXT", "ext", "Partial mode: move the selected task into or out of SCHED_EXT"),
    _scx("g", "scx_panel", "Scx panel", "panel", "schedtop's scheduler: counters, queue depth, latency"),
]


def on_app(bindings: list[Binding]) -> list[Binding]:
    """Bindings of this screen whose actions the App runs (the sched_ext area's, a mixin still)."""
    return [dataclasses.replace(b, action=f"app.{b.action}") for b in bindings]


# The app's keys that lead the footer (and the help's first group), before the view's; the
# rest of the app's (the replay's stepping) follow the view's, as when all were one list.
VIEW_IDS = {b.id for b in VIEW_BINDINGS}
APP_LEAD = ("schedtop.quit", "schedtop.help", "schedtop.pause")


class MainScreen(Screen[None]):
    """The default screen: composes the main view and owns its keys (see the module doc)."""

    HELP_GROUP = "schedtop"  # the help lists these keys with the App's, under one title
    BINDINGS: ClassVar[list[BindingType]] = [
        *VIEW_BINDINGS,
        *STEER_BINDINGS,
        *SCHEDULER_BINDINGS,
        *on_app(ext_actions.BINDINGS),
        *bpf_actions.BINDINGS,
    ]

    @property
    def sapp(self) -> SchedtopApp:
        return cast("SchedtopApp", self.app)

    def compose(self) -> ComposeResult:
        yield SchedHeader(id="header")
        with Horizontal(id="top"):
            yield CpuPanel(id="cpus")
            yield LatencyPanel(id="latency")
        with Horizontal(id="main"):
            yield TaskTable(id="tasks")
            yield TaskPane(id="pane")
        yield FilterBox(placeholder="filter: command name or pid (Enter keeps, Esc clears)", id="filter")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.sapp.main_mounted(self)

    @property
    def active_bindings(self) -> dict[str, ActiveBinding]:
        """Textual lists the focused widget's keys, then the screen's, then the App's; the footer
        reads quit, help and pause first, the view's next, then the rest (see APP_LEAD)."""
        active = super().active_bindings

        def rank(ab: ActiveBinding) -> int:
            if ab.node is self.app:
                return 0 if ab.binding.id in APP_LEAD else 2
            if ab.node is self:
                return 1 if ab.binding.id in VIEW_IDS else 3
            return -1  # the focused widget's (none shown in the footer): where Textual put them

        return dict(sorted(active.items(), key=lambda kv: rank(kv[1])))

    def on_resize(self) -> None:  # the App's own Resize is consumed by Textual
        app = self.sapp
        app._check_size()
        app._layout_latency()
        app._layout_pane()

    # --- the view's keys ----------------------------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        # Focus now, not via call_later: keys already queued behind '/' must reach the box.
        self.set_focus(box)

    def action_clear_filter(self) -> None:
        app = self.sapp
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        table = self.query_one(TaskTable)
        table.set_filter("")
        if table.only_pids and not app.pids:
            table.set_only_pids(())
        elif app.pids:
            table.set_only_pids(app.pids)
        table.focus()
        app._render_state()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.query_one(TaskTable).set_filter(event.value)
        self.sapp._render_state()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        event.input.display = bool(event.value)
        self.query_one(TaskTable).focus()

    @on(FilterBox.Cleared)
    def _filter_cleared(self) -> None:
        self.action_clear_filter()

    def action_detail(self) -> None:
        task = self.sapp.selected_task()
        if task is None:
            self.app.notify("no task selected", severity="warning")
            return
        self._open_detail(task)

    @on(TaskTable.Activated)
    def _activated(self, event: TaskTable.Activated) -> None:
        self._open_detail(event.task_row)

    def _open_detail(self, task: Task) -> None:
        app = self.sapp
        if not app.replay:
            app.detail_tid = task.tid  # the collector reads /proc/.../sched for it

        def closed(_: object) -> None:
            app.detail_tid = None
            app._show_pane()  # the side pane (wide terminals) takes the collector's detail back

        app.push_screen(DetailScreen(task.tid), closed)

    @on(TaskTable.CursorMoved)
    def _cursor_moved(self) -> None:
        self.sapp._show_pane()

    @on(CpuPanel.Clicked)
    def _cpu_clicked(self, event: CpuPanel.Clicked) -> None:
        self.app.push_screen(QueueScreen(event.cpu))

    def action_queue(self) -> None:
        task = self.sapp.selected_task()
        self.app.push_screen(QueueScreen(task.cpu if task is not None else 0))

    def action_threads(self) -> None:
        app = self.sapp
        app.thread_mode = not app.thread_mode  # the next request asks for it
        app.view_changed()
        app._render_state()

    def action_follow(self) -> None:
        app = self.sapp
        table = self.query_one(TaskTable)
        if table.only_pids and app.follow_pid is not None:
            app.follow_pid = None
            table.set_only_pids(app.pids)
        else:
            task = table.selected
            if task is None:
                return
            app.follow_pid = task.pid
            table.set_only_pids((task.pid,))
            table.select_tid(task.tid)
        app._render_state()

    def action_sort(self, delta: int) -> None:
        table = self.query_one(TaskTable)
        keys = [c.key for c in table.visible_columns()] or SORT_KEYS
        i = keys.index(table.sort_key) if table.sort_key in keys else -1
        table.set_sort(keys[(i + delta) % len(keys)])
        self.sapp._render_state()

    def action_sort_by(self, key: str) -> None:
        self.query_one(TaskTable).set_sort(key)
        self.sapp._render_state()

    def action_sort_invert(self) -> None:
        table = self.query_one(TaskTable)
        table.set_sort(table.sort_key, not table.sort_reverse)
        self.sapp._render_state()

    @on(TaskTable.SortChanged)
    def _sorted(self) -> None:
        self.sapp._render_state()

    # --- steering (SteeringSession) on the selected task ---------------------

    def _target(self) -> Target:
        app = self.sapp
        return Target(app.selected_task(), processes=not app.thread_mode)

    def action_steer_slice(self) -> None:
        self.sapp.tell(self.sapp.steering.step_slice(self._target()))

    def action_steer_base_slice(self) -> None:
        self.sapp.tell(self.sapp.steering.step_base_slice())

    def action_steer_pin(self) -> None:
        self.sapp.tell(self.sapp.steering.pin(self._target()))

    def action_steer_scope(self) -> None:
        self.sapp.tell(self.sapp.steering.toggle_scope())

    def action_steer_nice(self, delta: int) -> None:
        self.sapp.tell(self.sapp.steering.nice(self._target(), delta))

    def action_steer_boost(self) -> None:
        self.sapp.tell(self.sapp.steering.boost(self._target()))

    def action_steer_rt_boost(self) -> None:
        self.sapp.tell(self.sapp.steering.rt_boost(self._target()))

    def action_steer_demote(self, which: str) -> None:
        self.sapp.tell(self.sapp.steering.demote(self._target(), which))

    def action_steer_policy(self) -> None:
        self.sapp.tell(self.sapp.steering.choose_policy(self._target()))

    def action_steer_undo(self) -> None:
        self.app.notify(self.sapp.steering.undo_last())

    def action_steer_changes(self) -> None:
        self.sapp.tell(self.sapp.steering.changes())

    def action_scx_ext(self) -> None:
        self.sapp.tell(self.sapp.steering.toggle_ext(self._target()))

    # --- schedtop's sched_ext scheduler (SchedulerController) ----------------

    def action_scx_toggle(self) -> None:
        app = self.sapp
        if app.replay:
            app.notify("replay: no live scheduler to drive", severity="warning")
            return
        from schedtop.ui.screens.steer import ConfirmScreen

        ctl = app.scheduler
        if ctl.running:
            def unload(yes: bool | None) -> None:
                if yes:
                    ctl.unload()

            app.push_screen(ConfirmScreen("Unload scheduler", "Unload schedtop's scheduler and go back to EEVDF?",
                                          yes="Unload"), unload)
            return
        why = ctl.refusal()  # nothing is offered that cannot happen
        if why is not None:
            app.notify(why, severity="error", timeout=10)
            return

        def load(yes: bool | None) -> None:
            if yes:
                ctl.load()

        app.push_screen(ConfirmScreen("Load scheduler", ctl.load_question(), yes="Load"), load)

    def action_scx_policy(self) -> None:
        self.sapp.scheduler.next_policy()

    def action_scx_slice(self, direction: int) -> None:
        self.sapp.scheduler.step_slice(direction)

    def action_scx_mode(self) -> None:
        self.sapp.scheduler.toggle_mode()

    def action_scx_panel(self) -> None:
        from schedtop.ui.screens.scx import ScxScreen

        self.app.push_screen(ScxScreen())

    # --- the BPF tier (bpf_actions) ----------------------------------------

    def action_bpf_sample(self, factor: float) -> None:
        app = self.sapp
        tier = bpf_actions.tier_of(app.source)
        if tier is None:
            app.notify(bpf_actions.why_not(app.snapshot), severity="warning")
            return
        rate = tier.set_sample_rate(bpf_actions.next_rate(tier.sample_rate, factor))
        app.notify(bpf_actions.rate_text(rate))
        app.record_action({"type": "bpf.sample_rate", "rate": rate})

    def action_bpf_histogram(self) -> None:
        app = self.sapp
        app.latency_wanted = not app.latency_wanted
        snap = app.snapshot
        if app.latency_wanted and (snap is None or snap.latency is None):
            app.notify(f"no latency histogram to show: {bpf_actions.why_not(snap)}", severity="warning")
        app._layout_latency()
        if snap is not None and self.query_one("#latency").display:
            app.show(snap)  # the panel was not kept up to date while hidden

    def action_bpf_status(self) -> None:
        app = self.sapp
        bpf = app.snapshot.extras.bpf if app.snapshot is not None else None
        if bpf is None:
            app.notify(bpf_actions.why_not(app.snapshot), severity="warning")
            return
        app.notify(bpf_actions.status_text(bpf), timeout=8)
