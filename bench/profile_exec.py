"""How soon a live profile tunes a program that starts after it: the BPF exec hook against
polling alone (`--no-exec-hook`), in alternating rounds of one run (root).

Each round starts `schedtop profile apply FILE --watch` (poll interval as the shipped
profiles: 1 s), then starts N short programs whose name the profile matches, one every
--gap seconds, and times spawn -> nice changed in /proc (sampled every 0.5 ms).

    sudo .venv/bin/python bench/profile_exec.py --rounds 3 --n 20

A program is started at a random phase of the poll, so polling alone should take about
half the interval on average; the hook should not depend on the interval at all.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCHEDTOP = os.path.join(os.path.dirname(sys.executable), "schedtop")


def nice_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
    except (OSError, IndexError, ValueError):
        return None


def one_round(prog: Path, prof: Path, hooked: bool, n: int, gap: float, state: Path) -> list[float]:
    env = {**os.environ, "SCHEDTOP_STATE_DIR": str(state)}
    argv = [SCHEDTOP, "profile", "apply", str(prof), "--watch", "--interval", "1", "-q"]
    if not hooked:
        argv.append("--no-exec-hook")
    sess = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    time.sleep(1.5)  # started, first poll done
    took = []
    try:
        for _ in range(n):
            time.sleep(random.uniform(0, 2 * gap))  # random phase against the 1 s poll
            t0 = time.monotonic()
            child = subprocess.Popen([str(prog), "5"])
            while nice_of(child.pid) != 5 and time.monotonic() - t0 < 3:
                time.sleep(0.0005)
            took.append((time.monotonic() - t0) * 1000)
            child.kill()
            child.wait()
    finally:
        sess.terminate()
        sess.wait(timeout=30)
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=20, help="programs started per round")
    ap.add_argument("--gap", type=float, default=0.3, help="mean seconds between programs (uniform 0..2x)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("profile_exec: needs root (the exec hook is BPF)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="schedtop-bench-") as d:
        prog = Path(d) / "stpexecbench"
        prog.symlink_to("/bin/sleep")  # comm after exec: the link's name
        prof = Path(d) / "p.toml"
        prof.write_text('name = "bench"\npoll = 1\n[[rule]]\ncomm = "stpexecbench"\nnice = 5\n')
        res: dict[bool, list[float]] = {True: [], False: []}
        for r in range(args.rounds):
            for hooked in (True, False):
                got = one_round(prog, prof, hooked, args.n, args.gap, Path(d) / f"state{r}{hooked}")
                res[hooked] += got
                print(f"round {r + 1} {'exec hook' if hooked else 'poll only'}: median {statistics.median(got):.1f} ms, "
                      f"max {max(got):.1f} ms", flush=True)
    q = lambda v, p: sorted(v)[min(len(v) - 1, int(p * len(v)))]  # noqa: E731
    for hooked in (True, False):
        v = res[hooked]
        print(f"{'exec hook' if hooked else 'poll only (1 s)'}: n={len(v)} median {statistics.median(v):.1f} ms, "
              f"p90 {q(v, 0.9):.1f} ms, max {max(v):.1f} ms, untuned after 3 s: {sum(t >= 3000 for t in v)}")
    ratio = statistics.median(res[True]) / statistics.median(res[False])
    print(f"ratio exec hook / poll (median spawn -> tuned): {ratio:.3f}  load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
