"""Profile glob matching: the compiled matcher (one regex per selector) against fnmatch per
glob (what ProfileRunner.match did before), side by side, in one run.

    .venv/bin/python bench/profile_match.py [--globs 1000] [--threads 4000]

Prints both times for judging --threads names against --globs patterns, and the ratio."""

from __future__ import annotations

import argparse
import fnmatch
import time

from schedtop.steer.profiles import _any


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--globs", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=4000)
    args = ap.parse_args()
    globs = tuple(f"g{i}*" for i in range(args.globs))
    names = [f"{'g' if i % 2 else 'h'}{i % args.globs}x" for i in range(args.threads)]
    t0 = time.perf_counter()
    compiled = sum(_any(globs, n) for n in names)  # first call compiles: counted
    t1 = time.perf_counter()
    per_glob = sum(any(fnmatch.fnmatchcase(n, g) for g in globs) for n in names)
    t2 = time.perf_counter()
    assert compiled == per_glob
    print(f"{args.threads} threads x {args.globs} globs: compiled {1000 * (t1 - t0):.1f} ms, "
          f"fnmatch per glob {1000 * (t2 - t1):.1f} ms, ratio {(t1 - t0) / (t2 - t1):.4f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
