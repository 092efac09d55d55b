"""Perfetto export on the host kernel: real BPF events in, the package's generated classes out.

The file is parsed back with perfetto.protos (never by hand). Its event counts must equal the
BPF tier's counters over the same window, every pid in a switch must be named in the process
metadata, and drops must be in the file when they happen.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from schedtop.export.loop_stats import TRACE_COUNTERS, serve
from schedtop.export.perfetto import DROPPED_TRACK, PerfettoWriter, SchedEvent, read_trace, summarize
from schedtop.export.trace_record import TraceRecorder

ROOT = Path(__file__).resolve().parents[2]
bpf = pytest.mark.bpf


def open_tier(**kw):
    from schedtop.collect.bpf import BpfUnavailable, open_tier

    try:
        return open_tier(events=True, sample_rate=0, **kw)
    except BpfUnavailable as exc:
        pytest.skip(f"BPF tier unavailable: {exc}")


def workload(seconds: float) -> subprocess.Popen:
    """A child that wakes and sleeps a lot, with a thread that spins: switches, wakeups, migrations."""
    code = (
        "import threading, time, sys\n"
        "end = time.monotonic() + float(sys.argv[1])\n"
        "def spin():\n"
        "    import ctypes; ctypes.CDLL(None).prctl(15, b'spinner', 0, 0, 0)  # PR_SET_NAME: its comm\n"
        "    while time.monotonic() < end: pass\n"
        "threading.Thread(target=spin, name='spinner').start()\n"
        "while time.monotonic() < end: time.sleep(0.001)\n"
    )
    return subprocess.Popen([sys.executable, "-c", code, str(seconds)])


def check_switch_chains(trace: pb.Trace) -> None:
    """With every event recorded, the task switched in on a CPU is the one switched out next."""
    last: dict[int, int] = {}
    # Threads of this VM's pid 1 (see below): their switch out is never seen, so a chain
    # that starts with one of them is not evidence against the exporter.
    agent = {int(t) for t in os.listdir("/proc/1/task")} if os.path.exists("/proc/1/task") else set()
    breaks = 0
    total = 0
    for p in trace.packet:
        if p.WhichOneof("data") != "ftrace_events":
            continue
        cpu = p.ftrace_events.cpu
        prev_ts = 0
        for fe in p.ftrace_events.event:
            assert fe.timestamp >= prev_ts, "events out of order within a CPU bundle"
            prev_ts = fe.timestamp
            if fe.WhichOneof("event") != "sched_switch":
                continue
            s = fe.sched_switch
            total += 1
            if cpu in last and last[cpu] != s.prev_pid and last[cpu] not in agent:
                breaks += 1
            last[cpu] = s.next_pid
    assert total > 0
    # A handful of breaks per ten thousand were seen on this host with zero ring-buffer drops
    # and exact counter agreement: switches the tracepoint programs never saw, not lost here.
    # Where they come from (polish pass, a probe with open_tier(sample_rate=1), 3 s of
    # events, per-pid count of switches in vs out): every break is a switch *into* a thread of
    # this VM's pid 1 (its agent: tokio-rt-worker, damon-regions) whose switch *out* never
    # arrives (in 11, out 0), while every other task balances within the window's edges.
    # bpftool shows recursion_misses 0 for every program and the ring dropped nothing, so the
    # programs were not skipped by BPF's recursion guard: the tracepoints never ran our
    # programs while that agent was `current` (this sandbox kernel's doing, not the tier's).
    # On an ordinary machine the chains should be unbroken; here, breaks not explained by
    # the agent are held to the same bound.
    assert breaks <= total // 500, f"{breaks} of {total} switches do not chain"


@bpf
@pytest.mark.root
def test_trace_matches_bpf_counters_and_names_every_pid(tmp_path: Path) -> None:
    out = tmp_path / "t.perfetto-trace"
    tier = open_tier()
    child = workload(1.2)
    try:
        rec = TraceRecorder(out, tier=tier).start()
        time.sleep(1.0)
        summary = rec.stop()
    finally:
        child.wait(10)
        tier.close()
    assert rec.error is None and summary is not None
    trace = read_trace(out)
    c = summarize(trace)
    written = sum(c.counts.values())
    # The file holds exactly what the BPF side wrote in the window, and says what it dropped.
    assert written == rec.bpf_events > 0
    assert c.dropped == rec.bpf_dropped
    assert c.counts["switch"] > 50 and c.counts["wakeup"] > 10
    assert c.counts["waking"] >= c.counts["wakeup"] // 2  # sched_waking precedes each wakeup
    # Every pid in a switch is named in the ProcessTree (as a process or a thread).
    named = c.process_pids | c.thread_tids
    assert c.switch_pids <= named, sorted(c.switch_pids - named)[:10]
    assert c.event_pids <= named
    assert child.pid in c.switch_pids and child.pid in c.process_pids
    tree = next(p.process_tree for p in trace.packet if p.WhichOneof("data") == "process_tree")
    proc = next(pr for pr in tree.processes if pr.pid == child.pid)
    assert proc.cmdline[0] == sys.executable and proc.ppid == os.getpid()
    threads = {t.tid: t for t in tree.threads}
    spinner = [t for t in threads.values() if t.tgid == child.pid and t.tid != child.pid]
    assert spinner and spinner[0].name == "spinner"
    assert c.cpus <= set(range(os.cpu_count() or 1))
    if rec.bpf_dropped == 0:
        check_switch_chains(trace)
    # The header packets ui.perfetto.dev needs to place and label the trace.
    kinds = [p.WhichOneof("data") for p in trace.packet]
    assert kinds[0] == "clock_snapshot" and "system_info" in kinds and "ftrace_stats" in kinds


@bpf
@pytest.mark.root
def test_dropped_events_are_in_the_file(tmp_path: Path) -> None:
    out = tmp_path / "drops.perfetto-trace"
    tier = open_tier(ring_bytes=4096 * 4)  # 16 KiB: ~160 events before it overflows
    hog = subprocess.Popen(["stress-ng", "--switch", "2", "--timeout", "3", "--quiet"])
    try:
        rec = TraceRecorder(out, tier=tier, poll_s=0.5).start()  # drain slowly, on purpose
        time.sleep(1.5)
        summary = rec.stop()
    finally:
        hog.kill()
        hog.wait()
        tier.close()
    assert summary is not None and rec.error is None
    c = summarize(read_trace(out))
    assert rec.bpf_dropped > 0, "the workload did not overflow a 16 KiB ring buffer"
    assert c.dropped == rec.bpf_dropped == summary.dropped
    assert sum(c.counts.values()) == rec.bpf_events
    assert c.lost_bundles > 0  # bundles after a loss say so, as ftrace's own do
    assert c.counters[DROPPED_TRACK][-1][1] == rec.bpf_dropped  # and a track shows it on the timeline


@bpf
@pytest.mark.root
def test_scheduler_counter_tracks_from_its_stats_socket(tmp_path: Path) -> None:
    """schedtop-scheduler mode: queue depth and dispatch latency come from the scx_stats socket."""
    from schedtop.export.cli import scx_counter_source

    latest = {"user_queue": 3, "dispatch_p50_us": 41.5, "dispatch_p99_us": 250.0, "policy": "deadline"}
    sock = tmp_path / "scx" / "stats"
    server = serve(lambda: latest, str(sock))
    tier = open_tier()
    try:
        source = scx_counter_source(str(sock))
        rec = TraceRecorder(tmp_path / "scx.perfetto-trace", tier=tier, extra_counters=source).start()
        time.sleep(0.3)
        latest["user_queue"] = 7
        time.sleep(0.3)
        rec.stop()
    finally:
        tier.close()
        server.stop()
    c = summarize(read_trace(tmp_path / "scx.perfetto-trace"))
    depth = [v for _, v in c.counters["schedtop scx: user-space queue depth"]]
    assert depth[0] == 3 and depth[-1] == 7
    assert {v for _, v in c.counters["schedtop scx: dispatch latency p99 (us)"]} == {250.0}
    assert set(TRACE_COUNTERS) <= set(c.counters)


def test_writer_round_trip_through_generated_classes(tmp_path: Path) -> None:
    """Every event kind lands in the right proto field with its values; prev/next pids are named."""
    me = os.getpid()
    t = time.monotonic_ns()
    with PerfettoWriter(tmp_path / "w.perfetto-trace", ncpus=2) as w:
        w.add([
            SchedEvent("switch", t, 0, 0, "swapper/0", 120, 0, me, "pytest", 120),
            SchedEvent("wakeup", t + 10, 0, me, "pytest", 120, target_cpu=1),
            SchedEvent("wakeup_new", t + 20, 0, me, "pytest", 120, target_cpu=0),
            SchedEvent("migrate", t + 30, 1, me, "pytest", 120, orig_cpu=0, dest_cpu=1),
            SchedEvent("waking", t + 40, 1, me, "pytest", 120, target_cpu=1),
        ])
        w.dropped_events(3, cpu=1)
        w.counter("x", 1.5)
    trace = read_trace(tmp_path / "w.perfetto-trace")
    events = defaultdict(list)
    for p in trace.packet:
        if p.WhichOneof("data") == "ftrace_events":
            for fe in p.ftrace_events.event:
                events[fe.WhichOneof("event")].append((p.ftrace_events.cpu, fe))
    (cpu, sw), = events["sched_switch"]
    assert (cpu, sw.sched_switch.prev_pid, sw.sched_switch.next_pid, sw.sched_switch.next_comm) == (0, 0, me, "pytest")
    (cpu, wk), = events["sched_wakeup"]
    assert (wk.sched_wakeup.pid, wk.sched_wakeup.target_cpu, wk.pid) == (me, 1, me)
    (_, mg), = events["sched_migrate_task"]
    assert (mg.sched_migrate_task.orig_cpu, mg.sched_migrate_task.dest_cpu) == (0, 1)
    assert len(events["sched_wakeup_new"]) == 1 and len(events["sched_waking"]) == 1
    c = summarize(trace)
    assert c.dropped == 3 and {0, me} <= c.process_pids
    stats = next(p.ftrace_stats for p in trace.packet if p.WhichOneof("data") == "ftrace_stats")
    assert {s.cpu: s.overrun for s in stats.cpu_stats} == {0: 0, 1: 3}


def test_trace_cli_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "schedtop", "trace", *args], capture_output=True,
                              text=True, timeout=60, cwd=ROOT)

    r = run("-o", str(tmp_path / "nodir" / "x.perfetto-trace"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no such directory" in r.stderr
    r = run("-o", str(tmp_path / "x"), "--sample", "0")
    assert r.returncode == 2 and "--sample" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.root
def test_trace_cli_tells_non_root_what_it_needs(tmp_path: Path) -> None:
    from schedtop.cli import main

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop to nobody, run the CLI in-process, report code and stderr
        code = 99
        try:
            os.close(r)
            sys.stderr = os.fdopen(w, "w")  # pytest's capture is not fd 2
            os.setgid(65534)
            os.setuid(65534)
            code = main(["trace", "-o", "/tmp/never-written.perfetto-trace"])  # refused before any write
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        err = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1
    assert "needs root" in err and err.count("\n") == 1 and "Traceback" not in err
