"""Real workloads for the BPF-tier tests: pinned CPU hogs and a pipe ping-pong sleeper."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Iterator

HOG = "import os,sys; os.sched_setaffinity(0,{int(sys.argv[1])}); sys.stdout.write('r\\n'); sys.stdout.flush()\nwhile True: pass"

# Blocks on a pipe read, echoes each byte back: every byte is one wakeup of this process.
SLEEPER = """
import os, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
rfd, wfd, work = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
os.write(wfd, b"r")  # ready: from now on it waits in read()
n = 0
while True:
    b = os.read(rfd, 1)
    if not b or b == b"q":
        break
    n += 1
    t = time.perf_counter()
    while time.perf_counter() - t < work:  # CPU work per wakeup: spends the lag it woke with
        pass
    os.write(wfd, b)
os.write(wfd, b"q")
print(n)
"""


READ_SYSCALL = {"x86_64": 0, "aarch64": 63}  # read(2)'s number, as /proc/PID/syscall shows it


def busy_cpu() -> int:
    """The CPU the tests load: the last one (the test process itself runs elsewhere)."""
    return max(os.sched_getaffinity(0))


def other_cpu() -> int:
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[0] if len(cpus) > 1 else cpus[-1]


@contextmanager
def hogs(n: int, cpu: int) -> Iterator[list[subprocess.Popen]]:
    procs = [subprocess.Popen([sys.executable, "-c", HOG, str(cpu)], stdout=subprocess.PIPE) for _ in range(n)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline() == b"r\n"
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


class Sleeper:
    """A child pinned to `cpu` that wakes once per ping; the parent paces the pings."""

    def __init__(self, cpu: int, work_s: float = 0.0) -> None:
        self.to_r, self.to_w = os.pipe()
        self.back_r, self.back_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SLEEPER, str(cpu), str(self.to_r), str(self.back_w), str(work_s)],
            pass_fds=(self.to_r, self.back_w), stdout=subprocess.PIPE,
        )
        self.child_rfd = self.to_r  # the same number in the child (pass_fds)
        os.close(self.to_r)
        os.close(self.back_w)
        self.pid = self.proc.pid
        assert os.read(self.back_r, 1) == b"r"

    def wait_blocked(self, timeout: float = 30.0) -> None:
        """Until the child sits in its read(), switched out: a fixed sleep was not enough under
        load. Reading /proc/PID/syscall waits for the task to be off its CPU (wait_task_inactive),
        so the switch that blocked it has been traced by then (a running child shows "running").
        Its state in /proc/PID/stat is not enough: a child preempted between setting S and its
        switch shows S, and the byte then finds it still queued (seen under load: 149 blocks
        for 150 wakes)."""
        want = f"{READ_SYSCALL[os.uname().machine]} {self.child_rfd:#x} "
        deadline = time.monotonic() + timeout
        while True:
            with open(f"/proc/{self.pid}/syscall") as f:
                now = f.read()
            if now.startswith(want):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"sleeper {self.pid} not blocked in its read after {timeout:.0f} s: {now!r}")
            time.sleep(0.0005)

    def ping(self, count: int, period_s: float, every_one_wakes: bool = True) -> int:
        """count round trips, one every period_s; returns how many the child answered.

        every_one_wakes: before each byte, wait until the child is back in its read (else that
        byte wakes nobody: under load the child can still be on its way there). The latency
        test turns it off: it compares medians, and with every byte a wake-up its 4-hog samples
        split about half and half between short wake-ups and long preemption waits, so the
        median flipped between ~3 us and ~2 ms from run to run."""
        done = 0
        for _ in range(count):
            time.sleep(period_s)
            if every_one_wakes:
                self.wait_blocked()
            os.write(self.to_w, b"x")
            if os.read(self.back_r, 1) == b"x":
                done += 1
        return done

    def stop(self) -> int:
        """Ends the child; returns its own count of wakes."""
        os.write(self.to_w, b"q")
        os.read(self.back_r, 1)
        out, _ = self.proc.communicate(timeout=10)
        os.close(self.to_w)
        os.close(self.back_r)
        return int(out)
