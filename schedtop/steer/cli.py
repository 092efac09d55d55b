"""`schedtop set`: retune threads from the command line, journaled for `schedtop restore`.

Messages and exit codes follow chrt and taskset: "failed to set pid N's policy: <strerror>"
on stderr and exit 1; bad usage exits 2 (argparse). With no change given it prints the
current parameters, like `chrt -p PID`.
"""

from __future__ import annotations

import argparse
import os
import sys

from schedtop.collect import kernel_caps
from schedtop.steer import ext, units
from schedtop.steer.actions import SteerError, Tuning, autogroup_note, read_params
from schedtop.steer.change import change, change_base_slice
from schedtop.steer.journal import Journal, JournalError
from schedtop.steer.targets import resolve
from schedtop.textsafe import visible


def _type(fn, name):
    def conv(text):
        try:
            return fn(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    conv.__name__ = name
    return conv


def _int_in(lo: int, hi: int, what: str):
    def conv(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{what} {v} is out of range: {lo}..{hi}")
        return v
    return conv


def configure(p: argparse.ArgumentParser) -> None:
    p.description = ("Retune threads: EEVDF slice, CPU pinning, nice, FIFO/RR, BATCH/IDLE, SCHED_EXT. Every change "
                     "is journaled first; `schedtop restore` undoes it.")
    p.add_argument("pid", nargs="?", type=int, help="the pid/tid to change (one thread unless --threads/--tree)")
    p.add_argument("--slice", type=_type(units.parse_slice, "slice"), metavar="DUR",
                   help=f"EEVDF slice, e.g. 3ms, 500us ({units.SLICE_RANGE}) or 'default'; a bare number is "
                        "nanoseconds, as chrt -T takes it (3000000 = 3ms)")
    p.add_argument("--pin", "--cpus", dest="pin", type=_type(units.parse_cpulist, "cpus"), metavar="LIST",
                   help="CPU affinity, e.g. 0, 0-1, 0,2 or all")
    p.add_argument("--nice", type=_int_in(-20, 19, "nice"), metavar="N", help="nice value -20..19")
    p.add_argument("--group", action="store_true",
                   help="with --nice: also set the nice of the task's session autogroup, which ranks the "
                        "whole session against other sessions (affects EVERY task of that session; "
                        "journaled and restored like the rest)")
    pol = p.add_mutually_exclusive_group()
    pol.add_argument("--fifo", type=_int_in(1, 99, "priority"), metavar="PRIO", help="SCHED_FIFO at PRIO (1..99)")
    pol.add_argument("--rr", type=_int_in(1, 99, "priority"), metavar="PRIO", help="SCHED_RR at PRIO (1..99)")
    pol.add_argument("--batch", action="store_true", help="SCHED_BATCH")
    pol.add_argument("--idle", action="store_true", help="SCHED_IDLE")
    pol.add_argument("--other", action="store_true", help="SCHED_OTHER (back to normal)")
    pol.add_argument("--ext", action="store_true",
                     help="SCHED_EXT: run by the loaded sched_ext scheduler (in partial mode, e.g. "
                          "`schedtop scx --partial`, only these tasks are); needs CONFIG_SCHED_CLASS_EXT. "
                          "Nice and slice are kept; `schedtop restore` puts the old policy back")
    p.add_argument("-a", "--threads", action="store_true", help="all threads of the process (like chrt -a)")
    p.add_argument("--tree", action="store_true", help="the process and all its descendants, every thread")
    p.add_argument("--name", metavar="GLOB", help="every task whose name matches, e.g. 'pipewire*'")
    p.add_argument("--base-slice", type=_type(units.parse_slice, "slice"), metavar="DUR",
                   help="set the global EEVDF base slice (debugfs)")
    p.add_argument("-f", "--force", action="store_true",
                   help="change pid 1, kernel threads, or what you could not undo yourself (without root, "
                        "a raised nice or SCHED_IDLE cannot be taken back); refused without it")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")


def tuning_from(args: argparse.Namespace) -> Tuning:
    policy = prio = None
    if args.fifo is not None:
        policy, prio = units.SCHED_FIFO, args.fifo
    elif args.rr is not None:
        policy, prio = units.SCHED_RR, args.rr
    elif args.batch:
        policy = units.SCHED_BATCH
    elif args.idle:
        policy = units.SCHED_IDLE
    elif args.other:
        policy = units.SCHED_OTHER
    elif args.ext:
        policy = units.SCHED_EXT
    return Tuning(policy=policy, rt_priority=prio, nice=args.nice, slice_ns=args.slice, affinity=args.pin,
                  group=args.group)


def run(args: argparse.Namespace) -> int:
    err = lambda msg: print(f"schedtop: {msg}", file=sys.stderr)  # noqa: E731
    rc = 0
    if args.base_slice is not None:
        try:
            if args.base_slice == 0:
                raise SteerError(f"--base-slice needs a duration ({units.SLICE_RANGE})")
            if (why := kernel_caps.why_not("base_slice")) is not None:
                raise SteerError(f"--base-slice: {why}")
            if os.geteuid() != 0:
                raise SteerError("the global base slice needs root (debugfs)")
            # Journaled like every change: `schedtop restore` puts the old value back.
            msg = change_base_slice(args.base_slice, Journal.shared())
            if not args.quiet:
                print(f"{msg}; undo with `schedtop restore`")
        except (SteerError, JournalError) as exc:
            err(str(exc))
            rc = 1
        if args.pid is None and args.name is None:
            return rc
    tuning = tuning_from(args)
    if tuning.slice_ns and (why := kernel_caps.why_not("slice")) is not None:
        err(f"--slice: {why}")  # CFS would take sched_runtime and ignore it: refuse, do not pretend
        return 2
    if tuning.group and tuning.nice is None:
        err("--group needs --nice N (it sets the session group's nice)")
        return 2
    if args.pid is not None and args.name is not None:
        err(f"give a pid or --name GLOB, not both (pid {args.pid} and {args.name!r}: which one did you mean?)")
        return 2
    try:
        refs = resolve(args.pid, threads=args.threads, tree=args.tree, name=args.name)
    except SteerError as exc:
        err(str(exc))
        return 1
    if tuning.is_empty():
        for r in refs:  # like `chrt -p PID`: show, change nothing
            try:
                print(f"pid {r.tid} ({visible(r.comm)}): {read_params(r).describe()}")
            except SteerError as exc:
                err(str(exc))
                rc = 1
        return rc
    try:
        journal = Journal.shared()
        for problem in journal.problems:
            err(problem)
        report = change(refs, tuning, journal, force=args.force)
    except (SteerError, JournalError) as exc:
        err(str(exc))
        return 1
    for r in report.results:
        if r.unchanged:
            if not args.quiet:
                print(f"pid {r.ref.tid} ({visible(r.ref.comm)}): already {r.before.describe()}: nothing to change")
        elif r.ok and not args.quiet:
            print(f"pid {r.ref.tid} ({visible(r.ref.comm)}): {r.before.describe()} -> {r.after.describe()}")
        elif r.gone:
            if not args.quiet:
                print(f"pid {r.ref.tid} ({visible(r.ref.comm)}): gone, skipped")
        elif not r.ok:
            err(r.error)
    for g in report.groups:
        if g.ok and not args.quiet:
            print(g.line())
        elif not g.ok:
            err(g.line())
    for note in report.notes:
        if not args.quiet:
            print(f"no group nice: {note}")
    if any(r.needs_force for r in report.results):
        err("add --force to change it anyway")
    if report.errors() or not (report.changed or report.unchanged or report.groups):
        rc = 1
    if report.changed and tuning.policy == units.SCHED_EXT and not args.quiet:
        note = ext.note_after_move()
        if note:
            print(note)
    if (report.changed and not tuning.group and tuning.nice is not None and tuning.nice < 0
            and not args.quiet):
        note = autogroup_note(report.results[0].ref.pid)
        if note:
            print(note)
    return rc
