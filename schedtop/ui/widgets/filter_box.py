"""The filter input: typing filters live; Enter keeps the filter, Escape clears it."""

from __future__ import annotations

from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input


class FilterBox(Input):
    BINDINGS = [
        Binding("escape", "clear_filter", "Clear filter", id="filter.clear", tooltip="Clear the filter and close the box"),
    ]

    class Cleared(Message):
        pass

    def action_clear_filter(self) -> None:
        self.post_message(self.Cleared())
