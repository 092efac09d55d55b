"""The selected task in depth: sparklines of its vruntime growth, wait and slice, plus /proc/PID/sched.

The /proc fields arrive through the collector (Snapshot.detail),
never read here: this screen only renders.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from schedtop.model import Snapshot
from schedtop.ui.widgets.task_pane import TaskSparks, fields_markup, task_summary
from schedtop.ui.widgets.text import set_text


class DetailScreen(Screen[None]):
    BINDINGS = [Binding("escape,q", "close", "Back", id="detail.close", tooltip="Back to the task view")]

    def __init__(self, tid: int) -> None:
        super().__init__()
        self.tid = tid

    def compose(self) -> ComposeResult:
        with Vertical(id="detail-top") as top:
            top.border_title = f"task {self.tid}"
            yield Static(id="detail-summary")
            yield TaskSparks(id="detail-sparks")
        with VerticalScroll(id="detail-fields") as body:
            body.border_title = "/proc/PID/task/TID/sched"
            yield Static(id="detail-fields-text")
        yield Footer()

    def on_mount(self) -> None:
        self.show_snapshot(self.app.snapshot)

    def show_snapshot(self, snap: Snapshot | None) -> None:
        task = None
        siblings = None
        if snap is not None:
            task = next((t for t in snap.tasks if t.tid == self.tid), None)
            if task is not None and task.nr_threads == 1:
                siblings = sum(1 for t in snap.tasks if t.pid == task.pid)
        set_text(self.query_one("#detail-summary", Static), task_summary(task, self.tid, siblings))
        self.query_one(TaskSparks).show(self.app.history.trail(self.tid))
        detail = snap.detail if snap is not None else None
        set_text(self.query_one("#detail-fields-text", Static), fields_markup(detail, self.tid, self.app.replay))

    def action_close(self) -> None:
        self.dismiss(None)
