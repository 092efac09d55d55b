"""Cheap Static updates: skip unchanged content, and skip the layout pass when the line count holds."""

from __future__ import annotations

from textual.widgets import Static


def set_text(widget: Static, markup: str) -> None:
    """Update `widget` only if `markup` changed; re-layout only if its number of lines changed.

    A full layout at 200x60 costs tens of ms in Textual; most refreshes change
    numbers, not sizes."""
    old = getattr(widget, "_schedtop_markup", None)
    if old == markup:
        return
    lines = markup.count("\n")
    layout = old is None or old.count("\n") != lines
    widget._schedtop_markup = markup  # type: ignore[attr-defined]
    widget.update(markup, layout=layout)
