"""ctypes mirrors of bpf/scx.h, plus the packed forms the hot loop uses.

The ctypes structures document the layout and are checked field by field
against the BTF of the compiled object (tests/unit/test_scx_protocol.py).
The loop itself uses the ``struct.Struct`` forms: unpacking a record from the
ring's mmap is ~4x cheaper than building a ctypes object per task.
"""

from __future__ import annotations

import ctypes
import struct

from schedtop.scx.policy import TaskIn

COMM_LEN = 16
CPU_ANY_U32 = 0xFFFFFFFF
MAX_CPUS = 1024
LAT_BUCKETS = 32
PID_HEARTBEAT = 0

KF_PINNED = 1
KF_LATCRIT = 2

PF_FIFO = 1  # scx_plan.flags: key by enqueue time

u32, u64, s64 = ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int64


class ScxQueued(ctypes.Structure):
    _fields_ = [
        ("pid", u32), ("cpu", u32), ("nr_cpus_allowed", u32), ("weight", u32),
        ("flags", u64), ("exec_runtime", u64), ("run_ns", u64), ("vtime", u64),
        ("gen", u64), ("enq_ns", u64), ("comm", ctypes.c_char * COMM_LEN),
    ]


class ScxDispatched(ctypes.Structure):
    _fields_ = [
        ("pid", u32), ("cpu", u32), ("slice_ns", u64), ("deadline", u64), ("gen", u64), ("flags", u64),
    ]


class ScxTaskKnob(ctypes.Structure):
    _fields_ = [("slice_ns", u64), ("cpu", u32), ("flags", u32)]


class ScxPlan(ctypes.Structure):
    _fields_ = [("slice_ns", u64), ("lag_ns", s64), ("expires_ns", u64), ("flags", u32), ("pad", u32)]


class ScxCounters(ctypes.Structure):
    _fields_ = [
        ("nr_queued", u64), ("nr_scheduled", u64), ("nr_user_dispatches", u64),
        ("nr_kernel_dispatches", u64), ("nr_cancelled", u64), ("nr_bounced", u64),
        ("nr_failed", u64), ("nr_congested", u64), ("nr_heartbeats", u64), ("nr_self", u64),
        ("nr_preempt", u64), ("loop_last_run_ns", u64), ("stint_ns", u64), ("nr_stints", u64),
        ("nr_latcrit", u64), ("nr_planned", u64),
    ]


class ScxExitRec(ctypes.Structure):
    _fields_ = [("kind", s64), ("exit_code", s64), ("reason", ctypes.c_char * 128), ("msg", ctypes.c_char * 256)]


class Live(ctypes.Structure):
    """The anonymous struct of the ``live`` variable in .bss (live knobs)."""

    _fields_ = [("slice_ns", u64), ("loop_tid", u32), ("user_pending", u32)]


QUEUED = struct.Struct("<IIIIQQQQQQ16s")
DISPATCHED = struct.Struct("<IIQQQQ")
assert QUEUED.size == ctypes.sizeof(ScxQueued) and DISPATCHED.size == ctypes.sizeof(ScxDispatched)


_new_tuple = tuple.__new__


def task_from_record(rec: tuple) -> TaskIn:
    """A QUEUED-unpacked tuple as the policy's TaskIn: same fields, same order, no copy
    of the values (the comm stays raw bytes until someone reads TaskIn.comm)."""
    return _new_tuple(TaskIn, rec)


def pack_decision(pid: int, cpu: int, slice_ns: int, deadline: int, gen: int, flags: int) -> bytes:
    return DISPATCHED.pack(pid, CPU_ANY_U32 if cpu < 0 else cpu, slice_ns, deadline, gen, flags)


# enum scx_exit_kind (include/linux/sched/ext.h), for messages
EXIT_KINDS = {
    0: "none", 1: "done", 64: "unregistered", 65: "unregistered by BPF", 66: "unregistered by the kernel",
    67: "SysRq-S", 68: "parent", 1024: "error", 1025: "BPF error", 1026: "stall (watchdog)",
}
