"""schedtop trace vs perf sched record: what recording scheduling events costs.

One run, the same workload (`perf bench sched messaging`) three ways, interleaved and repeated:
alone, under `schedtop trace` (BPF ring buffer -> Perfetto protobuf), and under
`perf sched record` (perf ring buffers -> perf.data). For each recorder: the workload's slowdown
against the bare runs, the recorder's own CPU time (utime+stime of its process tree), the
events it captured (sched_switch + wakeups + migrations) and its file size.

    .venv/bin/python bench/trace_export.py [--groups 2] [--loops 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """utime+stime of pid and its children that were waited for (cutime/cstime)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


def workload(groups: int, loops: int) -> float:
    t0 = time.monotonic()
    subprocess.run(["perf", "bench", "sched", "messaging", "-g", str(groups), "-l", str(loops)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - t0


def under(cmd: list[str], groups: int, loops: int, ready_s: float) -> tuple[float, float, subprocess.Popen]:
    rec = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    time.sleep(ready_s)  # both recorders attach in well under this
    wall = workload(groups, loops)
    cpu_before_stop = cpu_s(rec.pid)
    rec.send_signal(signal.SIGINT)
    rec.wait(120)
    return wall, cpu_before_stop, rec


def perf_events(data: Path) -> int:
    out = subprocess.run(["perf", "script", "-i", str(data), "-F", "event"], capture_output=True, text=True,
                         timeout=600).stdout
    return sum(1 for line in out.splitlines() if re.search(r"sched:sched_(switch|wakeup|wakeup_new|migrate)", line))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, default=2)
    ap.add_argument("--loops", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/trace_export.py: needs root", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="schedtop-bench-"))
    base, st, pf = [], [], []
    st_cpu, pf_cpu, st_ev, pf_ev, st_bytes, pf_bytes = [], [], [], [], [], []
    schedtop = [sys.executable, "-m", "schedtop", "trace", "-t", "86400"]  # the longest; SIGINT ends it
    for r in range(args.rounds):
        base.append(workload(args.groups, args.loops))
        out = tmp / f"s{r}.perfetto-trace"
        wall, cpu, proc = under(schedtop + ["-o", str(out)], args.groups, args.loops, 2.0)
        st.append(wall)
        st_cpu.append(cpu)
        m = re.search(r": (\d+) events", proc.stderr.read())
        st_ev.append(int(m.group(1)) if m else 0)
        st_bytes.append(out.stat().st_size)
        data = tmp / f"p{r}.data"
        wall, cpu, proc = under(["perf", "sched", "record", "-o", str(data)], args.groups, args.loops, 2.0)
        pf.append(wall)
        pf_cpu.append(cpu)
        pf_ev.append(perf_events(data))
        pf_bytes.append(data.stat().st_size)
    med = statistics.median
    b = med(base)
    print(f"workload: perf bench sched messaging -g {args.groups} -l {args.loops}, {args.rounds} rounds, "
          f"{os.cpu_count()} CPUs, kernel {os.uname().release}")
    print(f"{'':22}{'wall s':>8}{'slowdown':>10}{'rec CPU s':>11}{'events':>10}{'MB':>8}{'B/event':>9}")
    print(f"{'alone':22}{b:8.3f}{'1.00x':>10}")
    for name, w, c, e, by in (("schedtop trace", st, st_cpu, st_ev, st_bytes),
                              ("perf sched record", pf, pf_cpu, pf_ev, pf_bytes)):
        print(f"{name:22}{med(w):8.3f}{med(w) / b:9.2f}x{med(c):11.2f}{int(med(e)):>10}"
              f"{med(by) / 1e6:8.2f}{med(by) / max(med(e), 1):9.1f}")
    print(f"ratio schedtop/perf: slowdown {med(st) / med(pf):.2f}, recorder CPU {med(st_cpu) / max(med(pf_cpu), 1e-9):.2f}, "
          f"bytes/event {(med(st_bytes) / max(med(st_ev), 1)) / (med(pf_bytes) / max(med(pf_ev), 1)):.2f}")
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
