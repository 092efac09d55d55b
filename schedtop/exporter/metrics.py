"""The /metrics families, built from one `Scrape` with prometheus_client's metric families.

Names and what they mean (README, "Prometheus exporter", has the table):
  schedtop_runqueue_latency_seconds{cpu}            histogram, BPF tier (buckets: exporter/buckets.py)
  schedtop_process_runqueue_latency_seconds{pid,comm} histogram of the top processes, BPF tier
  schedtop_runqueue_latency_percentile_seconds{cpu,quantile} the TUI's percentiles (same window)
  schedtop_runqueue_depth{cpu}, schedtop_runqueue_depth_exact{cpu}, schedtop_cpu_utilisation_ratio{cpu}
  schedtop_context_switches_total{cpu}, schedtop_preemptions_total{cpu}, schedtop_wakeups_total{cpu},
  schedtop_migrations_total{cpu}                    BPF tier
  schedtop_process_runqueue_wait_seconds_total{pid,comm}, schedtop_process_runqueue_wait_ratio{pid,comm}
  schedtop_scheduler_info, schedtop_sched_ext_state{state}, schedtop_sched_ext_events_total{event}, ...
  schedtop_scx_stat_<name>{scheduler,<_om_label>...} the running scheduler's scx_stats, named by its metadata
                                                    as scx's scxstats_to_openmetrics names them (_om_prefix +
                                                    field, a label per dict of structs; _om_skip left out),
                                                    by dotted path where the metadata names no series
  schedtop_tunings_in_force{attr}, schedtop_tuning_info{target,attr,value,holder,comm}
  schedtop_bpf_events_total, schedtop_bpf_dropped_events_total, ...
  schedtop_metric_missing{metric,reason}            what this tier cannot serve, and why
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from schedtop.exporter import buckets
from schedtop.exporter.collection import Latency, Scrape, SharedCollection
from schedtop.model import BpfPart, StatsPart
from schedtop.textsafe import visible

EXT_STATES = ("absent", "disabled", "enabling", "enabled", "disabling")
MAX_SCX_STATS = 500
QUANTILES = (("0.5", "p50_us"), ("0.9", "p90_us"), ("0.99", "p99_us"))

# Families only the BPF tier serves: what schedtop_metric_missing lists on the procfs tier.
BPF_ONLY = (
    "schedtop_runqueue_latency_seconds",
    "schedtop_runqueue_latency_percentile_seconds",
    "schedtop_process_runqueue_latency_seconds",
    "schedtop_context_switches_total",
    "schedtop_preemptions_total",
    "schedtop_wakeups_total",
    "schedtop_migrations_total",
    "schedtop_bpf_events_total",
    "schedtop_bpf_dropped_events_total",
)


def missing_metrics(scrape: Scrape, bpf_disabled: bool = False) -> tuple[tuple[str, ...], str]:
    """(the families this scrape cannot serve, why), () when the BPF tier is up."""
    snap = scrape.snapshot
    if snap.source == "bpf":
        return (), ""
    if bpf_disabled:
        return BPF_ONLY, "BPF tier off: --no-bpf"
    why = next((w for w in snap.warnings if w.startswith("BPF tier")), "BPF tier not loaded")
    return BPF_ONLY, why


def _name(path: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", path).strip("_").lower() or "value"


def _histogram(fam: HistogramMetricFamily, labels: list[str], lat: Latency) -> None:
    fam.add_metric(labels, buckets.cumulative(lat.counts), lat.sum_ns / 1e9)


class SchedtopCollector(Collector):
    """A prometheus_client collector: each scrape gets the shared collection's latest Scrape."""

    def __init__(self, shared: SharedCollection, bpf_disabled: bool = False) -> None:
        self.shared = shared
        self.bpf_disabled = bpf_disabled
        self.scrapes = 0
        self._count = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        with self._count:
            self.scrapes += 1
            scrapes = self.scrapes
        scrape = self.shared.get()
        yield from families(scrape, self.bpf_disabled)
        yield CounterMetricFamily("schedtop_exporter_collections", "Collections made (one serves every "
                                  "scrape within the interval)", value=self.shared.collections)
        yield CounterMetricFamily("schedtop_exporter_scrapes", "Scrapes served", value=scrapes)


def families(scrape: Scrape, bpf_disabled: bool = False) -> Iterator[Metric]:
    snap = scrape.snapshot
    bpf = scrape.bpf

    src = GaugeMetricFamily("schedtop_source_info", "The tiers this collection used (procfs, "
                            "procfs+debugfs, bpf)", labels=["source", "kernel", "host"])
    src.add_metric([snap.source, snap.kernel, snap.host], 1)
    yield src
    missing, why = missing_metrics(scrape, bpf_disabled)
    miss = GaugeMetricFamily("schedtop_metric_missing", "1 for each metric family this tier cannot "
                             "serve, with the reason", labels=["metric", "reason"])
    for m in missing:
        miss.add_metric([m, why], 1)
    yield miss
    yield GaugeMetricFamily("schedtop_collection_seconds", "Wall time of the collection this scrape "
                            "was served", value=scrape.collect_s)
    yield GaugeMetricFamily("schedtop_collection_cpu_seconds", "CPU time of that collection",
                            value=scrape.collect_cpu_s)
    yield GaugeMetricFamily("schedtop_collection_timestamp_seconds", "Wall clock of that collection",
                            value=snap.wall)
    yield GaugeMetricFamily("schedtop_collection_interval_seconds", "Time between that collection and "
                            "the previous one (the window of the rates and ratios)", value=snap.interval_s)
    warn = GaugeMetricFamily("schedtop_warning_info", "What a tier could not do, one line each",
                             labels=["message"])
    for w in snap.warnings[:20]:
        warn.add_metric([visible(w)], 1)
    yield warn

    yield from _cpu_families(scrape)
    yield from _process_families(scrape)
    yield from _scheduler_families(scrape)
    yield from scx_stats_families(snap.extras.scx_stats, snap.scheduler.ops_name or "")
    yield from _tuning_families(scrape)
    if bpf is not None:
        yield from _bpf_families(bpf)


def _cpu_families(scrape: Scrape) -> Iterator[Metric]:
    snap = scrape.snapshot
    util = GaugeMetricFamily("schedtop_cpu_utilisation_ratio", "Busy share of the last interval, 0..1",
                             labels=["cpu"])
    depth = GaugeMetricFamily("schedtop_runqueue_depth", "Runnable tasks, including the one running",
                              labels=["cpu"])
    exact = GaugeMetricFamily("schedtop_runqueue_depth_exact", "1: depth from BPF or debugfs; 0: estimated "
                              "from /proc", labels=["cpu"])
    for c in snap.cpus:
        cpu = str(c.cpu)
        util.add_metric([cpu], c.util_pct / 100.0)
        depth.add_metric([cpu], c.nr_running)
        exact.add_metric([cpu], 1 if c.nr_running_exact else 0)
    yield util
    yield depth
    yield exact
    if not scrape.cpus:
        return
    hist = HistogramMetricFamily("schedtop_runqueue_latency_seconds", "Run-queue latency (wakeup or "
                                 "preemption to running) since the BPF tier attached", labels=["cpu"])
    counters = {
        "switches": CounterMetricFamily("schedtop_context_switches", "Context switches", labels=["cpu"]),
        "preempted": CounterMetricFamily("schedtop_preemptions", "Switches out of a task still runnable",
                                         labels=["cpu"]),
        "wakeups": CounterMetricFamily("schedtop_wakeups", "Wakeups", labels=["cpu"]),
        "migrations": CounterMetricFamily("schedtop_migrations", "Task migrations", labels=["cpu"]),
    }
    for cc in scrape.cpus:
        cpu = str(cc.cpu)
        _histogram(hist, [cpu], cc.latency)
        for attr, fam in counters.items():
            fam.add_metric([cpu], getattr(cc, attr))
    yield hist
    yield from counters.values()
    pct = GaugeMetricFamily("schedtop_runqueue_latency_percentile_seconds", "The TUI's run-queue latency "
                            "percentiles from the BPF tier's fine slots, over the same window as the "
                            "histogram (since attach)", labels=["cpu", "quantile"])
    for row in scrape.bpf.cpus if scrape.bpf is not None else ():
        for q, attr in QUANTILES:
            v = getattr(row, attr)
            if v is not None:
                pct.add_metric([str(row.cpu), q], v / 1e6)
    yield pct


def _process_families(scrape: Scrape) -> Iterator[Metric]:
    labels = ["pid", "comm"]
    wait = CounterMetricFamily("schedtop_process_runqueue_wait_seconds", "Time the process's live threads "
                               "waited on a run queue (schedstat), top processes by wait", labels=labels)
    ratio = GaugeMetricFamily("schedtop_process_runqueue_wait_ratio", "Run-queue wait per second over the "
                              "last interval (threads summed, so it can exceed 1)", labels=labels)
    run = CounterMetricFamily("schedtop_process_cpu_seconds", "Time the process's live threads ran",
                              labels=labels)
    threads = GaugeMetricFamily("schedtop_process_threads", "Threads of the process", labels=labels)
    hist = HistogramMetricFamily("schedtop_process_runqueue_latency_seconds", "Run-queue latency of the "
                                 "process's live threads since the BPF tier attached", labels=labels)
    any_hist = False
    for p in scrape.processes:
        lab = [str(p.pid), visible(p.comm)]
        wait.add_metric(lab, p.wait_ns / 1e9)
        ratio.add_metric(lab, p.wait_ns_per_s / 1e9)
        run.add_metric(lab, p.runtime_ns / 1e9)
        threads.add_metric(lab, p.nr_threads)
        if p.latency is not None:
            any_hist = True
            _histogram(hist, lab, p.latency)
    yield from (wait, ratio, run, threads)
    if any_hist:
        yield hist


def _scheduler_families(scrape: Scrape) -> Iterator[Metric]:
    from schedtop.collect.kernel_caps import scheduler_label

    snap = scrape.snapshot
    s = snap.scheduler
    info = GaugeMetricFamily("schedtop_scheduler_info", "The scheduler in charge", labels=[
        "kind", "label", "ops", "switch_all"])
    info.add_metric([s.kind, scheduler_label(s.label, snap.extras), visible(s.ops_name or ""),
                     "" if s.switch_all is None else str(s.switch_all).lower()], 1)
    yield info
    state = GaugeMetricFamily("schedtop_sched_ext_state", "sched_ext state (/sys/kernel/sched_ext/state), "
                              "1 for the current one", labels=["state"])
    for st in EXT_STATES:
        state.add_metric([st], 1 if s.ext_state == st else 0)
    yield state
    for name, value, text in (("enable_seq", s.enable_seq, "sched_ext schedulers enabled since boot"),
                              ("nr_rejected", s.nr_rejected, "Tasks sched_ext rejected"),
                              ("hotplug_seq", s.hotplug_seq, "CPU hotplug events sched_ext saw")):
        if value is not None:
            yield GaugeMetricFamily(f"schedtop_sched_ext_{name}", text, value=value)
    if s.events:
        ev = CounterMetricFamily("schedtop_sched_ext_events", "sched_ext root/events counters",
                                 labels=["event"])
        for k, v in sorted(s.events.items()):
            ev.add_metric([visible(k)], v)
        yield ev


def _label_name(name: str, taken: set[str]) -> str:
    """A server's _om_label as a Prometheus label name, distinct from the ones already used."""
    out = re.sub(r"[^a-zA-Z0-9_]", "_", name).lstrip("_") or "label"
    if out[0].isdigit():
        out = "l_" + out
    while out in taken:
        out += "_"
    return out


def scx_stats_families(stats: StatsPart | None, scheduler: str) -> Iterator[Metric]:
    """The scheduler's scx_stats: one gauge family per OpenMetrics name its metadata gives
    (labels: scheduler, then each _om_label down to the value), by dotted path for the rest;
    at most MAX_SCX_STATS series. A series whose name another family already has with other
    labels, or whose labels repeat, is left out (prometheus_client would refuse the scrape)."""
    if stats is None:
        return
    up = GaugeMetricFamily("schedtop_scx_stats_up", "1: the running scheduler's scx_stats socket answered",
                           labels=["path"])
    up.add_metric([stats.path], 1 if stats.ok else 0)
    yield up
    if not stats.ok:
        return
    strings = GaugeMetricFamily("schedtop_scx_stat_string_info", "String-valued scx_stats",
                                labels=["scheduler", "stat", "value"])
    families: dict[str, tuple[tuple[str, ...], GaugeMetricFamily, set[tuple[str, ...]]]] = {}
    skip = set(stats.om_skip)
    who = visible(scheduler)
    n = 0
    for path, value in sorted(stats.metrics.items()):
        if n >= MAX_SCX_STATS:
            break
        if path in skip:
            continue
        if stats.kinds.get(path) == "string" or isinstance(value, str):
            strings.add_metric([who, visible(path), visible(value)], 1)
            n += 1
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        om = stats.om_names.get(path)
        raw = dict(stats.om_labels.get(path, {})) if om else {}
        name = "schedtop_scx_stat_" + _name(om or path)
        taken = {"scheduler"}
        keys, values = ["scheduler"], [who]
        for k, v in raw.items():
            label = _label_name(str(k), taken)
            taken.add(label)
            keys.append(label)
            values.append(visible(str(v)))
        entry = families.get(name)
        if entry is None:
            fam = GaugeMetricFamily(name, visible(stats.descs.get(path) or f"scx_stats {path}"), labels=keys)
            entry = families[name] = (tuple(keys), fam, set())
        if entry[0] != tuple(keys) or tuple(values) in entry[2]:
            continue
        entry[2].add(tuple(values))
        entry[1].add_metric(values, value)
        n += 1
    for _, fam, _ in families.values():
        yield fam
    yield strings


def _tuning_families(scrape: Scrape) -> Iterator[Metric]:
    t = scrape.tunings
    yield GaugeMetricFamily("schedtop_journal_readable", "1: the steering journal's state dir was read",
                            value=1 if t.readable else 0)
    count = GaugeMetricFamily("schedtop_tunings_in_force", "Attributes a schedtop journal holds changed "
                              "(not yet given back)", labels=["attr", "holder"])
    by: dict[tuple[str, str], int] = {}
    for r in t.rows:
        by[(r.attr, r.holder)] = by.get((r.attr, r.holder), 0) + 1
    for (attr, holder), n in sorted(by.items()):
        count.add_metric([attr, holder], n)
    yield count
    yield GaugeMetricFamily("schedtop_tunings_total", "Every held attribute, also those not listed "
                            "one by one", value=t.total)
    info = GaugeMetricFamily("schedtop_tuning_info", "One tuning in force: its target, attribute, the "
                             "value set and who holds it", labels=["target", "attr", "value", "holder", "comm"])
    for r in t.rows:
        info.add_metric([r.target, r.attr, r.value, r.holder, visible(r.comm)], 1)
    yield info
    yield GaugeMetricFamily("schedtop_journal_problems", "Journal files refused or unreadable",
                            value=len(t.problems))


def _bpf_families(bpf: BpfPart) -> Iterator[Metric]:
    for value, name, text in (
        (bpf.events, "schedtop_bpf_events", "Sampled events the BPF tier sent to its ring buffer"),
        (bpf.dropped, "schedtop_bpf_dropped_events", "Sampled events dropped: the ring buffer was full"),
        (bpf.untracked, "schedtop_bpf_untracked", "Events for tasks with no task storage"),
        (bpf.lost_user, "schedtop_bpf_lost_user_events", "Events lost when the user-space backlog overflowed"),
        (bpf.unseen_switch_outs, "schedtop_bpf_unseen_switch_outs", "Runners that left a CPU without a "
         "switch-out BPF saw"),
    ):
        if value is not None:
            yield CounterMetricFamily(name, text, value=value)
    if bpf.blind_tasks is not None:
        yield GaugeMetricFamily("schedtop_bpf_blind_tasks", "Tasks found invisible to BPF", value=bpf.blind_tasks)
    yield GaugeMetricFamily("schedtop_bpf_sample_rate", "1 event in N goes to the ring buffer (0: none)",
                            value=bpf.sample_rate)
    progs = GaugeMetricFamily("schedtop_bpf_program_attached", "1: the BPF program is attached",
                              labels=["program", "mode"])
    for prog, state in sorted(bpf.programs.items()):
        progs.add_metric([prog, bpf.mode], 1 if state == "attached" else 0)
    yield progs
