"""Policy-loop capacity on the host, no kernel; and thread vs child process for the loop.

1. Capacity: the loop's real hot path (schedtop.scx.loop.Core.handle: decode the
   ring record, knobs, policy.decide, pack the decision) over a synthetic queue
   of records, batch by batch as the ring reader hands them over. Goal: >= 100k
   decisions/s on one core.

2. Thread or process: records arrive through a pipe, timestamped by a feeder
   process every 1 ms; the loop decides each and notes enqueue->decision
   latency. "thread" runs the loop in the same process as a busy Python thread
   standing in for the TUI rendering at full rate (it holds the GIL); "process"
   runs that busy work in another process. Same machine, same run.

    .venv/bin/python bench/scx_loop_capacity.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import threading
import time

from schedtop.scx.knobs import Knobs
from schedtop.scx.loop import Core
from schedtop.scx.policies import SHIPPED, load_policy
from schedtop.scx.protocol import QUEUED


def synthetic_records(n: int, pids: int = 300) -> list[tuple]:
    """Unpacked ring records as RingReader.read_fixed returns them: a mix of hogs and sleepers."""
    out = []
    for i in range(n):
        pid = 1000 + i % pids
        wake = 1 if pid % 3 == 0 else 0
        raw = QUEUED.pack(pid, i % 2, 2, 100, wake, (i % 7) * 1_000_000, 50_000 + (i % 5) * 1_000_000,
                          i * 1000, i, i * 10_000, b"worker-%d\0" % (pid % 100))
        out.append(QUEUED.unpack(raw))
    return out


def capacity(policy_name: str, seconds: float, batch: int = 64) -> float:
    recs = synthetic_records(batch * 64)
    core = Core(load_policy(policy_name, nr_cpus=2), Knobs(2))
    core.knobs.boost(1003)  # one knob, so the knob path is on
    out: list[bytes] = []
    done = 0
    t0 = time.perf_counter()
    now = 0
    while time.perf_counter() - t0 < seconds:
        for i in range(0, len(recs), batch):
            now += 1000
            core.handle(recs[i : i + batch], now, out)
            out.clear()
        done += len(recs)
    return done / (time.perf_counter() - t0)


def _busy(stop: threading.Event | None, seconds: float) -> None:
    """The TUI's stand-in: pure-Python work without pause (holds the GIL)."""
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end and not (stop is not None and stop.is_set()):
        for i in range(2000):
            x += i * i
        _ = [str(i) for i in range(200)]


def _feeder(fd: int, seconds: float) -> None:
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        now = time.monotonic_ns()
        os.write(fd, QUEUED.pack(100 + i % 50, 0, 2, 100, 1, 0, 10_000, 0, i, now, b"t"))
        i += 1
        time.sleep(0.001)
    os.close(fd)


def _busy_proc(seconds: float) -> None:
    _busy(None, seconds)


def loop_latency(mode: str, seconds: float) -> list[float]:
    r, w = os.pipe()
    feeder = mp.Process(target=_feeder, args=(w, seconds))
    feeder.start()
    os.close(w)
    stop = threading.Event()
    if mode == "thread":
        busy = threading.Thread(target=_busy, args=(stop, seconds + 1))
        busy.start()
    else:
        busy = mp.Process(target=_busy_proc, args=(seconds + 1,))
        busy.start()
    core = Core(load_policy("deadline", nr_cpus=2), Knobs(2))
    out: list[bytes] = []
    lat: list[float] = []
    buf = b""
    size = QUEUED.size
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        buf += chunk
        n = len(buf) // size
        recs = [QUEUED.unpack_from(buf, k * size) for k in range(n)]
        buf = buf[n * size :]
        now = time.monotonic_ns()
        core.handle(recs, now, out)
        out.clear()
        lat.extend((now - rec[9]) / 1000 for rec in recs)
    stop.set()
    busy.join()
    feeder.join()
    os.close(r)
    return lat


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    print("policy-loop capacity (decode + knobs + decide + pack, one core):")
    for name in SHIPPED:
        rate = capacity(name, args.seconds)
        print(f"  {name:<12} {rate:>10,.0f} decisions/s   {1e6 / rate:5.2f} µs each   goal >= 100,000: "
              f"{'ok' if rate >= 100_000 else 'MISSED'}")
    print("enqueue -> decision latency with a GIL-busy 'TUI' beside the loop (1 record/ms):")
    res = {}
    for mode in ("thread", "process"):
        lat = loop_latency(mode, args.seconds)
        res[mode] = lat
        print(f"  {mode:<8} n={len(lat):5d}  p50 {pct(lat, 0.5):8.0f} µs  p99 {pct(lat, 0.99):8.0f} µs  "
              f"mean {statistics.fmean(lat):8.0f} µs")
    print(f"  thread/process p99 ratio: {pct(res['thread'], 0.99) / max(pct(res['process'], 0.99), 1e-9):.1f}x")


if __name__ == "__main__":
    main()
