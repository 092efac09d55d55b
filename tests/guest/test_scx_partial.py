"""Partial mode (SCX_OPS_SWITCH_PARTIAL) end to end in the sched_ext guest.

schedtop's scheduler loaded with --partial runs only the threads moved to SCHED_EXT, and
that move is an ordinary journaled steering change (`schedtop set PID --ext`): `schedtop
restore` puts back the ORIGINAL policy (the hog starts as SCHED_BATCH nice 5 to tell that
apart from SCHED_OTHER). Everything is read straight from the kernel: sysfs for the
scheduler, /proc/PID/stat for policy and nice, /proc/PID/sched for ext.enabled, and the
BPF side's own counters from the `schedtop scx` stats lines.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scx_helpers import ScxProcess, ops, schedstat, state, wait_state
from test_scx import scx_proc  # noqa: F401 (the fixture: starts `schedtop scx`, kills it after)

pytestmark = pytest.mark.kernel

SCX = Path("/sys/kernel/sched_ext")
SCHED_BATCH, SCHED_EXT = 3, 7

# Mostly on CPU, but it sleeps 1 ms every ~2 ms: every wake-up and every sleep passes
# through the sched_ext scheduler that owns it (select_cpu, enqueue, stopping), so its
# counters move. A pure spinner alone on a CPU never leaves it and would show nothing.
# It runs until its stdin closes (the test says when the workload is done), at most 120 s.
HOG = (
    "import select, sys, time\n"
    "end = time.monotonic() + 120; n = 0\n"
    "while time.monotonic() < end:\n"
    "    t = time.monotonic() + 0.002\n"
    "    while time.monotonic() < t: n += 1\n"
    "    if select.select([sys.stdin], [], [], 0.001)[0]:\n"
    "        break\n"
    "print('hog done', n, flush=True)\n"
)


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A private journal for `schedtop set` / `schedtop restore` (inherited by the CLI)."""
    d = tmp_path / "state"
    monkeypatch.setenv("SCHEDTOP_STATE_DIR", str(d))
    return d


@pytest.fixture
def hogs():
    procs: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        # chrt/nice exec in place: the pid is the Python hog's, as SCHED_BATCH nice 5.
        p = subprocess.Popen(["chrt", "-b", "0", "nice", "-n", "5", sys.executable, "-c", HOG],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(p)
        deadline = time.monotonic() + 10
        while not _comm(p.pid).startswith("python"):
            assert time.monotonic() < deadline, "hog did not exec"
            time.sleep(0.02)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()


def policy(pid: int) -> int:
    return int(_stat(pid)[38])  # field 41


def nice(pid: int) -> int:
    return int(_stat(pid)[16])  # field 19


def sched_field(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/sched").read_text().splitlines():
        if line.startswith(name):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} in /proc/{pid}/sched")


def ext_enabled(pid: int) -> int:
    return int(float(sched_field(pid, "ext.enabled")))


def wait_until(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.02)


def schedtop(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "schedtop", *args], capture_output=True, text=True, timeout=60)


ACTIVITY = ("nr_stints", "nr_queued", "nr_scheduled", "nr_kernel_dispatches", "nr_planned")


def activity(scx: ScxProcess, seconds: float) -> dict[str, int]:
    """How much each counter of the BPF scheduler moved over about ``seconds``."""
    a = scx.next_stats()["counters"]
    time.sleep(seconds)
    b = scx.next_stats()["counters"]
    return {k: b[k] - a[k] for k in ACTIVITY}


def test_partial_mode_runs_only_tasks_moved_in_and_restore_puts_the_original_back(scx_proc, hogs, env):
    scx = scx_proc("--partial")
    assert state() == "enabled" and ops() == "schedtop"
    assert (SCX / "switch_all").read_text().strip() == "0"  # partial: not every task
    hog = hogs()
    pid = hog.pid
    assert (policy(pid), nice(pid)) == (SCHED_BATCH, 5)
    cpus = os.sched_getaffinity(pid)
    assert len(cpus) > 1  # the pin below must be a change
    time.sleep(0.3)
    assert ext_enabled(pid) == 0  # loaded, but not ours: EEVDF runs it
    idle = activity(scx, 1.0)
    assert idle == {k: 0 for k in ACTIVITY}, idle  # nothing in the guest is SCHED_EXT yet

    # A slice set first must survive the move: SCHED_EXT takes sched_nice and sched_runtime.
    # Pinned to one CPU, each wake-up skips select_cpu's idle fast path and goes to the
    # Python loop (nr_queued -> a decision -> nr_scheduled), then by the plan it made (nr_planned).
    r = schedtop("set", str(pid), "--slice", "3ms", "--pin", "0")
    assert r.returncode == 0, r.stderr
    r = schedtop("set", str(pid), "--ext")
    assert r.returncode == 0, r.stderr
    assert "-> EXT nice 5" in r.stdout, r.stdout
    assert (policy(pid), nice(pid)) == (SCHED_EXT, 5)  # nice kept, not reset to 0
    assert int(float(sched_field(pid, "se.slice"))) == 3_000_000
    wait_until(lambda: ext_enabled(pid) == 1, 5, "ext.enabled 1 after --ext")
    busy = activity(scx, 1.0)
    # Every ~3 ms the hog sleeps and wakes. Measured under TCG, unpinned: 140-240 stints per
    # second (then almost all through the idle fast path); 20 is a floor, not the rate.
    # Its first enqueues cross to the loop (nr_queued -> a decision -> nr_scheduled); the
    # deadline policy then plans it and BPF queues the rest itself by that plan (nr_planned).
    assert busy["nr_stints"] >= 20 and busy["nr_queued"] >= 1 and busy["nr_scheduled"] >= 1, busy
    assert busy["nr_queued"] + busy["nr_planned"] >= 20, busy
    assert scx.next_stats()["partial"] is True

    journal = json.loads((env / "cli.json").read_text())
    labels = [s["label"] for s in journal["steps"]]
    assert labels == ["slice 3ms, pin 0", "EXT"], labels
    assert journal["steps"][0]["entries"][0]["before"]["policy"] == SCHED_BATCH

    r = schedtop("restore")
    assert r.returncode == 0, r.stderr
    assert (policy(pid), nice(pid)) == (SCHED_BATCH, 5)  # the original, not SCHED_OTHER
    assert os.sched_getaffinity(pid) == cpus
    wait_until(lambda: ext_enabled(pid) == 0, 5, "ext.enabled 0 after restore")
    assert not (env / "cli.json").exists()
    assert activity(scx, 1.0) == {k: 0 for k in ACTIVITY}
    assert state() == "enabled" and ops() == "schedtop"  # still loaded, just owns nothing
    assert scx.stop()["reason"] == "stopped"
    wait_state("disabled", 5)


def test_killing_the_partial_scheduler_leaves_ext_tasks_running_under_fair(scx_proc, hogs, env):
    scx = scx_proc("--partial")
    hog = hogs()
    pid = hog.pid
    r = schedtop("set", str(pid), "--ext")
    assert r.returncode == 0, r.stderr
    wait_until(lambda: ext_enabled(pid) == 1, 5, "ext.enabled 1 after --ext")
    assert activity(scx, 0.5)["nr_stints"] > 0

    os.kill(scx.proc.pid, signal.SIGKILL)
    scx.proc.wait()
    took = wait_state("disabled", 5)
    assert took < 1.0, f"sched_ext disabled {took:.2f}s after kill -9"
    # The kernel keeps the policy; with no BPF scheduler the class falls back to EEVDF.
    assert policy(pid) == SCHED_EXT and ext_enabled(pid) == 0
    ran0 = schedstat(pid)[0]
    time.sleep(0.5)
    assert schedstat(pid)[0] > ran0  # still running
    # The journal outlives the scheduler: restore puts the original back on the live task.
    r = schedtop("restore")
    assert r.returncode == 0, r.stderr
    assert (policy(pid), nice(pid)) == (SCHED_BATCH, 5)
    out, _ = hog.communicate(timeout=60)  # closes stdin: the hog finishes its round and exits
    assert hog.returncode == 0 and "hog done" in out
