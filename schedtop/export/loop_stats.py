"""schedtop's own scheduler's stats, served over scx_stats so existing scx tools can read them.

`serve(latest_fn)` starts a StatsServer whose "top" target is the embedded loop's latest stats
(schedtop.scx.loop.Loop.latest), in the shape real scx schedulers serve (scx_bpfland and
scx_rustland: one top struct of numbers and strings; scx_layered and scx_rusty: a dict only of
structs that carry `_om_label`), so scx's scxstats_to_openmetrics reads all of it:

    SchedtopStats (top)   policy, slice_ns, user_queue, decide/dispatch percentiles, loop cost, ...
                          nr_queued, nr_user_dispatches, ...  the BPF side's counters, one field each
                          nr_queued_per_s, ...                those counters per second, last interval
                          paths: {path: PathStats}            where the tasks went
    PathStats             _om_prefix "path_", _om_label "path": tasks

Values are numbers or strings: booleans become 0/1, a value not known yet is left out (never
null). The loop's own report (its JSON lines, the TUI's scheduler panel) keeps its shape.

    from schedtop.export.loop_stats import serve
    server = serve(lambda: loop.latest)       # /var/run/scx/root/stats, 0600, root only
    ...
    server.stop()

The Perfetto recorder reads the same socket for its queue-depth and dispatch-latency tracks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from schedtop.export.scx_stats import DEFAULT_PATH, FieldSpec, StatsServer, struct_meta
from schedtop.scx.protocol import ScxCounters

TOP = "SchedtopStats"
PATH_STRUCT = "PathStats"

FIELDS: dict[str, FieldSpec] = {
    "policy": ("string", "policy module in charge"),
    "slice_ns": ("u64", "default slice"),
    "partial": ("u64", "1: only SCHED_EXT tasks are ours (partial mode)"),
    "uptime_s": ("float", "seconds since the scheduler attached"),
    "user_queue": ("u64", "tasks waiting in user space for a decision"),
    "decisions": ("u64", "decisions made by the policy"),
    "loop_us_per_decision": ("float", "loop thread CPU per decision, last interval"),
    "decisions_per_wakeup": ("float", "decisions per loop wake-up with work, last interval"),
    "decide_p50_us": ("float", "policy decision time, median"),
    "decide_p99_us": ("float", "policy decision time, p99"),
    "dispatch_p50_us": ("float", "enqueue-to-dispatch latency through user space, median"),
    "dispatch_p99_us": ("float", "enqueue-to-dispatch latency through user space, p99"),
    "page_faults": ("u64", "page faults taken by the loop thread"),
    "page_faults_after_warmup": ("u64", "page faults since warm-up (should stay 0)"),
    "cpu_pct": ("float", "CPU used by the scheduler process"),
    "rss_kb": ("u64", "resident memory of the scheduler process"),
}

# The BPF side's counters (struct scx_counters, schedtop.scx.protocol.ScxCounters): what each
# counts. The scheduler panel shows the same descriptions.
COUNTERS: dict[str, str] = {
    "nr_queued": "tasks sent to the Python loop",
    "nr_scheduled": "decisions applied",
    "nr_user_dispatches": "to the CPU/DSQ the policy chose",
    "nr_kernel_dispatches": "decided in BPF: idle CPU, kthreads, boosted",
    "nr_cancelled": "stale decisions (the task moved on)",
    "nr_bounced": "chosen CPU not allowed: shared DSQ",
    "nr_failed": "task gone before its decision",
    "nr_congested": "ring full: dispatched without the loop",
    "nr_heartbeats": "timer woke a quiet loop",
    "nr_self": "the scheduler's threads, never via the loop",
    "nr_preempt": "decisions that preempt (policy or boost)",
    "loop_last_run_ns": "when the loop thread last ran (CLOCK_MONOTONIC ns)",
    "stint_ns": "CPU time of scheduled tasks' stints",
    "nr_stints": "stints of scheduled tasks",
    "nr_latcrit": "boosted tasks put first by BPF",
    "nr_planned": "enqueues BPF queued itself from the plan the policy published",
}
COUNTER_NAMES: tuple[str, ...] = tuple(f[0] for f in ScxCounters._fields_)
SKIP = {"_om_skip": "true"}


def _top_fields() -> dict[str, FieldSpec]:
    out: dict[str, FieldSpec] = dict(FIELDS)
    for c in COUNTER_NAMES:
        # A timestamp is no gauge (scx_layered skips its own `at` the same way).
        out[c] = ("u64", COUNTERS.get(c, ""), SKIP) if c.endswith("_last_run_ns") else ("u64", COUNTERS.get(c, ""))
    for c in COUNTER_NAMES:
        if c.startswith("nr_"):
            out[f"{c}_per_s"] = ("float", f"{c} per second, last interval")
    out["paths"] = ("{string:PathStats}", "tasks per path (cumulative): per_event (decided by the policy), fast "
                    "(in BPF: idle CPU, kthreads, boosted), congested (ring full: BPF's own order), planned (by the "
                    "policy's plan, in BPF)")
    return out


META = {
    TOP: struct_meta(TOP, _top_fields(), desc="schedtop user-space scheduler", top=True),
    PATH_STRUCT: struct_meta(PATH_STRUCT, {"tasks": ("u64", "tasks dispatched this way since the scheduler attached")},
                             desc="one dispatch path", user={"_om_prefix": "path_", "_om_label": "path"}),
}

# Counter tracks the Perfetto recorder draws in schedtop-scheduler mode: {track: stats field}.
TRACE_COUNTERS = {
    "schedtop scx: user-space queue depth": "user_queue",
    "schedtop scx: dispatch latency p50 (us)": "dispatch_p50_us",
    "schedtop scx: dispatch latency p99 (us)": "dispatch_p99_us",
}


def _num(kind: str, v: Any) -> int | float | str | None:
    if v is None:
        return None
    if kind == "string":
        return str(v)
    if isinstance(v, bool):
        return int(v)
    if kind == "u64":
        return int(v) if isinstance(v, (int, float)) else None
    if kind == "float":
        return float(v) if isinstance(v, (int, float)) else None
    return None


def shape(latest: Mapping[str, Any] | None) -> dict[str, Any]:
    """The loop's stats report as the metadata above describes it."""
    latest = latest or {}
    out: dict[str, Any] = {}
    for name, spec in FIELDS.items():
        x = _num(spec[0], latest.get(name))
        if x is not None:
            out[name] = x
    counters = latest.get("counters")
    rates = latest.get("rates")
    for c in COUNTER_NAMES:
        x = _num("u64", counters.get(c)) if isinstance(counters, Mapping) else None
        if x is not None:
            out[c] = x
        r = _num("float", rates.get(c)) if isinstance(rates, Mapping) and c.startswith("nr_") else None
        if r is not None:
            out[f"{c}_per_s"] = r
    paths = latest.get("paths")
    if isinstance(paths, Mapping):
        tasks = {str(k): _num("u64", v) for k, v in paths.items()}
        out["paths"] = {k: {"tasks": v} for k, v in tasks.items() if v is not None}
    return out


def serve(latest_fn: Callable[[], Mapping[str, Any] | None], path: str = DEFAULT_PATH) -> StatsServer:
    return StatsServer(path, lambda _args: shape(latest_fn()), META).start()


def trace_counters(stats: Mapping[str, Any] | None) -> dict[str, float]:
    """{track name: value} for the recorder, from a stats reply (missing fields are skipped)."""
    out: dict[str, float] = {}
    for track, field in TRACE_COUNTERS.items():
        v = (stats or {}).get(field)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[track] = float(v)
    return out
