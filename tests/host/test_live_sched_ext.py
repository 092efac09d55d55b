"""read_scheduler_info on the real sysfs: on this host (no sched_ext) and in the lab guest."""

from __future__ import annotations

import os

import pytest

from schedtop.collect.live import LiveSource
from schedtop.collect.sched_ext import SCHED_EXT_SYSFS, read_scheduler_info


def test_host_reports_what_the_kernel_has():
    info = read_scheduler_info()
    if not os.path.isdir(SCHED_EXT_SYSFS):
        assert (info.kind, info.ext_state) == ("eevdf", "absent")
    else:
        with open(f"{SCHED_EXT_SYSFS}/state") as f:
            assert info.ext_state == f.read().strip()


@pytest.mark.kernel
def test_guest_sched_ext_sysfs():
    with open(f"{SCHED_EXT_SYSFS}/state") as f:
        state = f.read().strip()
    info = read_scheduler_info()
    assert info.ext_state == state
    assert info.enable_seq is not None and info.nr_rejected is not None and info.hotplug_seq is not None
    if state == "disabled":
        assert (info.kind, info.ops_name) == ("eevdf", None)
    snap = LiveSource(use_bpf=False).collect()
    assert snap.scheduler == info or snap.scheduler.ext_state != info.ext_state
    # The guest kernel has ext.enabled in /proc/PID/sched: every task row carries it.
    assert any(t.ext_enabled is not None for t in snap.tasks)


@pytest.mark.kernel
def test_guest_debugfs_format():
    # The sched_ext kernel's sched/debug parses too: this thread is its CPU's '>R' row.
    import threading

    snap = LiveSource(pids=[os.getpid()], use_bpf=False).collect()
    assert snap.source == "procfs+debugfs", snap.warnings
    me = [q for q in snap.queues if q.pid == threading.get_native_id()]
    assert len(me) == 1 and me[0].running
    assert all(c.nr_running_exact for c in snap.cpus)
