"""LiveSource on the live /proc against real child processes whose policy, nice and
affinity were set with real syscalls (and cross-checked with ps(1), a peer reader)."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import time

import psutil
import pytest

from schedtop.collect.live import LiveSource
from schedtop.model import SchedExtPart, ViewRequest
from schedtop.collect.procfs import ProcfsReader

NCPU = os.cpu_count() or 1
SLEEPER = "import time; time.sleep(60)"
HOG = "while True: pass"
THREADS = "import threading, time\nfor _ in range(3): threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\ntime.sleep(60)"
NAPPER = "import time\nwhile True: time.sleep(0.001)"


@pytest.fixture
def spawn():
    procs: list[subprocess.Popen] = []

    def _spawn(code: str) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", code])
        procs.append(p)
        return p

    yield _spawn
    for p in procs:
        p.kill()
        p.wait()


def _row(snap, tid):
    return next(t for t in snap.tasks if t.tid == tid)


def _wait_asleep(pid: int) -> None:
    """Wait until the child is in its final sleep: on a loaded machine the interpreter's
    start-up can take well over a second, and its stat bytes move until it is done."""
    deadline = time.monotonic() + 20
    last = b""
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat", "rb") as f:
            now = f.read()
        if now == last and now.rsplit(b")", 1)[1].split()[0] == b"S":
            return
        last = now
        time.sleep(0.25)
    raise AssertionError("child never settled into its sleep")


def _wait_threads(pid: int, n: int) -> None:
    deadline = time.monotonic() + 10
    while len(os.listdir(f"/proc/{pid}/task")) < n:
        assert time.monotonic() < deadline, "child threads did not start"
        time.sleep(0.02)


def test_batch_nice_affinity(spawn):
    p = spawn(SLEEPER)
    os.sched_setscheduler(p.pid, os.SCHED_BATCH, os.sched_param(0))
    os.setpriority(os.PRIO_PROCESS, p.pid, 7)
    os.sched_setaffinity(p.pid, {NCPU - 1})
    t = _row(LiveSource(pids=[p.pid], use_bpf=False).collect(), p.pid)
    assert (t.policy, t.nice, t.prio, t.affinity) == ("BATCH", 7, 127, (NCPU - 1,))
    assert t.slice_ns and t.slice_ns > 0 and t.vruntime_ns is not None
    assert t.starttime > 0
    # ps(1) reads the same task independently: policy class, nice, last CPU.
    cls, ni = subprocess.check_output(["ps", "-o", "cls=,ni=", "-p", str(p.pid)], text=True).split()
    assert (cls, int(ni)) == ("B", 7)


def test_idle_policy(spawn):
    p = spawn(SLEEPER)
    os.sched_setscheduler(p.pid, os.SCHED_IDLE, os.sched_param(0))
    t = _row(LiveSource(pids=[p.pid], use_bpf=False).collect(), p.pid)
    assert t.policy == "IDLE"


@pytest.mark.root
def test_fifo_rt_priority(spawn):
    p = spawn(SLEEPER)
    os.sched_setscheduler(p.pid, os.SCHED_FIFO, os.sched_param(20))
    t = _row(LiveSource(pids=[p.pid], use_bpf=False).collect(), p.pid)
    assert (t.policy, t.rt_priority, t.prio) == ("FIFO", 20, 99 - 20)
    rtprio = subprocess.check_output(["ps", "-o", "rtprio=", "-p", str(p.pid)], text=True)
    assert int(rtprio) == 20


def test_threads_and_folding(spawn):
    p = spawn(THREADS)
    _wait_threads(p.pid, 4)
    src = LiveSource(pids=[p.pid], use_bpf=False)
    rows = src.collect().tasks
    assert sorted(t.tid for t in rows) == sorted(int(x) for x in os.listdir(f"/proc/{p.pid}/task"))
    assert all(t.pid == p.pid for t in rows)
    (proc,) = src.collect(ViewRequest(threads=False)).tasks
    assert (proc.pid, proc.tid, proc.nr_threads) == (p.pid, p.pid, 4)


def _vol(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches"))


def _cpu_s(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def test_rates_of_a_hog_and_a_napper(spawn):
    # Peers read the same counters around each collect: psutil's cpu_times (the kernel
    # scales them to sum_exec_runtime, our source) and status's voluntary switches.
    # Counters only grow, so our delta lies between the inner window (between the two
    # collects) and the outer one (around both): exact bounds however loaded the machine.
    hog, napper = spawn(HOG), spawn(NAPPER)
    os.sched_setaffinity(hog.pid, {0})
    peer = psutil.Process(hog.pid)
    src = LiveSource(pids=[hog.pid, napper.pid], use_bpf=False)
    cpu_o0, vol_o0 = _cpu_s(peer), _vol(napper.pid)
    first = src.collect()
    cpu_i0, vol_i0 = _cpu_s(peer), _vol(napper.pid)
    assert all(t.cpu_pct == 0 for t in first.tasks)  # the first call only primes
    time.sleep(1.0)
    cpu_i1, vol_i1 = _cpu_s(peer), _vol(napper.pid)
    snap = src.collect()
    cpu_o1, vol_o1 = _cpu_s(peer), _vol(napper.pid)
    dt = snap.interval_s
    assert dt > 0.9
    h, n = _row(snap, hog.pid), _row(snap, napper.pid)
    tick = 2 / os.sysconf("SC_CLK_TCK")  # psutil's granularity, both ends
    assert cpu_i1 - cpu_i0 - tick <= h.cpu_pct / 100 * dt <= cpu_o1 - cpu_o0 + tick
    assert vol_i1 - vol_i0 <= round(n.vol_cs_per_s * dt) <= vol_o1 - vol_o0
    assert n.vol_cs_per_s > 10  # it sleeps 1 ms per loop
    assert h.state == "R" and h.cpu == 0 and h.vol_cs_per_s < 5
    assert snap.cpus[0].util_pct > 90  # CPU 0 never idles while a pinned hog runs


def test_vanished_task_is_quiet(spawn):
    p = spawn(SLEEPER)
    reader = ProcfsReader()
    assert reader.thread(p.pid, p.pid) is not None
    src = LiveSource(pids=[p.pid], use_bpf=False)
    src.collect()
    p.kill()
    p.wait()
    assert reader.thread(p.pid, p.pid) is None
    assert reader.tids(p.pid) == []
    snap = src.collect()
    assert snap.tasks == ()
    assert not any(str(p.pid) in w for w in snap.warnings)


def test_churn_while_collecting(spawn):
    # Threads come and go thousands of times a second while we read: never an exception.
    spawn("import threading\nwhile True:\n    t = threading.Thread(target=lambda: None); t.start(); t.join()")
    src = LiveSource(use_bpf=False)
    for _ in range(15):
        snap = src.collect()
        assert snap.tasks


def test_extras_and_their_failures():
    src = LiveSource(use_bpf=False)
    src.add_extra("sched_ext", lambda: SchedExtPart(state="enabled", ops="x"))

    def broken():
        raise RuntimeError("stats socket closed")

    src.add_extra("scx_stats", broken)
    src.add_extra("scx", lambda: {"running": True})  # a dict where a typed part belongs
    snap = src.collect()
    assert snap.extras.sched_ext == SchedExtPart(state="enabled", ops="x")
    assert snap.extras.scx_stats is None
    assert any("scx_stats" in w and "stats socket closed" in w for w in snap.warnings)
    assert snap.extras.scx is None and any(w.startswith("scx: TypeError") for w in snap.warnings)
    with pytest.raises(ValueError, match="no snapshot part 'ok'"):
        src.add_extra("ok", lambda: None)


def test_detail_pane_fields():
    src = LiveSource(pids=[os.getpid()], use_bpf=False)
    detail = src.collect(ViewRequest(detail_tid=os.getpid())).detail
    assert detail is not None and detail.tid == os.getpid()
    assert detail.fields["policy"] == "0"
    assert "se.vruntime" in detail.fields and "nr_switches" in detail.fields


def test_bpf_hook_failure_is_a_warning():
    # Whatever state the BPF tier is in on this machine, collect() must work.
    src = LiveSource(pids=[os.getpid()], use_bpf=True)
    snap = src.collect()
    assert snap.tasks
    if snap.source != "bpf":
        assert any("BPF" in w for w in snap.warnings)
    src.close()


def _as_nobody(conn, pids):
    try:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
        src = LiveSource(use_bpf=False)
        src.collect()
        time.sleep(0.5)
        conn.send(src.collect())
    except BaseException as exc:  # report it to the parent, which fails the test
        conn.send(repr(exc))


@pytest.mark.root
def test_not_root_estimates(spawn):
    """As an unprivileged user: no debugfs, other users' tasks partly unreadable, no crash."""
    hogs = [spawn(HOG) for _ in range(3)]
    for h in hogs:
        os.sched_setaffinity(h.pid, {0})
    time.sleep(0.2)
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_as_nobody, args=(child, [h.pid for h in hogs]))
    proc.start()
    snap = parent.recv()
    proc.join(10)
    assert not isinstance(snap, str), snap
    assert snap.source == "procfs" and snap.queues == ()
    assert all(not c.nr_running_exact for c in snap.cpus)
    assert any("estimate" in w for w in snap.warnings)
    cpu0 = snap.cpus[0]
    assert cpu0.nr_running >= 3
    # The estimate of "current" is the busiest R task last seen on CPU 0.
    curr = _row(snap, cpu0.curr_pid)
    assert curr.state == "R" and curr.cpu == 0
    assert cpu0.util_pct > 90
    assert {h.pid for h in hogs} <= {t.tid for t in snap.tasks}


def test_procfs_change_detector(spawn):
    """Without debugfs, a thread whose stat and schedstat bytes did not move is not re-read,
    yet a retune shows: nice and policy at the next collect, affinity within REFRESH_EVERY."""
    from schedtop.collect.live import REFRESH_EVERY

    p = spawn(SLEEPER)
    _wait_asleep(p.pid)
    src = LiveSource(pids=[p.pid], use_bpf=False, use_debugfs=False)
    src.collect()
    rows = [_row(src.collect(), p.pid) for _ in range(3)]
    assert rows[1] is rows[0] or rows[2] is rows[1]  # reused (one may be its refresh turn)
    os.setpriority(os.PRIO_PROCESS, p.pid, 4)
    assert _row(src.collect(), p.pid).nice == 4
    os.sched_setscheduler(p.pid, os.SCHED_IDLE, os.sched_param(0))
    assert _row(src.collect(), p.pid).policy == "IDLE"
    os.sched_setaffinity(p.pid, {0})
    src.invalidate(p.pid)
    assert _row(src.collect(), p.pid).affinity == (0,)
    os.sched_setaffinity(p.pid, set(range(NCPU)))
    seen = [_row(src.collect(), p.pid).affinity for _ in range(REFRESH_EVERY)]
    assert seen[-1] == tuple(range(NCPU))
