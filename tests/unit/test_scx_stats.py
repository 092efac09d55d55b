"""scx_stats: schedtop's client against schedtop's server over real UNIX sockets.

Covers the wire format of sched-ext/scx rust/scx_stats, the socket's safety (0600, directory
checks, SO_PEERCRED), that a slow or broken server costs a bounded wait and an error, never a
hang, and the shapes real scx schedulers serve (tests/fixtures/scx_stats, built from their Rust
stats definitions): the client reads them whole, the exporter names and labels their series by
_om_prefix/_om_label as scx's own OpenMetrics script does, and schedtop's own server keeps the
rules that script relies on, while the shape schedtop served before is still read.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from schedtop.export import loop_stats
from schedtop.export.loop_stats import COUNTERS
from schedtop.export.scx_stats import (
    StatsClient,
    StatsError,
    StatsPoller,
    StatsReading,
    StatsServer,
    flatten,
    openmetrics_problems,
    parse_meta,
    read_once,
    struct_meta,
    top_struct,
)
from schedtop.exporter.metrics import scx_stats_families
from schedtop.model import Extras, StatsPart, to_dict
from schedtop.scx.protocol import ScxCounters

META = {
    "Metrics": struct_meta("Metrics", {
        "nr_queued": ("u64", "tasks waiting in user space"),
        "lat_us": ("float", "dispatch latency"),
        "mode": ("string", ""),
        "per_cpu": ("[u64]", "dispatches per CPU"),
        "doms": ("{u64:Dom}", "domains"),
    }, desc="schedtop scheduler", top=True),
    "Dom": struct_meta("Dom", {"events": ("u64", "an event counter")}, desc="domain"),
}


class Counter:
    def __init__(self) -> None:
        self.n = 0
        self.args: list[dict] = []

    def __call__(self, args):
        self.n += 1
        self.args.append(dict(args))
        return {"nr_queued": self.n, "lat_us": 12.5, "mode": "full", "per_cpu": [3, 4],
                "doms": {"0": {"events": 7}, "10": {"events": 8}, "2": {"events": 9}}, "unknown_new": 42}


@pytest.fixture
def sockdir(tmp_path: Path) -> Path:
    d = tmp_path / "scx" / "root"
    return d


@pytest.fixture
def server(sockdir: Path):
    fn = Counter()
    srv = StatsServer(sockdir / "stats", fn, META).start()
    srv.fn = fn  # type: ignore[attr-defined]
    yield srv
    srv.stop()


def raw_request(path: Path, line: bytes, timeout: float = 2.0) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(line)
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            assert chunk, "server closed without a reply"
            buf += chunk
    return json.loads(buf)


def test_wire_format_matches_scx_stats(server: StatsServer) -> None:
    # Exactly the lines the issue and rust/scx_stats use; args may be absent or empty.
    meta = raw_request(server.path, b'{"req":"stats_meta"}\n')
    assert meta["errno"] == 0
    assert meta["args"]["resp"]["Metrics"]["top"] == "true"
    assert meta["args"]["resp"]["Metrics"]["fields"]["doms"] == {
        "dict": {"key": "u64", "datum": {"struct": "Dom"}}, "desc": "domains"}
    stats = raw_request(server.path, b'{"req":"stats","args":{}}\n')
    assert stats["errno"] == 0 and stats["args"]["resp"]["nr_queued"] == 1
    stats = raw_request(server.path, b'{"req":"stats","args":{"target":"top"}}\n')
    assert stats["args"]["resp"]["nr_queued"] == 2
    bad = raw_request(server.path, b'{"req":"stats","args":{"target":"nope"}}\n')
    assert bad["errno"] == 22 and "nope" in bad["args"]["resp"]
    bad = raw_request(server.path, b'{"req":"frobnicate"}\n')
    assert bad["errno"] == 22


def test_client_meta_stats_and_generic_metrics(server: StatsServer) -> None:
    with StatsClient(server.path, timeout=2) as c:
        meta = c.meta()
        top = top_struct(meta)
        assert top is not None and top.name == "Metrics" and top.desc == "schedtop scheduler"
        v1 = c.stats()
        v2 = c.stats(extra="x")  # one connection, many requests
    assert (v1["nr_queued"], v2["nr_queued"]) == (1, 2)
    assert server.fn.args[-1] == {"extra": "x"}  # type: ignore[attr-defined]
    metrics = {m.path: m for m in flatten(meta, v2)}
    assert metrics["nr_queued"].value == 2 and metrics["nr_queued"].desc == "tasks waiting in user space"
    assert metrics["lat_us"].kind == "float"
    assert metrics["per_cpu.1"].value == 4
    assert metrics["doms.10.events"].value == 8 and metrics["doms.10.events"].desc == "an event counter"
    # Metrics the metadata does not describe are still shown, marked as such.
    assert metrics["unknown_new"].kind == "?" and metrics["unknown_new"].value == 42
    # Dict keys in natural order (2 before 10), as a person reads them.
    order = [p for p in metrics if p.startswith("doms.")]
    assert order == ["doms.0.events", "doms.2.events", "doms.10.events"]


def test_socket_is_0600_in_a_safe_dir(server: StatsServer) -> None:
    st = server.path.lstat()
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()
    server.stop()
    assert not server.path.exists()  # stop removes the socket


def test_refuses_world_writable_dir_and_non_socket(tmp_path: Path) -> None:
    bad = tmp_path / "open"
    bad.mkdir()
    bad.chmod(0o777)
    with pytest.raises(StatsError, match="writable"):
        StatsServer(bad / "stats", Counter(), META).start()
    ok = tmp_path / "ok"
    ok.mkdir(mode=0o755)
    (ok / "stats").write_text("not a socket")
    with pytest.raises(StatsError, match="not a socket"):
        StatsServer(ok / "stats", Counter(), META).start()
    assert (ok / "stats").read_text() == "not a socket"


def test_stale_socket_is_replaced_live_one_is_not(sockdir: Path) -> None:
    sockdir.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sockdir / "stats"))
    stale.close()  # the file stays, nobody listens: a crashed server
    with StatsServer(sockdir / "stats", Counter(), META) as srv:
        assert read_once(srv.path).ok
        with pytest.raises(StatsError, match="another stats server"):
            StatsServer(sockdir / "stats", Counter(), META).start()
        assert read_once(srv.path).ok  # the live one was left alone


def test_a_stopping_server_leaves_its_successors_socket(sockdir: Path) -> None:
    """A restarted scheduler's new server may take the path over while the old one is still stopping
    (it sees the old socket as stale and replaces it); the old stop() must not delete the new one."""
    old = StatsServer(sockdir / "stats", Counter(), META).start()
    (sockdir / "stats").unlink()  # what the successor's start() does to a socket nobody answers on
    with StatsServer(sockdir / "stats", Counter(), META) as new:
        old.stop()
        assert stat.S_ISSOCK((sockdir / "stats").lstat().st_mode)
        assert read_once(new.path).ok
    assert not (sockdir / "stats").exists()  # and the successor still removes its own


def test_bad_meta_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(StatsError):
        StatsServer(tmp_path / "s", Counter(), {"X": {"fields": {"a": {"datum": "u128"}}}})


def test_errors_are_replies_and_the_connection_survives(sockdir: Path) -> None:
    def boom(args):
        raise RuntimeError("counter map gone")

    with StatsServer(sockdir / "stats", boom, META, targets={"nan": lambda a: {"x": object()}}) as srv:
        with StatsClient(srv.path, timeout=2) as c:
            with pytest.raises(StatsError, match="counter map gone"):
                c.stats()
            with pytest.raises(StatsError, match="unserialisable"):
                c.stats("nan")
            assert "Metrics" in c.meta()  # same client, still in sync
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(str(srv.path))
            s.sendall(b"this is not json\n{\"req\":\"stats_meta\"}\n")
            buf = b""
            while buf.count(b"\n") < 2:
                buf += s.recv(65536)
        first, second = (json.loads(x) for x in buf.splitlines())
        assert first["errno"] == 22 and second["errno"] == 0


@pytest.fixture
def open_server():
    """A server in a fresh directory others may traverse (pytest's tmp dirs are 0700)."""
    base = Path(tempfile.mkdtemp(prefix="schedtop-test-"))
    base.chmod(0o755)
    srv = StatsServer(base / "scx" / "stats", Counter(), META).start()
    yield srv
    srv.stop()
    shutil.rmtree(base)


@pytest.mark.root
def test_peer_cred_refuses_non_root(open_server: StatsServer) -> None:
    server = open_server
    # 0600 already stops others at connect(); open the mode up to prove SO_PEERCRED stops them too.
    os.chmod(server.path, 0o666)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: become nobody, then try
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(65534)
            try:
                with StatsClient(server.path, timeout=2) as c:
                    c.meta()
                msg = b"served"
            except StatsError as exc:
                msg = str(exc).encode()
            os.write(w, msg)
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as f:
        answer = f.read().decode()
    # Refused: the server closed on it (the write or the read notices, whichever comes first).
    assert answer != "served"
    assert any(w in answer.lower() for w in ("closed by the server", "reset", "broken pipe")), answer
    assert server.rejected == 1
    assert read_once(server.path).ok  # root still gets served


@pytest.mark.root
def test_mode_0600_refuses_non_root_at_connect(open_server: StatsServer) -> None:
    server = open_server
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(65534)
            os.write(w, str(read_once(server.path, timeout=2).error).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as f:
        assert "Permission denied" in f.read().decode()
    assert server.rejected == 0  # the kernel refused it before we ever saw it


def _silent_server(path: Path, mode: str, stop: threading.Event,
                   accepted: threading.Event | None = None) -> threading.Thread:
    """A deliberately broken peer: accepts, then never answers / answers garbage / floods."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(4)
    listener.settimeout(0.1)

    def run() -> None:
        conns = []
        while not stop.is_set():
            try:
                c, _ = listener.accept()
            except TimeoutError:
                continue
            conns.append(c)
            if accepted is not None:
                accepted.set()
            if mode == "garbage":
                c.sendall(b"<html>hello</html>\n")
            elif mode == "flood":
                try:
                    c.settimeout(5)
                    c.sendall(b"x" * (5 << 20))
                except OSError:
                    pass
            elif mode == "close":
                c.close()
        for c in conns:
            c.close()
        listener.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("mode,match", [
    ("silent", "timed out"),
    ("garbage", "not JSON"),
    ("flood", "longer than"),
    ("close", "closed|reset|Broken pipe"),
])
def test_broken_server_costs_a_bounded_error(tmp_path: Path, mode: str, match: str) -> None:
    stop = threading.Event()
    t = _silent_server(tmp_path / "stats", mode, stop)
    try:
        t0 = time.monotonic()
        with pytest.raises(StatsError, match=match):
            with StatsClient(tmp_path / "stats", timeout=0.3) as c:
                c.meta()
        assert time.monotonic() - t0 < 1.5
    finally:
        stop.set()
        t.join(2)


def test_poller_never_blocks_its_reader_on_a_slow_server(tmp_path: Path) -> None:
    # Decided by order, not by a stopwatch (a 10 ms bound on latest() is one preemption under
    # load): the server sits on the poll for the poller's whole 60 s timeout, and the reader,
    # asking while that poll is in flight, gets "no reading yet" at once, not after the poll.
    stop = threading.Event()
    accepted = threading.Event()
    t = _silent_server(tmp_path / "stats", "silent", stop, accepted)
    poller = StatsPoller(tmp_path / "stats", interval=0.1, timeout=60).start()
    try:
        assert accepted.wait(10), "the poller never connected"
        t0 = time.monotonic()
        assert poller.latest() is None  # what the UI thread calls each frame
        assert time.monotonic() - t0 < 30  # a reader that waited for the poll would sit here 60 s
    finally:
        stop.set()  # closes the held connection: the poll ends with an error and the thread stops
        t.join(2)
        poller.stop()
    # A short timeout turns the silence into a reading that says so.
    stop = threading.Event()
    t = _silent_server(tmp_path / "stats2", "silent", stop)
    poller = StatsPoller(tmp_path / "stats2", interval=0.1, timeout=0.2).start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and poller.latest() is None:
            time.sleep(0.01)
        reading = poller.latest()
        assert reading is not None and not reading.ok and "timed out" in str(reading.error)
    finally:
        poller.stop()
        stop.set()
        t.join(2)


def test_poller_follows_a_server_that_comes_and_goes(sockdir: Path) -> None:
    poller = StatsPoller(sockdir / "stats", interval=0.05, timeout=0.5).start()
    try:
        deadline = time.monotonic() + 10  # the first poll's answer, however late the thread runs
        while time.monotonic() < deadline and poller.latest() is None:
            time.sleep(0.02)
        first = poller.latest()
        assert first is not None and not first.ok  # no scheduler yet
        fn = Counter()
        with StatsServer(sockdir / "stats", fn, META):
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and not ((r := poller.latest()) and r.ok):
                time.sleep(0.02)
            r = poller.latest()
            assert r is not None and r.ok and r.top == "Metrics"
            extra = r.to_extra()
            assert extra["metrics"]["nr_queued"] >= 1 and extra["kinds"]["lat_us"] == "float"
            json.dumps(extra)  # what goes into Snapshot.extras must be JSON
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and (r := poller.latest()) is not None and r.ok:
            time.sleep(0.02)
        r = poller.latest()
        assert r is not None and not r.ok
    finally:
        poller.stop()


def test_many_clients_and_one_that_never_reads(server: StatsServer) -> None:
    hog = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hog.connect(str(server.path))
    hog.sendall(b'{"req":"stats_meta"}\n' * 2000)  # and never read the replies
    results: list[bool] = []

    def one() -> None:
        results.append(read_once(server.path, timeout=2).ok)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(5)
    hog.close()
    assert results == [True] * 8


def test_parse_meta_of_a_real_scx_scheduler() -> None:
    # The stats_meta reply shape from rust/scx_stats' README (ClusterStats/DomainStats example).
    raw = {
        "ClusterStats": {"desc": "cluster statistics", "name": "ClusterStats", "top": "true", "fields": {
            "at": {"datum": "u64", "desc": "update timestamp"},
            "bitmap": {"array": "u64", "desc": "some bitmap", "user": {"_om_skip": "true"}},
            "doms_dict": {"desc": "domain statistics",
                          "dict": {"datum": {"struct": "DomainStats"}, "key": "u64"}},
            "name": {"datum": "string"}}},
        "DomainStats": {"desc": "domain statistics", "name": "DomainStats",
                        "user": {"_om_label": "domain_name", "_om_prefix": "d_"}, "fields": {
                            "events": {"datum": "u64", "desc": "an event counter"},
                            "name": {"datum": "string"},
                            "pressure": {"datum": "float", "desc": "a gauge number"}}},
    }
    meta = parse_meta(raw)
    top = top_struct(meta)
    assert top is not None and top.name == "ClusterStats"
    value = {"at": 12345, "bitmap": [3735928559, 3203391149],
             "doms_dict": {"0": {"events": 1234, "name": "domain 0", "pressure": 1.234},
                           "3": {"events": 5678, "name": "domain 3", "pressure": 5.678}},
             "name": "test cluster"}
    m = {x.path: x for x in flatten(meta, value)}
    assert m["doms_dict.3.pressure"].value == 5.678 and m["doms_dict.3.pressure"].kind == "float"
    assert m["bitmap.0"].value == 3735928559
    assert meta["ClusterStats"].fields[1].user == {"_om_skip": "true"}


# --- the shapes real scx schedulers serve (tests/fixtures/scx_stats, from their Rust definitions) ---

FIXTURES = Path(__file__).parent.parent / "fixtures" / "scx_stats"
REAL = ("scx_layered", "scx_lavd", "scx_rusty", "scx_bpfland", "scx_rustland")
TOPS = {"scx_layered": "SysStats", "scx_lavd": "SysStats", "scx_rusty": "ClusterStats",
        "scx_bpfland": "Metrics", "scx_rustland": "Metrics"}


def fixture(name: str) -> tuple[dict, dict]:
    return (json.loads((FIXTURES / f"{name}.stats_meta.json").read_text()),
            json.loads((FIXTURES / f"{name}.stats.json").read_text()))


def leaves(value: Any, path: str = "") -> dict[str, Any]:
    """Every leaf of a JSON reply by dotted path, read off the JSON alone (no metadata)."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in leaves(item, f"{path}.{key}" if path else key).items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in leaves(item, f"{path}.{i}").items()}
    return {path: value}


def served(sockdir: Path, meta: dict, reply: dict) -> StatsReading:
    """The real client's reading of the project's StatsServer serving (meta, reply)."""
    with StatsServer(sockdir / "stats", lambda _args: reply, meta):
        reading = read_once(sockdir / "stats", timeout=2)
    assert reading.ok, reading.error
    return reading


def exposition(part: StatsPart, scheduler: str) -> dict[str, tuple[str, dict[tuple[tuple[str, str], ...], float]]]:
    """What the exporter serves for one scx_stats part, parsed back by prometheus_client:
    {family: (help, {sorted labels: value})}."""
    class One(Collector):
        def collect(self) -> Iterator[Any]:
            yield from scx_stats_families(part, scheduler)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(One())
    text = generate_latest(registry).decode()
    return {fam.name: (fam.documentation, {tuple(sorted(s.labels.items())): s.value for s in fam.samples})
            for fam in text_string_to_metric_families(text)}


@pytest.mark.parametrize("name", REAL)
def test_client_reads_a_real_schedulers_stats_whole(sockdir: Path, name: str) -> None:
    meta, reply = fixture(name)
    reading = served(sockdir, meta, reply)
    assert reading.top == TOPS[name]  # scx_lavd marks two structs top: the reply says which it is
    got = {m.path: m for m in reading.metrics}
    assert {p: m.value for p, m in got.items()} == leaves(reply)  # every leaf, none invented
    top = meta[TOPS[name]]["fields"]
    for field, f in top.items():
        if "datum" in f and isinstance(f["datum"], str):
            assert got[field].kind == f["datum"] and got[field].desc == f.get("desc", "")
            assert got[field].skip == ("_om_skip" in f.get("user", {}))
    part = reading.to_part()
    again = Extras.from_json(to_dict(Extras(scx_stats=part))).scx_stats  # as a recording keeps it
    assert again == part


def test_layered_layers_are_labelled_and_its_skips_left_out(sockdir: Path) -> None:
    meta, reply = fixture("scx_layered")
    part = served(sockdir, meta, reply).to_part()
    fams = exposition(part, "layered")
    batch = (("layer_name", "batch"), ("scheduler", "layered"))
    # LayerStats: _om_prefix "l_", _om_label "layer_name" -> l_<field>{layer_name=<key>}
    assert fams["schedtop_scx_stat_l_util"][1] == {
        (("layer_name", k), ("scheduler", "layered")): v["util"] for k, v in reply["layers"].items()}
    assert fams["schedtop_scx_stat_l_util"][0] == meta["LayerStats"]["fields"]["util"]["desc"]
    assert fams["schedtop_scx_stat_l_tasks"][1][batch] == reply["layers"]["batch"]["tasks"]
    hist = fams["schedtop_scx_stat_l_l_runq_lat_hist"][1]  # an array: one series per element
    assert hist[(("index", "25"), *batch)] == reply["layers"]["batch"]["l_runq_lat_hist"][25]
    assert len(hist) == 3 * 26
    assert fams["schedtop_scx_stat_busy"][1] == {(("scheduler", "layered"),): reply["busy"]}
    # _om_skip: SysStats.at, LayerStats.index, is_excl and the cpus mask
    for skipped in ("at", "l_index", "l_is_excl", "l_cpus", "index", "is_excl"):
        assert "schedtop_scx_stat_" + skipped not in fams
    assert not any("layers_" in f for f in fams)  # no layer name in a metric name
    # fallback_cpus is a dict of plain numbers: no series name in the convention, its path then
    assert fams["schedtop_scx_stat_fallback_cpus_0"][1] == {(("scheduler", "layered"),): reply["fallback_cpus"]["0"]}


def test_rusty_domains_carry_their_node_and_domain(sockdir: Path) -> None:
    meta, reply = fixture("scx_rusty")
    fams = exposition(served(sockdir, meta, reply).to_part(), "rusty")
    node = reply["nodes"]["0"]
    assert fams["schedtop_scx_stat_n_load"][1] == {(("node", "0"), ("scheduler", "rusty")): node["load"]}
    assert fams["schedtop_scx_stat_d_imbal"][1] == {
        (("domain", d), ("node", "0"), ("scheduler", "rusty")): v["imbal"] for d, v in node["doms"].items()}
    assert fams["schedtop_scx_stat_load"][1] == {(("scheduler", "rusty"),): reply["load"]}
    assert "schedtop_scx_stat_direct_greedy_cpus" not in fams and "schedtop_scx_stat_kick_greedy_cpus" not in fams


@pytest.mark.parametrize("name", ("scx_bpfland", "scx_rustland", "scx_lavd"))
def test_flat_schedulers_give_one_gauge_per_number_field(sockdir: Path, name: str) -> None:
    meta, reply = fixture(name)
    fams = exposition(served(sockdir, meta, reply).to_part(), name)
    top = meta[TOPS[name]]["fields"]
    numbers = {f for f, spec in top.items() if spec.get("datum") in ("u64", "i64", "float")}
    assert {f for f in fams if f.startswith("schedtop_scx_stat_") and f != "schedtop_scx_stat_string_info"} \
        == {"schedtop_scx_stat_" + f for f in numbers}
    for f in numbers:
        assert fams["schedtop_scx_stat_" + f] == (top[f].get("desc") or f"scx_stats {f}",
                                                 {(("scheduler", name),): reply[f]})
    strings = {f for f, spec in top.items() if spec.get("datum") == "string"}
    assert fams["schedtop_scx_stat_string_info"][1] == {
        (("scheduler", name), ("stat", f), ("value", reply[f])): 1.0 for f in strings}


def test_openmetrics_rules_hold_for_real_schedulers_and_say_where_not() -> None:
    found = {}
    for name in REAL:
        meta, reply = fixture(name)
        found[name] = openmetrics_problems(parse_meta(meta), reply)
    assert found["scx_rusty"] == found["scx_bpfland"] == found["scx_rustland"] == []
    assert found["scx_lavd"] == ["2 structs marked top (SchedSample, SysStats)"]
    assert len(found["scx_layered"]) == 2 and all(p.startswith(".fallback_cpus: ") for p in found["scx_layered"])


# --- schedtop's own server, and the shape it served before -----------------------------------------


def loop_report() -> dict[str, Any]:
    """A stats report with the keys the embedded loop's report has (schedtop.scx.loop, _publish)
    and its BPF counters (every field of struct scx_counters)."""
    names = loop_stats.COUNTER_NAMES
    counters = {n: 1000 + 10 * i for i, n in enumerate(names)}
    return {
        "policy": "deadline", "slice_ns": 5_000_000, "partial": True, "uptime_s": 12.5, "user_queue": 4,
        "counters": counters, "rates": {n: 2.5 * i for i, n in enumerate(names) if n.startswith("nr_")},
        "decisions": 900, "paths": {"per_event": counters["nr_user_dispatches"],
                                    "fast": counters["nr_kernel_dispatches"],
                                    "congested": counters["nr_congested"], "planned": 0},
        "loop_us_per_decision": None, "decisions_per_wakeup": 1.5, "decide_p50_us": 20.0, "decide_p99_us": 80.0,
        "dispatch_p50_us": 40.0, "dispatch_p99_us": 250.0, "page_faults": 3, "page_faults_after_warmup": None,
        "major_faults": 0, "allocator": "pymalloc", "cpu_pct": 4.25, "rss_kb": 40960, "policy_stats": {},
        "knobs": {"42": [1, 2, 3, True]}, "tasks": {}, "warnings": [], "last_command": None, "last_error": None,
    }


def test_schedtops_server_has_the_real_schedulers_shape(sockdir: Path) -> None:
    meta = parse_meta(loop_stats.META)
    latest = loop_report()
    reply = loop_stats.shape(latest)
    assert openmetrics_problems(meta, reply) == []
    top = meta[loop_stats.TOP]
    assert all(f.shape == "datum" or (f.shape == "dict" and f.struct == loop_stats.PATH_STRUCT) for f in top.fields)
    assert set(COUNTERS) == {f[0] for f in ScxCounters._fields_}  # each counter says what it counts
    with StatsServer(sockdir / "stats", lambda _args: reply, loop_stats.META):
        reading = read_once(sockdir / "stats", timeout=2)
    got = {m.path: m for m in reading.metrics}
    for name, value in latest["counters"].items():
        assert got[name].value == value and got[name].kind == "u64" and got[name].desc == COUNTERS[name]
    assert got["nr_queued_per_s"].value == latest["rates"]["nr_queued"]
    assert got["partial"].value == 1 and "page_faults_after_warmup" not in got  # not known yet: left out
    assert "knobs" not in got and "counters.nr_queued" not in got
    assert got["loop_last_run_ns"].skip  # a timestamp, no gauge
    assert loop_stats.trace_counters(reply) == {"schedtop scx: user-space queue depth": 4.0,
                                                "schedtop scx: dispatch latency p50 (us)": 40.0,
                                                "schedtop scx: dispatch latency p99 (us)": 250.0}
    fams = exposition(reading.to_part(), "schedtop")
    assert fams["schedtop_scx_stat_path_tasks"][1] == {
        (("path", p), ("scheduler", "schedtop")): float(n) for p, n in latest["paths"].items()}
    assert fams["schedtop_scx_stat_nr_queued"][1] == {(("scheduler", "schedtop"),): latest["counters"]["nr_queued"]}
    assert "schedtop_scx_stat_loop_last_run_ns" not in fams


def test_the_shape_schedtop_served_before_is_still_read(sockdir: Path) -> None:
    # Its counters, rates and paths were dicts of plain numbers, which scx's tools cannot name.
    meta = {"SchedtopStats": struct_meta("SchedtopStats", {
        "policy": ("string", "policy module in charge"), "user_queue": ("u64", "tasks waiting in user space"),
        "counters": ("{string:u64}", "BPF-side counters"), "rates": ("{string:float}", "the nr_* counters per second"),
        "paths": ("{string:u64}", "tasks per path")}, desc="schedtop user-space scheduler", top=True)}
    reply = {"policy": "deadline", "user_queue": 3, "counters": {"nr_queued": 17, "nr_congested": 2},
             "rates": {"nr_queued": 4.5}, "paths": {"fast": 9}}
    assert openmetrics_problems(parse_meta(meta), reply)
    reading = served(sockdir, meta, reply)
    assert {m.path: m.value for m in reading.metrics} == leaves(reply)
    fams = exposition(reading.to_part(), "schedtop")
    assert fams["schedtop_scx_stat_counters_nr_queued"][1] == {(("scheduler", "schedtop"),): 17.0}
    assert fams["schedtop_scx_stat_rates_nr_queued"][1] == {(("scheduler", "schedtop"),): 4.5}
    assert fams["schedtop_scx_stat_user_queue"][1] == {(("scheduler", "schedtop"),): 3.0}


def test_labels_that_clash_and_series_that_repeat_stay_scrapable(sockdir: Path) -> None:
    # A server whose _om_label is "scheduler" (ours) and whose dicts give one name two label sets.
    meta = {
        "Top": struct_meta("Top", {"load": ("float", "top load"), "a": ("{string:A}", ""), "b": ("{u64:B}", "")},
                           top=True),
        "A": struct_meta("A", {"load": ("float", "a load")}, user={"_om_label": "scheduler"}),
        "B": struct_meta("B", {"load": ("float", "b load")}, user={"_om_label": "1 bad-label"}),
    }
    reply = {"load": 1.0, "a": {"x": {"load": 2.0}}, "b": {"7": {"load": 3.0}}}
    problems = openmetrics_problems(parse_meta(meta), reply)
    assert any("'load' again" in p for p in problems) and any("not a label name" in p for p in problems)
    fams = exposition(served(sockdir, meta, reply).to_part(), "s")
    # One family per name (the first path in order: a.x.load), our "scheduler" label kept apart
    # from theirs; the same name with other labels (b.7.load, load) is left out, not a broken scrape.
    assert fams["schedtop_scx_stat_load"][1] == {(("scheduler", "s"), ("scheduler_", "x")): 2.0}
