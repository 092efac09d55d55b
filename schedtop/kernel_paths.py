"""The kernel's files and numbers schedtop reads and writes, each named once.

Two different things are called "ext": the sched_ext *class* (its sysfs directory, where the
kernel says which BPF scheduler, if any, is loaded) and the *policy* number a task is given to
be run by that scheduler. Here the directory is ``SCHED_EXT_SYSFS`` and the policy is
``SCHED_EXT`` (its name in include/uapi/linux/sched.h), never the one for the other.
"""

from __future__ import annotations

from collections.abc import Mapping

# --- procfs -------------------------------------------------------------------------
PROC = "/proc"
AUTOGROUP_ENABLED = f"{PROC}/sys/kernel/sched_autogroup_enabled"


def proc_stat(pid: int) -> str:
    """/proc/PID/stat."""
    return f"{PROC}/{pid}/stat"


# --- debugfs (root; the fair class's run queues and tunables) ---------------------------
DEBUGFS = "/sys/kernel/debug"
DEBUGFS_SCHED = f"{DEBUGFS}/sched"  # its entries tell EEVDF from CFS (see collect/kernel_caps.py)
SCHED_DEBUG = f"{DEBUGFS_SCHED}/debug"  # every CPU's run queue, print_task rows
BASE_SLICE_NS = f"{DEBUGFS_SCHED}/base_slice_ns"  # EEVDF's global base slice (sysctl_sched_base_slice)

# --- the sched_ext class's sysfs directory (state, root/ops, root/events, enable_seq) ----
SCHED_EXT_SYSFS = "/sys/kernel/sched_ext"

# --- scheduling policies (include/uapi/linux/sched.h) ---------------------------------
SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE = 0, 1, 2, 3, 5, 6
SCHED_EXT = 7  # the policy: run by the loaded sched_ext (BPF) scheduler; needs CONFIG_SCHED_CLASS_EXT

POLICY_NAMES: Mapping[int, str] = {
    SCHED_OTHER: "OTHER",
    SCHED_FIFO: "FIFO",
    SCHED_RR: "RR",
    SCHED_BATCH: "BATCH",
    SCHED_IDLE: "IDLE",
    SCHED_DEADLINE: "DEADLINE",
    SCHED_EXT: "EXT",
}
