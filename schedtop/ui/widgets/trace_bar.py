"""A one-line bar above the footer while a trace records: file, time, events, drops."""

from __future__ import annotations

from textual.widgets import Static


class TraceIndicator(Static):
    DEFAULT_CSS = """
    TraceIndicator {
        dock: bottom;
        height: 1;
        padding: 0 1;
        background: $error 30%;
        color: $foreground;
        text-style: bold;
        display: none;
    }
    """

    def show(self, text: str | None) -> None:
        """The controller's text (markup it built, names escaped), or None to hide the bar."""
        self.display = text is not None
        if text is not None:
            self.update(text)
