"""The TUI's cost per refresh with N threads: schedtop's virtual task table vs Textual's DataTable.

Both run headless at the same size on the same frames: N tasks built from
the recorded session (tids made unique, CPU% varied per frame so the sort
order changes every refresh). schedtop: the real app on a ReplaySource,
fed one frame at a time as the SnapshotReady message the collector's worker posts
(the live path minus the collection; until 2026-12-04 the frames were stepped with
the `.` key, which adds Textual's binding checks and a Footer refresh). Peer: a minimal App whose DataTable is cleared and refilled with
the same formatted cells, sorted the same way, each frame: what an app built
on the stock widget pays. CPU time is this process's user+sys over the frames
(rendering included: each frame waits for the screen to be idle).

--busy K is the monitor bench's case (1000 sleeping threads): only K tasks change
each frame, the others are the same Task objects in every frame, as LiveSource
hands out an unchanged thread's row again; --no-peer skips the DataTable.

    .venv/bin/python bench/tui_render.py [--tasks 1000] [--frames 30] [--size 200x60] [--busy K] [--no-peer]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from textual.app import App, ComposeResult  # noqa: E402
from textual.widgets import DataTable  # noqa: E402

from schedtop.collect.replay import Replay, ReplaySource, load_replay  # noqa: E402
from schedtop.model import Snapshot  # noqa: E402
from schedtop.ui.app import SchedtopApp  # noqa: E402
from schedtop.ui.poller import SnapshotReady  # noqa: E402
from schedtop.ui.widgets.task_table import COLUMNS  # noqa: E402


def frames(n_tasks: int, n_frames: int, busy: int | None = None) -> tuple[Replay, list[Snapshot]]:
    base = load_replay(ROOT / "tests" / "fixtures" / "session.jsonl")
    seed = base.snapshots[-1]
    rnd = random.Random(1)
    out = []
    asleep = [dataclasses.replace(seed.tasks[i % len(seed.tasks)], tid=100000 + i, state="S", cpu_pct=0.0,
                                  wait_ns_per_s=0.0) for i in range(n_tasks)]
    for f in range(n_frames):
        tasks = []
        for i in range(n_tasks):
            if busy is not None and i >= busy:
                tasks.append(asleep[i])  # the same object every frame
                continue
            t = seed.tasks[i % len(seed.tasks)]
            tasks.append(dataclasses.replace(t, tid=100000 + i, cpu_pct=rnd.random() * 10,
                                             wait_ns_per_s=rnd.random() * 1e6))
        out.append(dataclasses.replace(seed, tasks=tuple(tasks), wall=seed.wall + f))
    return Replay(base.header, tuple(out)), out


async def run_schedtop(replay: Replay, size: tuple[int, int]) -> tuple[float, float, int]:
    app = SchedtopApp(ReplaySource(replay), delay=1.0, paused=True)
    async with app.run_test(size=size) as pilot:
        while app.snapshot is None:
            await pilot.pause(0.01)
        await pilot.pause(0.1)
        n = len(replay.snapshots) - 1
        c0, w0 = time.process_time(), time.perf_counter()
        for snap in replay.snapshots[1:]:
            # what the collector's worker posts in the live app (a key press would add
            # Textual's binding checks and a Footer refresh the live refresh does not pay)
            app.post_message(SnapshotReady(snap))
            await pilot.pause()
        return time.process_time() - c0, time.perf_counter() - w0, n


class Peer(App[None]):
    def compose(self) -> ComposeResult:
        yield DataTable()


async def run_peer(snaps: list[Snapshot], size: tuple[int, int]) -> tuple[float, float, int]:
    app = Peer()
    async with app.run_test(size=size) as pilot:
        table = app.query_one(DataTable)
        table.add_columns(*[c.label for c in COLUMNS if not c.needs or c.needs == "threads"])
        cols = [c for c in COLUMNS if not c.needs or c.needs == "threads"]

        def fill(s: Snapshot) -> None:
            rows = sorted(s.tasks, key=lambda t: t.cpu_pct, reverse=True)
            table.clear()
            table.add_rows([tuple(c.text(t) for c in cols) for t in rows])

        fill(snaps[0])
        await pilot.pause(0.1)
        c0, w0 = time.process_time(), time.perf_counter()
        for s in snaps[1:]:
            fill(s)
            await pilot.pause()
        return time.process_time() - c0, time.perf_counter() - w0, len(snaps) - 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--size", default="200x60")
    ap.add_argument("--busy", type=int, default=None, help="only this many tasks change per frame")
    ap.add_argument("--no-peer", action="store_true", help="schedtop only")
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    replay, snaps = frames(args.tasks, args.frames + 1, args.busy)
    cpu_s, wall_s, n = asyncio.run(run_schedtop(replay, (w, h)))
    ms_s = cpu_s / n * 1000
    print(f"tasks={args.tasks} frames={n} size={w}x{h} busy={args.busy} (python {sys.version.split()[0]}, "
          f"pid {os.getpid()}, loadavg {os.getloadavg()[0]:.1f})")
    print(f"schedtop TaskTable : {ms_s:7.2f} ms CPU per refresh ({wall_s / n * 1000:.2f} ms wall)")
    if args.no_peer:
        return 0
    cpu_p, wall_p, m = asyncio.run(run_peer(snaps, (w, h)))
    ms_p = cpu_p / m * 1000
    print(f"Textual DataTable  : {ms_p:7.2f} ms CPU per refresh ({wall_p / m * 1000:.2f} ms wall)")
    print(f"ratio schedtop/DataTable = {ms_s / ms_p:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
