"""The status line: warnings from the collectors, BPF drops, and the view's own state."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from schedtop.model import BpfPart, Snapshot
from schedtop.ui.widgets.text import safe, set_text


def bpf_markup(bpf: BpfPart | None) -> Content:
    """The BPF tier's counters worth a glance: the sampling rate, drops and lost events."""
    if bpf is None:
        return Content("")
    parts = []
    for k, v in (("sample_rate", bpf.sample_rate), ("dropped", bpf.dropped), ("lost_user", bpf.lost_user)):
        if v is not None:
            style = "$error" if k == "dropped" and v else "$text-muted"
            parts.append(Content.from_markup(f"[{style}]{k}={v:g}[/]"))
    return Content("bpf ") + Content(" ").join(parts) if parts else Content("")


def status_markup(snap: Snapshot | None, view: str, error: str | None = None) -> Content:
    parts = []
    if error:
        parts.append(safe("[b $error]$msg[/]", msg=error))
    if snap is not None:
        if snap.warnings:
            more = f" (+{len(snap.warnings) - 1})" if len(snap.warnings) > 1 else ""
            parts.append(safe(f"[$warning]⚠ $w{more}[/]", w=snap.warnings[0]))
        b = bpf_markup(snap.extras.bpf)
        if b:
            parts.append(b)
    if view:
        parts.append(safe("[$text-muted]$view[/]", view=view))
    return Content("  ").join(parts)


class StatusBar(Static):
    def show(self, snap: Snapshot | None, view: str, error: str | None = None) -> None:
        set_text(self, status_markup(snap, view, error))
