"""schedtop's scheduler against EEVDF, side by side in ONE guest boot (ratios only: TCG).

    schedtop lab run -- .venv/bin/python bench/scx_guest_bench.py

1. `perf bench sched messaging` under EEVDF, then under schedtop (deadline). Goal <= 1.3x.
   The loop's own CPU% and RSS during that run are printed beside rustland's ~7% / 80 MB.
2. Interactive probe: cyclictest as SCHED_OTHER under `stress-ng --cpu 2`, EEVDF untuned
   versus schedtop with the probe's thread boosted (weight + latency-critical flag).
   Goal: p99 <= 0.5x EEVDF's.
   --floor: the same cyclictest on an idle guest (no stress-ng): the timer-delivery floor.
   --wake: bench/wakeprobe.c, a futex wake-up probe (schbench-like, no timer in the measured
   path), under the same stress-ng. --trace: each wake-up split into its timer part
   (softexpires -> sched_waking) and scheduling part (sched_waking -> switched in) by
   bench/probe_trace.py, with the same tracefs recorder on both sides.

    schedtop lab run -- .venv/bin/python bench/scx_guest_bench.py --probe-only --floor --wake --trace

Compiled anchors (`make anchors`, bench/anchor_build.py): the kernel's own example schedulers
from tools/sched_ext of the guest's release, scx_simple (vtime, all BPF) and scx_userland
(vruntime in a user-space C loop). When built, the messaging part runs them in the same
rounds: EEVDF, schedtop and each anchor, in an order rotated every round. --anchors none
leaves them out.
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import anchor_build  # noqa: E402
import probe_trace  # noqa: E402  (bench/ is not a package)

SCX = Path("/sys/kernel/sched_ext")


def state() -> str:
    return (SCX / "state").read_text().strip()


class Scx:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "schedtop", "scx", "--json", "--control", "stdin", "--stats-interval", "0.5",
             "--timeout-ms", "10000", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.stats: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()
        t0 = time.monotonic()
        while state() != "enabled":
            if self.proc.poll() is not None or time.monotonic() - t0 > 60:
                raise SystemExit("schedtop scx did not load")
            time.sleep(0.05)

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            obj = json.loads(line)
            if "counters" in obj:
                self.stats.append(obj)

    def send(self, **cmd: object) -> None:
        assert self.proc.stdin
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        self.send(cmd="stop")
        self.proc.wait(timeout=60)
        while state() != "disabled":
            time.sleep(0.05)


# Anchors benched by default: scx_qmap builds but its load fails (verifier, see anchor_build.py).
ANCHORS = ("scx_simple", "scx_userland")


def ops_name() -> str:
    try:
        return (SCX / "root" / "ops").read_text().strip()
    except OSError:
        return ""


def cpu_ticks(pid: int) -> int:
    """utime + stime of the whole process (all threads), in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


_live_anchors: list[subprocess.Popen] = []


@atexit.register
def _kill_anchors() -> None:
    # No compiled scheduler outlives the bench, whatever raised in between.
    for proc in _live_anchors:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class Anchor:
    """One of the kernel's example schedulers, run as it ships (no options)."""

    def __init__(self, name: str, exe: Path) -> None:
        self.name = name
        self.ops = name.removeprefix("scx_")  # SCX_OPS_DEFINE(..., .name = "simple")
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([str(exe)], stdout=self.log, stderr=subprocess.STDOUT)
        _live_anchors.append(self.proc)
        t0 = time.monotonic()
        while not (state() == "enabled" and ops_name() == self.ops):
            if self.proc.poll() is not None or time.monotonic() - t0 > 60:
                self.stop()
                raise SystemExit(f"{name} did not load: {self.output()[-400:]}")
            time.sleep(0.05)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        """SIGINT (its own clean exit: link destroyed, UEI report), SIGKILL if that hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        t0 = time.monotonic()
        while state() != "disabled" and time.monotonic() - t0 < 30:
            time.sleep(0.05)
        assert state() == "disabled", f"{self.name} exited but sched_ext is still {state()}"


def messaging(runs: int, groups: int, loops: int) -> list[float]:
    out = []
    for _ in range(runs):
        text = subprocess.run(["perf", "bench", "sched", "messaging", "-g", str(groups), "-l", str(loops)],
                              capture_output=True, text=True, check=True).stdout
        out.append(float(re.search(r"Total time: ([0-9.]+)", text).group(1)))
    return out


@dataclass(frozen=True)
class ProbeRun:
    p50: float
    p90: float
    p99: float
    max: float
    samples: int
    split: dict | None = None  # probe_trace.summary() when traced


def hist_stats(text: str) -> tuple[float, float, float, float, int]:
    """(p50, p90, p99, max, samples) in µs of a cyclictest-style histogram ("us count" rows)."""
    hist: list[tuple[int, int]] = []
    overflow = 0
    for line in text.splitlines():
        m = re.match(r"^(\d+)\s+(\d+)\s*$", line)
        if m:
            hist.append((int(m.group(1)), int(m.group(2))))
        m = re.match(r"# Histogram Overflows:\s+(\d+)", line)
        if m:
            overflow = int(m.group(1))
    total = sum(c for _, c in hist) + overflow
    pct: dict[int, float] = {}
    cum = 0
    for us, c in hist:
        cum += c
        for q in (50, 90, 99):
            if q not in pct and cum >= q / 100 * total:
                pct[q] = float(us)
    mx = re.search(r"# Max Latencies:\s+(\d+)", text)
    return (pct.get(50, math.inf), pct.get(90, math.inf), pct.get(99, math.inf),
            float(mx.group(1)) if mx else math.nan, total)


def start_stress(seconds: float) -> subprocess.Popen:
    stress = subprocess.Popen(["stress-ng", "--cpu", "2", "--timeout", str(int(seconds + 5))],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    return stress


def policy_of(pid: int, tid: int) -> int:
    stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[38])


def cyclictest_run(seconds: float, boost: Scx | None, stress: bool = True, trace: bool = False) -> ProbeRun:
    """A SCHED_OTHER cyclictest (1 ms), beside stress-ng --cpu 2 unless stress is False."""
    load = start_stress(seconds) if stress else None
    loops = int(seconds * 1000)
    # Debian 12's cyclictest makes its measuring thread SCHED_FIFO even with -p 0 or
    # --policy=other ("defaulting realtime priority to 2"); we put it back to SCHED_OTHER
    # right after start, so the fair class / sched_ext schedules it (checked below).
    ct = subprocess.Popen(["cyclictest", "-q", "-m", "-p", "0", "-i", "1000", "-l", str(loops),
                           "-h", "100000"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    t0 = time.monotonic()  # the measuring thread appears only after cyclictest's set-up (mlockall)
    while len(os.listdir(f"/proc/{ct.pid}/task")) < 2 and time.monotonic() - t0 < 30:
        time.sleep(0.01)
    threads = [int(t) for t in os.listdir(f"/proc/{ct.pid}/task") if int(t) != ct.pid]
    assert len(threads) == 1, f"cyclictest started {len(threads)} measuring threads, want 1"
    tid = threads[0]
    # The thread makes itself SCHED_FIFO once it runs: wait for that, or it undoes
    # our SCHED_OTHER and the probe measures an RT thread (seen: policy 1 after the switch).
    while os.sched_getscheduler(tid) == os.SCHED_OTHER and time.monotonic() - t0 < 30:
        time.sleep(0.001)
    os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
    time.sleep(0.05)
    assert policy_of(ct.pid, tid) == 0, "cyclictest thread is not SCHED_OTHER"
    if boost is not None:
        boost.send(cmd="boost", pid=tid)  # the measuring thread
    if trace:
        probe_trace.start(tid)
    text, _ = ct.communicate(timeout=seconds * 20 + 60)
    split = probe_trace.analyse(probe_trace.stop(), tid) if trace else None
    if load is not None:
        load.kill()
        load.wait()
    return ProbeRun(*hist_stats(text), split=split)


def build_wakeprobe() -> Path:
    out = Path(tempfile.mkdtemp(prefix="wakeprobe-")) / "wakeprobe"
    subprocess.run(["clang", "-O2", "-pthread", str(Path(__file__).with_name("wakeprobe.c")), "-o", str(out)],
                   check=True)
    return out


def wakeprobe_run(exe: Path, seconds: float, boost: Scx | None, trace: bool = False) -> ProbeRun:
    """bench/wakeprobe.c (futex wake-up, no timer in the measured path) beside stress-ng --cpu 2."""
    load = start_stress(seconds)
    wp = subprocess.Popen([str(exe), str(seconds), "1000"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True)
    assert wp.stdout and wp.stdin
    tid = int(wp.stdout.readline().split()[1])
    if boost is not None:
        boost.send(cmd="boost", pid=tid)
        time.sleep(0.3)  # the knob is in the BPF map before the first wake-up
    if trace:
        probe_trace.start(tid)  # its hrtimers: none; the ticks: for the stall check
    text, _ = wp.communicate("go\n", timeout=seconds * 20 + 60)
    split = probe_trace.analyse(probe_trace.stop(), tid) if trace else None
    load.kill()
    load.wait()
    return ProbeRun(*hist_stats(text), split=split)


def guest_facts() -> None:
    """What sets the floor: preemption model, timer hardware, high-resolution mode."""
    def read(path: str) -> str:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            return f"? ({exc.strerror})"
    tl = read("/proc/timer_list")
    hres = sorted(set(re.findall(r"\.hres_active\s*:\s*(\d+)", tl)))
    print(f"guest: preempt [{read('/sys/kernel/debug/sched/preempt')}]  "
          f"clockevent {read('/sys/devices/system/clockevents/clockevent0/current_device')}  "
          f"clocksource {read('/sys/devices/system/clocksource/clocksource0/current_clocksource')}  "
          f"hres_active {','.join(hres)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--groups", type=int, default=2)
    ap.add_argument("--loops", type=int, default=50)
    ap.add_argument("--probe-seconds", type=float, default=5)
    ap.add_argument("--probe-only", action="store_true", help="only the interactive probe")
    ap.add_argument("--messaging-only", action="store_true", help="only the messaging rounds")
    ap.add_argument("--floor", action="store_true", help="also cyclictest on an idle guest")
    ap.add_argument("--wake", action="store_true", help="also the futex wake-up probe (bench/wakeprobe.c)")
    ap.add_argument("--trace", action="store_true",
                    help="split each wake-up into timer and scheduling parts (tracefs, both sides)")
    ap.add_argument("--per-event", action="store_true",
                    help="also schedtop --per-event (every task decided in Python at every enqueue, no plans)")
    ap.add_argument("--anchors", default="auto",
                    help="compiled anchors in the messaging rounds: auto (those `make anchors` built), "
                         "none, or a comma list (scx_simple,scx_userland)")
    args = ap.parse_args()
    assert state() == "disabled", "another scheduler is loaded"
    if not args.probe_only:
        run_messaging(args)
    if not args.messaging_only:
        probe(args)


def anchors_to_run(spec: str) -> dict[str, Path]:
    if spec == "none":
        return {}
    have = anchor_build.built()
    if spec == "auto":
        if not have:
            print("no compiled anchor built (run `make anchors` on the host): EEVDF and schedtop only")
        return {n: have[n] for n in ANCHORS if n in have}
    missing = [n for n in spec.split(",") if n not in have]
    if missing:
        raise SystemExit(f"anchor(s) not built: {', '.join(missing)} (run `make anchors` on the host)")
    return {n: have[n] for n in spec.split(",")}


def run_messaging(args: argparse.Namespace) -> None:
    # Rounds of EEVDF, schedtop and each anchor, the order rotated every round: TCG speed
    # drifts with the host's load, so no side always runs first or last.
    anchors = anchors_to_run(args.anchors)
    ours = ["schedtop", "schedtop-per-event"] if args.per_event else ["schedtop"]
    sides = ["EEVDF", *ours, *anchors]
    times: dict[str, list[float]] = {n: [] for n in sides}
    cpu: dict[str, list[float]] = {n: [] for n in sides[1:]}
    during: list[dict] = []

    def run_under(side: str) -> None:
        if side == "EEVDF":
            times[side] += messaging(1, args.groups, args.loops)
            return
        if side in ours:
            sched = Scx("--policy", "deadline", *(["--per-event"] if side == "schedtop-per-event" else []))
            pid, want = sched.proc.pid, "schedtop"
        else:
            sched = Anchor(side, anchors[side])
            pid, want = sched.proc.pid, sched.ops
        try:
            time.sleep(1.0)
            n0 = len(sched.stats) if side in ours else 0
            c0, t0 = cpu_ticks(pid), time.monotonic()
            times[side] += messaging(1, args.groups, args.loops)
            cpu[side].append(100.0 * (cpu_ticks(pid) - c0) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - t0))
            if state() != "enabled" or ops_name() != want:  # ejected mid-run: that time is not its own
                raise SystemExit(f"{side} was not loaded at the end of its run (state {state()}, ops {ops_name()!r})")
            if side == "schedtop":
                time.sleep(1.2)
                during.extend(sched.stats[n0:] or sched.stats[-1:])
        finally:
            sched.stop()

    for r in range(args.runs):
        k = r % len(sides)
        for side in sides[k:] + sides[:k]:
            run_under(side)
        print(f"  (round {r + 1}: {', '.join(f'{n} {times[n][-1]:.3f}' for n in sides)} s; "
              f"guest loadavg {Path('/proc/loadavg').read_text().split()[0]})", flush=True)
    med = {n: statistics.median(v) for n, v in times.items()}
    e, s = med["EEVDF"], med["schedtop"]

    def per_round(a: str, b: str) -> str:
        return ", ".join(f"{x / y:.2f}" for x, y in zip(times[a], times[b]))

    print(f"perf bench sched messaging -g {args.groups} -l {args.loops}, {args.runs} rounds, medians:")
    for n in sides:
        extra = f"   process CPU {statistics.median(cpu[n]):.1f}% (max {max(cpu[n]):.1f}%)" if n in cpu else ""
        print(f"  {n:<13} {med[n]:.3f} s   runs {times[n]}{extra}")
    print(f"  schedtop/EEVDF {s / e:.2f}x (goal <= 1.3x; per round {per_round('schedtop', 'EEVDF')})")
    for a in anchors:
        print(f"  schedtop/{a} {s / med[a]:.2f}x (per round {per_round('schedtop', a)})   "
              f"{a}/EEVDF {med[a] / e:.2f}x (per round {per_round(a, 'EEVDF')})")
        if args.per_event:
            print(f"  schedtop-per-event/{a} {med['schedtop-per-event'] / med[a]:.2f}x "
                  f"(per round {per_round('schedtop-per-event', a)})")
    if args.per_event:
        print(f"  schedtop/schedtop-per-event {s / med['schedtop-per-event']:.2f}x "
              f"(per round {per_round('schedtop', 'schedtop-per-event')})")
    cpu_max = max(x["cpu_pct"] for x in during)
    rss = max(x["rss_kb"] for x in during) / 1024
    pf = during[-1].get("page_faults_after_warmup")
    print(f"  loop under that load: CPU max {cpu_max:.1f}%  RSS {rss:.0f} MB  page faults after warm-up {pf}"
          f"   (rustland: ~7% CPU, 80 MB)")
    last = during[-1]
    cost = [x["loop_us_per_decision"] for x in during if x.get("loop_us_per_decision") is not None]
    batch = [x["decisions_per_wakeup"] for x in during if x.get("decisions_per_wakeup") is not None]
    if cost:
        print(f"  loop thread CPU per decision (TCG): median {statistics.median(cost):.0f} us "
              f"(range {min(cost):.0f}-{max(cost):.0f}); decisions per wake-up median "
              f"{statistics.median(batch) if batch else 0:.2f}; paths (last run, cumulative) {last.get('paths')}")
    print(f"  enqueue->dispatch p50/p99 {last.get('dispatch_p50_us')}/{last.get('dispatch_p99_us')} us; "
          f"counters {json.dumps({k: v for k, v in last['counters'].items() if k != 'loop_last_run_ns'})}")


def fmt(runs: list[ProbeRun]) -> str:
    return (f"p99 {[r.p99 for r in runs]} p50 {[r.p50 for r in runs]} p90 {[r.p90 for r in runs]} "
            f"max {max(r.max for r in runs):.0f} samples {sum(r.samples for r in runs)}")


def show(title: str, base: list[ProbeRun], ours: list[ProbeRun]) -> None:
    b99, o99 = statistics.median(r.p99 for r in base), statistics.median(r.p99 for r in ours)
    print(f"{title}, {len(base)} pairs:")
    print(f"  EEVDF untuned      median p99 {b99:.0f} us  ({fmt(base)})")
    print(f"  schedtop boosted   median p99 {o99:.0f} us  ({fmt(ours)})")
    print(f"  ratio {o99 / max(b99, 1):.2f}x (goal <= 0.5x)")
    for name, runs in (("EEVDF", base), ("schedtop", ours)):
        for r in runs:
            if r.split:
                print(f"    {name} split: {json.dumps(r.split)}")
    for part, what in (("sched", "scheduling part (sched_waking -> switched in)"),
                       ("timer", "timer part (softexpires -> sched_waking)")):
        if all(r.split and part in r.split for r in base + ours):
            bs = statistics.median(r.split[part]["p99"] for r in base)
            os_ = statistics.median(r.split[part]["p99"] for r in ours)
            print(f"  {what}: median p99 EEVDF {bs} us, schedtop {os_} us, ratio {os_ / max(bs, 1):.2f}x")
    if all(r.split and "timer" in r.split for r in base + ours):
        # A scheduler with a zero scheduling part still shows the timer part: its p99 (a
        # property of the guest, measured on both sides) bounds the reachable ratio.
        floor = statistics.median(r.split["timer"]["p99"] for r in base + ours)
        print(f"  floor: timer-part p99 {floor:.0f} us on either side = {floor / max(b99, 1):.2f}x EEVDF's p99 "
              f"(the best ratio any scheduler could reach in this boot)")
    if all(r.split and "tick_late" in r.split for r in base + ours):
        print("  guest ticks delivered >= 1 ms late (vCPU not running): EEVDF "
              f"{[r.split['tick_late']['over_1ms'] for r in base]}, schedtop "
              f"{[r.split['tick_late']['over_1ms'] for r in ours]} of ~{base[0].split['tick_late']['n']} per run")


def probe(args: argparse.Namespace) -> None:
    """--runs alternating pairs (EEVDF, schedtop boosted) of each probe; medians of the p99s."""
    guest_facts()
    kinds = ["stress"] + (["idle"] if args.floor else []) + (["wake"] if args.wake else [])
    exe = build_wakeprobe() if args.wake else None
    res: dict[str, tuple[list[ProbeRun], list[ProbeRun]]] = {k: ([], []) for k in kinds}
    latcrit = 0

    def one(kind: str, scx: Scx | None) -> ProbeRun:
        if kind == "wake":
            assert exe
            return wakeprobe_run(exe, args.probe_seconds, scx, args.trace)
        return cyclictest_run(args.probe_seconds, scx, stress=kind == "stress", trace=args.trace)

    for _ in range(args.runs):
        for kind in kinds:
            res[kind][0].append(one(kind, None))
        scx = Scx("--policy", "deadline")
        time.sleep(1.0)
        lc0 = scx.stats[-1]["counters"]["nr_latcrit"]
        for kind in kinds:
            res[kind][1].append(one(kind, scx))
        time.sleep(0.6)  # one more stats line
        latcrit += scx.stats[-1]["counters"]["nr_latcrit"] - lc0
        scx.stop()
        print(f"  (pair done, guest loadavg {Path('/proc/loadavg').read_text().split()[0]})", flush=True)
    titles = {"stress": "cyclictest SCHED_OTHER 1 ms under stress-ng --cpu 2",
              "idle": "cyclictest SCHED_OTHER 1 ms, idle guest (the floor)",
              "wake": "wakeprobe (futex wake-up, 1 ms) under stress-ng --cpu 2"}
    for kind in kinds:
        show(titles[kind], *res[kind])
    print(f"latency-critical path taken by the boosted threads (nr_latcrit): {latcrit}")

if __name__ == "__main__":
    main()
