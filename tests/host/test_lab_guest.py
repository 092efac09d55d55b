"""`schedtop lab run` boots the real sched_ext guest: output and exit code come back,
a hung guest is killed at the timeout and nothing of it is left running."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from schedtop.lab import kernel

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(kernel.cached() is None, reason="no cached lab kernel (schedtop lab fetch)")


def lab_run(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    # TMPDIR puts the guest's private --rwdir under tmp_path, so the test can find leftovers.
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "schedtop", "lab", "run", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def test_state_output_and_exit_code_come_back(tmp_path: Path) -> None:
    proc = lab_run(tmp_path, "--", "sh", "-c",
                   "cat /sys/kernel/sched_ext/state; uname -r; pwd; echo to-stderr >&2; exit 42")
    assert proc.returncode == 42, proc.stderr
    assert proc.stdout.splitlines() == ["disabled", kernel.cached().version, str(ROOT), "to-stderr"]
    assert "guest booted: command started after" in proc.stderr
    assert len([l for l in proc.stderr.splitlines() if l.startswith("guest accelerator: ")]) == 1, proc.stderr
    assert list(tmp_path.iterdir()) == []  # the rwdir is cleaned up


def test_kernel_option_boots_a_one_package_kernel_without_sched_ext(tmp_path: Path) -> None:
    """--kernel bookworm: Debian 12's 6.1 (xz vmlinuz, modules under lib/modules in its package)."""
    k = kernel.cached("bookworm")
    if k is None:
        pytest.skip("no cached 6.1 kernel (schedtop lab fetch --kernel bookworm)")
    proc = lab_run(tmp_path, "--kernel", "bookworm", "--", "sh", "-c",
                   "uname -r; test -e /sys/kernel/sched_ext || echo no-sched_ext; grep -c 9p /proc/filesystems")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [k.version, "no-sched_ext", "1"]


def test_a_hung_guest_is_killed_at_the_timeout(tmp_path: Path) -> None:
    start = time.monotonic()
    proc = lab_run(tmp_path, "--timeout", "8", "--", "sleep", "600")
    assert proc.returncode == 124
    assert "did not finish within 8 s; qemu was killed" in proc.stderr
    assert time.monotonic() - start < 60
    assert processes_mentioning(str(tmp_path)) == []  # no vng, no qemu left behind


def test_no_command_is_one_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "schedtop", "lab", "run"], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "schedtop lab run: no command given: schedtop lab run -- CMD..."
