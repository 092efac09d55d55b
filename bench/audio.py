#!/usr/bin/env python3
"""Audio benchmark: does retuning through schedtop rescue a latency-critical task on a loaded box?

Load: stress-ng --cpu 8 on 2 cores (4 hogs per CPU), running for the whole benchmark.
Probes (one after the other in each phase, so they never queue behind each other):
  - cyclictest (rt-tests) as SCHED_OTHER: 1 thread, 1 ms interval, -h histogram; -v gives every
    sample, so the warm-up before the tuning lands is discarded.
  - an audio-callback probe (this file, --probe): wakes every 5 ms on an absolute timer, computes
    for 1 ms of CPU time, and counts deadline misses (finished after the next period started).
    Its thread is named data-loop.0, like a PipeWire client's real-time thread.
Phases, one after the other under the same load:
  untuned         both probes as started (SCHED_OTHER, nice 0)
  chrt FIFO 88    peer: util-linux `chrt -a -f -p 88` on both
  schedtop audio  `schedtop profile apply audio --watch` (the shipped profile: FIFO 88)
  renice -10      peer: util-linux `renice -n -10` on every thread
  schedtop boost  `schedtop set --name ... --threads --nice -10 --slice 1ms` (fair class only)
  schedtop boost+group  the same plus `--group`: the probe's session autogroup gets nice -10 too
Sessions (--sessions): "shared" (default, the first runs) puts the hogs and the probes in the
bench's own session, i.e. one autogroup; "own" starts the hogs and each probe in a session of
its own (setsid), as on a desktop where the audio app and a build run from different sessions.
With autogroup on, only in "own" can a group nice rank the probe above the hogs.
Reported: p50, p99, p99.9 of wake-up latency and missed periods (not max: hypervisor jitter
makes max meaningless here), and each tuned p99 as a ratio of the untuned p99 in the same run.

  sudo .venv/bin/python bench/audio.py [--duration 15] [--json out.json]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCHEDTOP = str(Path(sys.executable).parent / "schedtop")
PERIOD_NS = 5_000_000
WORK_NS = 1_000_000

# --- the probe (runs in its own process) -------------------------------------------------------


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def probe(seconds: float, out: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(15, b"data-loop.0", 0, 0, 0)
    # A bench started as a background job inherits SIGINT ignored, and Python then installs no
    # handler: the parent's SIGINT would not end the run.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    gc.disable()  # a GC pause is not the scheduler's fault
    now = time.monotonic_ns
    cpu = time.thread_time_ns
    samples = []  # (t since start ns, wake latency ns, finish - period start ns)
    t0 = now()
    nxt = t0 + PERIOD_NS
    end = t0 + int(seconds * 1e9)
    ts = Timespec()
    try:
        _probe_loop(libc, ts, now, cpu, samples, t0, nxt, end)
    except KeyboardInterrupt:  # the parent's SIGINT ends the run
        pass
    Path(out).write_text(json.dumps(samples))


def _probe_loop(libc, ts, now, cpu, samples, t0, nxt, end) -> None:
    CLOCK_MONOTONIC, TIMER_ABSTIME = 1, 1
    while nxt < end:
        ts.tv_sec, ts.tv_nsec = divmod(nxt, 1_000_000_000)
        libc.clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, ctypes.byref(ts), None)
        woke = now()
        c0 = cpu()
        x = 0
        while cpu() - c0 < WORK_NS:  # 1 ms of CPU, however long the scheduler makes it take
            x += 1
        done = now()
        samples.append((nxt - t0, woke - nxt, done - nxt))
        nxt += PERIOD_NS
        while nxt < done:  # overran a whole period: those callbacks never ran
            samples.append((nxt - t0, None, None))
            nxt += PERIOD_NS


# --- statistics ----------------------------------------------------------------------------


def pct(sorted_vals: list[float], p: float) -> float:
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, int(round(p / 100 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def summarize(lat_us: list[float], missed: int) -> dict:
    s = sorted(lat_us)
    return {"n": len(s) + missed, "p50_us": pct(s, 50), "p99_us": pct(s, 99), "p999_us": pct(s, 99.9),
            "missed": missed, "missed_pct": 100 * missed / max(1, len(s) + missed)}


def _samples(text: str) -> list[int]:
    """cyclictest -v lines are 'thread: cycle: latency_us'."""
    out = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) == 3 and parts[0].strip().isdigit() and parts[2].strip().isdigit():
            out.append(int(parts[2]))
    return out


def cyclictest_stats(text: str, skip_samples: int) -> dict:
    """A latency over the 1 ms interval means the wake-up came after the next one was due:
    a missed period."""
    lat = _samples(text)[int(skip_samples):]
    ok = [v for v in lat if v <= 1000]
    st = summarize(lat, 0)
    st["missed"] = len(lat) - len(ok)
    st["missed_pct"] = 100 * st["missed"] / max(1, len(lat))
    return st


def probe_stats(path: str, skip_s: float) -> dict:
    samples = [s for s in json.loads(Path(path).read_text()) if s[0] >= skip_s * 1e9]
    ran = [s for s in samples if s[1] is not None]
    skipped = len(samples) - len(ran)
    late = sum(1 for s in ran if s[2] > PERIOD_NS)  # finished after the next period began
    st = summarize([s[1] / 1000 for s in ran], skipped + late)
    st["skipped"] = skipped
    st["finish_p99_us"] = pct(sorted(s[2] / 1000 for s in ran), 99)
    return st


# --- phases --------------------------------------------------------------------------------


def threads_of(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def wait_threads(pid: int, n: int, timeout: float = 5.0) -> list[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        t = threads_of(pid)
        if len(t) >= n:
            return t
        time.sleep(0.005)
    return threads_of(pid)


def run(cmd: list[str], env=None) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        print(f"  ! {' '.join(cmd)} -> {r.returncode}: {r.stderr.strip()}", file=sys.stderr)
    return r


def phase(name: str, tune, seconds: float, warmup: float, env: dict, workdir: Path, own: bool = False) -> dict:
    """Run cyclictest, then the probe, each tuned the same way. Not together: two tasks at the
    same FIFO priority (or nice) would queue behind each other and measure each other.
    Each runs until `warmup` after its tuning landed plus `seconds`, then gets SIGINT; only the
    samples after tuning + warm-up count (a loaded box can take seconds to start schedtop)."""
    stem = name.replace(" ", "_")
    cyc_out = workdir / f"cyc-{stem}.txt"
    probe_out = workdir / f"probe-{stem}.json"
    background = tune("before", None) if tune else None
    skip: list[float] = []
    try:
        with open(cyc_out, "w") as f:
            # No -p/--policy: cyclictest's default is SCHED_OTHER ("--policy=other -p 0" gives FIFO 2 in 2.4).
            # stdbuf -oL: each sample reaches the file at once, so the warm-up is cut by count.
            cyc = subprocess.Popen(["stdbuf", "-oL", "cyclictest", "-t1", "-i1000", "-h", "20000", "-v", "-q"],
                                   stdout=f, stderr=subprocess.DEVNULL, start_new_session=own)
        t0 = time.monotonic()
        # Its measuring thread sets its own policy when it starts: tune only once it is sleeping
        # in its loop (on a loaded box a new thread can wait long before it first runs).
        wait_sleeping(cyc.pid, wait_threads(cyc.pid, 2))
        assert all(_policy(cyc.pid, t) == 0 for t in threads_of(cyc.pid)), "cyclictest must start as SCHED_OTHER"
        skip.append(_measure(cyc, tune, t0, warmup, seconds, cyc_out))

        prb = subprocess.Popen([sys.executable, __file__, "--probe", "3600", str(probe_out)], start_new_session=own)
        t0 = time.monotonic()
        wait_comm(prb.pid, "data-loop.0")
        skip.append(_measure(prb, tune, t0, warmup, seconds))
    finally:
        if background is not None:
            background.send_signal(signal.SIGINT)
            background.wait(timeout=60)
    return {"phase": name, "skipped": [round(x, 2) for x in skip],
            "cyclictest": cyclictest_stats(cyc_out.read_text(), skip[0]),
            "probe": probe_stats(str(probe_out), skip[1])}


def _measure(proc: subprocess.Popen, tune, t0: float, warmup: float, seconds: float,
             lines: Path | None = None) -> float:
    """Tune, let it settle, measure `seconds`, stop with SIGINT. Returns what to discard: seconds
    since start, or (with `lines`) the number of samples cyclictest had printed by then: under
    load it loses cycles, so its cycle numbers run behind the clock."""
    if tune:
        tune("after", proc.pid)
    skip = time.monotonic() - t0 + warmup
    time.sleep(warmup)
    if lines is not None:
        skip = len(_samples(lines.read_text()))
    held = [(_policy(proc.pid, t), _nice(proc.pid, t)) for t in threads_of(proc.pid)]
    try:
        group = Path(f"/proc/{proc.pid}/autogroup").read_text().strip() or "root group"
    except OSError:
        group = "?"
    print(f"    {'cyclictest' if 'cyclictest' in proc.args else 'probe'}: "
          f"(policy, nice) per thread while measured: {sorted(set(held))}; {group}", flush=True)
    time.sleep(seconds)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    return skip


def wait_sleeping(pid: int, tids: list[int], switches: int = 3, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if all(_vcs(pid, t) >= switches for t in tids if t != pid):
            return
        time.sleep(0.01)


def _vcs(pid: int, tid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def wait_comm(pid: int, comm: str, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == comm:
                return
        except OSError:
            return
        time.sleep(0.005)


def tuners(env: dict):
    def chrt_fifo(when, pid):
        if when == "after":
            run(["chrt", "-a", "-f", "-p", "88", str(pid)])

    def schedtop_audio(when, pid):
        if when == "before":  # the shipped profile, live: it picks each probe up on a later poll
            # At the profile's own poll interval (1 s), as a user would run it.
            return subprocess.Popen([SCHEDTOP, "profile", "apply", "audio", "--watch", "-q"], env=env)
        end = time.monotonic() + 10  # wait until the profile has reached every thread
        while time.monotonic() < end:
            if all(_policy(pid, t) == 1 for t in threads_of(pid)):
                break
            time.sleep(0.01)
        return None

    def renice(when, pid):
        if when == "after":
            run(["renice", "-n", "-10", "-p", *map(str, threads_of(pid))])

    def schedtop_boost(when, pid):
        if when == "after":
            run([SCHEDTOP, "set", str(pid), "--threads", "--nice", "-10", "--slice", "1ms", "-q"], env=env)

    def schedtop_boost_group(when, pid):
        if when == "after":  # the TUI's `b` key does the same (group on by default)
            run([SCHEDTOP, "set", str(pid), "--threads", "--nice", "-10", "--slice", "1ms", "--group", "-q"],
                env=env)

    return [("untuned", None), ("chrt FIFO 88", chrt_fifo), ("schedtop audio", schedtop_audio),
            ("renice -10", renice), ("schedtop boost", schedtop_boost),
            ("schedtop boost+group", schedtop_boost_group)]


def _nice(pid: int, tid: int) -> int:
    try:
        data = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        return int(data[data.rindex(")") + 2:].split()[16])
    except (OSError, ValueError, IndexError):
        return 99


def _policy(pid: int, tid: int) -> int:
    try:
        data = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        return int(data[data.rindex(")") + 2:].split()[38])
    except (OSError, ValueError, IndexError):
        return -1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=15.0, help="measured seconds per phase (10-30)")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds discarded while the tuning lands")
    ap.add_argument("--hogs", type=int, default=8, help="stress-ng --cpu N (default 8: 4 per CPU on 2 cores)")
    ap.add_argument("--sessions", choices=("shared", "own"), default="shared",
                    help="shared: hogs and probes in the bench's session; own: each in a session of its own")
    ap.add_argument("--only", help="comma-separated phase names to run (untuned always runs)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--probe", nargs=2, metavar=("SECONDS", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.probe:
        probe(float(a.probe[0]), a.probe[1])
        return 0
    if os.geteuid() != 0:
        print("bench/audio.py: needs root (FIFO 88, nice -10)", file=sys.stderr)
        return 2
    for tool in ("stress-ng", "cyclictest", "chrt", "renice"):
        if shutil.which(tool) is None:
            print(f"bench/audio.py: {tool} not found (Debian: stress-ng, rt-tests, util-linux)", file=sys.stderr)
            return 2
    workdir = Path(tempfile.mkdtemp(prefix="schedtop-audio-"))
    env = {**os.environ, "SCHEDTOP_STATE_DIR": str(workdir / "state")}  # the bench's own journal
    ncpu = os.cpu_count()
    autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled")
    ag = autogroup.read_text().strip() if autogroup.exists() else "n/a"
    print(f"load: stress-ng --cpu {a.hogs} on {ncpu} CPUs; {a.duration:g}s measured per phase "
          f"after {a.warmup:g}s warm-up; kernel {os.uname().release}; autogroup {ag}; "
          f"loadavg before {os.getloadavg()[0]:.1f}; sessions {a.sessions}")
    # Same session as the probes on purpose: with sched_autogroup_enabled=1 every session is its own
    # group, nice only ranks tasks inside their group, and hogs in another session would be a
    # different contest than "a task on a busy desktop".
    own = a.sessions == "own"
    stress = subprocess.Popen(["stress-ng", "--cpu", str(a.hogs), "--timeout", "0", "-q"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=own)
    results = []
    try:
        time.sleep(1.0)
        for name, tune in tuners(env):
            if a.only and name != "untuned" and name not in a.only.split(","):
                continue
            r = phase(name, tune, a.duration, a.warmup, env, workdir, own)
            r["loadavg"] = round(os.getloadavg()[0], 1)
            results.append(r)
            c, p = r["cyclictest"], r["probe"]
            print(f"{name:<20} cyclictest p50 {c['p50_us']:>7.0f} p99 {c['p99_us']:>7.0f} p99.9 {c['p999_us']:>7.0f} "
                  f"missed {c['missed']:>5} | probe p99 {p['p99_us']:>7.0f} p99.9 {p['p999_us']:>7.0f} "
                  f"missed {p['missed']:>4}/{p['n']} | loadavg {r['loadavg']}", flush=True)
    finally:
        stress.send_signal(signal.SIGINT)  # stress-ng stops its workers on SIGINT
        try:
            stress.wait(timeout=10)
        except subprocess.TimeoutExpired:
            stress.kill()
            stress.wait()
        run([SCHEDTOP, "restore", "-q"], env=env)  # drop the journal of exited probes
    base = results[0]
    print("\nratios to untuned p99 (same run; goal for schedtop <= 0.05):")
    for r in results[1:]:
        rc = r["cyclictest"]["p99_us"] / base["cyclictest"]["p99_us"]
        rp = r["probe"]["p99_us"] / base["probe"]["p99_us"]
        r["ratio_cyclictest_p99"], r["ratio_probe_p99"] = rc, rp
        print(f"  {r['phase']:<20} cyclictest {rc:.3f}  probe {rp:.3f}")
    by = {r["phase"]: r for r in results}
    for ours, peer in (("schedtop audio", "chrt FIFO 88"), ("schedtop boost", "renice -10"),
                       ("schedtop boost+group", "renice -10")):
        if ours in by and peer in by:
            print(f"  {ours} vs {peer}: cyclictest p99 {by[ours]['cyclictest']['p99_us']:.0f} vs "
                  f"{by[peer]['cyclictest']['p99_us']:.0f} us")
    if a.json:
        Path(a.json).write_text(json.dumps({"duration_s": a.duration, "warmup_s": a.warmup, "hogs": a.hogs,
                                            "sessions": a.sessions,
                                            "results": results}, indent=1))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
