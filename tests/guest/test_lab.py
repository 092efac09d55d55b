"""The lab is real: inside the guest, sched_ext exists, the project's minimal
struct_ops scheduler (bpf/minimal.bpf.c) loads through schedtop's libbpf binding,
schedules a workload to completion, and unloads. Also pins down the guest
environment other areas' guest tests rely on.

Runs inside `schedtop lab run` (make test-guest); on the host these skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from schedtop.bpf.libbpf import find_libbpf
from schedtop.lab import kernel, minimal
from schedtop.lab.minimal import OBJECT as MINIMAL
from schedtop.lab.minimal import sched_ext_state, wait_state

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]
SCX = Path("/sys/kernel/sched_ext")


def test_guest_runs_the_cached_lab_kernel() -> None:
    k = kernel.cached()
    assert k is not None, "SCHEDTOP_CACHE is not visible in the guest"
    assert os.uname().release == k.version
    assert os.environ.get("SCHEDTOP_GUEST") == "1"
    assert "CONFIG_SCHED_CLASS_EXT=y" in k.config.read_text()
    assert os.cpu_count() == 2


def test_sched_ext_is_disabled_at_boot() -> None:
    assert wait_state("disabled") == "disabled"


def test_minimal_scheduler_loads_schedules_a_workload_and_unloads() -> None:
    """Through schedtop's binding: open_file -> load -> attach struct_ops -> (block) -> link destroy."""
    assert MINIMAL.is_file(), "build it with `make bpf`"
    assert wait_state("disabled") == "disabled"
    with minimal.loaded(MINIMAL) as counters:
        assert sched_ext_state() == "enabled"
        assert (SCX / "root" / "ops").read_text().strip() == "schedtop_min"
        # A CPU-bound and a wake/sleep-heavy load, both must finish under our scheduler.
        hogs = subprocess.Popen(["stress-ng", "--cpu", "2", "--timeout", "3", "--quiet"])
        loop = subprocess.run(["sh", "-c", "i=0; while [ $i -lt 200 ]; do i=$((i+1)); sleep 0.001; done; echo $i"],
                              capture_output=True, text=True, timeout=120)
        assert hogs.wait(timeout=120) == 0
        assert loop.returncode == 0 and loop.stdout.strip() == "200"
        assert sched_ext_state() == "enabled", "the scheduler was ejected while the workload ran"
        assert counters.nr_local + counters.nr_global > 100, (counters.nr_local, counters.nr_global)
    assert wait_state("disabled") == "disabled"


def test_load_unload_cycles_under_load_keep_the_guest_alive() -> None:
    """Every load and unload flips sched_ext's static keys (text patching). Under QEMU's
    multi-threaded TCG the guest panicked ("Oops: int3" in update_rq_clock) after 17-55 such
    cycles beside stress-ng; the lab runs single-threaded TCG for that. A panic here kills the
    guest and the whole guest suite fails with the kernel's report (schedtop lab run)."""
    hogs = subprocess.Popen(["stress-ng", "--cpu", "2", "--timeout", "300", "--quiet"])
    try:
        seqs = []
        for _ in range(25):
            with minimal.loaded(MINIMAL):
                assert sched_ext_state() == "enabled"
                seqs.append(int((SCX / "enable_seq").read_text()))
            assert wait_state("disabled") == "disabled"
        assert seqs == list(range(seqs[0], seqs[0] + 25))  # 25 real loads, none missed
        assert hogs.poll() is None  # the workload lived through all of them
    finally:
        hogs.kill()
        hogs.wait()


def test_guest_environment_for_other_guest_tests(tmp_path: Path) -> None:
    """What guest tests can count on (documented in schedtop/lab/guest.py)."""
    assert os.geteuid() == 0
    assert Path(sys.executable).is_file()
    assert find_libbpf().version >= (1, 4)
    for tool in ("tmux", "stress-ng", "perf", "bpftool"):
        assert shutil.which(tool), f"{tool} missing in the guest"
    assert Path("/sys/kernel/debug/sched/debug").is_file(), "debugfs not mounted"
    assert os.environ["HOME"] == str(Path.home())
    # Writable in the guest: /tmp, /var/lib (state dirs), HOME and the checkout (overlays).
    for d in (tmp_path, Path("/tmp"), Path("/var/lib"), Path.home(), ROOT, Path("/run")):
        probe = d / f".schedtop-guest-probe-{os.getpid()}"
        probe.write_text("x")
        probe.unlink()
    assert all(os.access(o, os.R_OK) for o in (ROOT / "schedtop" / "bpf" / "obj").glob("*/*.bpf.o"))
