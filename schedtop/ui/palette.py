"""Command palette provider: every action bound on the current screen, searchable by name."""

from __future__ import annotations

from functools import partial
from typing import Iterator

from textual.binding import ActiveBinding
from textual.command import DiscoveryHit, Hit, Hits, Provider


class ActionsProvider(Provider):
    """Lists the bindings of the screen the palette was opened on (the mixins' too)."""

    def _commands(self) -> Iterator[tuple[str, str, ActiveBinding]]:
        seen: set[tuple[str, str]] = set()
        for key, ab in self.screen.active_bindings.items():
            b = ab.binding
            if not b.description or not ab.enabled or (b.action, b.description) in seen:
                continue
            seen.add((b.action, b.description))
            key_display = self.app.get_key_display(b)
            yield b.description, f"{b.tooltip or b.description}  (key {key_display})", ab

    def _runner(self, ab: ActiveBinding):
        return partial(self.app.call_later, self.app.run_action, ab.binding.action, ab.node)

    async def discover(self) -> Hits:
        for name, help_text, ab in self._commands():
            yield DiscoveryHit(name, self._runner(ab), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, ab in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), self._runner(ab), help=help_text)
