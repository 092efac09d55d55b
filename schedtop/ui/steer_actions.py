"""Key bindings and actions of one feature area, mixed into SchedtopApp.

Owned by the steering engineer (issue 5). The app concatenates `BINDINGS` below into its own
(every Binding has an id, so the keymap can remap it) and calls
`steer_mount()` on mount and `steer_unmount()` on exit.

What the host app provides to mixins:
  self.snapshot: Snapshot | None      the latest snapshot shown
  self.selected_task() -> Task | None the task under the cursor
  self.record_action(action: dict)    journal the action into --record output
  self.source                          the live or replay source (LiveSource.add_extra exists on live)
"""

from __future__ import annotations

from textual.binding import Binding

BINDINGS: list[Binding] = []


class SteerActions:
    def steer_mount(self) -> None:
        """Called once the app is mounted."""

    def steer_unmount(self) -> None:
        """Called when the app exits (before the terminal is restored)."""
