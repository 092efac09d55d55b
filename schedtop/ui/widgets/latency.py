"""Run-queue latency (BPF tier): a log2 histogram like runqlat, plus a p99 sparkline over time."""

from __future__ import annotations

from typing import Sequence

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from schedtop.model import Histogram
from schedtop.ui.widgets.format import bar, fmt_us


def histogram_lines(h: Histogram, width: int, max_rows: int) -> list[str]:
    """Non-empty bucket range only, clipped to the `max_rows` around the mass."""
    nz = [i for i, c in enumerate(h.counts) if c]
    if not nz:
        return ["[$text-muted]no wakeups sampled[/]"]
    lo, hi = nz[0], nz[-1]
    while hi - lo + 1 > max_rows:  # drop the lighter end first
        if h.counts[lo] <= h.counts[hi]:
            lo += 1
        else:
            hi -= 1
    peak = max(h.counts[lo : hi + 1]) or 1
    bar_w = max(4, width - 20)
    out = []
    for i in range(lo, hi + 1):
        label = fmt_us(h.bounds_us[i]) if i < len(h.bounds_us) else "more"
        out.append(f"≤{label:>7} [$primary]{bar(h.counts[i] / peak, bar_w)}[/] {h.counts[i]:>7}")
    return out


def summary_markup(h: Histogram | None) -> str:
    if h is None:
        return "[b]run-queue latency[/b] [$text-muted]needs the BPF tier[/]"
    return (
        f"[b]run-queue latency[/b] n={h.total}  p50 {fmt_us(h.p50_us)}  p90 {fmt_us(h.p90_us)}  "
        f"p99 [b]{fmt_us(h.p99_us)}[/b]  max {fmt_us(h.max_us)}"
    )


class LatencyPanel(Vertical):
    """Shows Snapshot.latency; the app hides it when the snapshot has none."""

    def compose(self) -> ComposeResult:
        yield Static(id="lat-summary")
        yield Static(id="lat-hist")
        yield Sparkline([], id="lat-p99", summary_function=max)

    def show(self, h: Histogram | None, p99_history: Sequence[float]) -> None:
        self.query_one("#lat-summary", Static).update(summary_markup(h))
        rows = max(1, self.size.height - 2) if self.size.height else 6
        lines = histogram_lines(h, self.size.width or 40, rows) if h is not None else []
        self.query_one("#lat-hist", Static).update("\n".join(lines))
        self.query_one("#lat-p99", Sparkline).data = list(p99_history) or [0.0]
