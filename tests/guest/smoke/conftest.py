"""The kernel-matrix smoke set: runs only inside the lab guest (`schedtop lab matrix`, make matrix).

It reuses the guest suite's helpers (tests/guest/scx_helpers.py, the scx_proc fixture) and the
host BPF tests' workload (tests/host/bpf_workload.py) instead of copies."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[2]
for d in (TESTS / "guest", TESTS / "host"):
    if str(d) not in sys.path:
        sys.path.insert(0, str(d))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "smoke: the per-kernel smoke set; runs in the lab guest on every matrix kernel")
    config.addinivalue_line("markers", "scx: needs a kernel with sched_ext (the smoke set skips it on 6.12 and 6.1)")


@pytest.fixture(autouse=True)
def _in_the_guest() -> None:
    if os.environ.get("SCHEDTOP_GUEST") != "1":
        pytest.skip("smoke set: runs in the lab guest (make matrix / schedtop lab matrix)")
