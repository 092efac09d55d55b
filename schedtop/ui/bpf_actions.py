"""Key bindings and actions of one feature area, mixed into SchedtopApp.

Owned by the BPF-tier engineer (issue 4). The app concatenates `BINDINGS` below into its own
(every Binding has an id, so the keymap can remap it) and calls
`bpf_mount()` on mount and `bpf_unmount()` on exit.

What the host app provides to mixins:
  self.snapshot: Snapshot | None      the latest snapshot shown
  self.selected_task() -> Task | None the task under the cursor
  self.record_action(action: dict)    journal the action into --record output
  self.source                          the live or replay source (LiveSource.add_extra exists on live)

Keys: `H` shows/hides the latency panel. scxtop's: `[` samples fewer scheduling events (1 in 2N), `]` samples more (1 in N/2,
down to every event); `ctrl+b` shows the tier's status. The rate is the live `.data` knob of the
loaded BPF object: no reload, effective on the next event.
"""

from __future__ import annotations

from typing import Any

from textual.binding import Binding

from schedtop.collect.bpf import MAX_SAMPLE_RATE


def _b(key: str, action: str, description: str, ident: str, tooltip: str, show: bool = False) -> Binding:
    return Binding(key, action, description, show=show, id=f"schedtop.bpf.{ident}", tooltip=tooltip)


BINDINGS: list[Binding] = [
    _b("left_square_bracket", "bpf_sample(2)", "Sample less", "sample_less",
       "BPF event stream: sample half as many scheduling events (1 in 2N)"),
    _b("right_square_bracket", "bpf_sample(0.5)", "Sample more", "sample_more",
       "BPF event stream: sample twice as many scheduling events (1 in N/2, down to all)"),
    _b("H", "bpf_histogram", "Histogram", "histogram",
       "Show or hide the run-queue latency panel (histogram + p99 trail; needs the BPF tier)"),
    _b("ctrl+b", "bpf_status", "BPF status", "status",
       "BPF tier: mode, attached programs, sampling rate, events and drops"),
]


def next_rate(rate: int, factor: float) -> int:
    """The rate after one key press: 0 (off) stays reachable from 1 and back."""
    if factor > 1:
        if rate == 0:
            return 0
        new = rate * 2
        return 0 if new > MAX_SAMPLE_RATE else new  # past the largest rate the stream stops
    if rate == 0:
        return MAX_SAMPLE_RATE
    return max(1, rate // 2)


class BpfActions:
    latency_wanted = True  # `H`: the user's choice; the panel also needs data and width

    def bpf_mount(self) -> None:
        """Called once the app is mounted."""

    def bpf_unmount(self) -> None:
        """Called when the app exits (before the terminal is restored). The LiveSource owns
        the tier and closes it."""

    def _bpf_tier(self) -> Any:
        src = getattr(self, "source", None)
        tier = getattr(src, "bpf_tier", None)  # LiveSource's; a replay has none
        return tier if hasattr(tier, "set_sample_rate") else None

    def _bpf_why_not(self) -> str:
        snap = getattr(self, "snapshot", None)
        reasons = [w for w in (snap.warnings if snap else ()) if "BPF" in w]
        return reasons[0] if reasons else "the BPF tier is not running (replay, --no-bpf, or not root)"

    def action_bpf_sample(self, factor: float) -> None:
        tier = self._bpf_tier()
        if tier is None:
            self.notify(self._bpf_why_not(), severity="warning")  # type: ignore[attr-defined]
            return
        rate = tier.set_sample_rate(next_rate(tier.sample_rate, factor))
        text = "BPF event sampling off" if rate == 0 else (
            "BPF samples every scheduling event" if rate == 1 else f"BPF samples 1 event in {rate}")
        self.notify(text)  # type: ignore[attr-defined]
        self.record_action({"type": "bpf.sample_rate", "rate": rate})  # type: ignore[attr-defined]

    def action_bpf_histogram(self) -> None:
        app: Any = self
        self.latency_wanted = not self.latency_wanted
        snap = getattr(self, "snapshot", None)
        if self.latency_wanted and (snap is None or snap.latency is None):
            app.notify(f"no latency histogram to show: {self._bpf_why_not()}", severity="warning")
        app._layout_latency()
        if snap is not None and app.query_one("#latency").display:
            app.show(snap)  # the panel was not kept up to date while hidden

    def action_bpf_status(self) -> None:
        snap = getattr(self, "snapshot", None)
        bpf = snap.extras.bpf if snap is not None else None
        if bpf is None:
            self.notify(self._bpf_why_not(), severity="warning")  # type: ignore[attr-defined]
            return
        progs = ", ".join(f"{k.replace('handle_', '')}: {v}" for k, v in bpf.programs.items())
        lines = [
            f"BPF tier ({bpf.mode}), loaded in {bpf.load_s * 1000:.0f} ms",
            f"sampling 1 in {bpf.sample_rate}, events {bpf.events}, dropped {bpf.dropped}",
            progs,
            *bpf.warnings,
        ]
        self.notify("\n".join(lines), timeout=8)  # type: ignore[attr-defined]
