"""One CPU's run queue in EEVDF pick order: the running task, then eligible by deadline, then the rest."""

from __future__ import annotations

from typing import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Footer, Static

from schedtop.model import QueuedTask, Snapshot
from schedtop.ui.widgets.format import fmt_ns


def eevdf_order(queue: Sequence[QueuedTask]) -> list[QueuedTask]:
    """EEVDF picks the eligible task with the earliest virtual deadline; show that order."""
    return sorted(queue, key=lambda q: (not q.running, not q.eligible, q.deadline_ns, q.pid))


def queue_markup(snap: Snapshot | None, cpu: int) -> str:
    if snap is None:
        return "[$text-muted]no snapshot yet[/]"
    stat = next((c for c in snap.cpus if c.cpu == cpu), None)
    head = f"[b]CPU {cpu}[/b]"
    if stat is not None:
        run = f"{stat.nr_running}{'' if stat.nr_running_exact else '~'}"
        head += f"  util {stat.util_pct:.1f}%  runnable {run}  {stat.switches_per_s:.0f} switches/s"
    queue = [q for q in snap.queues if q.cpu == cpu]
    if queue:
        lines = [head, "",
                 f"[b]{'':2}{'PID':>7} {'COMMAND':<16} {'ELIG':>4} {'VRUNTIME':>14} {'DEADLINE':>14} "
                 f"{'LAG':>9} {'SLICE':>8} {'WAIT':>9} {'PRI':>3}[/b]"]
        for q in eevdf_order(queue):
            mark = ">R" if q.running else "  "
            style = "$success" if q.running else ("" if q.eligible else "$text-muted")
            row = (f"{mark}{q.pid:>7} {escape(q.comm[:16]):<16} {'yes' if q.eligible else 'no':>4} "
                   f"{q.vruntime_ns / 1e6:>14.3f} {q.deadline_ns / 1e6:>14.3f} "
                   f"{fmt_ns(q.lag_ns):>9} {fmt_ns(q.slice_ns):>8} {fmt_ns(q.wait_ns):>9} {q.prio:>3}")
            lines.append(f"[{style}]{row}[/]" if style else row)
        lines.append("")
        lines.append("[$text-muted]vruntime and deadline in ms; lag = avg_vruntime - vruntime "
                     "(positive: owed CPU time). Source: debugfs sched/debug.[/]")
        return "\n".join(lines)
    # Without debugfs (not root) there is no queue; show the tasks last seen runnable here.
    est = [t for t in snap.tasks if t.cpu == cpu and t.state == "R"]
    lines = [head, "",
             "[$warning]No exact run queue: it comes from debugfs sched/debug, which needs root.[/]",
             "Tasks in state R whose last CPU is this one (an estimate, no EEVDF order):", ""]
    for t in sorted(est, key=lambda t: (t.vruntime_ns or 0)):
        vr = "-" if t.vruntime_ns is None else f"{t.vruntime_ns / 1e6:.3f}"
        lines.append(f"  {t.tid:>7} {escape(t.comm[:16]):<16} vruntime {vr:>14}  slice {fmt_ns(t.slice_ns)}")
    if not est:
        lines.append("  [$text-muted](none)[/]")
    return "\n".join(lines)


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
        self.show_snapshot(self.app.snapshot)

    def show_snapshot(self, snap: Snapshot | None) -> None:
        self._snap = snap
        self.query_one("#queue-text", Static).update(queue_markup(snap, self.cpu))

    def action_cpu(self, delta: int) -> None:
        snap = self._snap
        n = len(snap.cpus) if snap is not None and snap.cpus else 1
        self.cpu = (self.cpu + delta) % n
        self.show_snapshot(snap)

    def action_close(self) -> None:
        self.dismiss(None)
