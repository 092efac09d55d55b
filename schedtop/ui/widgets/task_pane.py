"""The selected task beside the table on wide terminals: a summary and its sparklines.

The same pieces make the top of the detail screen (Enter), so the two never differ.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Static

from schedtop.model import Task, TaskDetail
from schedtop.textsafe import visible
from schedtop.ui.history import TaskTrail
from schedtop.ui.widgets.format import compact_cpus, fmt_ns, fmt_pct, fmt_rate, fmt_us, fmt_vruntime, spark
from schedtop.ui.widgets.text import safe, set_text

SERIES = (
    ("vruntime", "vruntime +"),
    ("wait", "wait/s"),
    ("slice", "slice"),
)


def threads_text(t: Task, siblings: int | None) -> str:
    """A folded process row counts its threads; a thread row says whose thread it is."""
    if t.nr_threads > 1:
        return f"threads {t.nr_threads}"
    if siblings is None:  # a process row (or a caller that could not count)
        return f"threads {t.nr_threads}" if t.tid == t.pid else f"thread of pid {t.pid}"
    if siblings <= 1:
        return "threads 1"
    return f"thread {'(main) ' if t.tid == t.pid else ''}of {siblings} in pid {t.pid}"


def task_summary(t: Task | None, tid: int | None, siblings: int | None = None) -> Content:
    """`siblings`: how many threads the task's process has in the snapshot (None: not known)."""
    if t is None:
        if tid is not None:
            return Content.from_markup(f"[$warning]task {tid} is gone[/]")
        return Content.from_markup("[$text-muted]no task selected[/]")
    lat = ""
    if t.lat_p99_us is not None:
        lat = f"\nrun-queue latency p50 {fmt_us(t.lat_p50_us)}  p99 {fmt_us(t.lat_p99_us)}  max {fmt_us(t.lat_max_us)}"
    ext = "" if t.ext_enabled is None else f"  sched_ext {'yes' if t.ext_enabled else 'no'}"
    threads = threads_text(t, siblings)
    return safe(
        f"[b]$comm[/b]  pid {t.pid} tid {t.tid}  state $state{'  ' + threads if threads else ''}\n"
        f"policy $policy  nice {t.nice}  prio {t.prio}  rt_priority {t.rt_priority}\n"
        f"cpu {t.cpu}  affinity {compact_cpus(t.affinity)}{ext}\n"
        f"vruntime {fmt_vruntime(t.vruntime_ns)}  slice {fmt_ns(t.slice_ns)}  CPU {fmt_pct(t.cpu_pct)}%\n"
        f"runtime {fmt_ns(t.runtime_ns)}  wait {fmt_ns(t.wait_ns)}  timeslices {t.timeslices}\n"
        f"wait/s {fmt_ns(t.wait_ns_per_s)}  switches/s vol {fmt_rate(t.vol_cs_per_s)} "
        f"invol {fmt_rate(t.invol_cs_per_s)}{lat}",
        comm=t.comm, state=t.state, policy=t.policy,
    )


def fields_markup(detail: TaskDetail | None, tid: int, replay: bool = False) -> Content:
    if detail is None or detail.tid != tid:
        if replay:
            return Content.from_markup("[$text-muted]this recording has no /proc sched fields for this task[/]")
        return Content.from_markup("[$text-muted]waiting for the collector to read /proc/PID/task/TID/sched…[/]")
    fields = detail.fields
    if not fields:
        return Content.from_markup("[$text-muted]/proc/PID/sched is not readable for this task[/]")
    keys = {k: visible(k) for k in fields}
    width = max(len(k) for k in keys.values())
    return Content("\n".join(f"{keys[k]:<{width}}  {visible(v)}" for k, v in fields.items()))


def trail_series(trail: TaskTrail | None) -> dict[str, Sequence[float]]:
    if trail is None:
        return {"vruntime": (), "wait": (), "slice": ()}
    return {"vruntime": trail.vruntime_growth_ns, "wait": trail.wait_ns_per_s, "slice": trail.slice_ns}


def show_spark(widget: Static, data: Sequence[float]) -> None:
    """One cell per sample, newest on the right (Textual's Sparkline stretches short series)."""
    set_text(widget, spark(data, widget.content_size.width or 40))


class TaskSparks(Vertical):
    """Three labelled sparklines: vruntime growth per interval, wait per second, slice."""

    def compose(self) -> ComposeResult:
        for name, label in SERIES:
            with Horizontal(classes="spark-row"):
                yield Static(label, classes="spark-label", id=f"lbl-{name}")
                yield Static("", id=f"spark-{name}", classes="spark")

    def show(self, trail: TaskTrail | None) -> None:
        for (name, label), values in zip(SERIES, trail_series(trail).values()):
            data = list(values)
            show_spark(self.query_one(f"#spark-{name}", Static), data)
            last = fmt_ns(data[-1]) if data else "-"
            set_text(self.query_one(f"#lbl-{name}", Static), f"{label:<11}{last:>8}")


class TaskPane(Vertical):
    def compose(self) -> ComposeResult:
        yield Static(id="pane-summary")
        yield TaskSparks(id="pane-sparks")
        yield Static(id="pane-fields")

    def show(self, task: Task | None, tid: int | None, trail: TaskTrail | None,
             detail: TaskDetail | None = None, replay: bool = False, siblings: int | None = None) -> None:
        set_text(self.query_one("#pane-summary", Static), task_summary(task, tid, siblings))
        self.query_one(TaskSparks).show(trail)
        fields = fields_markup(detail, tid, replay) if tid is not None else Content("")
        set_text(self.query_one("#pane-fields", Static), fields)
