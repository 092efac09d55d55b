"""The BPF tier's keys: bound on the main screen (screens/main.py, which runs them), the
texts and the rate steps here, plain functions of the source and the snapshot.

Keys: `H` shows/hides the latency panel. scxtop's: `[` samples fewer scheduling events (1 in 2N), `]` samples more
(1 in N/2, down to every event); `ctrl+b` shows the tier's status. The rate is the live `.data` knob of the
loaded BPF object: no reload, effective on the next event.
"""

from __future__ import annotations

from typing import Any

from textual.binding import Binding

from schedtop.collect.bpf import MAX_SAMPLE_RATE
from schedtop.collect.live import LiveSource
from schedtop.model import BpfPart, Snapshot


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


def tier_of(source: object) -> Any | None:
    """The live source's loaded tier; a replay has none, nor --no-bpf, nor a tier still loading."""
    if not isinstance(source, LiveSource):
        return None
    tier = source.bpf_tier
    return tier if hasattr(tier, "set_sample_rate") else None


def why_not(snap: Snapshot | None) -> str:
    reasons = [w for w in (snap.warnings if snap else ()) if "BPF" in w]
    return reasons[0] if reasons else "the BPF tier is not running (replay, --no-bpf, or not root)"


def rate_text(rate: int) -> str:
    if rate == 0:
        return "BPF event sampling off"
    return "BPF samples every scheduling event" if rate == 1 else f"BPF samples 1 event in {rate}"


def status_text(bpf: BpfPart) -> str:
    progs = ", ".join(f"{k.replace('handle_', '')}: {v}" for k, v in bpf.programs.items())
    lines = [
        f"BPF tier ({bpf.mode}), loaded in {bpf.load_s * 1000:.0f} ms",
        f"sampling 1 in {bpf.sample_rate}, events {bpf.events}, dropped {bpf.dropped}",
        progs,
        *bpf.warnings,
    ]
    return "\n".join(lines)
