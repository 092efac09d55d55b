"""Cheap Static updates, and the one way a widget puts a foreign string on screen.

Names from the kernel or other users (comm, cgroup, kmsg reasons, scx_stats names)
go through `safe()`: they are made visible by schedtop.textsafe and substituted
into the template as variables, so they are never parsed as markup."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from schedtop.textsafe import visible


def safe(template: str, **values: object) -> Content:
    """`template` is our markup; each `$name` in it becomes visible(values[name]), as plain text."""
    return Content.from_markup(template, **{k: visible(v) for k, v in values.items()})


def set_text(widget: Static, markup: str | Content) -> None:
    """Update `widget` only if `markup` changed; re-layout only if its number of lines changed.

    A full layout at 200x60 costs tens of ms in Textual; most refreshes change
    numbers, not sizes."""
    old = getattr(widget, "_schedtop_markup", None)
    if old is not None and type(old) is type(markup) and old == markup:
        return
    plain = markup.plain if isinstance(markup, Content) else markup
    lines = plain.count("\n")
    layout = old is None or getattr(widget, "_schedtop_lines", -1) != lines
    widget._schedtop_markup = markup  # type: ignore[attr-defined]
    widget._schedtop_lines = lines  # type: ignore[attr-defined]
    widget.update(markup, layout=layout)
