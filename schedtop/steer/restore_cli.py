"""`schedtop restore`: put back everything a crashed session or `schedtop set` changed.

Restores the shared `schedtop set` journal and every orphaned session journal (owner dead).
A running session is left alone: it restores its own changes when it exits.
Exit 0 when everything alive was restored, 1 when some thread could not be.
"""

from __future__ import annotations

import argparse
import sys

from schedtop.steer.journal import Journal, JournalError, state_dir, summarize


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--list", action="store_true", help="show the journaled changes, restore nothing")
    p.add_argument("-q", "--quiet", action="store_true", help="print a summary only")


def journals() -> list[Journal]:
    d = state_dir()
    out = Journal.orphans(d)
    shared = Journal.shared(d)
    if shared.steps:
        out.append(shared)
    return out


def run(args: argparse.Namespace) -> int:
    try:
        found = journals()
    except JournalError as exc:
        print(f"schedtop: {exc}", file=sys.stderr)
        return 1
    live = [pid for _, pid, _, alive in Journal.sessions() if alive]
    for pid in live:
        print(f"session pid {pid} is running: it restores its own changes when it exits")
    if not found:
        if not live:
            print("nothing to restore")
        return 0
    rc = 0
    for j in found:
        who = "schedtop set" if j.owner is None else f"session pid {j.owner[0]}"
        if args.list:
            for a in j.active():
                print(f"{who}: {a.ref.label()}: {' + '.join(a.labels)} (was {a.before.describe()})")
            for g, labels in j.active_groups():
                print(f"{who}: {g.label()}: {' + '.join(labels)} (was session nice {g.nice})")
            continue
        try:
            outcomes = j.restore_all()
        except JournalError as exc:
            print(f"schedtop: {exc}", file=sys.stderr)
            rc = 1
            continue
        for o in outcomes:
            if o.status == "failed":
                print(f"schedtop: {o.line()}", file=sys.stderr)
                rc = 1
            elif not args.quiet:
                print(o.line())
        print(f"{who}: {summarize(outcomes)}")
    return rc
