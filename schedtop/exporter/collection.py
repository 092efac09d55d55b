"""One collection per interval, shared by every scrape: the live source's Snapshot plus the BPF
tier's cumulative counters and histograms, the busiest processes and the tunings in force.

`SharedCollection.get()` is called by each scrape, from the HTTP server's threads. The first
caller after the interval has passed collects; scrapes that arrive meanwhile wait for that
collection and are served the same `Scrape`, so a scrape storm costs one collection.

The Snapshot carries the TUI's numbers (utilisation, depth, the percentiles since the BPF tier
attached, the scheduler, sched_ext events, scx_stats). Prometheus histograms and `_total`
counters need cumulative counts the Snapshot does not carry, so they are read from the same
BPF tier right after the Snapshot is built, under the same lock.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schedtop.collect.fold import fold_processes
from schedtop.collect.procfs import same_process
from schedtop.exporter import buckets
from schedtop.model import BpfPart, Snapshot, ViewRequest

log = logging.getLogger(__name__)

MAX_TOP = 100  # processes with their own series: the cardinality bound
MAX_TUNINGS = 200  # tunings listed one by one (all are counted)


@dataclass(frozen=True, slots=True)
class Latency:
    """A run-queue latency histogram since the BPF tier attached, in the exporter's buckets."""

    counts: tuple[int, ...]  # per bucket (not cumulative), the last one +Inf
    sum_ns: int

    @property
    def total(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True, slots=True)
class CpuCounters:
    """One CPU's BPF counters, cumulative since the tier attached."""

    cpu: int
    switches: int
    preempted: int
    voluntary: int
    wakeups: int
    migrations: int
    latency: Latency


@dataclass(frozen=True, slots=True)
class ProcessRow:
    """One of the top processes by run-queue wait (its threads folded)."""

    pid: int
    comm: str
    nr_threads: int
    wait_ns: int  # schedstat run-queue wait of its live threads, summed
    runtime_ns: int
    wait_ns_per_s: float
    latency: Latency | None  # BPF tier only


@dataclass(frozen=True, slots=True)
class Tuning:
    target: str  # task:TID:STARTTIME, group:ID or global
    attr: str
    value: str
    holder: str  # "schedtop set", "session", "orphan" (its session died without restoring)
    comm: str = ""


@dataclass(frozen=True, slots=True)
class Tunings:
    """The tunings in force, read (never written) from the steering journal's state dir."""

    directory: str
    readable: bool
    rows: tuple[Tuning, ...] = ()
    total: int = 0
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Scrape:
    """What one collection produced; every scrape until the next collection is served this."""

    seq: int
    snapshot: Snapshot
    cpus: tuple[CpuCounters, ...]  # () without the BPF tier
    processes: tuple[ProcessRow, ...]
    tunings: Tunings
    collect_s: float  # wall time the collection took
    collect_cpu_s: float  # CPU time of the collecting thread
    bpf: BpfPart | None = None  # the snapshot's BPF part (None on the procfs tier)


class SharedCollection:
    def __init__(self, source: Any, interval: float = 1.0, top: int = 10,
                 tunings: Callable[[], Tunings] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """source: a LiveSource (collect(request), bpf_tier). interval: a scrape within this many
        seconds of the last collection's start is served that collection. top: processes with
        their own series (0..MAX_TOP)."""
        if not 0 <= top <= MAX_TOP:
            raise ValueError(f"top must be 0..{MAX_TOP}, not {top}")
        self.source = source
        self.interval = interval
        self.top = top
        self._tunings = tunings or read_tunings
        self._clock = clock
        self._lock = threading.Lock()
        self._last: Scrape | None = None
        self._last_start = 0.0
        self.collections = 0

    def get(self) -> Scrape:
        with self._lock:
            now = self._clock()
            if self._last is None or now - self._last_start >= self.interval:
                self._last = self._collect(self.collections + 1)
                self._last_start = now
                self.collections += 1
            return self._last

    def _collect(self, seq: int) -> Scrape:
        t0, c0 = time.monotonic(), time.thread_time()
        snap = self.source.collect(ViewRequest(threads=True))
        tier = self.source.bpf_tier if snap.source == "bpf" else None
        cpus: tuple[CpuCounters, ...] = ()
        recs: dict[int, Any] | None = None
        if tier is not None:
            try:
                cpus = tuple(cpu_counters(tier.cpu_stats()))
                if self.top:
                    recs = tier.task_records()
            except Exception as exc:  # a tier that broke mid-run: serve the rest
                log.warning("BPF tier counters: %s", exc)
        processes = top_processes(snap, self.top, recs)
        try:
            tunings = self._tunings()
        except Exception as exc:  # the journal must never stop the metrics
            tunings = Tunings("", False, problems=(f"{type(exc).__name__}: {exc}",))
        return Scrape(seq, snap, cpus, processes, tunings, time.monotonic() - t0, time.thread_time() - c0,
                      snap.extras.bpf)


def _latency(slots: Sequence[int], sub_bits: int, sum_ns: int) -> Latency:
    return Latency(tuple(buckets.fold(slots, sub_bits)), int(sum_ns))


def cpu_counters(stats: Sequence[Any]) -> list[CpuCounters]:
    from schedtop.bpf import trace_events as te

    return [CpuCounters(i, int(cs.switches), int(cs.preempted), int(cs.voluntary), int(cs.wakeups),
                        int(cs.migrations), _latency(cs.lat_slots, te.CPU_SUB_BITS, cs.lat_sum_ns))
            for i, cs in enumerate(stats)]


def top_processes(snap: Snapshot, n: int, recs: Mapping[int, Any] | None) -> tuple[ProcessRow, ...]:
    """The n processes that waited longest on a run queue in the last interval (ties: the longest
    total wait), with their threads' BPF histograms summed when the tier is up."""
    if n <= 0:
        return ()
    # Rank by per-pid sums first and fold only the winners: folding every process costs more
    # than the rest of a scrape's own work at a few thousand threads.
    rank: dict[int, list[float]] = {}
    for t in snap.tasks:
        r = rank.get(t.pid)
        if r is None:
            rank[t.pid] = [t.wait_ns_per_s, t.wait_ns]
        else:
            r[0] += t.wait_ns_per_s
            r[1] += t.wait_ns
    top = set(sorted(rank, key=lambda pid: (-rank[pid][0], -rank[pid][1], pid))[:n])
    procs = sorted(fold_processes([t for t in snap.tasks if t.pid in top]),
                   key=lambda t: (-t.wait_ns_per_s, -t.wait_ns, t.pid))
    lat: dict[int, Latency] = {}
    empty = Latency((0,) * (len(buckets.BOUNDS_NS) + 1), 0)
    if recs is not None:
        from schedtop.bpf import trace_events as te

        wanted = {t.pid for t in procs}
        slots: dict[int, list[int]] = {}
        sums: dict[int, int] = {}
        for r in recs.values():
            if r.tgid in wanted and r.lat_count:
                acc = slots.setdefault(r.tgid, [0] * len(r.slots))
                for i, v in enumerate(r.slots):
                    if v:
                        acc[i] += v
                sums[r.tgid] = sums.get(r.tgid, 0) + int(r.lat_sum_ns)
        lat = {pid: _latency(s, te.TASK_SUB_BITS, sums[pid]) for pid, s in slots.items()}
    return tuple(ProcessRow(t.pid, t.comm, t.nr_threads, t.wait_ns, t.runtime_ns, t.wait_ns_per_s,
                            lat.get(t.pid, empty) if recs is not None else None) for t in procs)


# --- the journal, read only -------------------------------------------------------------------

_SESSION = re.compile(r"session-(\d+)-(\d+)\.json")


def read_tunings(directory: Path | None = None) -> Tunings:
    """Every attribute some journal holds (changed and not yet given back): schedtop set's
    cli.json, live sessions, and sessions that died without restoring (orphans). Nothing is
    created, moved aside or written: a file the journal would refuse is a problem line."""
    from schedtop.steer import journal

    d = directory or journal.state_dir(create=False)
    if not d.is_dir():
        return Tunings(str(d), readable=False)
    try:
        names = sorted(os.listdir(d))
    except OSError as exc:
        return Tunings(str(d), readable=False, problems=(f"{d}: {exc.strerror}",))
    rows: list[Tuning] = []
    problems: list[str] = []
    total = 0
    for name in names:
        m = _SESSION.fullmatch(name)
        if name == "cli.json":
            owner, holder = None, "schedtop set"
        elif m:
            owner = (int(m[1]), int(m[2]))
            holder = "session" if same_process(*owner) else "orphan"
        else:
            continue
        try:
            j = journal.Journal(d / name, owner, set_aside_bad=False)
        except journal.JournalError as exc:
            problems.append(str(exc))
            continue
        for h in j.held.values():
            total += 1
            if len(rows) < MAX_TUNINGS:
                comm = h.ref.comm if h.ref is not None and h.key.startswith("task:") else ""
                rows.append(Tuning(h.key, journal.ATTR_WORD.get(h.attr, h.attr),
                                   journal.fmt_value(h.attr, h.value), holder, comm))
    return Tunings(str(d), True, tuple(rows), total, tuple(problems))
