"""The scheduler panel: schedtop's own sched_ext scheduler at work.

Counters as rates per second, the user-space queue depth, enqueue->dispatch
latency (p50/p99, measured in BPF) and enqueue->decision latency (measured by
the loop), the loop's own cost (CPU%, RSS, page faults after warm-up), and,
once the kernel ejected it, why.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, cast

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from schedtop.export.loop_stats import COUNTERS as BPF_COUNTERS
from schedtop.model import SchedulerInfo, ScxPart, Snapshot
from schedtop.textsafe import visible
from schedtop.ui.screens.main import SCHEDULER_BINDINGS, MainScreen

PANEL_SCX_IDS = {f"schedtop.scx.{k}" for k in ("toggle", "policy", "slice_down", "slice_up", "mode")}

if TYPE_CHECKING:
    from schedtop.ui.app import SchedtopApp

# The counters shown, with their labels; what each counts is the scx_stats server's description.
COUNTERS = tuple((key, label, BPF_COUNTERS[key]) for key, label in (
    ("nr_queued", "queued"),
    ("nr_scheduled", "scheduled"),
    ("nr_user_dispatches", "user dispatches"),
    ("nr_kernel_dispatches", "kernel dispatches"),
    ("nr_self", "own threads"),
    ("nr_preempt", "preemptions"),
    ("nr_latcrit", "latency-critical"),
    ("nr_cancelled", "cancelled"),
    ("nr_bounced", "bounced"),
    ("nr_failed", "failed"),
    ("nr_congested", "congested"),
    ("nr_heartbeats", "heartbeats"),
))


def _plain(x: Any) -> str:
    """Policy, exit and error text as literal markup: control characters made visible, `[` escaped,
    and a backslash that would escape our own tag written as \\x5c."""
    v = re.sub(r"\\(?=\[)|\\$", r"\\x5c", visible(str(x)))
    return v.replace("[", "\\[")


def _us(v: Any) -> str:
    return "-" if v is None else f"{float(v):,.0f} µs"


def panel_markup(scx: ScxPart | None, scheduler: SchedulerInfo | None = None) -> str:
    """Plain function of Snapshot.extras.scx and of who the collector saw in charge:
    testable without an app. Another sched_ext scheduler is named as such, never shown
    with schedtop's options as if they were its own."""
    # "phase" is absent from recordings made before it: there a running child was a loaded one.
    phase = (scx.phase if scx is not None else None) or ("loaded" if scx is not None and scx.running else "ended")
    other = scheduler.ops_name if scheduler is not None and scheduler.kind == "sched_ext" else None
    if other is not None and phase != "loaded":
        return (f"[b]sched_ext runs another scheduler: {_plain(other)}[/b]; schedtop's is not loaded.\n"
                "Unload that one before [b]L[/b] can load schedtop's.")
    if scx is None:
        return "schedtop's scheduler is not loaded. [b]L[/b] loads it (confirmation first)."
    stats = scx.stats
    opts = scx.options
    lines = []
    if phase == "loading":
        lines.append(f"[b]loading[/b]  policy [$accent]{_plain(opts.policy)}[/]  (waiting for the kernel)")
    elif scx.running:
        mode = "partial (SCHED_EXT tasks only)" if (stats.get("partial") or opts.partial) else "full (every task)"
        lines.append(f"[b]loaded[/b]  policy [$accent]{_plain(stats.get('policy') or opts.policy)}[/]  "
                     f"mode {mode}  slice {int(stats.get('slice_ns') or 0) // 1000} µs  "
                     f"up {stats.get('uptime_s', 0):.0f} s")
    else:
        lines.append("[b]not loaded[/b] (the kernel runs EEVDF)  [b]L[/b] loads it")
    if scx.running and scx.frozen and not scx.exit:
        lines.append(f"[$warning]the policy loop is {_plain(scx.frozen)}: its tasks wait until the "
                     "kernel's watchdog ejects the scheduler[/]")
    exit_ = scx.exit
    if exit_:
        sev = "$success" if exit_.get("reason") == "stopped" else "$error"
        lines.append(f"[{sev}]last exit: {_plain(exit_.get('text'))}[/]")
    if stats:
        rates = stats.get("rates") or {}
        counters = stats.get("counters") or {}
        lines.append("")
        lines.append(f"{'counter':<18} {'per s':>10} {'total':>12}")
        for key, label, desc in COUNTERS:
            lines.append(f"{label:<18} {rates.get(key, 0):>10,.0f} {counters.get(key, 0):>12,}  [$text-muted]{desc}[/]")
        lines.append("")
        lines.append(f"user-space queue depth   {stats.get('user_queue', 0)}")
        lines.append(f"enqueue → dispatch       p50 {_us(stats.get('dispatch_p50_us'))}   "
                     f"p99 {_us(stats.get('dispatch_p99_us'))}  [$text-muted](BPF, log2 buckets)[/]")
        lines.append(f"enqueue → decision sent  p50 {_us(stats.get('decide_p50_us'))}   "
                     f"p99 {_us(stats.get('decide_p99_us'))}  [$text-muted](loop, last 4096)[/]")
        pf = stats.get("page_faults_after_warmup")
        pf_text = "warming up" if pf is None else ("0" if pf == 0 else f"[$error]{pf}[/]")
        lines.append(f"loop cost                CPU {stats.get('cpu_pct', 0):.1f}%   RSS "
                     f"{int(stats.get('rss_kb', 0)) // 1024} MB   page faults after warm-up {pf_text}")
        knobs = stats.get("knobs") or {}
        if knobs:
            lines.append("")
            lines.append("per-task knobs (pid: slice, cpu, weight, latency-critical)")
            for pid, (sl, cpu, weight, lat) in list(knobs.items())[:12]:
                lines.append(f"  {pid}: {'-' if sl is None else f'{sl // 1000} µs'}, {'-' if cpu is None else cpu}, "
                             f"{'-' if weight is None else weight}, {'yes' if lat else 'no'}")
        if stats.get("last_error"):
            lines.append(f"[$warning]last command failed: {_plain(stats['last_error'])}[/]")
        for w in stats.get("warnings") or ():
            lines.append(f"[$warning]{_plain(w)}[/]")
    lines.append("")
    lines.append("[$text-muted]L load/unload   P next policy   { } global slice   "
                 "E task in/out of SCHED_EXT (partial)[/]")
    return "\n".join(lines)


class ScxScreen(Screen[None]):
    DEFAULT_CSS = """
    ScxScreen { layout: vertical; }
    ScxScreen #scx-body { border: round $primary; padding: 0 1; }
    """
    # The panel's own hint line names L, P, { } and M: they drive the scheduler from here too
    # (the main screen runs them; E needs a selected task, so it stays on the main screen).
    BINDINGS = [
        Binding("escape,q,g", "close", "Back", id="scx.panel.close", tooltip="Back to the task view"),
        *(b for b in SCHEDULER_BINDINGS if b.id in PANEL_SCX_IDS),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="scx-body") as body:
            body.border_title = "schedtop scheduler"
            yield Static(id="scx-panel")
        yield Footer()

    def on_mount(self) -> None:
        self.show_snapshot(getattr(self.app, "snapshot", None))

    def show_snapshot(self, snap: Snapshot | None) -> None:
        scx = snap.extras.scx if snap is not None else None
        if scx is None:
            scx = cast("SchedtopApp", self.app).scheduler.part()
        self.query_one("#scx-panel", Static).update(panel_markup(scx, snap.scheduler if snap else None))

    def action_close(self) -> None:
        self.dismiss(None)

    def _main(self) -> MainScreen:
        return cast(MainScreen, self.app.screen_stack[0])

    def action_scx_toggle(self) -> None:
        self._main().action_scx_toggle()

    def action_scx_policy(self) -> None:
        self._main().action_scx_policy()

    def action_scx_slice(self, direction: int) -> None:
        self._main().action_scx_slice(direction)

    def action_scx_mode(self) -> None:
        self._main().action_scx_mode()
