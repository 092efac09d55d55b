"""Record tests/tui/session-bpf.jsonl: a real session with the BPF tier (run as root).

Same CPU hogs as tests/fixtures/make_session.py, recorded with the BPF tier on
(run-queue latency histogram, per-task percentiles, drop counters) and the
detail tier following one hog (its full /proc sched fields), so the
screenshots show every panel with real data.

    sudo .venv/bin/python screenshots/record_session.py [OUT] [--frames N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))

from make_session import record_session  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?", default=str(ROOT / "tests" / "tui" / "session-bpf.jsonl"))
    ap.add_argument("--frames", type=int, default=8)
    args = ap.parse_args()
    size = record_session(args.out, args.frames, use_bpf=True,
                          keep_extras=("bpf",), detail=True)
    print(f"{args.out}: {size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
