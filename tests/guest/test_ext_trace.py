"""In the guest, with a sched_ext scheduler loaded: Perfetto traces from the BPF tier, and
schedtop's scx_stats client against schedtop's own scheduler's stats server.

1. The lab's minimal scheduler runs: a trace recorded meanwhile matches the BPF counters and
   names every pid it switches.
2. schedtop's embedded scheduler runs, serving scx_stats on /var/run/scx/root/stats: the client
   reads its metrics through the socket convention, the snapshot extras carry them, and a trace
   gets the user-space queue depth and dispatch latency counter tracks from that socket.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from schedtop.collect.bpf import open_tier
from schedtop.collect.sched_ext import read_scheduler_info
from schedtop.export.perfetto import read_trace, summarize
from schedtop.export.scx_stats import DEFAULT_PATH, StatsClient, StatsPoller, openmetrics_problems, read_once
from schedtop.export.trace_record import TraceRecorder
from schedtop.lab.minimal import loaded, wait_state
from schedtop.scx.protocol import ScxCounters

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]


def record(path: Path, seconds: float, **kw) -> tuple[TraceRecorder, object]:
    tier = open_tier(events=True, sample_rate=0)
    try:
        rec = TraceRecorder(path, tier=tier, **kw).start()
        work = subprocess.Popen(["stress-ng", "--cpu", "2", "--switch", "1", "--timeout", str(seconds), "--quiet"])
        time.sleep(seconds)
        summary = rec.stop()
        work.wait(60)
    finally:
        tier.close()
    return rec, summary


def check_trace(path: Path, rec: TraceRecorder) -> object:
    c = summarize(read_trace(path))
    assert rec.error is None
    assert sum(c.counts.values()) == rec.bpf_events > 0
    assert c.dropped == rec.bpf_dropped
    assert c.counts["switch"] > 20
    named = c.process_pids | c.thread_tids
    assert c.switch_pids <= named, sorted(c.switch_pids - named)[:10]
    return c


def queued(reading) -> int:
    return next((x.value for x in reading.metrics if x.path == "nr_queued"), 0)


def test_trace_under_a_loaded_sched_ext_scheduler(tmp_path: Path) -> None:
    assert wait_state("disabled") == "disabled"
    with loaded():
        assert wait_state("enabled", 0) == "enabled"
        rec, _ = record(tmp_path / "min.perfetto-trace", 1.5)
        assert wait_state("enabled", 0.1) == "enabled", "ejected while tracing"
    assert wait_state("disabled") == "disabled"
    c = check_trace(tmp_path / "min.perfetto-trace", rec)
    assert c.cpus <= {0, 1}


def test_client_against_schedtops_own_scheduler_server(tmp_path: Path) -> None:
    loader = pytest.importorskip("schedtop.scx.loader")
    from schedtop.collect.ext_watch import ExtWatch
    from schedtop.collect.live import LiveSource
    from schedtop.export.cli import scx_counter_source
    from schedtop.export.loop_stats import TRACE_COUNTERS, serve
    from schedtop.scx.knobs import Knobs
    from schedtop.scx.loop import Loop
    from schedtop.scx.policies import load_policy

    assert wait_state("disabled") == "disabled"
    nr = os.cpu_count() or 1
    # The loop runs as a thread of this busy test process (the app runs it as a child): the
    # kernel's longest watchdog, so the GIL shared with the trace recorder under TCG cannot
    # get it ejected (CI: a 5 s watchdog did once). What is tested is the stats path.
    sched = loader.Scheduler(loader.LoadConfig(timeout_ms=30000))
    loop = Loop(sched, load_policy("deadline", slice_ns=5_000_000, nr_cpus=nr), Knobs(nr), stats_interval=0.2)
    outcome: list = []
    runner = threading.Thread(target=lambda: outcome.append(loop.run(harden_memory=False)), daemon=True)
    runner.start()
    server = None
    try:
        assert wait_state("enabled") == "enabled"
        info = read_scheduler_info()
        assert (info.kind, info.ops_name) == ("schedtop", "schedtop")
        server = serve(lambda: loop.latest)  # the scx convention: /var/run/scx/root/stats
        st = os.lstat(DEFAULT_PATH)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
        work = subprocess.Popen(["stress-ng", "--cpu", "2", "--timeout", "2", "--quiet"])
        # the default path: what any scx tool would ask; until the loop's stats show the load queued
        deadline = time.monotonic() + 10
        reading = read_once()
        while time.monotonic() < deadline and not (reading.ok and queued(reading) > 0):
            time.sleep(0.1)
            reading = read_once()
        assert reading.ok, reading.error
        m = {x.path: x for x in reading.metrics}
        assert reading.top == "SchedtopStats"
        assert m["policy"].value == "deadline"
        assert m["nr_queued"].value > 0 and m["nr_queued"].kind == "u64"
        assert m["user_queue"].desc and m["user_queue"].kind == "u64"
        # the real loop's report in the real schedulers' shape: every BPF counter a field, the
        # paths a dict of labelled structs, nothing scx's OpenMetrics script could not read
        assert {n for n, _ in ScxCounters._fields_} <= set(m)
        assert m["paths.fast.tasks"].name == "path_tasks" and m["paths.fast.tasks"].labels == (("path", "fast"),)
        with StatsClient(DEFAULT_PATH) as client:
            assert openmetrics_problems(client.meta(), client.stats()) == []
        # the TUI's path: the poller thread and the snapshot extra
        poller = StatsPoller(interval=0.1).start()
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not (poller.latest() and poller.latest().ok):
                time.sleep(0.05)
            assert poller.latest().ok
        finally:
            poller.stop()
        watch = ExtWatch(poll=False)
        src = LiveSource(use_bpf=False)
        watch.attach(src)
        try:
            snap = src.collect()
        finally:
            src.close()
            watch.close()
        assert snap.extras.scx_stats.ok and snap.extras.scx_stats.top == "SchedtopStats"
        assert snap.extras.sched_ext.ops == "schedtop"
        # schedtop-scheduler mode of the trace: counter tracks from the same socket
        counters = scx_counter_source(None)
        assert counters is not None
        rec, _ = record(tmp_path / "scx.perfetto-trace", 1.5, extra_counters=counters)
        c = check_trace(tmp_path / "scx.perfetto-trace", rec)
        assert "schedtop scx: user-space queue depth" in c.counters
        assert len(c.counters["schedtop scx: user-space queue depth"]) >= 5
        assert set(c.counters) & set(TRACE_COUNTERS)
        work.wait(60)
        info = sched.exit_info()
        assert read_scheduler_info().ext_state == "enabled", \
            f"schedtop's scheduler was ejected: {info.text if info else outcome}"
    finally:
        loop.stop()
        runner.join(30)
        if server is not None:
            server.stop()
        sched.close()
    assert wait_state("disabled") == "disabled"
    assert not os.path.exists(DEFAULT_PATH)


def test_schedtop_scx_serves_scx_stats_for_other_tools() -> None:
    """`schedtop scx` (the process the TUI supervises) serves its stats at the scx convention."""
    assert wait_state("disabled") == "disabled"
    # It runs until we interrupt it (^C unloads), not for a fixed --duration: a wall-clock lifetime
    # races its own start-up (a re-exec and ~20 s of imports under TCG on a loaded host), and the
    # client then finds the socket already removed by a scheduler that has finished.
    proc = subprocess.Popen([sys.executable, "-m", "schedtop", "scx", "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)

    said: list[str] = []

    def output() -> str:
        """Stop it (^C) and return what it printed on stderr."""
        if not said:
            proc.send_signal(signal.SIGINT)
            try:
                said.append(proc.communicate(timeout=60)[1])
            except subprocess.TimeoutExpired:
                proc.kill()
                said.append(proc.communicate()[1] + "\n(killed: no exit 60 s after SIGINT)")
        return said[0]

    try:
        # The server binds before the scheduler attaches, so "enabled" means the socket is there;
        # the deadlines only bound a hang, and an early exit ends the wait at once.
        deadline = time.monotonic() + 60
        while wait_state("enabled", 0.2) != "enabled":
            assert proc.poll() is None and time.monotonic() < deadline, f"schedtop scx never loaded: {output()}"
        deadline = time.monotonic() + 10
        reading = read_once()
        while not (reading.ok and "user_queue" in {m.path for m in reading.metrics}):
            assert proc.poll() is None and time.monotonic() < deadline, f"{reading.error}; schedtop scx: {output()}"
            time.sleep(0.2)
            reading = read_once()
        assert reading.top == "SchedtopStats"
        m = {x.path: x.value for x in reading.metrics}
        assert m["policy"] and m["nr_queued"] >= 0
    finally:
        err = output()
    assert proc.returncode == 0, err
    assert not os.path.exists(DEFAULT_PATH), "the socket outlived the scheduler"
