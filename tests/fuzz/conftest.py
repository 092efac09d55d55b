"""The fuzz suite: every test here is bounded in time, whatever the machine's load."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == HERE and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(120))  # a hang fails, it does not stall make check
