"""The status line: warnings from the collectors, BPF drops, and the view's own state."""

from __future__ import annotations

from typing import Any, Mapping

from textual.markup import escape
from textual.widgets import Static

from schedtop.ui.widgets.text import set_text
from schedtop.model import Snapshot


def bpf_markup(extras: Mapping[str, Any]) -> str:
    """extras['bpf'] counters worth a glance: drops and the sampling rate, whatever their names."""
    bpf = extras.get("bpf")
    if not isinstance(bpf, Mapping):
        return ""
    parts = []
    for k, v in bpf.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and ("drop" in k or "sample" in k or "lost" in k):
            style = "$error" if "drop" in k and v else "$text-muted"
            parts.append(f"[{style}]{escape(k)}={v:g}[/]")
    return "bpf " + " ".join(parts) if parts else ""


def status_markup(snap: Snapshot | None, view: str, error: str | None = None) -> str:
    parts = []
    if error:
        parts.append(f"[b $error]{escape(error)}[/]")
    if snap is not None:
        if snap.warnings:
            more = f" (+{len(snap.warnings) - 1})" if len(snap.warnings) > 1 else ""
            parts.append(f"[$warning]⚠ {escape(snap.warnings[0])}{more}[/]")
        b = bpf_markup(snap.extras)
        if b:
            parts.append(b)
    if view:
        parts.append(f"[$text-muted]{escape(view)}[/]")
    return "  ".join(parts)


class StatusBar(Static):
    def show(self, snap: Snapshot | None, view: str, error: str | None = None) -> None:
        set_text(self, status_markup(snap, view, error))
