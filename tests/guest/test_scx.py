"""schedtop's own sched_ext scheduler in a real sched_ext kernel (the lab guest).

Every test starts a real `schedtop scx` process and real workloads; the
kernel's sysfs says whether the scheduler is in charge. TCG timings are
slow and noisy, so the margins are generous and the checks are ratios.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scx_helpers import (
    ScxProcess, last_cpu, ops, ping_pong_cmd, run_all, schedstat, spinner_cmd, state, wait_state,
)

pytestmark = pytest.mark.kernel

POLICIES = ("deadline", "fifo", "interactive")


@pytest.fixture
def scx_proc():
    started: list[ScxProcess] = []

    def start(*args: str, timeout_ms: int = 10000) -> ScxProcess:
        p = ScxProcess(*args, timeout_ms=timeout_ms)
        started.append(p)
        p.wait_loaded()
        return p

    yield start
    for p in started:
        p.kill()
    if state() != "disabled":
        wait_state("disabled", 10)


def switch_all() -> bool:
    return Path("/sys/kernel/sched_ext/switch_all").read_text().strip() == "1"


@pytest.mark.parametrize("policy", POLICIES)
def test_full_mode_runs_a_mixed_workload_to_completion(scx_proc, policy):
    scx = scx_proc("--policy", policy)
    assert state() == "enabled" and ops() == "schedtop" and switch_all()
    results = run_all([
        ["stress-ng", "--cpu", "2", "--timeout", "3"],
        ["perf", "bench", "sched", "messaging", "-g", "1", "-l", "20"],
        ping_pong_cmd(2000),
    ])
    for r in results:
        assert r.returncode == 0, (r.args, r.stdout[-500:])
    assert "pingpong done" in results[2].stdout
    assert "Total time" in results[1].stdout
    assert state() == "enabled" and ops() == "schedtop"  # still in charge after all that
    stats = scx.next_stats()
    c = stats["counters"]
    assert stats["policy"] == policy
    assert c["nr_queued"] > 100 and c["nr_user_dispatches"] > 100  # the Python policy did the work
    assert c["nr_scheduled"] <= c["nr_queued"]
    assert c["nr_failed"] + c["nr_cancelled"] < c["nr_queued"]
    # mlockall + reserved heap + frozen GC: no page faults once warmed up (a round of load).
    if stats["page_faults_after_warmup"] is None:
        time.sleep(1.0)
        run_all([["perf", "bench", "sched", "messaging", "-g", "1", "-l", "10"]])
        stats = scx.next_stats()
    assert stats["page_faults_after_warmup"] == 0, stats
    assert scx.stop()["reason"] == "stopped"
    wait_state("disabled", 5)


def loaded_policy(scx: ScxProcess, timeout: float = 10.0) -> str:
    """The policy the process says it loaded (its "loaded" event, printed before it attaches)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        for e in list(scx.events):
            if e.get("event") == "loaded":
                return e["policy"]
        time.sleep(0.02)
    raise AssertionError(f"no loaded event; stderr: {scx.stderr()}")


@pytest.mark.parametrize("policy", POLICIES)
def test_kill9_gives_the_cpus_back_within_a_second(scx_proc, policy):
    scx = scx_proc("--policy", policy)
    # 3 s of load: the kill comes 1 s in, and the rest must still finish on EEVDF.
    load = subprocess.Popen(["stress-ng", "--cpu", "3", "--timeout", "3"], stdout=subprocess.DEVNULL)
    assert loaded_policy(scx) == policy
    time.sleep(1.0)
    t0 = time.monotonic()
    os.kill(scx.proc.pid, signal.SIGKILL)
    scx.proc.wait()
    while state() != "disabled" and time.monotonic() - t0 < 5:
        time.sleep(0.005)
    took = time.monotonic() - t0
    assert state() == "disabled"
    assert took < 1.0, f"sched_ext disabled {took:.2f}s after kill -9"
    print(f"{policy}: sched_ext disabled {took:.3f}s after kill -9")
    assert load.wait(timeout=60) == 0


@pytest.mark.parametrize("policy", POLICIES)
def test_sigstop_gets_ejected_by_the_watchdog(scx_proc, policy):
    timeout_ms = 2000
    scx = scx_proc("--policy", policy, timeout_ms=timeout_ms)
    # Once the loop is stopped, the load's tasks wait in user space and cannot run (nor time
    # out) until the watchdog ejects the scheduler; 4 s is still load when that happens.
    load = subprocess.Popen(["stress-ng", "--cpu", "3", "--timeout", "4"], stdout=subprocess.DEVNULL)
    assert loaded_policy(scx) == policy
    time.sleep(0.5)
    os.kill(scx.proc.pid, signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        while state() != "disabled" and time.monotonic() - t0 < 20:
            time.sleep(0.02)
        took = time.monotonic() - t0
    finally:
        os.kill(scx.proc.pid, signal.SIGCONT)
    assert state() == "disabled"
    assert took < timeout_ms / 1000 + 4.0, f"ejected after {took:.1f}s"
    print(f"{policy}: ejected {took:.2f}s after SIGSTOP (timeout_ms {timeout_ms})")
    exit_event = scx.exit_event(20)
    assert exit_event["reason"] == "ejected"
    assert "stall" in exit_event["text"], exit_event["text"]
    assert scx.proc.wait(timeout=20) == 2
    assert load.wait(timeout=60) == 0


def avg_slice_ms(pids: list[int], seconds: float) -> float:
    before = [schedstat(p) for p in pids]
    time.sleep(seconds)
    after = [schedstat(p) for p in pids]
    ran = sum(a[0] - b[0] for a, b in zip(after, before))
    slices = sum(a[2] - b[2] for a, b in zip(after, before))
    return ran / max(slices, 1) / 1e6


TCG_SHORT_STINT_MS = 9.0  # what single-threaded TCG shows for a 2 ms slice (7-10 ms measured)


@pytest.mark.parametrize("policy", POLICIES)
def test_live_slice_and_pin_knobs(scx_proc, policy):
    """One load per policy: a global slice change shows in the observed timeslices
    (schedstat), and a pinned task stays on its CPU while the others compete."""
    scx = scx_proc("--policy", policy, "--slice-us", "40000")
    hogs = [subprocess.Popen(spinner_cmd(30)) for _ in range(5)]  # more than the CPUs: they take turns
    pinned, others = hogs[0], [h.pid for h in hogs[1:]]
    seen: set[int] = set()
    try:
        time.sleep(1.0)
        bpf_long = [scx.next_stats()["avg_timeslice_ms"] for _ in range(3)]
        long_ms = avg_slice_ms(others, 1.0)
        scx.send(cmd="slice", ns=2_000_000)
        scx.send(cmd="knob", pid=pinned.pid, cpu=1)
        time.sleep(0.5)  # the next trip of each task through the loop applies both
        before = [schedstat(p) for p in others]
        for _ in range(40):
            seen.add(last_cpu(pinned.pid))
            time.sleep(0.05)
        after = [schedstat(p) for p in others]
        bpf_short = [scx.next_stats()["avg_timeslice_ms"] for _ in range(3)]
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    ran = sum(a[0] - b[0] for a, b in zip(after, before))
    short_ms = ran / max(sum(a[2] - b[2] for a, b in zip(after, before)), 1) / 1e6
    stats = scx.next_stats()
    assert seen == {1}, seen  # the pin: only CPU 1's DSQ, every time
    assert stats["slice_ns"] == 2_000_000 and stats["last_error"] is None
    assert stats["knobs"][str(pinned.pid)][1] == 1
    # Observed timeslices of the hogs (schedstat: CPU time / times switched in). The
    # kernel checks slices at its tick (4 ms at HZ=250), so 2 ms shows as about 4 ms; under
    # single-threaded TCG a stint also grows while the other vCPU has the host thread, so
    # 2 ms showed as 7-10 ms: the long slice is 40 ms to keep the two apart.
    why = f"schedstat {long_ms:.1f} -> {short_ms:.1f} ms; BPF stints {bpf_long} -> {bpf_short} ms"
    if long_ms < 2 * TCG_SHORT_STINT_MS:
        # Precondition, not the claim: a halving can only be shown when the long stints are at
        # least twice what TCG makes of a 2 ms slice (7-10 ms measured). Under TCG on a loaded
        # host the vCPUs stall and stints get cut short at random; measured: 23 -> 4 ms on a
        # quiet host, 12 -> 10 ms at load average 10, and 15.9 -> 8.2 ms (a failure when the
        # bar was 15 ms, below twice the short stint).
        pytest.xfail(f"this guest cannot observe a long slice right now: {why}")
    # 40 ms -> 2 ms must at least halve the observed stint; single-threaded TCG measured
    # 16.8 -> 7.9 (20 ms slice), 18.8 -> 7.1 and 21.7 -> 7.1 ms (40 ms slice).
    assert short_ms < long_ms / 2, why


def test_a_raising_user_policy_unloads_cleanly(tmp_path, scx_proc):
    f = tmp_path / "broken.py"
    f.write_text(
        "from schedtop.scx.policy import Policy as Base\n"
        "class Policy(Base):\n"
        "    name = 'broken'\n"
        "    n = 0\n"
        "    def decide(self, task, now_ns):\n"
        "        self.n += 1\n"
        "        if self.n > 50:\n"
        "            raise ZeroDivisionError('policy bug on purpose')\n"
        "        return super().decide(task, now_ns)\n"
    )
    scx = scx_proc("--policy", str(f))
    load = subprocess.Popen(["stress-ng", "--cpu", "2", "--timeout", "2"], stdout=subprocess.DEVNULL)
    assert scx.proc.wait(timeout=60) == 3
    event = scx.exit_event()
    assert event["reason"] == "policy"
    assert "ZeroDivisionError: policy bug on purpose" in event["text"] and "broken.py" in event["text"]
    wait_state("disabled", 5)
    assert load.wait(timeout=60) == 0


def sleeper_cmd() -> list[str]:
    """Wakes every ~1 ms and runs briefly: the shape of an interactive task."""
    return [sys.executable, "-c", "import time\nwhile True: time.sleep(0.001)\n"]


def test_boost_takes_the_latency_critical_path_only_for_the_boosted_task(scx_proc):
    """`boost` (weight + latency-critical flag) must reach BPF's latency-critical path
    (head of its CPU, preempt), counted in nr_latcrit; unboosted tasks never take it."""
    scx = scx_proc("--policy", "deadline")
    hogs = [subprocess.Popen(spinner_cmd(30)) for _ in range(2)]  # every CPU busy: wake-ups must enqueue
    sleepers = [subprocess.Popen(sleeper_cmd()) for _ in range(2)]
    boosted = sleepers[0]

    def latcrit_during(seconds: float) -> int:
        c0 = scx.next_stats()["counters"]["nr_latcrit"]
        time.sleep(seconds)
        return scx.next_stats()["counters"]["nr_latcrit"] - c0

    try:
        time.sleep(1.0)
        unboosted = latcrit_during(1.5)
        scx.send(cmd="boost", pid=boosted.pid)
        time.sleep(0.5)
        during = latcrit_during(2.0)
        stats = scx.stats
        scx.send(cmd="reset", pid=boosted.pid)
        time.sleep(0.5)
        after_reset = latcrit_during(1.5)
    finally:
        for p in hogs + sleepers:
            p.kill()
            p.wait()
    assert stats["knobs"][str(boosted.pid)][2:] == [1000, True] and stats["last_error"] is None
    assert unboosted == 0, f"{unboosted} latency-critical hits before any boost"
    assert during >= 20, f"only {during} latency-critical hits in 2 s for a task waking every ms"
    assert after_reset == 0, f"{after_reset} latency-critical hits after the boost was reset"


# A waker that hops between the CPUs (pinning itself to each in turn) and wakes a reader
# through an eventfd (not a pipe: a pipe's wake-up is WAKE_SYNC, for which the default
# CPU selection already prefers the waker's CPU); the reader reports, for each wake-up,
# whether it ran on the waker's CPU.
WAKE_AFFINE = r"""
import os, sys
def cpu():
    t = open("/proc/thread-self/stat").read()
    return int(t[t.rindex(")") + 2:].split()[36])
efd = os.eventfd(0); ar, aw = os.pipe()
pid = os.fork()
if pid == 0:
    while True:
        v = os.eventfd_read(efd)
        if v >= 100:
            os._exit(0)
        os.write(aw, b"1" if cpu() == v - 1 else b"0")
print(pid, flush=True)
sys.stdin.readline()
same = 0
for i in range(COUNT):
    os.sched_setaffinity(0, {i % 2})
    os.eventfd_write(efd, cpu() + 1)
    same += os.read(ar, 1) == b"1"
os.eventfd_write(efd, 100)
os.waitpid(pid, 0)
print(same, COUNT, flush=True)
"""


def test_boosted_task_wakes_on_its_wakers_cpu_when_none_is_idle(scx_proc):
    """With every CPU busy, a boosted task woken from another CPU runs on the waker's CPU
    (its preemption is then local: no IPI, no wait for a busy remote CPU). Without that the
    reader stays on its previous CPU, i.e. on the waker's CPU about half of the time."""
    scx = scx_proc("--policy", "deadline")
    hogs = [subprocess.Popen(spinner_cmd(60)) for _ in range(4)]  # no idle CPU, even between decisions
    n = 200
    probe = subprocess.Popen([sys.executable, "-c", WAKE_AFFINE.replace("COUNT", str(n))],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert probe.stdout and probe.stdin
        reader = int(probe.stdout.readline())
        scx.send(cmd="boost", pid=reader)
        time.sleep(0.5)
        c0 = scx.next_stats()["counters"]["nr_latcrit"]
        out, _ = probe.communicate("go\n", timeout=120)
        latcrit = scx.next_stats()["counters"]["nr_latcrit"] - c0
    finally:
        for p in hogs + [probe]:
            p.kill()
            p.wait()
    same, total = map(int, out.split())
    print(f"boosted reader on its waker's CPU {same} of {total}, latency-critical wake-ups {latcrit}")
    assert total == n
    assert latcrit >= n // 2, f"only {latcrit} latency-critical wake-ups for {n} wake-ups"
    assert same >= 0.8 * n, f"the boosted reader ran on its waker's CPU {same} of {n} times"
