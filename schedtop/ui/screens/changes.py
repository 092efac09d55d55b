"""The changes pane: every thread this session retuned, what it was, what it is now; undo from here."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from schedtop.textsafe import visible
from schedtop.ui.controllers.steering import ChangeRow

__all__ = ["ChangeRow", "ChangesScreen", "collapse_steps", "count_text", "fit_cells", "wrap_cell"]


def collapse_steps(what: str) -> str:
    """"nice -1 + nice -2 + nice -3 + pin" -> "nice ×3 + pin": eight F7 presses are one change."""
    parts = [p for p in what.split(" + ") if p]
    out: list[tuple[str, int, str]] = []  # (kind, count, last text)
    for p in parts:
        kind = p.split(" ", 1)[0]
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + 1, p)
        else:
            out.append((kind, 1, p))
    return " + ".join(text if n == 1 else f"{kind} ×{n}" for kind, n, text in out)


def fit_cells(rows: list[tuple[str, str, str, str]], width: int) -> tuple[list[int], list[tuple[str, ...]]]:
    """Column widths for TASK, CHANGES, ORIGINAL, NOW in `width` cells (each column pads 1 each side),
    and the cells wrapped onto as many lines as they need: nothing is ever cut.

    When the row does not fit, the widest column gives a cell at a time, so all four
    columns stay side by side and each wraps only as much as it must."""
    heads = ("TASK", "CHANGES", "ORIGINAL", "NOW")
    w = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(heads)]
    floor = [min(x, 12) for x in w]
    room = max(0, width - 2 * len(heads))
    while sum(w) > room:
        i = max((i for i in range(4) if w[i] > floor[i]), key=lambda i: (w[i], i), default=None)
        if i is None:
            break
        w[i] -= 1
    return w, [tuple(wrap_cell(c, w[i]) for i, c in enumerate(r)) for r in rows]


def wrap_cell(text: str, width: int) -> str:
    """`text` on lines of at most `width` cells, broken after " + " or a space where it can."""
    lines: list[str] = []
    rest = text
    while len(rest) > width > 0:
        plus = rest.rfind(" + ", 0, width - 1)
        cut = plus + 2 if plus > 0 else max(rest.rfind(" ", 0, width + 1), rest.rfind(",", 0, width) + 1)
        if cut <= 0:
            cut = width
        lines.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    lines.append(rest)
    return "\n".join(lines)


def count_text(rows: list[ChangeRow]) -> str:
    """"2 threads, 1 session group and the base slice changed": a group is not a thread."""
    groups = sum(r.key.startswith("group:") for r in rows)
    base = sum(r.key == "base_slice" for r in rows)
    threads = len(rows) - groups - base
    parts = []
    if threads:
        parts.append(f"{threads} thread{'s' if threads != 1 else ''}")
    if groups:
        parts.append(f"{groups} session group{'s' if groups != 1 else ''}")
    if base:
        parts.append("the base slice")
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{text} changed"


class ChangesScreen(ModalScreen[None]):
    """Rows come from `rows()` (the steering session reads /proc); undo calls go back through it."""

    DEFAULT_CSS = """
ChangesScreen { align: center middle; }
ChangesScreen > Vertical {
    width: 95%;
    height: 80%;
    padding: 0 1;
    border: thick $primary;
    background: $surface;
}
ChangesScreen DataTable { height: 1fr; }
ChangesScreen #changes-status { height: auto; color: $text-muted; }
"""
    BINDINGS = [
        Binding("escape,c,q", "close", "Back", id="steer.changes.close", tooltip="Back to the task view"),
        Binding("u,delete", "undo_row", "Undo row", id="steer.changes.undo_row",
                tooltip="Put the selected thread back as it was"),
        Binding("z", "undo_last", "Undo last", id="steer.changes.undo_last", tooltip="Revert the newest change"),
        Binding("R", "restore_all", "Restore all", id="steer.changes.restore_all",
                tooltip="Put every changed thread back as it was"),
    ]

    def __init__(self, rows: Callable[[], list[ChangeRow]], undo_row: Callable[[str], str],
                 undo_last: Callable[[], str], restore_all: Callable[[], str]) -> None:
        super().__init__()
        self._rows = rows
        self._undo_row = undo_row
        self._undo_last = undo_last
        self._restore_all = restore_all
        self._status = ""

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Active changes (restored on quit unless --keep)"
            box.border_subtitle = "u undo row · z undo last · R restore all · Esc back"
            yield DataTable(cursor_type="row", zebra_stripes=True, id="changes-table")
            yield Static("", id="changes-status")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        self.refresh_rows()
        table.focus()

    def on_resize(self) -> None:
        self.refresh_rows(self._status)

    def _table_width(self) -> int:
        table = self.query_one(DataTable)
        if table.size.width:
            return table.size.width - 1  # room for a vertical scrollbar's column
        return max(40, int(self.app.size.width * 0.95) - 5)  # before the first layout: the CSS box

    def refresh_rows(self, status: str = "") -> None:
        table = self.query_one(DataTable)
        rows = self._rows()
        cells = [(visible(r.task), collapse_steps(visible(r.what)), visible(r.before), visible(r.now)) for r in rows]
        widths, cut = fit_cells(cells, self._table_width())
        table.clear(columns=True)
        for label, w in zip(("TASK", "CHANGES", "ORIGINAL", "NOW"), widths, strict=True):
            table.add_column(label, width=w)
        for r, c in zip(rows, cut, strict=True):
            # Text, not str: a DataTable reads str cells as markup, and names come from other users.
            table.add_row(*(Text(x) for x in c), key=r.key, height=max(x.count("\n") + 1 for x in c))
        self._status = status
        self.query_one("#changes-status", Static).update(
            Text(visible(status)) if status else (count_text(rows) if rows else "no active changes"))

    def show_snapshot(self, snap) -> None:  # the app calls this on every frame: keep NOW fresh
        table = self.query_one(DataTable)
        row = table.cursor_row
        self.refresh_rows(self._status)
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))

    def _selected_key(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def action_undo_row(self) -> None:
        key = self._selected_key()
        if key is not None:
            self.refresh_rows(self._undo_row(key))

    def action_undo_last(self) -> None:
        self.refresh_rows(self._undo_last())

    def action_restore_all(self) -> None:
        self.refresh_rows(self._restore_all())

    def action_close(self) -> None:
        self.dismiss(None)
