"""scx_stats: schedtop's client against schedtop's server over real UNIX sockets.

Covers the wire format of sched-ext/scx rust/scx_stats, the socket's safety (0600, directory
checks, SO_PEERCRED), and that a slow or broken server costs a bounded wait and an error,
never a hang.
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
from pathlib import Path

import pytest

from schedtop.export.scx_stats import (
    StatsClient, StatsError, StatsPoller, StatsServer, flatten, parse_meta, read_once, struct_meta, top_struct,
)

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
            os.write(w, read_once(server.path, timeout=2).error.encode())
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
            except socket.timeout:
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
        assert reading is not None and not reading.ok and "timed out" in reading.error
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
        assert poller.latest() is not None and not poller.latest().ok  # no scheduler yet
        fn = Counter()
        with StatsServer(sockdir / "stats", fn, META):
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and not (poller.latest() and poller.latest().ok):
                time.sleep(0.02)
            r = poller.latest()
            assert r is not None and r.ok and r.top == "Metrics"
            extra = r.to_extra()
            assert extra["metrics"]["nr_queued"] >= 1 and extra["kinds"]["lat_us"] == "float"
            json.dumps(extra)  # what goes into Snapshot.extras must be JSON
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and poller.latest().ok:
            time.sleep(0.02)
        assert not poller.latest().ok
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
    assert top_struct(meta).name == "ClusterStats"
    value = {"at": 12345, "bitmap": [3735928559, 3203391149],
             "doms_dict": {"0": {"events": 1234, "name": "domain 0", "pressure": 1.234},
                           "3": {"events": 5678, "name": "domain 3", "pressure": 5.678}},
             "name": "test cluster"}
    m = {x.path: x for x in flatten(meta, value)}
    assert m["doms_dict.3.pressure"].value == 5.678 and m["doms_dict.3.pressure"].kind == "float"
    assert m["bitmap.0"].value == 3735928559
    assert meta["ClusterStats"].fields[1].user == {"_om_skip": "true"}
