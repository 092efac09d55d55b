"""What this kernel's fair class can do, probed once: EEVDF or CFS, per-task slice, base slice.

Debian 12's 6.1 runs CFS: no per-task slice through sched_setattr, no se.slice in
/proc/PID/sched, a `tree-key` column instead of eligible/deadline/slice in
sched/debug, and no base_slice_ns. 6.6 brought EEVDF; 6.12 made sched_runtime a
per-task slice for fair tasks. The UI and the CLI ask `why_not()` before they
offer a knob or a column, so nothing shows a number the kernel did not give.

The probe reads, and changes nothing but a thread of its own: the per-task slice
is tried by a short-lived thread of this process on itself (sched_setattr(0, ...)
then /proc/thread-self/sched), which then exits.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from schedtop import kernel_paths
from schedtop.model import Extras, KernelCaps

SCHED_DEBUG_DIR = kernel_paths.DEBUGFS_SCHED
SYS_sched_setattr = 314  # x86_64
PROBE_SLICE_NS = 3_000_000


def caps_of(extras: Extras | Mapping[str, Any] | None) -> KernelCaps | None:
    """The probe's result as a snapshot carries it (Snapshot.extras.kernel), or as the JSON form
    of one does (`extras["kernel"]`); None: not probed, e.g. an old recording."""
    if isinstance(extras, Extras):
        return extras.kernel
    k = (extras or {}).get("kernel")
    return KernelCaps.from_dict(k) if isinstance(k, Mapping) and "fair" in k else None


def scheduler_label(label: str, caps: KernelCaps | Extras | None) -> str:
    """SchedulerInfo.label, but a CFS kernel's fair class is called CFS, not EEVDF.
    caps: Snapshot.extras.kernel (or the snapshot's extras)."""
    if isinstance(caps, Extras):
        caps = caps.kernel
    if caps is not None and caps.fair == "CFS" and label.startswith("EEVDF"):
        return "CFS" + label[len("EEVDF"):]
    return label


def fair_from_proc_sched(text: str) -> str | None:
    """EEVDF kernels list se.slice (and, 6.6+, se.deadline) in /proc/PID/sched; CFS does not."""
    keys = {line.split(":", 1)[0].strip() for line in text.splitlines() if ":" in line}
    if "se.slice" in keys or "se.deadline" in keys:
        return "EEVDF"
    if "se.vruntime" in keys:
        return "CFS"
    return None


def fair_from_sched_debug(text: str) -> str | None:
    """The run-queue table's header: CFS's `tree-key`, EEVDF's `eligible`/`deadline`."""
    for line in text.splitlines():
        if " PID " in line and " task " in line:
            if "tree-key" in line:
                return "CFS"
            if "deadline" in line or "eligible" in line:
                return "EEVDF"
    return None


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


class _SchedAttr(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("sched_policy", ctypes.c_uint32), ("sched_flags", ctypes.c_uint64),
                ("sched_nice", ctypes.c_int32), ("sched_priority", ctypes.c_uint32),
                ("sched_runtime", ctypes.c_uint64), ("sched_deadline", ctypes.c_uint64),
                ("sched_period", ctypes.c_uint64)]


def _slice_probe() -> bool:
    """A thread of our own asks for a 3 ms slice on itself; True when /proc shows it took."""
    result: list[bool] = []

    def probe() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            attr = _SchedAttr()
            attr.size = ctypes.sizeof(attr)
            attr.sched_policy = 0  # SCHED_OTHER
            attr.sched_nice = os.getpriority(os.PRIO_PROCESS, 0)  # threads share it here: keep it
            attr.sched_runtime = PROBE_SLICE_NS
            if libc.syscall(SYS_sched_setattr, 0, ctypes.byref(attr), 0) != 0:
                result.append(False)
                return
            text = _read("/proc/thread-self/sched") or ""
            for line in text.splitlines():
                if line.startswith("se.slice"):
                    result.append(int(line.split(":", 1)[1]) == PROBE_SLICE_NS)
                    return
            result.append(False)
        except (OSError, ValueError, AttributeError):
            result.append(False)

    if os.sched_getscheduler(0) not in (os.SCHED_OTHER, os.SCHED_BATCH, os.SCHED_IDLE):
        return False  # an RT schedtop: the probe thread would inherit RT and need its own policy back
    t = threading.Thread(target=probe, name="schedtop-caps", daemon=True)
    t.start()
    t.join(2.0)
    return bool(result and result[0])


def probe(proc_sched: str | None = None, sched_debug: str | None = None,
          debugfs_entries: set[str] | None = None, release: str | None = None,
          slice_probe: bool | None = None) -> KernelCaps:
    """The capabilities of the running kernel; each argument overrides one reading (tests, replays)."""
    release = release if release is not None else os.uname().release
    proc_sched = proc_sched if proc_sched is not None else (_read("/proc/self/sched") or "")
    if debugfs_entries is None:
        try:
            debugfs_entries = set(os.listdir(SCHED_DEBUG_DIR))
        except OSError:
            debugfs_entries = None
    if sched_debug is None and debugfs_entries:
        sched_debug = _read(f"{SCHED_DEBUG_DIR}/debug")
    fair, why = None, ""
    if sched_debug:
        fair, why = fair_from_sched_debug(sched_debug), "sched/debug run-queue columns"
    if fair is None:
        fair, why = fair_from_proc_sched(proc_sched), "/proc/self/sched fields"
    if fair is None and debugfs_entries:
        if "base_slice_ns" in debugfs_entries:
            fair, why = "EEVDF", "debugfs base_slice_ns"
        elif "min_granularity_ns" in debugfs_entries:
            fair, why = "CFS", "debugfs min_granularity_ns"
    fair = fair or "unknown"
    base = None if debugfs_entries is None else "base_slice_ns" in debugfs_entries
    if slice_probe is None:
        slice_probe = fair == "EEVDF" and _slice_probe()
    return KernelCaps(release=release, fair=fair, task_slice=bool(slice_probe), base_slice=base, why=why)


@lru_cache(maxsize=1)
def current() -> KernelCaps:
    """The running kernel's capabilities, probed once per process (a kernel does not change)."""
    return probe()


def why_not(feature: str) -> str | None:
    """One line for the CLI: None when `feature` works on this kernel, else why it does not."""
    return current().why_not(feature)


if __name__ == "__main__":
    import json

    print(json.dumps(probe().to_dict()))
