"""`schedtop restore`: put back everything a crashed session or `schedtop set` changed.

Restores the shared `schedtop set` journal and every orphaned session journal (owner dead).
A running session is left alone: it restores its own changes when it exits, and what it
changed after one of these keeps its place (see journal.py). Every file is read on its own: a
refused or broken one is reported in one line and the others are still restored.
Exit 0 when everything alive was restored, 1 when something could not be.
"""

from __future__ import annotations

import argparse
import sys

from schedtop.steer.journal import Journal, JournalError, fmt_value, state_dir, summarize


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--list", action="store_true", help="show the journaled changes, restore nothing")
    p.add_argument("-q", "--quiet", action="store_true", help="print a summary only")


def journals() -> list[Journal]:
    return Journal.scan(state_dir())[0]


def run(args: argparse.Namespace) -> int:
    err = lambda msg: print(f"schedtop: {msg}", file=sys.stderr)  # noqa: E731
    try:
        d = state_dir()
        # --list changes nothing: a broken file is reported, not moved aside.
        found, problems = Journal.scan(d, set_aside_bad=not args.list)
        live = [pid for _, pid, _, alive in Journal.sessions(d) if alive]
    except JournalError as exc:
        err(str(exc))
        return 1
    rc = 1 if problems else 0
    for p in problems:
        err(p)
    for pid in live:
        print(f"session pid {pid} is running: it restores its own changes when it exits")
    if not found:
        if not live and not problems:
            print("nothing to restore")
        return rc
    for j in found:
        who = j.who()
        if args.list:
            for a in j.active():
                print(f"{who}: {a.ref.label()}: {' + '.join(a.labels)} (was {a.before.describe()})")
            for g, labels in j.active_groups():
                print(f"{who}: {g.label()}: {' + '.join(labels)} (was session nice {g.nice})")
            base = j.active_base_slice()
            if base is not None:
                print(f"{who}: global base slice: {' + '.join(base[1])} (was {fmt_value('base_slice', base[0])})")
            continue
        try:
            outcomes = j.restore_all()
        except JournalError as exc:
            err(str(exc))
            rc = 1
            continue
        for o in outcomes:
            if o.status == "failed":
                err(o.line())
                rc = 1
            elif not args.quiet:
                print(o.line())
        print(f"{who}: {summarize(outcomes)}")
    return rc
