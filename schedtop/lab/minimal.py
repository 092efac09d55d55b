"""Load the project's minimal sched_ext scheduler (bpf/minimal.bpf.c, ops "schedtop_min").

`python -m schedtop.lab.minimal` holds it until SIGTERM/SIGINT (the demo runs it in
the background); the struct_ops *link* also unloads it if this process dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from schedtop.bpf import objects
from schedtop.collect.sched_ext import SCHED_EXT_SYSFS

if TYPE_CHECKING:
    from schedtop.bpf.libbpf import BpfObject

OPS_NAME = "schedtop_min"
OBJECT = objects.path("minimal")
STATE = Path(SCHED_EXT_SYSFS) / "state"


class Counters:
    """The scheduler's .bss counters (minimal.bpf.c's nr_local, nr_global), read live."""

    def __init__(self, obj: BpfObject) -> None:
        from schedtop.bpf.globals import Globals

        bss = Globals(obj, ".bss")
        self._local = bss.var("nr_local", ctypes.c_uint64)
        self._global = bss.var("nr_global", ctypes.c_uint64)

    @property
    def nr_local(self) -> int:
        """Wakeups sent straight to an idle CPU."""
        return int(self._local.value)

    @property
    def nr_global(self) -> int:
        """Tasks queued on the global DSQ."""
        return int(self._global.value)


def sched_ext_state() -> str | None:
    try:
        return STATE.read_text().strip()
    except OSError:
        return None


def wait_state(want: str, timeout: float = 10.0) -> str | None:
    deadline = time.monotonic() + timeout
    while (now := sched_ext_state()) != want and time.monotonic() < deadline:
        time.sleep(0.05)
    return now


@contextlib.contextmanager
def loaded(path: Path = OBJECT) -> Iterator[Counters]:
    """The scheduler attached for the duration of the block; yields its live counters."""
    from schedtop.bpf.libbpf import BpfObject

    with BpfObject.open(path) as obj:
        obj.load()
        link = obj.map("minimal_ops").attach_struct_ops()
        try:
            wait_state("enabled")
            yield Counters(obj)
        finally:
            link.destroy()


def main() -> int:
    if sched_ext_state() is None:
        print("schedtop_min: this kernel has no sched_ext (/sys/kernel/sched_ext)", file=sys.stderr)
        return 1
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        with loaded():
            while not stop:
                time.sleep(0.2)
    except OSError as exc:
        print(f"schedtop_min: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
