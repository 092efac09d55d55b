"""One CPU's run queue in pick order: the running task, then EEVDF's eligible by deadline
(or, on a CFS kernel, the leftmost vruntime first), then the rest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Static

from schedtop.model import QueuedTask, Snapshot
from schedtop.textsafe import visible
from schedtop.ui.widgets.format import fmt_ns, fmt_vruntime
from schedtop.ui.widgets.text import safe

if TYPE_CHECKING:
    from schedtop.ui.app import SchedtopApp

VR_W = 14


def is_cfs(queue: Sequence[QueuedTask], snap: Snapshot | None = None) -> bool:
    """CFS when the kernel gave no eligibility (6.1's sched/debug), or the probe says so."""
    caps = snap.extras.kernel if snap is not None else None
    if caps is not None and caps.fair == "CFS":
        return True
    return any(q.eligible is None for q in queue)


def eevdf_order(queue: Sequence[QueuedTask]) -> list[QueuedTask]:
    """EEVDF picks the eligible task with the earliest virtual deadline; CFS the smallest vruntime."""
    if is_cfs(queue):
        return sorted(queue, key=lambda q: (not q.running, q.vruntime_ns, q.pid))
    return sorted(queue, key=lambda q: (not q.running, not q.eligible, q.deadline_ns or 0, q.pid))


def _comm(comm: str) -> str:
    return visible(comm)[:16].ljust(16)


def queue_markup(snap: Snapshot | None, cpu: int) -> Content:
    if snap is None:
        return Content.from_markup("[$text-muted]no snapshot yet[/]")
    stat = next((c for c in snap.cpus if c.cpu == cpu), None)
    head = f"[b]CPU {cpu}[/b]"
    if stat is not None:
        run = f"{stat.nr_running}{'' if stat.nr_running_exact else '~'}"
        head += f"  util {stat.util_pct:.1f}%  runnable {run}  {stat.switches_per_s:.0f} switches/s"
    queue = [q for q in snap.queues if q.cpu == cpu]
    lines: list[Content] = [Content.from_markup(head), Content("")]
    if queue:
        cfs = is_cfs(queue, snap)
        if cfs:
            lines.append(Content.from_markup(
                f"[b]{'':2}{'PID':>7} {'COMMAND':<16} {'VRUNTIME':>{VR_W}} {'WAIT':>9} {'PRI':>3}[/b]"))
        else:
            lines.append(Content.from_markup(
                f"[b]{'':2}{'PID':>7} {'COMMAND':<16} {'ELIG':>4} {'VRUNTIME':>{VR_W}} {'DEADLINE':>{VR_W}} "
                f"{'LAG':>9} {'SLICE':>8} {'WAIT':>9} {'PRI':>3}[/b]"))
        for q in eevdf_order(queue):
            mark = ">R" if q.running else "  "
            style = "$success" if q.running else ("" if q.eligible or cfs else "$text-muted")
            if cfs:
                row = (f"{mark}{q.pid:>7} $comm {fmt_vruntime(q.vruntime_ns, VR_W, 6):>{VR_W}} "
                       f"{fmt_ns(q.wait_ns):>9} {q.prio:>3}")
            else:
                row = (f"{mark}{q.pid:>7} $comm {'yes' if q.eligible else 'no':>4} "
                       f"{fmt_vruntime(q.vruntime_ns, VR_W, 6):>{VR_W}} {fmt_vruntime(q.deadline_ns, VR_W, 6):>{VR_W}} "
                       f"{fmt_ns(q.lag_ns):>9} {fmt_ns(q.slice_ns):>8} {fmt_ns(q.wait_ns):>9} {q.prio:>3}")
            lines.append(safe(f"[{style}]{row}[/]" if style else row, comm=_comm(q.comm)))
        lines.append(Content(""))
        if cfs:
            caps = snap.extras.kernel
            why = (caps.why_not("eevdf") if caps else None) or "this kernel runs CFS: no eligibility, lag or deadline"
            lines.append(safe("[$text-muted]CFS order: smallest vruntime (tree-key) first; vruntime in seconds. "
                              "$why. Source: debugfs sched/debug.[/]", why=why))
        else:
            lines.append(Content.from_markup(
                "[$text-muted]vruntime and deadline in seconds (as in the task table); "
                "lag = avg_vruntime - vruntime (positive: owed CPU time). Source: debugfs sched/debug.[/]"))
        return Content("\n").join(lines)
    # Without debugfs (not root) there is no queue; show the tasks last seen runnable here.
    est = [t for t in snap.tasks if t.cpu == cpu and t.state == "R"]
    lines += [Content.from_markup(
                  "[$warning]No exact run queue: it comes from debugfs sched/debug, which needs root.[/]"),
              Content("Tasks in state R whose last CPU is this one (an estimate, no pick order):"), Content("")]
    for t in sorted(est, key=lambda t: (t.vruntime_ns or 0)):
        lines.append(safe(f"  {t.tid:>7} $comm vruntime {fmt_vruntime(t.vruntime_ns, VR_W, 6):>{VR_W}}  "
                          f"slice {fmt_ns(t.slice_ns)}", comm=_comm(t.comm)))
    if not est:
        lines.append(Content.from_markup("  [$text-muted](none)[/]"))
    return Content("\n").join(lines)


class QueueScreen(Screen[None]):
    BINDINGS = [
        Binding("escape,q", "close", "Back", id="queue.close", tooltip="Back to the task view"),
        Binding("left,h", "cpu(-1)", "Prev CPU", id="queue.prev_cpu", tooltip="Show the previous CPU's queue"),
        Binding("right,l", "cpu(1)", "Next CPU", id="queue.next_cpu", tooltip="Show the next CPU's queue"),
    ]

    def __init__(self, cpu: int) -> None:
        super().__init__()
        self.cpu = cpu

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="queue-body") as body:
            body.border_title = "EEVDF run queue"
            yield Static(id="queue-text")
        yield Footer()

    def on_mount(self) -> None:
        self.show_snapshot(cast("SchedtopApp", self.app).snapshot)

    def show_snapshot(self, snap: Snapshot | None) -> None:
        self._snap = snap
        self.query_one("#queue-text", Static).update(queue_markup(snap, self.cpu))
        cfs = snap is not None and is_cfs([q for q in snap.queues if q.cpu == self.cpu], snap)
        self.query_one("#queue-body").border_title = "CFS run queue" if cfs else "EEVDF run queue"

    def action_cpu(self, delta: int) -> None:
        snap = self._snap
        n = len(snap.cpus) if snap is not None and snap.cpus else 1
        self.cpu = (self.cpu + delta) % n
        self.show_snapshot(snap)

    def action_close(self) -> None:
        self.dismiss(None)
