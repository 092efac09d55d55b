"""`schedtop trace -o FILE.perfetto-trace [-t SECONDS] [--sample N]`: record scheduling events.

Records sched_switch, sched_wakeup(_new) and sched_migrate_task from the BPF tier for SECONDS
(Ctrl-C stops earlier) and writes a Perfetto trace: open it at ui.perfetto.dev. When schedtop's own
scheduler runs and serves scx_stats, its user-space queue depth and dispatch latency are added
as counter tracks. Dropped events are counted in the file and printed.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any, Callable

DEFAULT_SECONDS = 5.0
# A day at most: a trace grows by MBs per second; Ctrl-C ends any recording early.
MIN_SECONDS, MAX_SECONDS = 0.01, 86400.0
MAX_SAMPLE = 1_000_000


def _output(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("needs a file name, e.g. -o boot.perfetto-trace")
    return text


def _sample(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text[:30]!r}") from None
    if not 1 <= n <= MAX_SAMPLE:
        raise argparse.ArgumentTypeError(f"{text[:30]} is out of range: 1..{MAX_SAMPLE}")
    return n


def configure(parser: argparse.ArgumentParser) -> None:
    from schedtop.cli import seconds_in

    parser.epilog = "Example: schedtop trace -o boot.perfetto-trace -t 10   (then open it in ui.perfetto.dev)"
    parser.add_argument("-o", "--output", required=True, metavar="FILE", type=_output,
                        help="the trace file to write (.perfetto-trace); an existing file of yours is "
                             "overwritten, a symlink is never followed")
    parser.add_argument("-t", "--time", type=seconds_in(MIN_SECONDS, MAX_SECONDS), default=DEFAULT_SECONDS,
                        metavar="SECONDS",
                        help=f"how long to record, {MIN_SECONDS:g}..{MAX_SECONDS:g} s (default {DEFAULT_SECONDS:g}); "
                             "Ctrl-C stops earlier and still writes the file")
    parser.add_argument("--sample", type=_sample, default=1, metavar="N",
                        help=f"record 1 event in N, 1..{MAX_SAMPLE} (default 1: every event)")
    parser.add_argument("--stats", metavar="PATH", default=None,
                        help="scx_stats socket of schedtop's scheduler for its counter tracks "
                             "(default /var/run/scx/root/stats when schedtop's scheduler runs)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")


class StatsUnavailable(Exception):
    """The scx_stats socket does not answer; one line for the user."""


def _fail(msg: str, code: int = 1) -> int:
    print(f"schedtop trace: {msg}", file=sys.stderr)
    return code


def scx_counter_source(path: str | None) -> Callable[[], dict[str, float]] | None:
    """Counter tracks from schedtop's scheduler's stats socket, when it runs (None otherwise)."""
    from schedtop.collect.sched_ext import read_scheduler_info
    from schedtop.export.loop_stats import trace_counters
    from schedtop.export.scx_stats import DEFAULT_PATH, StatsClient, StatsError

    explicit = path is not None
    if path is None:
        if read_scheduler_info().kind != "schedtop":
            return None
        path = DEFAULT_PATH
    client = StatsClient(path, timeout=0.2)
    if explicit:  # a socket named with --stats must answer now: no claim of counters that never come
        try:
            client.stats()
        except StatsError as exc:
            client.close()
            raise StatsUnavailable(f"--stats {path}: no scx_stats there ({exc}); "
                                   "start `schedtop scx` first, or leave --stats out") from None
    lock = threading.Lock()

    def read() -> dict[str, float]:
        with lock:
            try:
                return trace_counters(client.stats())
            except StatsError:
                return {}

    return read


def run(args: Any) -> int:
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir):
        return _fail(f"{out_dir}: no such directory", 2)
    if os.geteuid() != 0:
        return _fail("recording needs root (BPF tracepoints); try: sudo schedtop trace ...")

    from schedtop.export.trace_record import TraceRecorder, open_event_tier

    try:
        tier = open_event_tier()
    except ImportError as exc:
        return _fail(f"the BPF tier is not available: {exc}")
    except Exception as exc:  # BpfUnavailable and friends: one line, no traceback
        return _fail(f"cannot load the BPF tier: {exc}")
    try:
        counters = scx_counter_source(args.stats)
    except StatsUnavailable as exc:
        tier.close()
        return _fail(str(exc), 2)
    try:
        rec = TraceRecorder(args.output, tier=tier, extra_counters=counters, sample_rate=args.sample).start()
    except OSError as exc:
        tier.close()
        return _fail(f"{args.output}: {exc.strerror or exc}")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    what = f"for {args.time:g} s (Ctrl-C stops earlier)"
    print(f"schedtop trace: recording {what} into {args.output}"
          + (f" (1 event in {args.sample})" if args.sample > 1 else "")
          + (" with schedtop scx counters" if counters else ""), file=sys.stderr)
    stop.wait(args.time)
    summary = rec.stop()
    tier.close()
    if rec.error or summary is None:
        return _fail(f"recording failed: {rec.error}")
    kinds = ", ".join(f"{v} {k}" for k, v in summary.events.items() if v)
    total = sum(summary.events.values())
    print(f"schedtop trace: wrote {summary.path}: {total} events ({kinds or 'none'}), "
          f"{summary.pids} tasks, {summary.bytes} bytes; dropped {summary.dropped}"
          + (f" (BPF counters: {rec.bpf_events} written, {rec.bpf_dropped} dropped)"), file=sys.stderr)
    if summary.dropped:
        print("schedtop trace: events were dropped (ring buffer full); they are marked in the trace. "
              "Use --sample N to record fewer.", file=sys.stderr)
    return 0
