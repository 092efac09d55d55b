"""`schedtop exporter` against real parts: the exporter as a process on a loopback port, Debian's
prometheus scraping it (config and storage written here, never the system service), the
dashboard's queries through Prometheus's HTTP API, a workload started here, a run as uid 65534
from an install outside the checkout, the shipped systemd unit (systemd-analyze, and the
exporter run with only the capabilities the unit grants)."""

from __future__ import annotations

import concurrent.futures
import configparser
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import install
import pytest

from schedtop.exporter import buckets

ROOT = install.ROOT
SCHEDTOP = Path(sys.executable).parent / "schedtop"
UNIT = ROOT / "dist/systemd/schedtop-exporter.service"
DASHBOARD = ROOT / "dist/grafana/schedtop.json"
BPF_READY = os.geteuid() == 0 and Path("/sys/kernel/btf/vmlinux").exists()
needs_bpf = pytest.mark.skipif(not BPF_READY, reason="needs root and kernel BTF for the BPF tier")
NCPU = os.cpu_count() or 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Exporter:
    """`schedtop exporter` on a free loopback port; started() waits for its 'serving' line."""

    def __init__(self, *args: str, exe: Path = SCHEDTOP, prefix: tuple[str, ...] = (), user: int | None = None,
                 env: dict[str, str] | None = None, cwd: str | None = None) -> None:
        self.port = free_port()
        self.cmd = [*prefix, str(exe), "exporter", "--listen", f"127.0.0.1:{self.port}", *args]
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     user=user, group=user, extra_groups=[] if user is not None else None,
                                     env=env, cwd=cwd)
        self.lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if "serving http://" in line:
                self._ready.set()
        self._ready.set()

    def started(self, timeout: float = 120) -> Exporter:
        assert self._ready.wait(timeout), f"no 'serving' line in {timeout} s: {self.lines}"
        assert self.proc.poll() is None, f"exporter exited {self.proc.returncode}: {self.lines}"
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def scrape(self) -> str:
        with urllib.request.urlopen(self.url, timeout=60) as r:
            assert r.status == 200
            return r.read().decode()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def samples(text: str, name: str) -> dict[str, float]:
    """{label text: value} of one metric's samples in an exposition."""
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(re.escape(name) + r"(\{.*\})? (\S+)", line)
        if m:
            out[m[1] or ""] = float(m[2])
    return out


# --- the bucket layout -------------------------------------------------------------------------


def test_bucket_layout_is_stable_and_each_slot_falls_whole_into_one_bucket():
    from schedtop.bpf import trace_events as te

    assert len(buckets.BOUNDS_NS) == 48 and buckets.BOUNDS_NS[0] == 1024 and buckets.BOUNDS_NS[-1] == 3 << 32
    assert buckets.LE_LABELS[:3] == ("1.024e-06", "1.536e-06", "2.048e-06") and buckets.LE_LABELS[-1] == "+Inf"
    for sub, n in ((te.CPU_SUB_BITS, te.CPU_SLOTS), (te.TASK_SUB_BITS, te.TASK_SLOTS)):
        where = buckets.slot_to_bucket(sub, n)
        for i in range(n - 1):
            lo, hi = te.slot_bounds_ns(i, sub)
            b = where[i]
            assert (buckets.BOUNDS_NS[b - 1] if b else 0) <= lo
            assert b == len(buckets.BOUNDS_NS) or hi <= buckets.BOUNDS_NS[b]
        assert where[-1] == len(buckets.BOUNDS_NS)  # the catch-all slot is +Inf
        # a latency of v ns lands in the bucket whose bound is the first above v
        for v in (1500, 1536, 2047, 10_000, 3_000_000, 12_884_901_887):
            b = buckets.fold([1 if i == te.lat_slot(v, sub, n) else 0 for i in range(n)], sub).index(1)
            assert (buckets.BOUNDS_NS[b - 1] if b else 0) <= v < buckets.BOUNDS_NS[b]


# --- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize("value, says", [
    ("nope", "expected HOST:PORT"),
    ("9645", "expected HOST:PORT"),
    (":9645", "no address"),
    ("127.0.0.1:", "the port must be a number"),
    ("127.0.0.1:99999", "the port must be a number"),
    ("127.0.0.1:0", "the port must be a number"),
    ("127.0.0.1:http", "the port must be a number"),
    ("::1:9645", "needs brackets"),
    ("[::1]9645", "[ADDR]:PORT"),
    ("no-such-host.invalid:9645", "cannot resolve"),
    ("a\nb:1", "cannot resolve"),
])
def test_bad_listen_values_are_one_line_errors(value, says):
    r = subprocess.run([str(SCHEDTOP), "exporter", "--listen", value], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("schedtop exporter: error: argument --listen: ") and says in last, r.stderr


def test_an_address_it_cannot_bind_is_said_before_anything_loads():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for where, says in ((f"127.0.0.1:{port}", "Address already in use"),
                            ("192.0.2.1:9645", "Cannot assign requested address")):  # TEST-NET-1: not ours
            t0 = time.monotonic()
            r = subprocess.run([str(SCHEDTOP), "exporter", "--listen", where], capture_output=True, text=True,
                               timeout=60)
            assert r.returncode == 1 and "Traceback" not in r.stderr
            assert r.stderr.strip() == f"schedtop exporter: cannot listen on {where}: {says}"
            assert time.monotonic() - t0 < 20  # no BPF tier was loaded first


# --- one collection per interval ------------------------------------------------------------------


def test_concurrent_scrapes_share_one_collection():
    exp = Exporter("--no-bpf", "--interval", "30").started()
    try:
        first = exp.scrape()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            texts = list(pool.map(lambda _: exp.scrape(), range(16)))
        colls = {samples(t, "schedtop_exporter_collections_total")[""] for t in [first, *texts]}
        stamps = {samples(t, "schedtop_collection_timestamp_seconds")[""] for t in [first, *texts]}
        assert colls == {1.0} and len(stamps) == 1  # the startup collection served all 17
        assert sorted(samples(t, "schedtop_exporter_scrapes_total")[""] for t in texts)[-1] == 17
    finally:
        assert exp.stop() == 0


# --- the procfs tier as uid 65534 ----------------------------------------------------------------


def test_nobody_gets_the_procfs_tier_and_is_told_what_is_missing(nobody_install, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    exp = Exporter(exe=nobody_install.schedtop, user=65534, env=env, cwd="/").started()
    try:
        text = exp.scrape()
    finally:
        assert exp.stop() == 0
    (src,) = samples(text, "schedtop_source_info")
    assert 'source="procfs"' in src
    missing = samples(text, "schedtop_metric_missing")
    names = {m[1] for k in missing if (m := re.search(r'metric="([^"]+)"', k))}
    assert {"schedtop_runqueue_latency_seconds", "schedtop_process_runqueue_latency_seconds",
            "schedtop_context_switches_total", "schedtop_bpf_dropped_events_total"} <= names
    assert all("needs root" in k and "uid 65534" in k for k in missing), missing
    # what the procfs tier has is served, depth marked as an estimate
    assert len(samples(text, "schedtop_cpu_utilisation_ratio")) == NCPU
    assert set(samples(text, "schedtop_runqueue_depth_exact").values()) == {0.0}
    assert samples(text, "schedtop_process_runqueue_wait_seconds_total")
    assert "schedtop_runqueue_latency_seconds_bucket" not in text
    assert samples(text, "schedtop_journal_readable") == {"": 0.0}  # nobody has no state dir
    log = "\n".join(exp.lines)
    assert "serving the procfs tier without schedtop_runqueue_latency_seconds" in log, log
    assert "needs root" in log and "Traceback" not in log


# --- the systemd unit ---------------------------------------------------------------------------


def _unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment, method-assign]
    cp.read(UNIT)
    return cp


def test_systemd_unit_verifies_and_is_hardened(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    svc = _unit()["Service"]
    assert svc["CapabilityBoundingSet"].split() == ["CAP_BPF", "CAP_PERFMON"]
    assert svc["AmbientCapabilities"].split() == ["CAP_BPF", "CAP_PERFMON"]
    assert svc["ProtectSystem"] == "strict" and svc["StateDirectory"] == "schedtop"
    assert svc["NoNewPrivileges"] == "yes" and svc["ProtectHome"] == "yes" and "ReadWritePaths" not in svc
    assert "--listen 127.0.0.1:" in svc["ExecStart"]
    # The unit as shipped, with ExecStart pointing at this checkout's schedtop (verify checks it exists).
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/schedtop", str(SCHEDTOP)))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)], capture_output=True,
                       text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", r.stdout)
    assert m and float(m[1]) <= 3.0, r.stdout[-2000:]


@needs_bpf
def test_the_units_capabilities_are_enough_for_the_bpf_tier():
    """ExecStart run as the unit runs it: root with only its CapabilityBoundingSet, ambient,
    no new privileges (setpriv, since no systemd runs here)."""
    svc = _unit()["Service"]
    caps = ",".join("+" + c.removeprefix("CAP_").lower() for c in svc["CapabilityBoundingSet"].split())
    prefix = ("setpriv", "--bounding-set", f"-all,{caps}", "--inh-caps", f"-all,{caps}",
              "--ambient-caps", f"-all,{caps}", "--no-new-privs", "--")
    exp = Exporter("--top", "3", prefix=prefix).started()
    try:
        status = Path(f"/proc/{exp.proc.pid}/status").read_text()
        cap = re.search(r"CapEff:\s+(\w+)", status)
        assert cap is not None
        eff = int(cap[1], 16)
        assert eff == (1 << 38) | (1 << 39)  # CAP_PERFMON, CAP_BPF: nothing else
        text = exp.scrape()
    finally:
        assert exp.stop() == 0
    assert 'source="bpf"' in next(iter(samples(text, "schedtop_source_info")))
    assert not samples(text, "schedtop_metric_missing")
    counts = samples(text, "schedtop_runqueue_latency_seconds_count")
    assert len(counts) == NCPU and sum(counts.values()) > 0


# --- through a real Prometheus ----------------------------------------------------------------------

HOG = """
import os, sys, time
os.sched_setaffinity(0, {0})
with open("/proc/self/comm", "w") as f:
    f.write("exporter-hog")
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    pass
"""


class Prometheus:
    def __init__(self, tmp: Path, target: str) -> None:
        self.port = free_port()
        cfg = tmp / "prometheus.yml"
        cfg.write_text("global:\n  scrape_interval: 4s\n  scrape_timeout: 4s\n  evaluation_interval: 4s\n"
                       "scrape_configs:\n  - job_name: schedtop\n    static_configs:\n"
                       f"      - targets: ['{target}']\n")
        self.log = open(tmp / "prometheus.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=tmp)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert self.proc.poll() is None and time.monotonic() < deadline, (tmp / "prometheus.log").read_text()
            time.sleep(0.3)

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        q = {"query": expr, **({"time": repr(at)} if at is not None else {})}
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode(q)
        with urllib.request.urlopen(url, timeout=30) as r:
            body = json.load(r)
        assert body["status"] == "success", (expr, body)
        return body["data"]["result"]

    def targets(self) -> list[tuple[str, str]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/targets", timeout=30) as r:
            return [(t["health"], t["lastError"]) for t in json.load(r)["data"]["activeTargets"]]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


@pytest.fixture(scope="module")
def scraped(tmp_path_factory):
    """Hogs on CPU 0, the exporter (BPF tier) and Prometheus scraping it every 4 s (a scrape takes
    0.5-1.1 s of wall time on this 2-CPU machine at load 13-21), until 6 scrapes are stored."""
    if not BPF_READY:
        pytest.skip("needs root and kernel BTF for the BPF tier")
    if shutil.which("prometheus") is None:
        pytest.skip("Debian's prometheus is not installed (make deps installs it)")
    hogs = [subprocess.Popen([sys.executable, "-c", HOG, "300"]) for _ in range(3)]
    exp = Exporter("--top", "20").started()
    prom = Prometheus(tmp_path_factory.mktemp("prometheus"), f"127.0.0.1:{exp.port}")
    try:
        deadline = time.monotonic() + 180
        while True:
            r = prom.query("count_over_time(schedtop_source_info[5m])")
            if r and float(r[0]["value"][1]) >= 6:
                break
            assert time.monotonic() < deadline, ("fewer than 6 scrapes in 180 s", r, exp.lines,
                                                 prom.query("scrape_duration_seconds"), prom.targets())
            time.sleep(1)
        yield prom, exp, [h.pid for h in hogs]
    finally:
        prom.stop()
        exp.stop()
        for h in hogs:
            h.kill()
            h.wait()


def dashboard_queries() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def concrete(expr: str) -> str:
    """A dashboard query as Grafana sends it: every instance, a 20 s rate window (4 s scrapes)."""
    return expr.replace("$instance", ".+").replace("$__rate_interval", "20s")


# Panels whose data need something this host may not have (sched_ext events, drops, tunings,
# a tier that lacks metrics): they must run, not necessarily return series.
MAY_BE_EMPTY = ("schedtop_sched_ext_events_total", "schedtop_bpf_dropped_events_total",
                "schedtop_tunings_in_force", "schedtop_metric_missing")


def test_every_dashboard_query_runs_through_prometheus(scraped):
    prom, _, _ = scraped
    queries = dashboard_queries()
    assert len(queries) >= 15
    for expr in queries:
        result = prom.query(concrete(expr))
        if not any(name in expr for name in MAY_BE_EMPTY):
            assert result, f"no series for {expr}"


def test_the_series_exist(scraped):
    prom, _, _ = scraped
    assert len(prom.query("schedtop_runqueue_latency_seconds_bucket")) == NCPU * (len(buckets.BOUNDS_NS) + 1)
    for name in ("schedtop_runqueue_depth", "schedtop_cpu_utilisation_ratio", "schedtop_context_switches_total",
                 "schedtop_migrations_total", "schedtop_runqueue_latency_seconds_count"):
        assert {r["metric"]["cpu"] for r in prom.query(name)} == {str(c) for c in range(NCPU)}, name
    for name in ("schedtop_scheduler_info", "schedtop_bpf_dropped_events_total", "schedtop_tunings_total",
                 "schedtop_bpf_events_total", "schedtop_journal_readable"):
        assert len(prom.query(name)) == 1, name
    assert len(prom.query("schedtop_sched_ext_state")) == 5 and len(prom.query("schedtop_sched_ext_state == 1")) == 1
    assert prom.query("schedtop_metric_missing") == []
    # counters only go up between scrapes
    assert prom.query("resets(schedtop_context_switches_total[5m]) > 0") == []
    assert prom.query("resets(schedtop_runqueue_latency_seconds_count[5m]) > 0") == []


def test_histogram_quantile_agrees_with_the_snapshots_p99_within_a_bucket(scraped):
    """Since attach (no rate): the window of the TUI's per-CPU percentiles, served from the same
    collection. Both fall in the same bucket, so they differ by at most its width (x1.5); the
    histogram is read from the tier a few ms after the snapshot, which can move the rank across a
    bound only where both values sit beside it."""
    prom, _, _ = scraped
    (stamp,) = prom.query("timestamp(schedtop_collection_timestamp_seconds)")
    at = float(stamp["value"][1])
    expr = concrete(next(q for q in dashboard_queries()
                         if q.startswith("histogram_quantile(0.99, sum by (cpu, le) (schedtop_runqueue_latency")))
    from_hist = {r["metric"]["cpu"]: float(r["value"][1]) for r in prom.query(expr, at)}
    tui = {r["metric"]["cpu"]: float(r["value"][1])
           for r in prom.query('schedtop_runqueue_latency_percentile_seconds{quantile="0.99"}', at)}
    assert set(from_hist) == set(tui) == {str(c) for c in range(NCPU)}
    same = prom.query('timestamp(schedtop_runqueue_latency_seconds_bucket{le="+Inf"}) - ignoring(le, quantile) '
                      'timestamp(schedtop_runqueue_latency_percentile_seconds{quantile="0.99"})', at)
    assert [float(r["value"][1]) for r in same] == [0.0] * NCPU  # one scrape, one collection
    for cpu, h in from_hist.items():
        t = tui[cpu]
        assert t > 0 and h > 0
        assert max(h, t) / min(h, t) <= 1.5 + 1e-9, (cpu, h, t)


def test_a_workload_shows_up_in_the_per_process_series(scraped):
    prom, _, hogs = scraped
    wanted = {str(p) for p in hogs}
    ratio = prom.query('schedtop_process_runqueue_wait_ratio{comm="exporter-hog"}')
    assert {r["metric"]["pid"] for r in ratio} == wanted, ratio
    # three spinners on one CPU: each waits a good part of every second
    assert all(float(r["value"][1]) > 0.2 for r in ratio), ratio
    lat = prom.query('schedtop_process_runqueue_latency_seconds_count{comm="exporter-hog"} > 0')
    assert {r["metric"]["pid"] for r in lat} == wanted
    p99 = prom.query(concrete(next(q for q in dashboard_queries() if "process_runqueue_latency" in q)))
    assert wanted <= {r["metric"]["pid"] for r in p99}
    wait = prom.query('increase(schedtop_process_runqueue_wait_seconds_total{comm="exporter-hog"}[20s])')
    assert {r["metric"]["pid"] for r in wait} == wanted and all(float(r["value"][1]) > 0 for r in wait)


# --- the top processes, the journal's tunings, a scheduler's scx_stats ------------------------------


def test_top_processes_are_the_busiest_waiters_folded_whole():
    from schedtop.collect.fold import fold_processes
    from schedtop.collect.live import LiveSource
    from schedtop.exporter.collection import top_processes

    with LiveSource(use_bpf=False) as src:
        src.collect()
        time.sleep(0.3)
        snap = src.collect()
    want = sorted(fold_processes(snap.tasks), key=lambda t: (-t.wait_ns_per_s, -t.wait_ns, t.pid))[:5]
    got = top_processes(snap, 5, None)
    assert [(p.pid, p.wait_ns, p.nr_threads) for p in got] == [(t.pid, t.wait_ns, t.nr_threads) for t in want]
    assert all(p.latency is None for p in got)  # no BPF tier, no histogram


def test_tunings_in_force_and_a_schedulers_scx_stats_are_served(tmp_path):
    from schedtop.export.scx_stats import StatsServer, struct_meta

    meta = {  # the shape of a real scheduler's stats: a top struct with scalars, a string, dicts
        "SysStats": struct_meta("SysStats", {
            "nr_queued": ("u64", "tasks waiting in the scheduler's queues"),
            "busy": ("float", "CPU busy %"),
            "mode": ("string", ""),
            "layers": ("{string:LayerStats}", "per layer"),
            "nodes": ("{u64:NodeStats}", "per node"),
        }, desc="a scheduler", top=True),
        "LayerStats": struct_meta("LayerStats", {"util": ("float", "layer utilisation")}),  # no _om_label
        "NodeStats": struct_meta("NodeStats", {"load": ("float", "node load")},
                                 user={"_om_prefix": "n_", "_om_label": "node"}),
    }
    served = {"nr_queued": 17, "busy": 42.5, "mode": "full", "layers": {"batch": {"util": 0.25}},
              "nodes": {"0": {"load": 0.5}, "1": {"load": 1.5}}}
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    env = {**os.environ, "SCHEDTOP_STATE_DIR": str(state)}
    sleeper = subprocess.Popen(["sleep", "300"])
    srv = StatsServer(tmp_path / "scx" / "stats", lambda args: served, meta).start()
    try:
        r = subprocess.run([str(SCHEDTOP), "set", str(sleeper.pid), "--nice", "7", "-q"], env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        exp = Exporter("--no-bpf", "--stats", str(tmp_path / "scx" / "stats"), env=env).started()
        try:
            deadline = time.monotonic() + 30
            while not samples(text := exp.scrape(), "schedtop_scx_stats_up").get(
                    f'{{path="{tmp_path / "scx" / "stats"}"}}'):
                assert time.monotonic() < deadline, text  # the poller reads the socket on its own thread
                time.sleep(0.5)
        finally:
            assert exp.stop() == 0
    finally:
        srv.stop()
        subprocess.run([str(SCHEDTOP), "restore"], env=env, capture_output=True, timeout=60)
        sleeper.kill()
        sleeper.wait()
    assert samples(text, "schedtop_journal_readable") == {"": 1.0}
    assert samples(text, "schedtop_tunings_total") == {"": 1.0}
    assert samples(text, "schedtop_tunings_in_force") == {'{attr="nice",holder="schedtop set"}': 1.0}
    (info,) = samples(text, "schedtop_tuning_info")
    assert f'target="task:{sleeper.pid}:' in info and 'attr="nice"' in info and 'value="+7"' in info
    assert 'comm="sleep"' in info
    assert samples(text, "schedtop_scx_stat_nr_queued") == {'{scheduler=""}': 17.0}
    assert samples(text, "schedtop_scx_stat_busy") == {'{scheduler=""}': 42.5}
    assert samples(text, "schedtop_scx_stat_layers_batch_util") == {'{scheduler=""}': 0.25}
    assert samples(text, "schedtop_scx_stat_n_load") == {'{node="0",scheduler=""}': 0.5, '{node="1",scheduler=""}': 1.5}
    assert "# HELP schedtop_scx_stat_nr_queued tasks waiting in the scheduler's queues" in text
    assert samples(text, "schedtop_scx_stat_string_info") == {'{scheduler="",stat="mode",value="full"}': 1.0}


@pytest.mark.kernel
def test_guest_schedtops_own_scheduler_is_served(tmp_path):
    """In the lab guest: schedtop's scheduler loaded, the exporter's families (in-process, the
    same collection path) carry sched_ext's state, root/events and the scheduler's scx_stats."""
    from prometheus_client import CollectorRegistry, generate_latest

    from schedtop.collect.ext_watch import ExtWatch
    from schedtop.collect.live import LiveSource
    from schedtop.exporter.collection import SharedCollection
    from schedtop.exporter.metrics import SchedtopCollector

    sock = tmp_path / "scx" / "stats"
    scx = subprocess.Popen([sys.executable, "-m", "schedtop", "scx", "--stats-socket", str(sock),
                            "--timeout-ms", "10000"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sched_ext = Path("/sys/kernel/sched_ext")
    try:
        deadline = time.monotonic() + 120
        ops = sched_ext / "root/ops"
        while not ((sched_ext / "state").read_text().strip() == "enabled"
                   and ops.exists() and ops.read_text().strip() == "schedtop"):
            assert scx.poll() is None, scx.stderr.read() if scx.stderr else ""
            assert time.monotonic() < deadline, "schedtop's scheduler did not load in 120 s"
            time.sleep(0.1)
        with LiveSource(use_bpf=False) as src:
            watch = ExtWatch(stats_path=str(sock), kmsg=False).attach(src)
            try:
                registry = CollectorRegistry(auto_describe=False)
                registry.register(SchedtopCollector(SharedCollection(src, interval=0, top=5)))
                deadline = time.monotonic() + 60
                while True:
                    text = generate_latest(registry).decode()
                    # The socket answers before the loop's first stats report, with no values
                    # yet: wait for the scheduler's numbers, not for the first answer.
                    if samples(text, "schedtop_scx_stats_up").get(f'{{path="{sock}"}}') and \
                            any(k.startswith("schedtop_scx_stat_") and "string_info" not in k
                                for k in samples_all(text)):
                        break
                    assert time.monotonic() < deadline, text
                    time.sleep(0.5)
            finally:
                watch.close()
    finally:
        scx.send_signal(signal.SIGINT)
        try:
            scx.wait(30)
        except subprocess.TimeoutExpired:
            scx.kill()
            scx.wait(5)
    assert samples(text, "schedtop_sched_ext_state")['{state="enabled"}'] == 1.0
    (info,) = samples(text, "schedtop_scheduler_info")
    assert 'kind="schedtop"' in info and 'ops="schedtop"' in info
    assert samples(text, "schedtop_sched_ext_enable_seq")[""] >= 1
    if (sched_ext / "root/events").exists():
        events = samples(text, "schedtop_sched_ext_events_total")
        assert events and all(v >= 0 for v in events.values())
    stats = {k: v for k, v in samples_all(text).items() if k.startswith("schedtop_scx_stat_") and
             'scheduler="schedtop"' in k}
    assert stats, "no scx_stat series from schedtop's scheduler"
    # named and labelled by its metadata (_om_prefix "path_", _om_label "path"), as scx's tools name them
    assert 'schedtop_scx_stat_path_tasks{path="fast",scheduler="schedtop"}' in stats, sorted(stats)
    assert 'schedtop_scx_stat_nr_queued{scheduler="schedtop"}' in stats


def samples_all(text: str) -> dict[str, float]:
    """{name{labels}: value} of every sample in an exposition."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out
