"""The two header lines: machine identity, then who schedules and how we watch."""

from __future__ import annotations

import time

from textual.markup import escape
from textual.widgets import Static

from schedtop.ui.widgets.text import set_text
from schedtop.model import Snapshot
from schedtop.ui.widgets.format import fmt_uptime


def header_markup(snap: Snapshot | None, mode: str) -> str:
    """`mode` is the app's own state: 'live', 'PAUSED', 'replay 3/60 x1.0', ..."""
    if snap is None:
        return f"[b]schedtop[/b]  collecting…\n[$text-muted]{escape(mode)}[/]"
    load = " ".join(f"{x:.2f}" for x in snap.loadavg)
    clock = time.strftime("%H:%M:%S", time.localtime(snap.wall))
    line1 = (
        f"[b]schedtop[/b]  [$accent]{escape(snap.host)}[/]  [$text-muted]{clock}[/]  "
        f"up {fmt_uptime(snap.uptime_s)}  load {load}  kernel {escape(snap.kernel)}"
    )
    sched = snap.scheduler
    ext = sched.ext_state
    ext_style = {"enabled": "$success", "absent": "$text-muted"}.get(ext, "$warning")
    line2 = (
        f"scheduler [b $primary]{escape(sched.label)}[/]  "
        f"sched_ext [{ext_style}]{escape(ext)}[/]  "
        f"source {escape(snap.source)}  {len(snap.cpus)} CPUs  {len(snap.tasks)} tasks"
    )
    if mode != "live":  # first, so a narrow terminal still shows PAUSED / REPLAY
        line2 = f"[b $warning]{escape(mode)}[/]  " + line2
    return f"{line1}\n{line2}"


class SchedHeader(Static):
    """Renders a Snapshot's identity lines; knows nothing of where the snapshot came from."""

    def show(self, snap: Snapshot | None, mode: str) -> None:
        set_text(self, header_markup(snap, mode))
