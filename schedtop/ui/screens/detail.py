"""The selected task in depth: sparklines of its vruntime growth, wait and slice, plus /proc/PID/sched.

The /proc fields arrive through the collector (Snapshot.extras['sched_detail']),
never read here: this screen only renders.
"""

from __future__ import annotations

from typing import Any, Mapping

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Footer, Sparkline, Static

from schedtop.model import Snapshot, Task
from schedtop.ui.history import TaskTrail
from schedtop.ui.widgets.format import compact_cpus, fmt_ns, fmt_rate, fmt_us, fmt_vruntime


def task_summary(t: Task | None, tid: int) -> str:
    if t is None:
        return f"[$warning]task {tid} is gone[/]"
    lat = ""
    if t.lat_p99_us is not None:
        lat = f"\nrun-queue latency p50 {fmt_us(t.lat_p50_us)}  p99 {fmt_us(t.lat_p99_us)}  max {fmt_us(t.lat_max_us)}"
    ext = "" if t.ext_enabled is None else f"  sched_ext {'yes' if t.ext_enabled else 'no'}"
    return (
        f"[b]{escape(t.comm)}[/b]  pid {t.pid} tid {t.tid}  state {t.state}  threads {t.nr_threads}\n"
        f"policy {t.policy}  nice {t.nice}  prio {t.prio}  rt_priority {t.rt_priority}  "
        f"cpu {t.cpu}  affinity {compact_cpus(t.affinity)}{ext}\n"
        f"vruntime {fmt_vruntime(t.vruntime_ns)} s  slice {fmt_ns(t.slice_ns)}  CPU {t.cpu_pct:.1f}%  "
        f"runtime {fmt_ns(t.runtime_ns)}  wait {fmt_ns(t.wait_ns)}  timeslices {t.timeslices}\n"
        f"wait/s {fmt_ns(t.wait_ns_per_s)}  voluntary {fmt_rate(t.vol_cs_per_s)}/s  "
        f"involuntary {fmt_rate(t.invol_cs_per_s)}/s{lat}"
    )


def fields_markup(detail: Mapping[str, Any] | None, tid: int) -> str:
    if not isinstance(detail, Mapping) or detail.get("tid") != tid:
        return "[$text-muted]waiting for the collector to read /proc/PID/task/TID/sched…[/]"
    fields = detail.get("fields") or {}
    if not fields:
        return "[$text-muted]/proc/PID/sched is not readable for this task[/]"
    width = max(len(k) for k in fields)
    return "\n".join(f"{escape(k):<{width}}  {escape(str(v))}" for k, v in fields.items())


def _last(values, fmt) -> str:
    return fmt(values[-1]) if values else "-"


class DetailScreen(Screen[None]):
    BINDINGS = [Binding("escape,q", "close", "Back", id="detail.close", tooltip="Back to the task view")]

    def __init__(self, tid: int) -> None:
        super().__init__()
        self.tid = tid

    def compose(self) -> ComposeResult:
        with Vertical(id="detail-top") as top:
            top.border_title = f"task {self.tid}"
            yield Static(id="detail-summary")
            with Horizontal(classes="spark-row"):
                yield Static("vruntime growth", classes="spark-label", id="lbl-vr")
                yield Sparkline([], id="spark-vruntime", summary_function=max)
            with Horizontal(classes="spark-row"):
                yield Static("wait / interval", classes="spark-label", id="lbl-wait")
                yield Sparkline([], id="spark-wait", summary_function=max)
            with Horizontal(classes="spark-row"):
                yield Static("slice", classes="spark-label", id="lbl-slice")
                yield Sparkline([], id="spark-slice", summary_function=max)
        with VerticalScroll(id="detail-fields") as body:
            body.border_title = "/proc/PID/task/TID/sched"
            yield Static(id="detail-fields-text")
        yield Footer()

    def on_mount(self) -> None:
        self.show_snapshot(self.app.snapshot)

    def show_snapshot(self, snap: Snapshot | None) -> None:
        task = None
        if snap is not None:
            task = next((t for t in snap.tasks if t.tid == self.tid), None)
        self.query_one("#detail-summary", Static).update(task_summary(task, self.tid))
        trail: TaskTrail | None = self.app.history.trail(self.tid)
        series = {
            "vruntime": (trail.vruntime_growth_ns if trail else (), "lbl-vr", "vruntime growth"),
            "wait": (trail.wait_ns_per_s if trail else (), "lbl-wait", "wait / s"),
            "slice": (trail.slice_ns if trail else (), "lbl-slice", "slice"),
        }
        for name, (values, label_id, label) in series.items():
            data = list(values)
            self.query_one(f"#spark-{name}", Sparkline).data = data or [0.0]
            self.query_one(f"#{label_id}", Static).update(f"{label} {_last(data, fmt_ns):>8}")
        detail = snap.extras.get("sched_detail") if snap is not None else None
        self.query_one("#detail-fields-text", Static).update(fields_markup(detail, self.tid))

    def action_close(self) -> None:
        self.dismiss(None)
