"""Start-up of the BPF tier: time to the first TUI frame that carries BPF data, next to
libbpf-tools' runqlat start-up, in one run.

schedtop: the real TUI in a tmux session (150x45), from spawning the session to the first
capture-pane that shows the header's "source bpf" (so the tier loaded, attached and fed a
snapshot), after one warm-up start with bytecode caching on (as an installed schedtop has). The same with --no-bpf gives the TUI's own share. In-process: open_tier() alone
(open, load, attach) and the first enrich().
runqlat: from spawn to its "Tracing run queue latency" line (attached), and to its first
histogram with a 1 s interval (its first output).

    sudo .venv/bin/python bench/bpf_startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCHEDTOP = ROOT / ".venv" / "bin" / "schedtop"
sys.path.insert(0, str(ROOT))


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=False).stdout


def tui_first_frame(extra: list[str], marker: str, timeout: float = 30.0) -> float:
    session = f"bpfstart{os.getpid()}"
    # bytecode caching on, as in an installed schedtop (this VM's shell sets
    # PYTHONDONTWRITEBYTECODE, which would make every start compile every module)
    cmd = " ".join(["env", "-u", "PYTHONDONTWRITEBYTECODE", str(SCHEDTOP), *extra])
    t0 = time.monotonic()
    tmux("new-session", "-d", "-s", session, "-x", "150", "-y", "45", cmd)
    try:
        while time.monotonic() - t0 < timeout:
            if marker in tmux("capture-pane", "-p", "-t", session):
                return time.monotonic() - t0
            time.sleep(0.005)
        raise RuntimeError(f"no {marker!r} on screen within {timeout} s: {tmux('capture-pane', '-p', '-t', session)}")
    finally:
        tmux("send-keys", "-t", session, "q")
        time.sleep(0.3)
        tmux("kill-session", "-t", session)


def runqlat_startup(path: str) -> tuple[float, float]:
    t0 = time.monotonic()
    # line-buffered: its "Tracing" line must arrive when printed, not with the histogram
    p = subprocess.Popen(["stdbuf", "-oL", path, "1", "1"], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    attached = first = None
    for line in p.stdout:
        if attached is None and "Tracing" in line:
            attached = time.monotonic() - t0
        if "usecs" in line:
            first = time.monotonic() - t0
            break
    p.kill()
    p.wait()
    if attached is None or first is None:
        raise RuntimeError("runqlat printed nothing")
    return attached, first


def in_process() -> tuple[float, float]:
    from schedtop.collect.bpf import open_tier
    from schedtop.collect.live import LiveSource

    src = LiveSource(use_bpf=False)
    snap = src.collect()
    t0 = time.monotonic()
    tier = open_tier()
    t1 = time.monotonic()
    tier.enrich(snap)
    t2 = time.monotonic()
    tier.close()
    src.close()
    return t1 - t0, t2 - t1


def med(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:7.0f} ms (min {min(xs) * 1000:.0f}, max {max(xs) * 1000:.0f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bpf_startup: needs root (it loads BPF)", file=sys.stderr)
        return 1
    sys.path.insert(0, str(ROOT / "bench"))
    from bpf_overhead import find_runqlat

    runqlat = find_runqlat()
    tui_first_frame(["-d", "1"], "source bpf")  # warm-up: writes the bytecode caches
    res: dict[str, list[float]] = {k: [] for k in ("tui_bpf", "tui_nobpf", "open_tier", "enrich", "rq_attach", "rq_first")}
    for _ in range(args.repeat):  # interleaved, so background load hits all alike
        res["tui_bpf"].append(tui_first_frame(["-d", "1"], "source bpf"))
        res["tui_nobpf"].append(tui_first_frame(["-d", "1", "--no-bpf"], "source procfs"))
        a, b = in_process()
        res["open_tier"].append(a)
        res["enrich"].append(b)
        if runqlat:
            a, b = runqlat_startup(runqlat)
            res["rq_attach"].append(a)
            res["rq_first"].append(b)
    print(f"start-up, median of {args.repeat} (interleaved)")
    print(f"  schedtop TUI, first frame with BPF data    {med(res['tui_bpf'])}   goal <= 500 ms")
    print(f"  schedtop TUI --no-bpf, first frame         {med(res['tui_nobpf'])}")
    print(f"  open_tier(): open+load+attach (in-process) {med(res['open_tier'])}")
    print(f"  first enrich() after attach (in-process)   {med(res['enrich'])}")
    if runqlat:
        print(f"  runqlat: spawn -> attached ('Tracing')     {med(res['rq_attach'])}")
        print(f"  runqlat 1: spawn -> first histogram        {med(res['rq_first'])}")
        ratio = statistics.median(res["tui_bpf"]) / statistics.median(res["rq_attach"])
        print(f"  schedtop first BPF frame / runqlat attached: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
