"""Command palette provider: every action bound on the current screen, searchable by name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

from textual.binding import ActiveBinding
from textual.command import DiscoveryHit, Hit, Hits, Provider

from schedtop.ui.widgets.task_table import COLUMNS


class ActionsProvider(Provider):
    """Lists the bindings of the screen the palette was opened on (the mixins' too),
    plus "Sort by <column>" for every column (only a few have keys of their own)."""

    def _sort_commands(self) -> Iterator[tuple[str, str, Callable[[], object]]]:
        from schedtop.ui.screens.main import MainScreen

        screen = self.screen
        if not isinstance(screen, MainScreen):  # the task table is the main view's
            return
        for col in COLUMNS:
            yield (f"Sort by {col.label}", col.tip or f"Sort the task table by {col.label}",
                   partial(screen.action_sort_by, col.key))

    def _commands(self) -> Iterator[tuple[str, str, ActiveBinding]]:
        seen: set[tuple[str, str]] = set()
        for ab in self.screen.active_bindings.values():
            b = ab.binding
            if not b.description or not ab.enabled or (b.action, b.description) in seen:
                continue
            seen.add((b.action, b.description))
            key_display = self.app.get_key_display(b)
            yield b.description, f"{b.tooltip or b.description}  (key {key_display})", ab

    def _runner(self, ab: ActiveBinding):
        return partial(self.app.call_later, self.app.run_action, ab.binding.action, ab.node)

    def _all(self) -> Iterator[tuple[str, str, Callable[[], object]]]:
        for name, help_text, ab in self._commands():
            yield name, help_text, self._runner(ab)
        yield from self._sort_commands()

    async def discover(self) -> Hits:
        for name, help_text, run in self._all():
            yield DiscoveryHit(name, run, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, run in self._all():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), run, help=help_text)
