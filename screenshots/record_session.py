"""Record tests/tui/session-bpf.jsonl: a real session with the BPF tier (run as root).

Same CPU hogs as tests/fixtures/make_session.py, recorded with the BPF tier on
(run-queue latency histogram, per-task percentiles, drop counters) and the
detail tier following one hog (its full /proc sched fields), so the
screenshots show every panel with real data.

    sudo .venv/bin/python screenshots/record_session.py [OUT] [--frames N]
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))

from make_session import HOGS, hog, trim  # noqa: E402

from schedtop.collect.live import LiveSource  # noqa: E402
from schedtop.collect.replay import Recorder  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?", default=str(ROOT / "tests" / "tui" / "session-bpf.jsonl"))
    ap.add_argument("--frames", type=int, default=8)
    args = ap.parse_args()
    procs = [mp.Process(target=hog, args=h, daemon=True) for h in HOGS]
    for p in procs:
        p.start()
    src = LiveSource(use_bpf=True)
    try:
        time.sleep(0.5)
        keep = {p.pid for p in procs if p.pid}
        src.detail_tid = procs[0].pid
        src.collect()
        with Recorder(args.out) as rec:
            rec.action({"kind": "marker", "text": f"{len(HOGS)} CPU hogs started (BPF tier)"})
            for _ in range(args.frames):
                time.sleep(1.0)
                s = src.collect()
                extras = {k: v for k, v in s.extras.items() if k in ("bpf", "sched_detail")}
                rec.snapshot(dataclasses.replace(trim(s, keep), extras=extras))
    finally:
        src.close()
        for p in procs:
            p.kill()
            p.join()
    print(f"{args.out}: {os.path.getsize(args.out)} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
