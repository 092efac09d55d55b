"""Kernel lab: boot-to-command and round trip of `schedtop lab run` vs raw `vng --exec`.

Both boot the same cached sched_ext kernel with the same flags (TCG, 2 vCPUs, 2 GiB) and
run `cat /sys/kernel/sched_ext/state` writing to a file in an --rwdir dir (the lead's
hand recipe); schedtop adds the script, overlays, env and streaming. Interleaved rounds,
medians, ratio. Also: a warm `schedtop lab fetch` (must be network-free).

    .venv/bin/python bench/lab_boot.py --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from schedtop.lab import kernel
from schedtop.lab.guest import find_vng, vng_env

ROOT = Path(__file__).resolve().parents[1]


def raw_vng(k: kernel.Kernel) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-vng-") as d:
        start, start_wall = time.monotonic(), time.time()
        cmd = f"date +%s.%N > {d}/started; cat /sys/kernel/sched_ext/state > {d}/out"
        subprocess.run([str(find_vng()), "-r", str(k.vmlinuz), "--disable-kvm", "--cpus", "2", "--memory", "2G",
                        "--rwdir", d, "--exec", cmd], stdin=subprocess.DEVNULL, capture_output=True,
                       env=vng_env(), timeout=600)
        total = time.monotonic() - start
        assert Path(d, "out").read_text().strip() == "disabled"
        # 9p creates the file on the host, so its mtime is the host's clock when the command began
        boot = Path(d, "started").stat().st_mtime - start_wall
        return boot, total


def schedtop_run() -> tuple[float, float]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "schedtop", "lab", "run", "--", "cat", "/sys/kernel/sched_ext/state"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    total = time.monotonic() - start
    assert proc.stdout.strip() == "disabled", proc.stderr
    boot = float(proc.stderr.split("command started after ")[1].split(" s")[0])
    return boot, total


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    k = kernel.require_cached()
    rows: dict[str, list[tuple[float, float]]] = {"vng --exec (raw)": [], "schedtop lab run": []}
    for _ in range(args.rounds):
        rows["vng --exec (raw)"].append(raw_vng(k))
        rows["schedtop lab run"].append(schedtop_run())
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "schedtop", "lab", "fetch"], capture_output=True, check=True,
                   env={**os.environ, "SCHEDTOP_DEBIAN_MIRROR": "http://127.0.0.1:9/debian"})
    warm = time.monotonic() - start
    print(f"kernel {k.version}, {args.rounds} interleaved rounds, medians; load average {os.getloadavg()[0]:.1f}")
    print(f"| {'':18} | boot-to-command s | round trip s |")
    print(f"|{'-' * 20}|------------------:|-------------:|")
    med = {}
    for name, vals in rows.items():
        med[name] = (statistics.median(v[0] for v in vals), statistics.median(v[1] for v in vals))
        print(f"| {name:18} | {med[name][0]:17.1f} | {med[name][1]:12.1f} |")
    a, b = med["schedtop lab run"], med["vng --exec (raw)"]
    print(f"ratio schedtop/raw: boot-to-command {a[0] / b[0]:.2f}, round trip {a[1] / b[1]:.2f}")
    print(f"warm `schedtop lab fetch` (mirror unreachable): {warm:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
