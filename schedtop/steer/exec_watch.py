"""The exec hook of live profiles: pids that just started a new program or renamed a thread.

A profile matches tasks by name, and a name appears at exec (sched_process_exec) or when a
thread names itself (task_rename, e.g. PipeWire's "data-loop.0"). Polling /proc finds those
tasks up to one poll interval late; bpf/exec.bpf.c reports them as they happen, so the
profile tunes a new game or audio thread before it has run for long (bench/profile_exec.py).
Where BPF is not available (not root, no BTF, no object) ``open_watch`` says why and the
caller keeps polling: the poll stays the safety net for anything the ring dropped.
"""

from __future__ import annotations

import ctypes
import logging
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from schedtop.bpf import objects

log = logging.getLogger(__name__)

OBJECT = objects.path("exec")
EXEC_EXEC, EXEC_RENAME = 1, 2
EXEC_COMM_LEN = 16


class ExecEvent(ctypes.Structure):
    """Mirror of struct exec_event (bpf/exec.h), checked against the object's BTF in tests."""

    _fields_ = [
        ("ts_ns", ctypes.c_uint64),
        ("kind", ctypes.c_uint32),
        ("tgid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("comm", ctypes.c_char * EXEC_COMM_LEN),
    ]


class ExecBss(ctypes.Structure):
    """Mirror of struct exec_bss (bpf/exec.h), the .bss variable g."""

    _fields_ = [("nr_exec", ctypes.c_uint64), ("nr_rename", ctypes.c_uint64), ("nr_dropped", ctypes.c_uint64)]


_RECORD = struct.Struct("<QIII4x16s")
assert _RECORD.size == ctypes.sizeof(ExecEvent)


@dataclass(frozen=True)
class Exec:
    """One hook hit: which task, what kind, its new name, when (CLOCK_MONOTONIC ns)."""

    ts_ns: int
    kind: int
    tgid: int
    tid: int
    comm: str


@dataclass(frozen=True)
class ExecCounts:
    execs: int
    renames: int
    dropped: int


class ExecWatch:
    """The loaded hook. ``wait`` blocks up to a timeout and returns what happened since;
    one consumer only (one thread calls ``wait``), ``close`` from any thread ends it."""

    def __init__(self, path: Path) -> None:
        from schedtop.bpf.globals import Globals
        from schedtop.bpf.libbpf import BpfObject, RingReader

        self._obj = BpfObject.open(path)
        self.mode = ""
        self._reader: RingReader | None = None
        self._lock = threading.Lock()
        try:
            self._load()
            self._reader = RingReader(self._obj.map("exec_events"))
            self._bss = Globals(self._obj, ".bss").var("g", ExecBss)
        except BaseException:
            self._obj.close()
            raise

    def _load(self) -> None:
        from schedtop.bpf.btf import Btf

        with Btf.vmlinux() as vm:
            btf = vm.has_tracepoint("sched_process_exec") and vm.has_tracepoint("task_rename")
        raw = ("handle_raw_exec", "handle_raw_rename")
        typed = ("handle_exec", "handle_rename")
        for name in typed if not btf else raw:  # keep one set: tp_btf where the kernel has it
            self._obj.program(name).autoload = False
        self._obj.load()
        links, errors = self._obj.attach_all()
        if errors:
            raise next(iter(errors.values()))
        self.mode = "tp_btf" if btf else "raw_tp"

    def wait(self, timeout_ms: int) -> list[Exec]:
        reader = self._reader
        if reader is None:
            return []
        reader.wait(timeout_ms)
        with self._lock:
            if self._reader is None:
                return []
            recs = self._reader.read_fixed(_RECORD)
        return [Exec(ts, kind, tgid, tid, comm.split(b"\0", 1)[0].decode(errors="replace"))
                for ts, kind, tgid, tid, comm in recs]

    def counts(self) -> ExecCounts:
        b = self._bss
        return ExecCounts(int(b.nr_exec), int(b.nr_rename), int(b.nr_dropped))

    def close(self) -> None:
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
                self._obj.close()


def open_watch(object_path: Path | str | None = None) -> tuple[ExecWatch | None, str | None]:
    """(the hook, None), or (None, why not) where BPF cannot be used: the caller polls."""
    from schedtop.collect.bpf import BpfUnavailable, check_ready

    try:
        return ExecWatch(check_ready(Path(object_path) if object_path else OBJECT)), None
    except BpfUnavailable as exc:
        return None, f"{exc}; new tasks are found by polling"
    except Exception as exc:  # BpfError (verifier, attach): never fatal, polling still works
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, f"exec hook unavailable ({first}): new tasks are found by polling"
