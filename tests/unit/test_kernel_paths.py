"""The kernel's paths and policy numbers are spelled once (schedtop/kernel_paths.py): every
module that reads or writes one takes it from there, and the two "ext" names stay apart."""

from __future__ import annotations

from pathlib import Path

from schedtop import kernel_paths as kp


def test_the_modules_take_their_paths_from_the_one_module() -> None:
    from schedtop.collect import debugfs, kernel_caps, procfs, sched_ext
    from schedtop.scx import loader
    from schedtop.steer import actions, autogroup

    assert sched_ext.SCHED_EXT_SYSFS == actions.SCHED_EXT_SYSFS == kp.SCHED_EXT_SYSFS == "/sys/kernel/sched_ext"
    assert loader.SCHED_EXT_DIR == Path(kp.SCHED_EXT_SYSFS)
    assert debugfs.DEBUGFS == kp.DEBUGFS and debugfs.SCHED_DEBUG == kp.SCHED_DEBUG == "/sys/kernel/debug/sched/debug"
    assert kernel_caps.SCHED_DEBUG_DIR == kp.DEBUGFS_SCHED
    assert actions.BASE_SLICE_PATH == kp.BASE_SLICE_NS == "/sys/kernel/debug/sched/base_slice_ns"
    assert autogroup.ENABLED_PATH == kp.AUTOGROUP_ENABLED == "/proc/sys/kernel/sched_autogroup_enabled"
    assert procfs.ProcfsReader().root == kp.PROC and kp.proc_stat(42) == "/proc/42/stat"


def test_one_policy_table_and_the_ext_policy_is_not_the_ext_directory() -> None:
    from schedtop import model
    from schedtop.steer import units

    assert model.POLICY_NAMES is units.POLICY_NAME is kp.POLICY_NAMES
    assert (units.SCHED_OTHER, units.SCHED_FIFO, units.SCHED_RR, units.SCHED_BATCH, units.SCHED_IDLE) == (0, 1, 2, 3, 5)
    assert kp.SCHED_EXT == units.SCHED_EXT == 7 and kp.POLICY_NAMES[kp.SCHED_EXT] == "EXT"
    assert kp.POLICY_NAMES[kp.SCHED_DEADLINE] == "DEADLINE"
