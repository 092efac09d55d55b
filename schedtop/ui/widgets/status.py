"""The status line: warnings from the collectors, BPF drops, and the view's own state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from textual.content import Content
from textual.widgets import Static

from schedtop.model import Snapshot
from schedtop.ui.widgets.text import safe, set_text


def bpf_markup(extras: Mapping[str, Any]) -> Content:
    """extras['bpf'] counters worth a glance: drops and the sampling rate, whatever their names."""
    bpf = extras.get("bpf")
    if not isinstance(bpf, Mapping):
        return Content("")
    parts = []
    for k, v in bpf.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and ("drop" in k or "sample" in k or "lost" in k):
            style = "$error" if "drop" in k and v else "$text-muted"
            parts.append(safe(f"[{style}]$k={v:g}[/]", k=k))
    return Content("bpf ") + Content(" ").join(parts) if parts else Content("")


def status_markup(snap: Snapshot | None, view: str, error: str | None = None) -> Content:
    parts = []
    if error:
        parts.append(safe("[b $error]$msg[/]", msg=error))
    if snap is not None:
        if snap.warnings:
            more = f" (+{len(snap.warnings) - 1})" if len(snap.warnings) > 1 else ""
            parts.append(safe(f"[$warning]⚠ $w{more}[/]", w=snap.warnings[0]))
        b = bpf_markup(snap.extras)
        if b:
            parts.append(b)
    if view:
        parts.append(safe("[$text-muted]$view[/]", view=view))
    return Content("  ").join(parts)


class StatusBar(Static):
    def show(self, snap: Snapshot | None, view: str, error: str | None = None) -> None:
        set_text(self, status_markup(snap, view, error))
