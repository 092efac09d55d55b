"""One line per CPU: utilisation bar, runnable count (~ when estimated), current task, switches/s."""

from __future__ import annotations

import math

from textual import events
from textual.content import Content
from textual.message import Message
from textual.widgets import Static

from schedtop.model import CpuStat, Snapshot
from schedtop.textsafe import visible
from schedtop.ui.widgets.format import bar, fmt_rate
from schedtop.ui.widgets.text import safe, set_text

MAX_ROWS = 8  # beyond this many CPUs, lay them out in columns


def cpu_cell(c: CpuStat, width: int) -> Content:
    """One CPU in `width` cells; the bar takes what the text leaves."""
    run = f"{c.nr_running}{'' if c.nr_running_exact else '~'}"
    curr = "idle" if c.curr_pid is None and not c.curr_comm else visible(c.curr_comm or "?")
    if c.curr_pid is not None:
        curr += f" ({c.curr_pid})"
    head = f"{c.cpu:>3} "
    nums = f" {c.util_pct:5.1f}% run {run:>3} {fmt_rate(c.switches_per_s):>5} sw/s "
    bar_w = max(6, min(50, width - len(head) - len(nums) - 22))
    rest = max(0, width - len(head) - bar_w - len(nums))
    curr = curr if len(curr) <= rest else curr[: max(0, rest - 1)] + "…"
    level = "$success" if c.util_pct < 60 else ("$warning" if c.util_pct < 90 else "$error")
    return safe(f"{head}[{level}]{bar(c.util_pct / 100, bar_w)}[/]{nums}[$text-muted]$curr[/]",
                curr=curr.ljust(rest))


def grid(n: int, width: int) -> tuple[int, int, int]:
    """(columns, rows, column width) for n CPUs: one column until MAX_ROWS, then as many as fit."""
    ncols = max(1, min(math.ceil(n / MAX_ROWS), max(1, width // 60)))
    nrows = math.ceil(n / ncols) if n else 0
    return ncols, nrows, max(30, width // ncols - 1)


def cpu_at(n: int, width: int, x: int, y: int) -> int | None:
    """Which CPU's cell is at (x, y) of the panel (y 0 is the title line)."""
    ncols, nrows, colw = grid(n, width)
    if not 1 <= y <= nrows:
        return None
    i = (x // (colw + 1)) * nrows + (y - 1)
    return i if i < n else None


def cpu_panel_markup(snap: Snapshot | None, width: int) -> Content:
    if snap is None or not snap.cpus:
        return Content.from_markup("[$text-muted]no CPU data yet[/]")
    cpus = snap.cpus
    ncols, nrows, colw = grid(len(cpus), width)
    exact = all(c.nr_running_exact for c in cpus)
    note = "runnable exact (debugfs)" if exact else "runnable ~ estimated from /proc (root: exact)"
    lines = [Content.from_markup(f"[b]CPU[/b]  [$text-muted]{note}[/]")]
    for r in range(nrows):
        cells = [cpu_cell(cpus[i], colw) for i in range(r, len(cpus), nrows)]
        lines.append(Content(" ").join(cells))
    return Content("\n").join(lines)


class CpuPanel(Static):
    _snap: Snapshot | None = None  # the last snapshot shown
    _shown = False  # show() ran (a resize before it has nothing to redraw)

    class Clicked(Message):
        def __init__(self, cpu: int) -> None:
            super().__init__()
            self.cpu = cpu

    def on_click(self, event: events.Click) -> None:
        snap = self._snap
        if snap is None:
            return
        i = cpu_at(len(snap.cpus), self.content_size.width or self.size.width, event.x - 1, event.y)
        if i is not None:
            self.post_message(self.Clicked(snap.cpus[i].cpu))

    def show(self, snap: Snapshot | None) -> None:
        self._snap, self._shown = snap, True
        set_text(self, cpu_panel_markup(snap, self.size.width or 80))

    def on_resize(self) -> None:
        if self._shown:
            set_text(self, cpu_panel_markup(self._snap, self.size.width or 80))
