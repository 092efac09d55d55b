"""A profile with policy = "ext" in the sched_ext guest, through `schedtop profile apply` and
`schedtop restore` (the user's path), on a real child that starts as SCHED_BATCH nice 5.

With no scheduler loaded the move is still made (the kernel keeps policy 7 and runs the task
under EEVDF) and the runner notes it once; with schedtop's scheduler loaded in partial mode the task's
wake-ups go through the Python loop (its counters move; pinned to one CPU by the same rule, so
select_cpu's idle fast path cannot take them); restore puts the ORIGINAL policy, nice and
affinity back and the loop sees nothing more. Read from the kernel: /proc/PID/stat (policy,
nice), /proc/PID/sched (ext.enabled), /proc/PID/schedstat, and the BPF side's counters.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest

from schedtop.steer.journal import Journal, ensure_dir
from schedtop.steer.profiles import ProfileRunner, load
from scx_helpers import ops, schedstat, state, wait_state
from test_scx import scx_proc  # noqa: F401 (the fixture: starts `schedtop scx`, kills it after)
from test_scx_partial import ACTIVITY, HOG, activity, ext_enabled, nice, policy, schedtop, wait_until

pytestmark = pytest.mark.kernel

SCHED_BATCH, SCHED_EXT = 3, 7
# test_scx_partial's hog (on CPU ~2 ms, sleeps ~1 ms, until stdin closes), named for the profile.
NAMED_HOG = "import ctypes, sys; ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)\n" + HOG


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def test_profile_moves_a_task_into_sched_ext_and_restore_gives_the_original_back(scx_proc, tmp_path, monkeypatch):
    monkeypatch.setenv("SCHEDTOP_STATE_DIR", str(tmp_path / "state"))  # the CLI's journal, private
    wait_state("disabled", 10)  # whatever ran before in this boot has unloaded
    tag = "pe" + uuid.uuid4().hex[:6]
    prof = tmp_path / "ext.toml"
    prof.write_text(f'name = "e"\n[[rule]]\nname = "to ext"\ncomm = "{tag}"\n'
                    'policy = "ext"\nnice = 2\naffinity = "0"\n')
    # chrt/nice exec in place: the pid is the Python hog's, as SCHED_BATCH nice 5.
    hog = subprocess.Popen(["chrt", "-b", "0", "nice", "-n", "5", sys.executable, "-c", NAMED_HOG, tag],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pid = hog.pid
    try:
        wait_until(lambda: _comm(pid) == tag, 10, "hog named itself")
        assert (policy(pid), nice(pid)) == (SCHED_BATCH, 5)
        cpus = os.sched_getaffinity(pid)
        assert len(cpus) > 1  # the pin is a change

        # No scheduler loaded: moved all the same, noted once, and the kernel runs it on EEVDF.
        # (In-process, the runner `profile apply` wraps: each CLI start costs seconds in TCG.)
        journal = Journal.session(ensure_dir(tmp_path / "runner"))
        runner = ProfileRunner(load(prof), journal)
        assert [rep.changed for rep in runner.poll()] == [1] and not runner.errors
        assert runner.notes == ["note: no sched_ext scheduler is loaded: SCHED_EXT threads run under EEVDF until "
                                "one is (`schedtop scx --partial` runs only them)"]
        assert (policy(pid), nice(pid), os.sched_getaffinity(pid)) == (SCHED_EXT, 2, {0})
        assert ext_enabled(pid) == 0
        ran = schedstat(pid)[0]
        time.sleep(0.3)
        assert schedstat(pid)[0] > ran
        assert [o.status for o in journal.restore_all()] == ["restored"]
        assert (policy(pid), nice(pid), os.sched_getaffinity(pid)) == (SCHED_BATCH, 5, cpus)

        # schedtop's scheduler in partial mode: it runs only what the profile moved in.
        scx = scx_proc("--partial")
        assert state() == "enabled" and ops() == "schedtop"
        r = schedtop("profile", "apply", str(prof))
        assert r.returncode == 0, r.stderr
        assert "note:" not in r.stdout and "profile e: 1 thread(s) tuned" in r.stdout, r.stdout
        assert (policy(pid), nice(pid), os.sched_getaffinity(pid)) == (SCHED_EXT, 2, {0})
        wait_until(lambda: ext_enabled(pid) == 1, 5, "ext.enabled 1 after the profile")
        busy = activity(scx, 1.0)
        # test_scx_partial measured 140-240 stints/s for this hog under TCG; 20 is a floor.
        # Its first enqueues cross to the loop (nr_queued -> a decision -> nr_scheduled); the
        # deadline policy then plans it and BPF queues the rest itself by that plan (nr_planned).
        assert busy["nr_stints"] >= 20 and busy["nr_queued"] >= 1 and busy["nr_scheduled"] >= 1, busy
        assert busy["nr_queued"] + busy["nr_planned"] >= 20, busy

        r = schedtop("restore")
        assert r.returncode == 0, r.stderr
        assert (policy(pid), nice(pid), os.sched_getaffinity(pid)) == (SCHED_BATCH, 5, cpus)
        wait_until(lambda: ext_enabled(pid) == 0, 5, "ext.enabled 0 after restore")
        assert activity(scx, 1.0) == {k: 0 for k in ACTIVITY}  # the loop owns nothing any more
        assert scx.stop()["reason"] == "stopped"
        out, _ = hog.communicate(timeout=60)  # closes stdin: the hog finishes its round
        assert hog.returncode == 0 and "hog done" in out
    finally:
        if hog.poll() is None:
            hog.kill()
        hog.wait()
