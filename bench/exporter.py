"""schedtop exporter vs prometheus-node-exporter: CPU time per scrape at N sleeping threads.

All three exporters run at once on loopback ports and are scraped in turn, once per round, so
they see the same machine and the same load: schedtop's exporter (the BPF tier as root, every
scrape a fresh collection: --interval 0.1), node_exporter with its default collectors, and
node_exporter with only the collectors that cover what schedtop exports (cpu, stat, schedstat,
loadavg, pressure). CPU time is each process's utime+stime (/proc/PID/stat, all its threads)
over the measured rounds, divided by the scrapes; so it includes whatever each does between
scrapes. The BPF programs' own cost runs in the traced tasks' context and is not in these
numbers (BENCHMARKS.md, "BPF tier: overhead").

    .venv/bin/python bench/exporter.py [--threads 1000] [--scrapes 30] [--every 1.0] [--no-bpf]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from monitor import CLK_TCK, SLEEPERS  # noqa: E402 (the same 1000 sleeping threads as the monitor bench)
SCHED_COLLECTORS = ("cpu", "stat", "schedstat", "loadavg", "pressure")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    data = Path(f"/proc/{pid}/stat").read_bytes()
    rest = data[data.rfind(b")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def scrape(port: int) -> tuple[float, int, int]:
    """(wall s, bytes, samples) of one GET /metrics."""
    t0 = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as r:
        body = r.read()
    wall = time.monotonic() - t0
    return wall, len(body), sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


def wait_up(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            scrape(port)
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"exporter on {port} did not come up (exit {proc.poll()})") from None
            time.sleep(0.3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1000)
    ap.add_argument("--scrapes", type=int, default=30)
    ap.add_argument("--every", type=float, default=1.0, help="seconds between rounds")
    ap.add_argument("--no-bpf", action="store_true", help="schedtop on the procfs tier")
    args = ap.parse_args()

    sleepers = subprocess.Popen([sys.executable, "-c", SLEEPERS, str(args.threads)], stdout=subprocess.PIPE,
                                text=True)
    assert sleepers.stdout is not None and sleepers.stdout.readline().strip() == "ready"
    ports = {name: free_port() for name in ("schedtop", "node_exporter", "node_exporter (sched)")}
    cmds = {
        "schedtop": [str(ROOT / ".venv/bin/schedtop"), "exporter", "--listen", f"127.0.0.1:{ports['schedtop']}",
                     "--interval", "0.1", *(["--no-bpf"] if args.no_bpf else [])],
        "node_exporter": ["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{ports['node_exporter']}"],
        "node_exporter (sched)": ["prometheus-node-exporter",
                                  f"--web.listen-address=127.0.0.1:{ports['node_exporter (sched)']}",
                                  "--collector.disable-defaults",
                                  *(f"--collector.{c}" for c in SCHED_COLLECTORS)],
    }
    procs = {n: subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for n, c in cmds.items()}
    try:
        for n, p in procs.items():
            wait_up(ports[n], p)
        for _ in range(3):  # warm: imports, the first collection, caches
            for n in procs:
                scrape(ports[n])
        nr_tasks = sum(len(os.listdir(f"/proc/{p}/task")) for p in os.listdir("/proc")
                       if p.isdigit() and os.path.isdir(f"/proc/{p}/task"))
        load0 = os.getloadavg()[0]
        cpu0 = {n: cpu_seconds(p.pid) for n, p in procs.items()}
        walls: dict[str, list[float]] = {n: [] for n in procs}
        size: dict[str, tuple[int, int]] = {}
        t0 = time.monotonic()
        for i in range(args.scrapes):
            for n in procs:
                w, b, s = scrape(ports[n])
                walls[n].append(w)
                size[n] = (b, s)
            time.sleep(max(0.0, t0 + (i + 1) * args.every - time.monotonic()))
        cpu1 = {n: cpu_seconds(p.pid) for n, p in procs.items()}
        elapsed = time.monotonic() - t0
    finally:
        for p in procs.values():
            p.terminate()
            p.wait(10)
        sleepers.kill()
        sleepers.wait()

    print(f"tasks on the machine: ~{nr_tasks} ({args.threads} sleeping threads added); {args.scrapes} scrapes each, "
          f"one round per {args.every:g} s ({elapsed:.1f} s); ncpu {os.cpu_count()}; loadavg {load0:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at end; schedtop tier: {'procfs' if args.no_bpf else 'bpf'}")
    print(f"{'':24} {'CPU ms/scrape':>14} {'median wall ms':>15} {'samples':>8} {'KB':>7}")
    per = {}
    for n in procs:
        per[n] = (cpu1[n] - cpu0[n]) / args.scrapes * 1000
        med = sorted(walls[n])[len(walls[n]) // 2] * 1000
        print(f"{n:24} {per[n]:14.1f} {med:15.1f} {size[n][1]:8d} {size[n][0] / 1024:7.1f}")
    for peer in ("node_exporter", "node_exporter (sched)"):
        ratio = per["schedtop"] / per[peer] if per[peer] > 0 else float("inf")
        print(f"ratio schedtop/{peer} CPU per scrape: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
