"""Shared by the sched_ext observability guest tests (test_ext_*.py): wait for a sched_ext
state, and hold the lab's minimal scheduler loaded. Imported as `ext_kit` (pytest puts this
directory on sys.path)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Iterator

from schedtop.bpf.libbpf import BpfObject

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ROOT / "schedtop" / "bpf" / "obj" / "minimal.bpf.o"
SCX = Path("/sys/kernel/sched_ext")


def wait_state(want: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while (now := (SCX / "state").read_text().strip()) != want and time.monotonic() < deadline:
        time.sleep(0.02)
    return now


@contextlib.contextmanager
def minimal_loaded() -> Iterator[BpfObject]:
    """schedtop_min attached for the block; detached (and state back to disabled) after it."""
    assert wait_state("disabled") == "disabled"
    with BpfObject.open(MINIMAL) as obj:
        obj.load()
        link = obj.map("minimal_ops").attach_struct_ops()
        try:
            assert wait_state("enabled") == "enabled"
            yield obj
        finally:
            link.destroy()
    assert wait_state("disabled") == "disabled"
