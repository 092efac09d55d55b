"""`schedtop frames`: frame times of a game running with MangoHud, read from its own logs."""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import time

from schedtop.collect import frametime as ft


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pid", type=int, default=None, help="the game (default: the newest process with MangoHud)")
    p.add_argument("--folder", default=None, help="MangoHud's output_folder (default: the game's MANGOHUD_CONFIG)")
    p.add_argument(
        "--interval",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="seconds per log when the game has a control socket, 0.5..600 (default 3)",
    )
    p.add_argument(
        "--target",
        type=float,
        default=None,
        metavar="FPS",
        help="frame budget as a frame rate (default: the game's fps_limit)",
    )
    p.add_argument("--once", action="store_true", help="print the next log's statistics and exit")
    p.add_argument("--json", action="store_true", help="with --once: JSON")
    p.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="with --once: give up after this long, 1..3600 (default 60)",
    )


def check(args: argparse.Namespace) -> str | None:
    if args.json and not args.once:
        return "--json needs --once"
    if not 0.5 <= args.interval <= 600:  # false for nan too
        return "--interval must be 0.5..600 seconds"
    if not 1 <= args.wait <= 3600:
        return "--wait must be 1..3600 seconds"
    if args.target is not None and not 1 <= args.target <= 1000:
        return "--target must be 1..1000 fps"
    if args.pid is not None and args.pid <= 0:
        return f"not a pid: {args.pid}"
    return None


def _line(game: ft.Game, log: ft.FrameLog, s: ft.FrameStats | None) -> str:
    if s is None:
        return f"{game.comm}[{game.pid}] {log.path}: no frames"
    late = f" late {s.late} (> {s.late_factor:g}x {s.budget_ms:.2f} ms)" if s.budget_ms else ""
    return (
        f"{game.comm}[{game.pid}] {s.frames} frames  p50 {s.p50_ms:.2f} ms  p99 {s.p99_ms:.2f} ms  "
        f"max {s.max_ms:.2f} ms  1% low {s.low1_fps:.1f} fps  avg {s.avg_fps:.1f} fps{late}"
    )


def run(args: argparse.Namespace) -> int:
    games = ft.find_games()
    if args.pid is not None:
        game = next((g for g in games if g.pid == args.pid), None)
        if game is None:
            print(f"schedtop frames: pid {args.pid} has no MangoHud layer mapped (or is not readable)", file=sys.stderr)
            return 1
    elif games:
        game = max(games, key=lambda g: g.start_time)
    else:
        print(
            "schedtop frames: no process has the MangoHud layer mapped (start the game with MANGOHUD=1)",
            file=sys.stderr,
        )
        return 1
    budget = ft.budget_for(game, args.target)
    try:
        source = ft.FrameSource(game, interval=args.interval, folder=args.folder)
    except ValueError as e:
        print(f"schedtop frames: {e}", file=sys.stderr)
        return 1
    if not source.chunked:
        print(
            f"schedtop frames: {game.comm}[{game.pid}] has no control socket (MANGOHUD_CONFIG control=NAME): "
            "each log is read when MangoHud writes it",
            file=sys.stderr,
        )
    end = time.monotonic() + args.wait

    def _term(signum: int, frame: object) -> None:
        raise SystemExit(0)  # through `with source`: logging is stopped, not left running

    signal.signal(signal.SIGTERM, _term)
    try:
        with source:
            while True:
                for item in source.poll():
                    if isinstance(item, ft.FrameLogError):
                        print(f"schedtop frames: {item}", file=sys.stderr)
                        continue
                    stats = ft.frame_stats(item.frametimes_ms, budget)
                    if args.json:
                        out = {
                            "game": dataclasses.asdict(game),
                            "log": item.path,
                            "frames": item.frames,
                            "elapsed_s": [item.first_elapsed_s, item.last_elapsed_s],
                            "stats": dataclasses.asdict(stats) if stats else None,
                        }
                        print(json.dumps(out))
                    else:
                        print(_line(game, item, stats), flush=True)
                    if args.once:
                        return 0
                if args.once and time.monotonic() > end:
                    print(f"schedtop frames: no log in {args.wait:g} s", file=sys.stderr)
                    return 1
                time.sleep(0.25)
    except KeyboardInterrupt:
        return 0
