"""`schedtop --once [--json]`: one snapshot, printed, for people and for scripts.

Rates need two samples, so this collects twice, `--delay` apart (capped, so a
script asking for `-d 60` is not kept waiting a minute). `--json` prints
model.to_dict(snapshot): the schema is model.SCHEMA_VERSION, stored in the
snapshot's own `schema` field, and model.snapshot_from_dict reads it back.
`--record FILE` also writes both samples to a replay file.
`--replay FILE` with `--once` prints the file's last frame.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from schedtop.cli import MAX_ONCE_DELAY
from schedtop.model import Snapshot, to_dict

TOP_TASKS = 25
# Which task columns a narrow terminal keeps first (pid, comm and cpu% always).
TASK_COLUMN_RANK = ("pid", "comm", "cpu%", "tid", "S", "wait/s", "policy", "nice", "vruntime", "cpu",
                    "slice", "prio", "affinity", "vcs/s", "ivcs/s")


def _fmt_ns(ns: int | None) -> str:
    if ns is None:
        return "-"
    if abs(ns) >= 1_000_000_000:
        return f"{ns / 1e9:.2f}s"
    if abs(ns) >= 1_000_000:
        return f"{ns / 1e6:.2f}ms"
    return f"{ns / 1e3:.0f}µs"


def _affinity(cpus: tuple[int, ...], ncpu: int) -> str:
    if not cpus:
        return "-"
    if len(cpus) == ncpu and cpus == tuple(range(ncpu)):
        return "all"
    runs: list[str] = []
    start = prev = cpus[0]
    for c in cpus[1:] + (None,):
        if c is not None and c == prev + 1:
            prev = c
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if c is not None:
            start = prev = c
    return ",".join(runs)


def render(snap: Snapshot, console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from schedtop.collect.kernel_caps import scheduler_label
    from schedtop.textsafe import rich_text as txt
    from schedtop.textsafe import visible

    if console is None:
        console = Console()
        if not console.is_terminal:  # piped: no terminal width to fit, keep columns whole
            console = Console(width=200)
    # Names come from the kernel and other users: Text (escaped, never markup), never an f-string.
    head = Text.assemble(
        txt(snap.host, "bold"), "  kernel ", txt(snap.kernel),
        f"  up {snap.uptime_s / 3600:.1f}h  load {' '.join(f'{x:.2f}' for x in snap.loadavg)}  scheduler ",
        txt(scheduler_label(snap.scheduler.label, snap.extras.kernel), "bold"), "  source ", txt(snap.source))
    console.print(head)

    def number_column(table: Any, name: str) -> None:
        # a narrow terminal folds a number onto two lines; it never cuts digits off
        table.add_column(name, justify="right", overflow="fold")

    cpus = Table(title="CPUs", title_justify="left")
    for col in ("cpu", "util%", "runnable", "current", "switches/s"):
        if col == "current":
            cpus.add_column(col, justify="left")
        else:
            number_column(cpus, col)
    for c in snap.cpus:
        nr = str(c.nr_running) if c.nr_running_exact else f"~{c.nr_running}"
        cur = txt(f"{c.curr_comm} ({c.curr_pid})" if c.curr_pid else "idle")
        cpus.add_row(str(c.cpu), f"{c.util_pct:.1f}", nr, cur, f"{c.switches_per_s:.0f}")
    console.print(cpus)
    if snap.queues:
        cfs = any(t.eligible is None for t in snap.queues)
        q = Table(title="Run queues (CFS pick order: smallest vruntime; no eligibility, lag or deadline)" if cfs
                  else "Run queues (EEVDF pick order)", title_justify="left")
        cols = ("cpu", "pid", "comm", "on cpu", "vruntime", "wait") if cfs else (
            "cpu", "pid", "comm", "on cpu", "eligible", "lag", "deadline", "slice")
        for col in cols:
            q.add_column(col, overflow="fold")
        for t in snap.queues:
            if cfs:
                q.add_row(str(t.cpu), str(t.pid), txt(t.comm), ">" if t.running else "",
                          _fmt_ns(t.vruntime_ns), _fmt_ns(t.wait_ns))
            else:
                q.add_row(str(t.cpu), str(t.pid), txt(t.comm), ">" if t.running else "",
                          "E" if t.eligible else "N", _fmt_ns(t.lag_ns), _fmt_ns(t.deadline_ns),
                          _fmt_ns(t.slice_ns))
        console.print(q)
    names = ("pid", "tid", "comm", "S", "policy", "nice", "prio", "cpu", "affinity",
             "cpu%", "wait/s", "vruntime", "slice", "vcs/s", "ivcs/s")
    ncpu = len(snap.cpus)
    rows = [(str(t.pid), str(t.tid), visible(t.comm), visible(t.state), visible(t.policy), str(t.nice),
             str(t.prio), str(t.cpu), _affinity(t.affinity, ncpu), f"{t.cpu_pct:.1f}",
             _fmt_ns(int(t.wait_ns_per_s)), _fmt_ns(t.vruntime_ns), _fmt_ns(t.slice_ns),
             f"{t.vol_cs_per_s:.0f}", f"{t.invol_cs_per_s:.0f}")
            for t in sorted(snap.tasks, key=lambda t: (-t.cpu_pct, -t.wait_ns_per_s, t.tid))[:TOP_TASKS]]
    # A narrow terminal drops the least useful columns whole, rather than folding every number.
    need = [max([len(n)] + [len(r[i]) for r in rows]) + 3 for i, n in enumerate(names)]
    keep: set[int] = set()
    used = 1
    for i in sorted(range(len(names)), key=lambda i: TASK_COLUMN_RANK.index(names[i])):
        if used + need[i] <= console.width or i in (0, 2, 9):
            keep.add(i)
            used += need[i]
    if snap.tasks and all(t.slice_ns is None for t in snap.tasks):
        keep.discard(names.index("slice"))  # CFS: the kernel has no se.slice, so no column of dashes
    shown = [i for i in range(len(names)) if i in keep]
    tasks = Table(title=f"Top {TOP_TASKS} of {len(snap.tasks)} tasks by CPU%", title_justify="left")
    for i in shown:
        if names[i] in ("comm", "policy", "S"):
            tasks.add_column(names[i], justify="left")
        else:
            number_column(tasks, names[i])
    for r in rows:
        tasks.add_row(*(Text(r[i]) for i in shown))  # Text: already escaped, never markup
    console.print(tasks)
    for w in snap.warnings:
        console.print(Text.assemble(("note:", "yellow"), " ", txt(w)))


def _live(args: Any) -> Snapshot:
    from schedtop.collect.live import LiveSource

    recorder = None
    if getattr(args, "record", None):
        from schedtop.collect.replay import Recorder

        recorder = Recorder(args.record)
    from schedtop.collect.ext_watch import ExtWatch

    with LiveSource(pids=getattr(args, "pid", None) or (), use_bpf=not getattr(args, "no_bpf", False)) as src:
        watch = ExtWatch(poll=False).attach(src)  # parts extras.sched_ext and extras.scx_stats
        first = src.collect()
        time.sleep(min(getattr(args, "delay", 1.0) or 1.0, MAX_ONCE_DELAY))
        snap = src.collect()
        watch.close()
    if recorder is not None:
        recorder.snapshot(first)
        recorder.snapshot(snap)
        recorder.close()
    return snap


def run(args: Any) -> int:
    try:
        if getattr(args, "replay", None):
            from schedtop.collect.replay import ReplayError, last_good_frame, load_replay

            try:
                # A large recording decodes only this frame (or walks back past bad ones).
                snap, bad = last_good_frame(load_replay(args.replay))
            except ReplayError as exc:
                print(f"schedtop: {exc}", file=sys.stderr)
                return 2
            for err in bad:
                print(f"schedtop: {err} (showing the last good frame, ts {snap.ts:.3f})", file=sys.stderr)
        else:
            snap = _live(args)
    except OSError as exc:  # e.g. --record into a directory that does not exist
        print(f"schedtop: {getattr(exc, 'filename', '') or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    try:
        if getattr(args, "json", False):
            sys.stdout.write(json.dumps(to_dict(snap), separators=(",", ":")) + "\n")
        else:
            render(snap)
        sys.stdout.flush()
    except BrokenPipeError:  # `schedtop --once | head`: the reader left, that is fine
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
