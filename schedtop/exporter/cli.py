"""`schedtop exporter`: serve /metrics for Prometheus (127.0.0.1:9645 unless --listen says otherwise).

Startup collects once (so the first scrape already has rates and, as root, BPF data), says on
stderr where it listens and, without the BPF tier, which metrics are missing and why; then it
serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import socket
import sys
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

log = logging.getLogger("schedtop.exporter")

DEFAULT_LISTEN = "127.0.0.1:9645"
INTERVAL_RANGE = (0.1, 3600.0)


def listen_address(text: str, example: str = DEFAULT_LISTEN) -> tuple[str, int]:
    """HOST:PORT, [IPV6]:PORT; HOST an address or a name that resolves. An argparse type
    (`schedtop serve` passes its own default as the example the errors show)."""
    from schedtop.cli import _short

    eport = example.rpartition(":")[2]
    t = text.strip()
    if t.startswith("["):
        host, sep, rest = t[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise argparse.ArgumentTypeError(f"{_short(text)}: an IPv6 address is written [ADDR]:PORT")
        port = rest[1:]
    elif t.count(":") == 1:
        host, _, port = t.partition(":")
    elif ":" in t:
        raise argparse.ArgumentTypeError(f"{_short(text)}: an IPv6 address needs brackets, e.g. [::1]:{eport}")
    else:
        raise argparse.ArgumentTypeError(f"{_short(text)}: expected HOST:PORT, e.g. {example}")
    if not host:
        raise argparse.ArgumentTypeError(f"{_short(text)}: no address: say 127.0.0.1:{port or 'PORT'} (this "
                                         "machine only) or 0.0.0.0:PORT (every interface)")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{_short(text)}: the port must be a number in 1..65535")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise argparse.ArgumentTypeError(f"{_short(text)}: cannot resolve {_short(host)}: "
                                             f"{getattr(exc, 'strerror', None) or exc}") from None
    return host, int(port)


def configure(p: argparse.ArgumentParser) -> None:
    from schedtop.cli import seconds_in
    from schedtop.exporter.collection import MAX_TOP

    p.add_argument("--listen", type=listen_address, default=listen_address(DEFAULT_LISTEN), metavar="HOST:PORT",
                   help=f"where to serve /metrics (default {DEFAULT_LISTEN}: this machine only)")
    p.add_argument("--interval", type=seconds_in(*INTERVAL_RANGE), default=1.0, metavar="SECONDS",
                   help="collect at most once per this many seconds; scrapes in between share that "
                        "collection (default 1; set it to the scrape interval when several servers scrape)")
    p.add_argument("--top", type=_top(MAX_TOP), default=10, metavar="N",
                   help=f"processes with their own series, by run-queue wait (0..{MAX_TOP}, default 10)")
    p.add_argument("--no-bpf", action="store_true", help="serve the procfs tier only, never load BPF")
    p.add_argument("--stats", metavar="SOCKET", default=None,
                   help="the scx_stats socket to read (default: $SCHEDTOP_SCX_STATS or /var/run/scx/root/stats)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")


def _top(hi: int):
    def conv(text: str) -> int:
        if not text.strip().isdigit() or int(text) > hi:
            raise argparse.ArgumentTypeError(f"not a count in 0..{hi}: {text!r}")
        return int(text)
    conv.__name__ = "count"
    return conv


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # one line per scrape is noise
        pass


def serve(host: str, port: int, registry: Any) -> WSGIServer:
    """A threading WSGI server bound to host:port (not serving yet); OSError when it cannot bind."""
    from prometheus_client import make_wsgi_app
    from prometheus_client.exposition import ThreadingWSGIServer

    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

    class Server(ThreadingWSGIServer):
        address_family = family

    return make_server(host, port, make_wsgi_app(registry), Server, handler_class=_QuietHandler)


def run(args: Any) -> int:
    from prometheus_client import CollectorRegistry, ProcessCollector

    from schedtop.exporter.collection import SharedCollection
    from schedtop.exporter.metrics import SchedtopCollector, missing_metrics

    host, port = args.listen
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    registry = CollectorRegistry(auto_describe=False)
    try:  # bind first: a bad address is said at once, before the BPF tier loads
        httpd = serve(host, port, registry)
    except OSError as exc:
        print(f"schedtop exporter: cannot listen on {where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    from schedtop.collect.ext_watch import ExtWatch
    from schedtop.collect.live import LiveSource

    source = LiveSource(use_bpf=not args.no_bpf, bpf_wait=None)
    watch = ExtWatch(stats_path=args.stats, kmsg=False).attach(source)
    try:
        shared = SharedCollection(source, interval=args.interval, top=args.top)
        first = shared.get()  # primes the rates and waits for the BPF tier
        tier = source.bpf_tier
        if tier is not None:
            tier.set_sample_rate(0)  # nothing here reads the sampled event stream
        missing, why = missing_metrics(first, args.no_bpf)
        registry.register(SchedtopCollector(shared, args.no_bpf))
        ProcessCollector(registry=registry)
        thread = threading.Thread(target=httpd.serve_forever, name="schedtop-exporter-http", daemon=True)
        thread.start()
        print(f"schedtop exporter: serving http://{where}/metrics ({first.snapshot.source} tier, "
              f"one collection per {args.interval:g} s, top {args.top} processes)", file=sys.stderr, flush=True)
        if missing:
            log.warning("serving the %s tier without %s (%s); schedtop_metric_missing lists them",
                        first.snapshot.source, ", ".join(missing), why)
        stop = threading.Event()

        def on_signal(signum: int, frame: Any) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        stop.wait()
        httpd.shutdown()
        thread.join(5)
        return 0
    finally:
        httpd.server_close()
        watch.close()
        source.close()
