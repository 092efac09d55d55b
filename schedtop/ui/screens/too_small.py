"""Shown instead of the layout when the terminal is below the minimum size."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Middle
from textual.screen import Screen
from textual.widgets import Static

MIN_WIDTH = 60
MIN_HEIGHT = 15


def too_small(width: int, height: int) -> bool:
    return width < MIN_WIDTH or height < MIN_HEIGHT


class TooSmallScreen(Screen[None]):
    BINDINGS = [Binding("q", "app.quit", "Quit", id="too_small.quit", tooltip="Quit schedtop")]

    def compose(self) -> ComposeResult:
        with Middle():
            with Center():
                yield Static(id="too-small-text")

    def on_mount(self) -> None:
        self._update()

    def on_resize(self) -> None:
        self._update()

    def _update(self) -> None:
        w, h = self.app.size
        if not too_small(w, h) and self.is_current:
            self.dismiss(None)  # big enough again: back to the layout
            return
        self.query_one("#too-small-text", Static).update(
            f"terminal too small: {w}x{h}\nschedtop needs {MIN_WIDTH}x{MIN_HEIGHT}\n(q quits)"
        )
