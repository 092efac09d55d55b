"""The changes pane: every thread this session retuned, what it was, what it is now; undo from here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static


@dataclass(frozen=True, slots=True)
class ChangeRow:
    key: str  # "tid:starttime", or "group:ID" for a session autogroup's nice
    task: str
    what: str
    before: str
    now: str


class ChangesScreen(ModalScreen[None]):
    """Rows come from `rows()` (the steer mixin reads /proc); undo calls go back through it."""

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
        table.add_columns("TASK", "CHANGES", "ORIGINAL", "NOW")
        self.refresh_rows()
        table.focus()

    def refresh_rows(self, status: str = "") -> None:
        table = self.query_one(DataTable)
        table.clear()
        rows = self._rows()
        for r in rows:
            table.add_row(r.task, r.what, r.before, r.now, key=r.key)
        self._status = status
        self.query_one("#changes-status", Static).update(
            status or (f"{len(rows)} thread(s) changed" if rows else "no active changes"))

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
