"""Guest stability across sched_ext load/unload cycles: QEMU's multi-threaded TCG against the
single-threaded TCG the lab uses, one guest boot each, in one run.

Each guest loads and unloads the minimal scheduler (bpf/minimal.bpf.c) --cycles times beside
`stress-ng --cpu 2` and prints a line per cycle; a guest that panics stops early (the lab
prints the kernel's oops). Reports cycles survived and seconds per cycle for both modes.

    .venv/bin/python bench/lab_stability.py --cycles 150
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def in_guest(cycles: int) -> int:
    from schedtop.lab.minimal import loaded, wait_state

    hogs = subprocess.Popen(["stress-ng", "--cpu", "2", "--timeout", "3000", "--quiet"])
    t0 = time.monotonic()
    try:
        for i in range(cycles):
            with loaded():
                time.sleep(0.2)
            if wait_state("disabled", 10) != "disabled":
                print(f"cycle {i}: not disabled", flush=True)
                return 1
            print(f"cycle {i + 1} {time.monotonic() - t0:.1f}", flush=True)
    finally:
        hogs.kill()
    print("DONE", flush=True)
    return 0


def boot(mode: str, cycles: int) -> tuple[int, float, bool, str]:
    schedtop = os.path.join(os.path.dirname(sys.executable), "schedtop")
    env = {**os.environ, "SCHEDTOP_LAB_TCG": mode}
    r = subprocess.run([schedtop, "lab", "run", "--timeout", str(60 + cycles * 6), "--",
                        sys.executable, str(HERE), "--guest", "--cycles", str(cycles)],
                       capture_output=True, text=True, env=env)
    done = re.findall(r"^cycle (\d+) ([\d.]+)$", r.stdout, re.M)
    n, secs = (int(done[-1][0]), float(done[-1][1])) if done else (0, 0.0)
    oops = next((ln.strip() for ln in (r.stdout + r.stderr).splitlines() if "Oops" in ln or "BUG:" in ln), "")
    return n, secs / max(n, 1), "DONE" in r.stdout, oops


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=150)
    ap.add_argument("--guest", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.guest:
        return in_guest(args.cycles)
    res = {}
    for mode in ("multi", "single"):
        n, per, ok, oops = boot(mode, args.cycles)
        res[mode] = (n, per)
        print(f"TCG thread={mode}: {n}/{args.cycles} cycles{'' if ok else ' (guest died)'}, "
              f"{per:.2f} s per cycle{'; ' + oops if oops else ''}", flush=True)
    m, s = res["multi"], res["single"]
    print(f"ratio single/multi: cycles survived {s[0] / max(m[0], 1):.2f}, time per cycle "
          f"{s[1] / m[1] if m[1] else float('nan'):.2f}  load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
