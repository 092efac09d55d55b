"""Time to first frame of `schedtop --replay` on a large recording: lazy index vs eager decode.

A recording of N frames x T threads is built (tests/fixtures/big_recording.py: the session's
frames widened to T threads, written by the Recorder, repeated with shifted ts). Then, each in
its own fresh process so peak RSS is its own: schedtop's load_replay (over 8 MB: index the
lines, decode a frame when first shown) and the eager path (the same file through
load_replay(eager_bytes=inf), i.e. what every load did before: decode and check every frame).
Each child loads, then decodes the first and the last frame, as the TUI and `--once` do.

    .venv/bin/python bench/replay_load.py [--frames 300] [--tasks 1000] [--gz] [--no-eager]

--no-eager skips the eager child: at 3600 frames (an hour at 1 s) it needs minutes and GBs.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))


def child(mode: str, path: str) -> None:
    from schedtop.collect.replay import load_replay

    t0 = time.perf_counter()
    r = load_replay(path, eager_bytes=1 << 62) if mode == "eager" else load_replay(path)
    t_load = time.perf_counter() - t0
    first = r.snapshots[0]
    t_first = time.perf_counter() - t0
    last = r.snapshots[-1]
    t_last = time.perf_counter() - t0
    assert len(first.tasks) == len(last.tasks)
    print(json.dumps({"load_s": t_load, "first_s": t_first, "last_s": t_last, "frames": len(r.snapshots),
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_child(mode: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(path)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--gz", action="store_true", help="gzip the recording (as --record x.jsonl.gz does)")
    ap.add_argument("--no-eager", action="store_true", help="schedtop only (the eager path would take minutes)")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return 0
    from big_recording import write_big_recording

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "big.jsonl"
        write_big_recording(path, args.frames, args.tasks)
        text_mb = path.stat().st_size / 1e6
        if args.gz:
            subprocess.run(["gzip", "-1", str(path)], check=True)
            path = path.with_name("big.jsonl.gz")
        print(f"recording: {args.frames} frames x {args.tasks} threads, {text_mb:.0f} MB of text"
              f"{f', {path.stat().st_size / 1e6:.0f} MB gzip' if args.gz else ''}")
        lazy = run_child("lazy", path)
        eager = None if args.no_eager else run_child("eager", path)
    print(f"{'':8} {'load s':>8} {'first s':>8} {'last s':>8} {'peak RSS MB':>12}")
    for name, r in (("schedtop", lazy), ("eager", eager)):
        if r is not None:
            print(f"{name:8} {r['load_s']:8.3f} {r['first_s']:8.3f} {r['last_s']:8.3f} {r['rss_mb']:12.0f}")
    if eager is None:
        return 0
    print(f"time to first frame: eager/schedtop = {eager['first_s'] / lazy['first_s']:.0f}x; "
          f"peak RSS: eager/schedtop = {eager['rss_mb'] / lazy['rss_mb']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
