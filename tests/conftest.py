"""Shared test set-up: markers skip with a reason where the machine lacks the part."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HAS_SCHED_EXT = Path("/sys/kernel/sched_ext/state").exists()
IS_ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "kernel" in item.keywords and not HAS_SCHED_EXT:
            item.add_marker(pytest.mark.skip(reason="needs a sched_ext kernel: runs in the lab guest (make test-guest)"))
        if "root" in item.keywords and not IS_ROOT:
            item.add_marker(pytest.mark.skip(reason="needs root"))
