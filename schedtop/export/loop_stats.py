"""schedtop's own scheduler's stats, served over scx_stats so existing scx tools can read them.

`serve(latest_fn)` starts a StatsServer whose "top" target is the embedded loop's latest stats
(schedtop.scx.loop.Loop.latest), reshaped to what scx_stats metadata can describe: numbers,
strings, and dicts of numbers (booleans become 0/1, unknown values are dropped, never null).

    from schedtop.export.loop_stats import serve
    server = serve(lambda: loop.latest)       # /var/run/scx/root/stats, 0600, root only
    ...
    server.stop()

The Perfetto recorder reads the same socket for its queue-depth and dispatch-latency tracks.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from schedtop.export.scx_stats import DEFAULT_PATH, StatsServer, struct_meta

TOP = "SchedtopStats"

FIELDS: dict[str, tuple[str, str]] = {
    "policy": ("string", "policy module in charge"),
    "slice_ns": ("u64", "default slice"),
    "partial": ("u64", "1: only SCHED_EXT tasks are ours (partial mode)"),
    "uptime_s": ("float", "seconds since the scheduler attached"),
    "user_queue": ("u64", "tasks waiting in user space for a decision"),
    "decisions": ("u64", "decisions made by the policy"),
    "paths": ("{string:u64}", "tasks per path: per_event (policy), fast (BPF), congested, planned"),
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
    "counters": ("{string:u64}", "BPF-side counters (nr_queued, nr_user_dispatches, ...)"),
    "rates": ("{string:float}", "the nr_* counters per second"),
}

META = {TOP: struct_meta(TOP, FIELDS, desc="schedtop user-space scheduler", top=True)}

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
    """The loop's stats dict as the metadata above describes it."""
    out: dict[str, Any] = {}
    for name, (kind, _) in FIELDS.items():
        v = (latest or {}).get(name)
        if kind.startswith("{"):
            datum = kind[1:-1].split(":", 1)[1]
            if isinstance(v, Mapping):
                d = {str(k): _num(datum, x) for k, x in v.items()}
                out[name] = {k: x for k, x in d.items() if x is not None}
            continue
        x = _num(kind, v)
        if x is not None:
            out[name] = x
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
