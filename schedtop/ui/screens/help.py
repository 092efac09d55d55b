"""The help screen, generated from the active bindings (so it never drifts from the keys)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import ActiveBinding, Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from schedtop.ui.widgets.text import safe

APP_GROUP = "schedtop"  # the HELP_GROUP of the App and of the main screen


@dataclass(frozen=True, slots=True)
class HelpRow:
    keys: str
    description: str
    tooltip: str
    group: str
    binding_id: str


def help_rows(app, active: dict[str, ActiveBinding]) -> list[HelpRow]:
    """One row per binding (keys merged), grouped by where it is defined, in binding order."""
    by_binding: dict[int, list[str]] = {}
    info: dict[int, tuple[Binding, str]] = {}
    for key, ab in active.items():
        b = ab.binding
        if not b.description or not b.id:  # ours all have ids; Textual's scroll/focus keys are noise here
            continue
        ident = id(b) if b.id is None else hash((b.id, b.action))
        by_binding.setdefault(ident, []).append(app.get_key_display(Binding(key, b.action)))
        # A node may name its group (the App and the main screen share "schedtop").
        info.setdefault(ident, (b, getattr(type(ab.node), "HELP_GROUP", None) or type(ab.node).__name__))
    rows: list[HelpRow] = []
    for ident, keys in by_binding.items():
        b, group = info[ident]
        group = {"TaskTable": "task table", "FilterBox": "filter box"}.get(group, group)
        rows.append(HelpRow(" ".join(dict.fromkeys(keys)), b.description, b.tooltip, group, b.id or ""))
    # The app's own keys first, then each widget's, each group in binding order.
    order = {g: i for i, g in enumerate(dict.fromkeys(r.group for r in rows))}
    return sorted(rows, key=lambda r: (r.group != APP_GROUP, order[r.group]))


def help_markup(rows: Iterable[HelpRow]) -> Content:
    """Keys, descriptions and ids are substituted as plain text: `[` is a key, not markup."""
    rows = list(rows)
    dw = max((len(r.description) for r in rows), default=8)
    lines: list[Content] = []
    group = None
    for r in rows:
        if r.group != group:
            group = r.group
            title = group
            if lines:
                lines.append(Content(""))
            lines.append(safe("[b $accent]$title[/]", title=title))
        tip = r.tooltip if r.tooltip and r.tooltip != r.description else ""
        ident = "  [$text-muted]($ident)[/]" if r.binding_id else ""
        lines.append(safe(f"  [b $accent]$keys[/]  [b]$desc[/]  $tip{ident}",
                          keys=r.keys.rjust(12), desc=r.description.ljust(dw), tip=tip, ident=r.binding_id))
    lines.append(Content(""))
    lines.append(Content.from_markup(
        "[$text-muted]Remap any key by id in ~/.config/schedtop/config.toml, e.g.[/]"))
    lines.append(Content.from_markup('[$text-muted]  \\[keymap][/]'))
    lines.append(Content.from_markup('[$text-muted]  "schedtop.pause" = "p"[/]'))
    return Content("\n").join(lines)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q,question_mark", "dismiss", "Close help", id="help.close", tooltip="Back to the task view"),
    ]

    def __init__(self, rows: list[HelpRow]) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body") as body:
            body.border_title = "schedtop help"
            body.border_subtitle = "Esc to close"
            yield Static(help_markup(self.rows), id="help-text")

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)
