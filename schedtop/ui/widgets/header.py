"""The two header lines: machine identity, then who schedules and how we watch."""

from __future__ import annotations

import time
from collections.abc import Sequence

from textual.content import Content
from textual.widgets import Static

from schedtop.collect.kernel_caps import scheduler_label
from schedtop.model import Snapshot
from schedtop.ui.widgets.format import fmt_uptime
from schedtop.ui.widgets.text import safe, set_text


def header_markup(snap: Snapshot | None, mode: str, games: Sequence[str] = ()) -> Content:
    """`mode` is the app's own state: 'live', 'PAUSED', 'replay 3/60 x1.0', ...; `games`: the
    games GameMode has in game mode now (their labels, e.g. 'vkcube[4242]'), said on line 2."""
    if snap is None:
        return safe("[b]schedtop[/b]  collecting…\n[$text-muted]$mode[/]", mode=mode)
    load = " ".join(f"{x:.2f}" for x in snap.loadavg)
    clock = time.strftime("%H:%M:%S", time.localtime(snap.wall))
    sched = snap.scheduler
    ext = sched.ext_state
    ext_style = {"enabled": "$success", "absent": "$text-muted"}.get(ext, "$warning")
    line2 = (
        "scheduler [b $primary]$label[/]  "
        f"sched_ext [{ext_style}]$ext[/]  "
        f"source $source  {len(snap.cpus)} CPUs  {len(snap.tasks)} tasks"
    )
    if games:  # before the counts: which game is in game mode matters more than how many tasks
        line2 = line2.replace("  source $source", "  [b $success]game mode[/] $games  source $source")
    if mode != "live":  # first, so a narrow terminal still shows PAUSED / REPLAY
        line2 = "[b $warning]$mode[/]  " + line2
    return safe(
        f"[b]schedtop[/b]  [$accent]$host[/]  [$text-muted]{clock}[/]  "
        f"up {fmt_uptime(snap.uptime_s)}  load {load}  kernel $kernel\n" + line2,
        host=snap.host, kernel=snap.kernel, label=scheduler_label(sched.label, snap.extras.kernel), ext=ext,
        source=snap.source, mode=mode, games=", ".join(games),
    )


class SchedHeader(Static):
    """Renders a Snapshot's identity lines; knows nothing of where the snapshot came from."""

    def show(self, snap: Snapshot | None, mode: str, games: Sequence[str] = ()) -> None:
        set_text(self, header_markup(snap, mode, games))
