"""Run-queue latency (BPF tier): a log2 histogram drawn as columns, plus a p99 sparkline over time.

Columns (one per power-of-two µs bucket) keep the panel a few lines tall, so it
sits beside the CPU bars instead of pushing the task table down.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from schedtop.model import Histogram, ScxChange
from schedtop.ui.widgets.format import fmt_us
from schedtop.ui.widgets.task_pane import show_spark
from schedtop.ui.widgets.text import set_text

BLOCKS = " ▁▂▃▄▅▆▇█"
CHART_ROWS = 4
COL_W = 2


def histogram_columns(h: Histogram, rows: int = CHART_ROWS, col_w: int = COL_W) -> list[str]:
    """The chart's lines, top first, plus one axis line with 1µs / 1ms / 1s marks."""
    counts = list(h.counts)
    if not counts or not any(counts):
        return ["no wakeups sampled yet"]
    peak = max(counts)
    heights = [0 if c == 0 else max(1, round(c / peak * rows * 8)) for c in counts]
    lines = []
    for r in range(rows - 1, -1, -1):  # top row first
        cells = []
        for hgt in heights:
            level = min(8, max(0, hgt - r * 8))
            cells.append(BLOCKS[level] * (col_w - 1) + " ")
        lines.append("".join(cells).rstrip())
    axis = [" "] * (len(counts) * col_w + 4)
    for us, label in ((1.0, "1µs"), (1024.0, "1ms"), (1048576.0, "1s")):
        for i, b in enumerate(h.bounds_us):
            if b >= us:
                axis[i * col_w : i * col_w + len(label)] = list(label)
                break
    lines.append("".join(axis).rstrip())
    return lines


def summary_markup(h: Histogram | None) -> str:
    if h is None:
        return "[b]run-queue latency[/b] [$text-muted]needs the BPF tier[/]"
    return (
        f"[b]run-queue latency[/b] [$text-muted]n={h.total}[/]  max {fmt_us(h.max_us)}\n"
        f"p50 {fmt_us(h.p50_us)}  p90 {fmt_us(h.p90_us)}  p99 [b $warning]{fmt_us(h.p99_us)}[/]"
    )


class LatencyPanel(Vertical):
    """Shows Snapshot.latency; the app hides it when the snapshot has none or the screen is narrow."""

    def compose(self) -> ComposeResult:
        yield Static(id="lat-summary")
        with Horizontal(id="lat-spark-row"):
            yield Static("p99 ", id="lat-spark-label")
            yield Static("", id="lat-p99", classes="spark")
        with Horizontal(id="lat-marks-row"):
            yield Static("", id="lat-marks-label")
            yield Static("", id="lat-marks")
        yield Static(id="lat-hist")

    def show(self, h: Histogram | None, p99_history: Sequence[float], stamps: Sequence[float] = (),
             changes: Iterable[ScxChange] = ()) -> None:
        """stamps: Snapshot.ts of each p99 sample; changes: sched_ext load/unload/eject records
        (Snapshot.extras.sched_ext.changes), marked under the sparkline as on the `x` screen."""
        set_text(self.query_one("#lat-summary", Static), summary_markup(h))
        set_text(self.query_one("#lat-hist", Static), "\n".join(histogram_columns(h)) if h is not None else "")
        spark_w = self.query_one("#lat-p99", Static)
        show_spark(spark_w, list(p99_history))
        changes = list(changes)
        marks = ""
        if changes and stamps:
            from schedtop.ui.screens.sched_ext import marker_row  # only once a scheduler came or went

            width = spark_w.content_size.width or 40
            n = min(len(stamps), len(p99_history), width)
            marks = marker_row(list(stamps)[-n:], changes, n) if n else ""
        row = self.query_one("#lat-marks-row")
        row.display = bool(marks.strip())
        if row.display:
            set_text(self.query_one("#lat-marks", Static), marks)
