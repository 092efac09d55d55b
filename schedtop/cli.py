"""Command line: the TUI by default, plus subcommands.

Each subcommand lives in the module that owns it; that module exposes
``configure(parser)`` and ``run(args) -> int``. They are imported only when
used, so ``schedtop --help`` and the TUI start fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Callable, Sequence

# Bounds shared with the config file (ui/config.py is small and imports nothing heavy).
from schedtop.ui.config import DELAY_RANGE, MAX_DELAY, MIN_DELAY

MAX_ONCE_DELAY = 5.0  # --once: a script asking for -d 60 is not kept waiting a minute

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "set": ("schedtop.steer.cli", "retune a task: slice, pin, nice, FIFO/RR, batch/idle"),
    "restore": ("schedtop.steer.restore_cli", "undo every journaled change (after a crash)"),
    "profile": ("schedtop.steer.profile_cli", "check or apply a TOML tuning profile"),
    "scx": ("schedtop.scx.cli", "run schedtop's sched_ext scheduler headless"),
    "trace": ("schedtop.export.cli", "record scheduling events to a Perfetto trace"),
    "lab": ("schedtop.lab.cli", "fetch and boot a sched_ext kernel in a QEMU guest"),
    "demo": ("schedtop.lab.demo", "boot the lab guest and run schedtop on a demo workload"),
    "exporter": ("schedtop.exporter.cli", "serve the scheduler's metrics to Prometheus on /metrics"),
    "frames": ("schedtop.collect.frames_cli", "frame times of a game running with MangoHud (its logs)"),
    "serve": ("schedtop.serve.cli", "the TUI in a web browser, for demos (read-only unless --allow-steer)"),
}

EPILOG = """\
examples:
  schedtop                      watch every task, refresh each second
  schedtop -d 0.5 -p 1234       follow pid 1234, refresh twice a second
  schedtop --once --json | jq '.cpus[] | {cpu, nr_running}'
  schedtop --record s.jsonl     watch and record the session
  schedtop --replay s.jsonl     replay a recorded session (no live source)
  schedtop set 1234 --slice 3ms --pin 0-1 --nice -5
  schedtop restore              undo every change left by a crashed session
  schedtop lab run -- cat /sys/kernel/sched_ext/state

subcommands:
""" + "\n".join(f"  {name:<10} {text}" for name, (_, text) in SUBCOMMANDS.items())


class Parser(argparse.ArgumentParser):
    """argparse, with its error on one line: it echoes what was typed, and an argument may hold
    a newline or a control character (schedtop $'a\\nb'), shown escaped instead."""

    def error(self, message: str):  # type: ignore[override]
        super().error("".join(c if c.isprintable() else repr(c)[1:-1] for c in message))


def seconds_in(lo: float, hi: float):
    """An argparse type: seconds as a finite number in lo..hi (nan, inf and 1e12 refused)."""
    def conv(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {_short(text)}") from None
        if not lo <= value <= hi:  # false for nan too
            raise argparse.ArgumentTypeError(f"{_short(text)} s is out of range: {lo:g}..{hi:g} seconds")
        return value
    conv.__name__ = "seconds"
    return conv


def _short(text: str, n: int = 30) -> str:
    r = repr(text)
    return r if len(r) <= n else r[: n - 4] + "...'"


def pid_list(text: str) -> list[int]:
    """-p 1234, -p 1234,5678 (as top and pidstat take them)."""
    pids = []
    for part in text.replace(",", " ").split():
        if not part.isdigit() or int(part) <= 0:
            raise argparse.ArgumentTypeError(f"not a pid: {part!r}")
        pids.append(int(part))
    if not pids:
        raise argparse.ArgumentTypeError(f"no pid in {text!r}")
    return pids


def monitor_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="schedtop",
        description="Watch the Linux CPU scheduler live and steer it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-d", "--delay", type=seconds_in(MIN_DELAY, MAX_DELAY), default=None, metavar="SECONDS",
                   help=f"refresh interval, {DELAY_RANGE} s (default: the config's delay, else 1.0; "
                        f"--once waits at most {MAX_ONCE_DELAY:g} s between its two samples)")
    p.add_argument("-p", "--pid", type=pid_list, action="extend", default=[], metavar="PID[,PID...]",
                   help="follow these pids (repeatable, or comma-separated)")
    p.add_argument("--once", action="store_true", help="print one snapshot and exit")
    p.add_argument("--json", action="store_true", help="with --once: JSON instead of a table")
    p.add_argument("--record", metavar="FILE", help="record snapshots and actions to JSON Lines")
    p.add_argument("--replay", metavar="FILE", help="drive the TUI from a recorded file (with --once: print its last frame)")
    p.add_argument("--no-bpf", action="store_true", help="use procfs only, never load BPF")
    p.add_argument("--profile", metavar="FILE", help="apply a TOML tuning profile live (TUI only; "
                   "for one pass: schedtop profile apply FILE)")
    p.add_argument("--keep", action="store_true", help="keep tuning changes on exit")
    p.add_argument("--no-gamemode", action="store_true", help="do not give GameMode's games the gaming game rule")
    p.add_argument("--read-only", action="store_true", help="watch only: the keys that steer, load a "
                   "scheduler or write a trace answer with a message instead of acting")
    p.add_argument("--config", metavar="FILE", help="config file (default: XDG config schedtop/config.toml)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (libbpf too)")
    p.add_argument("--version", action="version", version=_version())
    return p


def _version() -> str:
    from schedtop import __version__

    return f"schedtop {__version__}"


def parse(argv: Sequence[str] | None = None) -> tuple[Callable[[argparse.Namespace], int], argparse.Namespace]:
    """The command line checked whole, nothing run yet: (what to run, its arguments).

    Bad input exits 2 with argparse's one-line usage error (SystemExit), as every option's
    bounds are checked here; the fuzz tests drive this directly."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        name = argv[0]
        module_name, text = SUBCOMMANDS[name]
        module = importlib.import_module(module_name)
        parser = Parser(prog=f"schedtop {name}", description=text)
        module.configure(parser)
        args = parser.parse_args(argv[1:])
        check = getattr(module, "check", None)  # options that only mean something together
        problem = check(args) if check is not None else None
        if problem:
            parser.error(problem)
        return module.run, args

    parser = monitor_parser()
    args = parser.parse_args(argv)
    if args.json and not args.once:
        parser.error("--json needs --once")
    if args.once and args.profile:  # --once only looks: applying a profile and leaving is `profile apply`
        parser.error("--profile applies live in the TUI, not with --once; "
                     "for one pass use: schedtop profile apply FILE")
    if args.replay and args.record:
        parser.error("--record and --replay cannot be used together")
    if args.read_only and args.profile:
        parser.error("--profile steers, --read-only does not: choose one")
    if args.replay is not None and not args.replay.strip():
        parser.error("--replay needs a file name")
    if args.record is not None and not args.record.strip():
        parser.error("--record needs a file name")
    return _run_monitor, args


def main(argv: Sequence[str] | None = None) -> int:
    run, args = parse(argv)
    _logging(getattr(args, "verbose", 0))
    return int(run(args) or 0)


def _run_monitor(args: argparse.Namespace) -> int:
    from schedtop.ui.config import ConfigError, load_config

    try:  # read here, so --once and the TUI both refuse a bad or missing --config alike
        args.config_data = load_config(args.config)
    except ConfigError as exc:
        print(f"schedtop: {exc}", file=sys.stderr)
        return 2
    if args.delay is None:  # -d wins over the config's delay; neither: 1 s
        args.delay = args.config_data.delay or 1.0
    if args.once:
        from schedtop.once import run as run_once

        return run_once(args)
    from schedtop.ui.run import run as run_tui

    return run_tui(args)


def _logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="schedtop: %(levelname)s: %(message)s")
