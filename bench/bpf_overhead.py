"""Overhead of the tracing tier: `perf bench sched messaging` with nothing attached, with
schedtop's BPF tier attached, and with libbpf-tools' runqlat attached, in one run.

Configurations are interleaved in rounds (none, schedtop, runqlat, none, ...) so that drift
in the machine's other load hits all of them alike; each reports the median of its runs.
schedtop runs as its own process, like runqlat: it loads the tier, then every second reads
what the TUI reads (per-CPU stats, the task iterator, the event ring), as the TUI would.

    sudo .venv/bin/python bench/bpf_overhead.py [--rounds 5] [--runs 3] [--groups 10 --loops 100]
    sudo .venv/bin/python bench/bpf_overhead.py --readers   # ring-buffer consumers only

--readers compares the two ways schedtop.bpf.libbpf reads a BPF ring buffer, on records
written by a SEC("syscall") program (tests/host/bpf/libbpf_test.bpf.c) in batches of 1000:
libbpf's ring_buffer__consume with a Python callback per record, and RingReader, which
reads the mmap'd ring in Python without callbacks.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCHEDTOP_AGENT = """
import sys, time
from schedtop.collect.bpf import open_tier
tier = open_tier(sample_rate=int(sys.argv[1]))
print("attached", tier.mode, flush=True)
try:
    while True:
        time.sleep(1.0)
        tier.cpu_stats(); tier.nr_running(); tier.events()
except KeyboardInterrupt:
    pass
finally:
    c = tier.counters()
    print(f"events={c['events']} dropped={c['dropped']}", flush=True)
    tier.close()
"""


def find_runqlat() -> str | None:
    for cand in ("/usr/sbin/runqlat", "/usr/lib/bpf/runqlat", "/usr/libexec/libbpf-tools/runqlat"):
        if os.access(cand, os.X_OK):
            return cand
    return shutil.which("runqlat")


def perf_messaging(groups: int, loops: int) -> float:
    out = subprocess.run(
        ["perf", "bench", "sched", "messaging", "-g", str(groups), "-l", str(loops)],
        capture_output=True, text=True, check=True,
    ).stdout
    m = re.search(r"Total time:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"perf output not understood: {out!r}")
    return float(m.group(1))


class Attached:
    """A tracer process, started and waited for until it says it is attached."""

    def __init__(self, name: str, argv: list[str], ready: str) -> None:
        self.name = name
        t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     cwd=ROOT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        while line and ready not in line:
            line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{name} did not attach: {self.proc.communicate()[0]}")
        self.startup_s = time.monotonic() - t0

    def stop(self) -> str:
        self.proc.send_signal(2)
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out


# Program names as bpftool shows them (BPF_OBJ_NAME_LEN is 16: names are cut at 15).
PROGRAMS = {
    "schedtop": ("handle_switch", "handle_wakeup", "handle_wakeup_n", "handle_migrate", "handle_waking"),
    "runqlat": ("sched_switch", "sched_wakeup", "sched_wakeup_new"),
}
STATS = Path("/proc/sys/kernel/bpf_stats_enabled")


def prog_stats(names: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """name -> (run_time_ns, run_cnt) from the kernel's BPF program statistics."""
    out = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True).stdout
    got: dict[str, tuple[int, int]] = {}
    for p in json.loads(out or "[]"):
        if p.get("name") in names and p.get("type") in ("tracing", "raw_tracepoint"):
            t, c = got.get(p["name"], (0, 0))
            got[p["name"]] = (t + int(p.get("run_time_ns", 0)), c + int(p.get("run_cnt", 0)))
    return got


def bcc_note() -> str:
    build = Path(f"/lib/modules/{os.uname().release}/build")
    bcc = shutil.which("runqlat-bpfcc")
    if bcc is None:
        return f"bcc runqlat: not run (python3-bpfcc not installed; it also needs {build}, absent on this kernel)"
    if not build.exists():
        return f"bcc runqlat: cannot start here: it compiles against kernel headers at {build}, which this kernel lacks"
    return "bcc runqlat: available (not part of this run)"


def readers(batches: int = 50, per_batch: int = 1000) -> None:
    import struct
    import tempfile

    sys.path.insert(0, str(ROOT / "tests" / "host"))
    from bpf_build import compile_bpf

    from schedtop.bpf.libbpf import BpfObject, RingBuffer, RingReader

    rec = struct.Struct("<QII")
    with tempfile.TemporaryDirectory() as tmp:
        path = compile_bpf(ROOT / "tests" / "host" / "bpf" / "libbpf_test.bpf.c", Path(tmp) / "lt.bpf.o")
        with BpfObject.open(path) as obj:
            obj.program("on_switch").autoload = False
            obj.program("on_switch_raw").autoload = False
            obj.load()
            emit, ctx = obj.program("emit"), struct.pack("<I", per_batch)
            res: dict[str, list[float]] = {"callback": [], "reader": []}
            got: list[tuple] = []
            rb = RingBuffer(obj.map("rb"), lambda b: got.append(rec.unpack(b)))
            rr = RingReader(obj.map("rb"))
            for _ in range(batches):  # interleaved
                emit.test_run(ctx=ctx)
                t = time.perf_counter()
                rb.consume()
                res["callback"].append((time.perf_counter() - t) / per_batch)
                emit.test_run(ctx=ctx)
                t = time.perf_counter()
                n = len(rr.read_fixed(rec))
                res["reader"].append((time.perf_counter() - t) / per_batch)
                assert n == per_batch
            rb.free()
            rr.close()
    cb, rd = statistics.median(res["callback"]), statistics.median(res["reader"])
    print(f"ring buffer consumers, {batches} batches of {per_batch} 16-byte records, median per record:")
    print(f"  ring_buffer__consume + Python callback  {cb * 1e9:6.0f} ns")
    print(f"  RingReader.read_fixed (mmap, no callback) {rd * 1e9:6.0f} ns   ({cb / rd:.1f}x faster)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3, help="perf runs per configuration per round")
    ap.add_argument("--groups", type=int, default=10)
    ap.add_argument("--loops", type=int, default=100)
    ap.add_argument("--sample-rate", type=int, default=128, help="schedtop's event sampling (1 in N)")
    ap.add_argument("--readers", action="store_true", help="only compare the ring-buffer consumers")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bpf_overhead: needs root (it loads BPF)", file=sys.stderr)
        return 1
    if args.readers:
        readers()
        return 0
    runqlat = find_runqlat()
    configs: dict[str, list[str] | None] = {
        "none": None,
        "schedtop": [sys.executable, "-c", SCHEDTOP_AGENT, str(args.sample_rate)],
    }
    ready = {"schedtop": "attached"}
    if runqlat:
        configs["runqlat"] = [runqlat, "1"]  # prints a histogram every second, like a monitor
        ready["runqlat"] = "Tracing"
    times: dict[str, list[float]] = {k: [] for k in configs}
    cost: dict[str, dict[str, list[int]]] = {k: {} for k in configs if k != "none"}
    stats_before = STATS.read_text().strip() if STATS.exists() else None
    startup: dict[str, list[float]] = {k: [] for k in configs if k != "none"}
    perf_messaging(args.groups, args.loops)  # warm caches and page tables
    if stats_before is not None:
        STATS.write_text("1")  # per-program run time and count (restored below)
    try:
        run_rounds(args, configs, ready, times, startup, cost)
    finally:
        if stats_before is not None:
            STATS.write_text(stats_before)
    report(args, times, cost)
    print(bcc_note())
    return 0


def run_rounds(args, configs, ready, times, startup, cost) -> None:
    for _ in range(args.rounds):
        for name, argv in configs.items():
            tracer = Attached(name, argv, ready[name]) if argv else None
            if tracer:
                startup[name].append(tracer.startup_s)
                time.sleep(0.3)
            try:
                for _ in range(args.runs):
                    times[name].append(perf_messaging(args.groups, args.loops))
            finally:
                if tracer and name in PROGRAMS:
                    for prog, (t, c) in prog_stats(PROGRAMS[name]).items():
                        acc = cost[name].setdefault(prog, [0, 0])
                        acc[0] += t
                        acc[1] += c
                if tracer:
                    tail = tracer.stop().strip().splitlines()
                    if name == "schedtop" and tail:
                        print(f"  schedtop agent: {tail[-1]}")


def report(args, times, cost) -> None:
    base = statistics.median(times["none"])
    print(f"perf bench sched messaging -g {args.groups} -l {args.loops}: "
          f"{args.rounds} rounds x {args.runs} runs per configuration, medians")
    print(f"{'configuration':<14} {'median s':>9} {'min s':>7} {'max s':>7} {'vs none':>8}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<14} {med:>9.3f} {min(ts):>7.3f} {max(ts):>7.3f} {100 * (med / base - 1):>+7.1f}%")
    if "runqlat" in times:
        s, r = statistics.median(times["schedtop"]), statistics.median(times["runqlat"])
        print(f"schedtop / runqlat slowdown ratio: {(s - base) / (r - base) if r != base else float('nan'):.2f} "
              f"(time ratio {s / r:.3f})")
        lo = {k: min(v) for k, v in times.items()}
        print(f"best runs: none {lo['none']:.3f}  schedtop {lo['schedtop']:.3f} ({100 * (lo['schedtop'] / lo['none'] - 1):+.1f}%)"
              f"  runqlat {lo['runqlat']:.3f} ({100 * (lo['runqlat'] / lo['none'] - 1):+.1f}%)")
    print("in-kernel cost per event (kernel.bpf_stats_enabled: run_time_ns / run_cnt):")
    for name, progs in cost.items():
        tot_t = sum(t for t, _ in progs.values())
        tot_c = sum(c for _, c in progs.values())
        per = ", ".join(f"{p} {t / c:.0f} ns x {c}" for p, (t, c) in sorted(progs.items()) if c)
        if tot_c:
            print(f"  {name:<9} {tot_t / tot_c:6.0f} ns/event over {tot_c} events, {tot_t / 1e6:.0f} ms in BPF  ({per})")


if __name__ == "__main__":
    sys.exit(main())
