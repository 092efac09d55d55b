"""The sched_ext screen: whichever BPF scheduler runs, seen through sysfs, root/events and scx_stats.

Renders only what the collector put in Snapshot.extras.sched_ext / .scx_stats (see
schedtop/collect/ext_watch.py) plus Snapshot.scheduler; it reads nothing itself. A timeline of
context switches per second carries markers where a scheduler was loaded (▲), unloaded (▼) or
ejected (✖). scx_stats metrics are shown generically from the server's metadata, with a rate
for every u64 counter.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Static

from schedtop.model import SchedExtPart, ScxChange, Snapshot, StatsPart
from schedtop.textsafe import visible
from schedtop.ui.widgets.format import fmt_rate
from schedtop.ui.widgets.text import safe

BLOCKS = " ▁▂▃▄▅▆▇█"
MARKS = {"load": "▲", "unload": "▼", "eject": "✖"}
MARK_STYLE = {"load": "$success", "unload": "$warning", "eject": "$error"}
DEPTH = 120


def sparkline(values: Sequence[float], width: int) -> str:
    """Block characters, newest on the right, scaled to the window's maximum."""
    vals = list(values)[-width:]
    top = max(vals, default=0.0)
    if top <= 0:
        return "▁" * len(vals)
    return "".join(BLOCKS[max(1, min(8, round(v / top * 8)))] if v > 0 else "▁" for v in vals)


def marker_row(stamps: Sequence[float], changes: Iterable[ScxChange], width: int) -> str:
    """One character per sample: the mark of a change seen at that sample's time (ejections win)."""
    stamps = list(stamps)[-width:]
    row = [" "] * len(stamps)
    rank = {"eject": 3, "unload": 2, "load": 1}
    kinds: list[str | None] = [None] * len(stamps)
    for ch in changes:
        ts = ch.ts
        if not stamps or ts < stamps[0] - 1.0:
            continue
        # the nearest sample: the change was seen by the reading made in the same collection
        i = min(range(len(stamps)), key=lambda k: abs(stamps[k] - ts))
        kind = ch.kind
        if kinds[i] is None or rank.get(kind, 0) > rank.get(kinds[i] or "", 0):
            kinds[i] = kind
    for i, k in enumerate(kinds):
        if k:
            row[i] = f"[{MARK_STYLE[k]}]{MARKS[k]}[/]"
    return "".join(row)


def sysfs_markup(snap: Snapshot | None, ext: SchedExtPart | None) -> Content:
    if snap is None:
        return Content.from_markup("[$text-muted]no snapshot yet[/]")
    s = snap.scheduler
    if s.ext_state == "absent":
        caps = snap.extras.kernel
        fair = "CFS" if caps is not None and caps.fair == "CFS" else "EEVDF"
        return Content.from_markup(
            f"[b]{fair} (fair)[/b]: this kernel has no sched_ext (CONFIG_SCHED_CLASS_EXT).\n"
            "[$text-muted]`schedtop demo` boots a kernel that has it in a QEMU guest.[/]")
    state_style = {"enabled": "$success", "disabled": "$text-muted"}.get(s.ext_state, "$warning")
    mode = "-" if s.switch_all is None else ("all tasks" if s.switch_all else "partial (SCHED_EXT tasks only)")
    lines = [
        safe(f"state [{state_style}][b]$state[/b][/]   ops [b]$ops[/b]   switch_all {mode}",
             state=s.ext_state, ops=s.ops_name or "-"),
        Content(f"enable_seq {_v(s.enable_seq)}   nr_rejected {_v(s.nr_rejected)}   hotplug_seq {_v(s.hotplug_seq)}"),
    ]
    if s.ext_state == "enabled":
        owned = sum(1 for t in snap.tasks if t.ext_enabled)
        known = sum(1 for t in snap.tasks if t.ext_enabled is not None)
        if known:
            lines.append(Content(f"tasks on the BPF scheduler: {owned} of {known} shown (ext.enabled)"))
    if ext is not None and ext.warning:
        lines.append(safe("[$warning]$w[/]", w=ext.warning))
    return Content("\n").join(lines)


def _v(x: object) -> str:
    return "-" if x is None else str(x)


def events_markup(snap: Snapshot | None, ext: SchedExtPart | None) -> Content:
    events = dict(snap.scheduler.events) if snap is not None else {}
    rates = ext.event_rates if ext is not None else {}
    if not events:
        if snap is not None and snap.scheduler.ext_state == "enabled":
            return Content.from_markup("[$text-muted]root/events: not in this kernel (6.15+)[/]")
        return Content.from_markup("[$text-muted]root/events: no BPF scheduler loaded[/]")
    width = max(len(visible(k)) for k in events)
    lines = [Content.from_markup(f"[b]{'root/events':<{width}} {'total':>12} {'per s':>10}[/b]")]
    for name in sorted(events):
        rate = rates.get(name)
        r = "-" if rate is None else fmt_rate(rate)
        style = "$warning" if rate else ""
        row = f"$name {visible(events[name]):>12} {r:>10}"
        lines.append(safe(f"[{style}]{row}[/]" if style else row, name=visible(name).ljust(width)))
    return Content("\n").join(lines)


def changes_markup(changes: Sequence[ScxChange], limit: int = 8) -> Content:
    if not changes:
        return Content.from_markup("[$text-muted]no scheduler loaded or unloaded since schedtop started[/]")
    lines = []
    for ch in list(changes)[-limit:][::-1]:
        kind = ch.kind
        when = time.strftime("%H:%M:%S", time.localtime(ch.wall))
        mark = MARKS.get(kind, "?")
        style = MARK_STYLE.get(kind, "")
        lines.append(safe((f"[{style}]$mark[/]" if style else "$mark") + f" {when}  $label",
                          mark=mark, label=ch.label or kind))
    return Content("\n").join(lines)


def stats_markup(stats: StatsPart | None, prev: StatsPart | None, dt: float) -> Content:
    """Names, descriptions and values come from whichever scheduler serves the socket: plain text."""
    if stats is None:
        return Content.from_markup(
            "[$text-muted]scx_stats: not collected (replay, or --no-bpf session without the extra)[/]")
    path = stats.path
    if not stats.ok:
        err = stats.error or "unknown error"
        if "No such file" in err or "no scheduler serves" in err:
            return safe("[$text-muted]scx_stats: nothing serves $path[/]", path=path)
        return safe("[$warning]scx_stats $path: $err[/]", path=path, err=err)
    metrics, kinds, descs = stats.metrics, stats.kinds, stats.descs
    pm = prev.metrics if prev is not None else {}
    lat = stats.latency_ms
    head = safe("[b]$top[/b]" + (" - $desc" if stats.desc else "") + "   [$text-muted]$path"
                + (f", answered in {lat:.2f} ms" if lat is not None else "") + "[/]",
                top=stats.top or "stats", desc=stats.desc, path=path)
    if not metrics:
        return Content("\n").join([head, Content.from_markup("[$text-muted](no metrics)[/]")])
    width = min(max(len(visible(k)) for k in metrics), 40)
    lines = [head, Content.from_markup(f"[b]{'metric':<{width}} {'value':>14} {'per s':>10}  description[/b]")]
    for name in metrics:
        v = metrics[name]
        rate = ""
        if kinds.get(name) == "u64" and isinstance(v, int) and isinstance(pm.get(name), int) and dt > 0:
            d = v - pm[name]
            rate = fmt_rate(d / dt) if d >= 0 else ""
        if isinstance(v, float):
            shown = f"{v:.3f}"
        else:
            shown = str(v)
        shown = visible(shown)
        if len(shown) > 14:  # a value keeps its leading digits: cut at the end, marked
            shown = shown[:13] + "…"
        lines.append(safe(f"$name $value {rate:>10}  [$text-muted]$desc[/]",
                          name=visible(name)[:width].ljust(width), value=shown.rjust(14), desc=descs.get(name, "")))
    return Content("\n").join(lines)


class SchedExtScreen(Screen[None]):
    DEFAULT_CSS = """
    SchedExtScreen { layout: vertical; }
    SchedExtScreen #ext-body { border: round $primary; padding: 0 1; }
    SchedExtScreen .ext-section { height: auto; margin-bottom: 1; }
    SchedExtScreen #ext-timeline { height: auto; margin-bottom: 1; }
    """
    BINDINGS = [
        Binding("escape,q,x", "close", "Back", id="sched_ext.close", tooltip="Back to the task view"),
    ]

    def __init__(self, seed: Iterable[tuple[float, float]] = ()) -> None:
        super().__init__()
        self.samples: deque[tuple[float, float]] = deque(seed, maxlen=DEPTH)
        self._prev_stats: StatsPart | None = None
        self._prev_ts: float | None = None
        self._last_ts: float | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="ext-body") as body:
            body.border_title = "sched_ext"
            yield Static(id="ext-sysfs", classes="ext-section")
            yield Static(id="ext-timeline")
            yield Static(id="ext-changes", classes="ext-section")
            yield Static(id="ext-events", classes="ext-section")
            yield Static(id="ext-stats", classes="ext-section")
        yield Footer()

    def on_mount(self) -> None:
        self.show_snapshot(getattr(self.app, "snapshot", None))

    def show_snapshot(self, snap: Snapshot | None) -> None:
        ext = snap.extras.sched_ext if snap is not None else None
        stats = snap.extras.scx_stats if snap is not None else None
        changes = ext.changes if ext is not None else ()
        if snap is not None and snap.ts != self._last_ts:
            self._last_ts = snap.ts
            rate = ext.ctxt_per_s if ext is not None else None
            if rate is None:
                rate = sum(c.switches_per_s for c in snap.cpus)
            if not self.samples or self.samples[-1][0] < snap.ts:
                self.samples.append((snap.ts, float(rate)))
        width = max(self.size.width - 30, 20)
        stamps = [s[0] for s in self.samples]
        values = [s[1] for s in self.samples]
        spark = sparkline(values, width)
        marks = marker_row(stamps, changes, width)
        now = f"{fmt_rate(values[-1])}/s" if values else "-"
        legend = "[$success]▲[/] load  [$warning]▼[/] unload  [$error]✖[/] ejected"
        self.query_one("#ext-timeline", Static).update(
            f"{'context switches':<18} [$accent]{spark}[/] {now}\n{'':<18} {marks}\n{'':<18} {legend}")
        self.query_one("#ext-sysfs", Static).update(sysfs_markup(snap, ext))
        self.query_one("#ext-changes", Static).update(changes_markup(changes))
        self.query_one("#ext-events", Static).update(events_markup(snap, ext))
        dt = (snap.ts - self._prev_ts) if (snap is not None and self._prev_ts is not None) else 0.0
        self.query_one("#ext-stats", Static).update(stats_markup(stats, self._prev_stats, dt))
        if snap is not None and dt != 0.0 or self._prev_ts is None:
            self._prev_stats = stats
            self._prev_ts = snap.ts if snap is not None else None

    def action_close(self) -> None:
        self.dismiss(None)
