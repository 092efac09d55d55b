"""schedtop vs htop: CPU time per refresh, time to first frame, peak RSS, with N sleeping threads.

Both run at the same time, each in its own tmux session (120x40), at a 1 s
refresh (`htop -d 10` is 10 tenths), so they see the same machine, the same
task count and the same background load. CPU time is the utime+stime of each
one's whole process tree (/proc/PID/stat) over the measured window, divided by
the refreshes in it. Time to first frame: from spawning the tmux session to
the first capture-pane that shows the task list. Peak RSS: VmHWM.

A third contender, "collector", is the data side alone: a LiveSource.collect()
loop at 1 s in the same kind of tmux session (what the TUI's worker does).

    .venv/bin/python bench/monitor.py [--threads 1000] [--duration 60] [--bpf]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
SLEEPERS = """
import sys, threading, time
ev = threading.Event()
for _ in range(int(sys.argv[1])):
    threading.Thread(target=ev.wait, daemon=True).start()
print("ready", flush=True)
time.sleep(3600)
"""


def tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc/*/stat ppid)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                data = Path(f"/proc/{d}/stat").read_bytes()
            except OSError:
                continue
            ppid = int(data[data.rfind(b")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            f = Path(f"/proc/{p}/stat").read_bytes()
        except OSError:
            continue
        rest = f[f.rfind(b")") + 2 :].split()
        total += int(rest[11]) + int(rest[12])
    return total / CLK_TCK


def peak_rss_kb(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=False).stdout


class Contender:
    def __init__(self, name: str, cmd: str, ready: str, env: dict[str, str]) -> None:
        self.name, self.cmd, self.ready, self.env = name, cmd, ready, env
        self.session = f"bench-{name}-{os.getpid()}"
        self.first_frame_s: float | None = None

    def start(self) -> None:
        # bytecode caching on, as in an installed schedtop (this VM's shell sets
        # PYTHONDONTWRITEBYTECODE, which would make every start compile schedtop's modules)
        env = "-u PYTHONDONTWRITEBYTECODE " + " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        self.t0 = time.monotonic()
        tmux("new-session", "-d", "-s", self.session, "-x", "120", "-y", "40", f"env {env} {self.cmd}")
        self.pane_pid = int(tmux("display", "-p", "-t", self.session, "#{pane_pid}").strip())

    def poll_first_frame(self, timeout: float = 60) -> None:
        while time.monotonic() - self.t0 < timeout:
            if self.ready in tmux("capture-pane", "-p", "-t", self.session):
                self.first_frame_s = time.monotonic() - self.t0
                return
            time.sleep(0.01)

    def stop(self) -> None:
        tmux("kill-session", "-t", self.session)


def bench_collect(n_refresh: int, bpf: bool) -> tuple[float, int]:
    sys.path.insert(0, str(ROOT))
    from schedtop.collect.live import LiveSource

    src = LiveSource(use_bpf=bpf)
    src.collect()
    times = []
    for _ in range(n_refresh):
        t = time.process_time()
        snap = src.collect()
        times.append(time.process_time() - t)
    src.close()
    times.sort()
    return times[len(times) // 2], len(snap.tasks)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--bpf", action="store_true", help="let schedtop load its BPF tier (default --no-bpf)")
    args = ap.parse_args()

    sleepers = subprocess.Popen([sys.executable, "-c", SLEEPERS, str(args.threads)],
                                stdout=subprocess.PIPE, text=True)
    assert sleepers.stdout is not None and sleepers.stdout.readline().strip() == "ready"
    home = tempfile.mkdtemp(prefix="schedtop-bench-")  # default htoprc, default schedtop config
    env = {"HOME": home, "TERM": "xterm-256color", "XDG_CONFIG_HOME": f"{home}/.config"}
    schedtop = f"{ROOT}/.venv/bin/schedtop -d 1" + ("" if args.bpf else " --no-bpf")
    # The data side alone, headless: LiveSource.collect() once a second, printing a line.
    collector = (f"{sys.executable} -c " + shlex.quote(
        f"import sys, time; sys.path.insert(0, {str(ROOT)!r})\n"
        "from schedtop.collect.live import LiveSource\n"
        f"src = LiveSource(use_bpf={args.bpf})\n"
        "while True:\n"
        "    s = src.collect(); print('frame', len(s.tasks), flush=True); time.sleep(1.0)\n"))
    contenders = [
        Contender("schedtop", schedtop, "COMMAND", env),
        Contender("htop", "htop -d 10", "Tasks:", env),
        Contender("collector", collector, "frame", env),
    ]
    try:
        threads = []
        for c in contenders:
            c.start()
            t = threading.Thread(target=c.poll_first_frame)
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        time.sleep(2.0)  # past start-up work; measure the steady state
        pids = {c.name: tree(c.pane_pid) for c in contenders}
        cpu0 = {c.name: cpu_seconds(pids[c.name]) for c in contenders}
        nr_tasks = sum(len(os.listdir(f"/proc/{p}/task")) for p in os.listdir("/proc") if p.isdigit()
                       and os.path.isdir(f"/proc/{p}/task"))
        t0 = time.monotonic()
        time.sleep(args.duration)
        elapsed = time.monotonic() - t0
        cpu1 = {c.name: cpu_seconds(pids[c.name]) for c in contenders}
        rss = {c.name: peak_rss_kb(pids[c.name]) for c in contenders}
    finally:
        for c in contenders:
            c.stop()
    collect_s, collect_tasks = bench_collect(20, args.bpf)  # in this process, after the window
    sleepers.kill()
    sleepers.wait()

    refreshes = elapsed / 1.0
    print(f"tasks on the machine: ~{nr_tasks} ({args.threads} sleeping threads added); "
          f"window {elapsed:.1f} s; refresh 1 s; ncpu {os.cpu_count()}; "
          f"loadavg at end {os.getloadavg()[0]:.1f} (other load makes more threads change, "
          f"which costs schedtop, not htop)")
    print(f"{'':10} {'CPU ms/refresh':>15} {'CPU %':>7} {'first frame s':>14} {'peak RSS MB':>12}")
    per = {}
    for c in contenders:
        cpu = cpu1[c.name] - cpu0[c.name]
        per[c.name] = cpu / refreshes * 1000
        ff = f"{c.first_frame_s:.2f}" if c.first_frame_s is not None else "never"
        print(f"{c.name:10} {per[c.name]:15.1f} {cpu / elapsed * 100:7.1f} {ff:>14} {rss[c.name] / 1024:12.1f}")
    ratio = per["schedtop"] / per["htop"] if per["htop"] > 0 else float("inf")
    print(f"ratio schedtop/htop CPU per refresh: {ratio:.2f}  (goal <= 0.9)")
    ff = {c.name: c.first_frame_s for c in contenders}
    if ff["schedtop"] and ff["htop"]:
        print(f"ratio schedtop/htop first frame: {ff['schedtop'] / ff['htop']:.2f}  (goal <= 1.5)")
    print(f"ratio collector/htop (data side only): {per['collector'] / per['htop']:.2f}")
    print(f"LiveSource.collect() alone: {collect_s * 1000:.1f} ms CPU (median of 20) for {collect_tasks} task rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
