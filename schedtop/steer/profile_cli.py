"""`schedtop profile check|apply|list`.

  check FILE         validate; errors as FILE:LINE: reason, exit 1
  apply FILE         tune matching tasks once; journaled like `schedtop set` (undo: schedtop restore)
  apply FILE --watch keep tuning new tasks until Ctrl-C/SIGTERM/SIGHUP, then restore (unless --keep)
  apply FILE --gamemode
                     --watch, and every game GameMode registers gets the profile's game rule
                     (its `gamemode = "RULE"`), given back when the game unregisters or exits
  list               the shipped profiles

FILE may be a path or a shipped profile's name (audio, gaming).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from schedtop.cli import seconds_in
from schedtop.steer.exec_watch import open_watch
from schedtop.steer.journal import Journal, JournalError, hand_over, summarize
from schedtop.steer.actions import sched_ext_available
from schedtop.steer.profiles import ProfileError, ProfileRunner, builtin_names, builtin_path, load


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    c = sub.add_parser("check", help="validate a profile (file, line, reason on error)")
    c.add_argument("file")
    a = sub.add_parser("apply", help="apply a profile to running (and with --watch, new) tasks")
    a.add_argument("file")
    a.add_argument("--watch", action="store_true", help="keep applying to new tasks until interrupted")
    a.add_argument("--keep", action="store_true", help="with --watch: keep the changes on exit")
    a.add_argument("--interval", type=seconds_in(0.1, 3600), default=None, metavar="S",
                   help="with --watch: poll interval, 0.1..3600 s (default: the profile's poll)")
    a.add_argument("--duration", type=seconds_in(0.1, 604800), default=None, metavar="S",
                   help="with --watch: stop after S seconds, 0.1..604800 (a week; then restore, unless --keep)")
    a.add_argument("--no-exec-hook", action="store_true",
                   help="with --watch: find new tasks by polling only (no BPF exec/rename hook)")
    a.add_argument("--gamemode", action="store_true",
                   help="with it --watch: games registered with GameMode (session bus) get the profile's game rule")
    a.add_argument("-q", "--quiet", action="store_true")
    sub.add_parser("list", help="list the shipped profiles")


def check(args: argparse.Namespace) -> str | None:
    """Options that only mean something together: said at once, before the profile is read."""
    if getattr(args, "action", None) != "apply" or args.watch or args.gamemode:
        return None
    for opt, given in (("--duration", args.duration is not None), ("--interval", args.interval is not None),
                       ("--keep", args.keep), ("--no-exec-hook", args.no_exec_hook)):
        if given:
            return f"{opt} needs --watch (without it the profile is applied once and kept)"
    return None


class _Stop(Exception):
    pass


def _raise_stop(signum, frame):
    raise _Stop(signum)


def run(args: argparse.Namespace) -> int:
    err = lambda m: print(f"schedtop: {m}", file=sys.stderr)  # noqa: E731
    if args.action == "list":
        for n in builtin_names():
            prof = load(builtin_path(n), here=False)  # list them all, say which cannot run here
            why = "  [needs sched_ext: not on this kernel]" if prof.uses_ext and sched_ext_available() is False else ""
            print(f"{n:<10} {prof.description}  ({prof.path}){why}")
        return 0
    try:
        prof = load(args.file)
    except ProfileError as exc:
        err(str(exc))
        return 1
    if args.action == "check":
        print("\n".join(prof.describe()))
        print(f"{prof.path}: OK")
        return 0
    games = None
    if args.gamemode:
        args.watch = True
        if prof.game_rule is None:
            err(f"profile {prof.name} ({prof.path}) names no rule for GameMode's games: "
                "add gamemode = \"RULE\" at its top")
            return 1
        from schedtop.steer import gamemode

        try:  # before anything is changed: no session bus is said in one line
            games = gamemode.GameModeBus(gamemode.connect())
        except gamemode.GameModeError as exc:
            err(f"--gamemode: {exc}")
            return 1
    try:
        journal = Journal.session() if args.watch else Journal.shared()
    except JournalError as exc:
        err(str(exc))
        return 1
    say = (lambda m: None) if args.quiet else (lambda m: print(m, flush=True))  # noqa: E731
    runner = ProfileRunner(prof, journal)
    said = 0

    def notes() -> None:  # the runner's one-off notes (SCHED_EXT with no scheduler loaded)
        nonlocal said
        for n in runner.notes[said:]:
            say(n)
        said = len(runner.notes)

    if not args.watch:
        for rep in runner.poll():
            say(rep.summary())
        notes()
        for e in runner.errors:
            err(e)
        say(f"profile {prof.name}: {runner.applied} thread(s) tuned; undo with `schedtop restore`")
        return 1 if runner.errors else 0

    interval = args.interval or prof.poll_s
    hook, why = (None, "--no-exec-hook") if args.no_exec_hook else open_watch()
    say(f"profile {prof.name}: new programs and renamed threads tuned at once (BPF {hook.mode})" if hook
        else f"profile {prof.name}: polling every {interval:g}s ({why})")
    old = {s: signal.signal(s, _raise_stop) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    deadline = time.monotonic() + args.duration if args.duration else None
    lock = threading.Lock()  # the runner: this loop's polls vs. the GameMode thread's pins
    stop_games = _follow_games(games, runner, lock, say, err) if games is not None else None
    try:
        next_poll = 0.0
        while deadline is None or time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_poll:
                with lock:
                    reps = runner.poll()
                for rep in reps:
                    say(rep.summary())
                notes()
                next_poll = now + interval
            wait_s = max(0.0, min(next_poll, deadline or next_poll) - time.monotonic())
            if hook is None:
                time.sleep(wait_s)
                continue
            # Between polls: tune what the exec hook reports as soon as it happens.
            hits = hook.wait(int(wait_s * 1000))
            if hits:
                with lock:
                    reps = runner.poll_pids(e.tgid for e in hits)
                for rep in reps:
                    say(rep.summary())
                notes()
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        if hook is not None:
            hook.close()
        # No more signals while we restore: a second Ctrl-C must not leave things half done.
        for s in old:
            signal.signal(s, signal.SIG_IGN)
        if stop_games is not None:
            stop_games()
        if args.keep:
            n = hand_over(journal)
            say(f"profile {prof.name}: kept changes on {n} thread(s); undo with `schedtop restore`")
        else:
            outcomes = journal.restore_all()
            for o in outcomes:
                if o.status == "failed":
                    err(o.line())
            say(f"profile {prof.name}: restored on exit: {summarize(outcomes)}")
    return 1 if runner.errors else 0


def _follow_games(games, runner: ProfileRunner, lock: threading.Lock, say, err):
    """The GameMode follower on a thread of its own (it owns the bus connection); returns the
    call that stops it (after which the caller restores the journal)."""
    from schedtop.steer.gamemode import GameFollower, GameModeError

    rule = runner.profile.game_rule
    assert rule is not None
    stopped = threading.Event()
    follower = GameFollower(games, runner, lambda: rule, lock, stopped)
    for line in follower.start():
        say(line)

    def loop() -> None:
        while not stopped.is_set():
            try:
                lines = follower.step(0.2)
            except (GameModeError, OSError, EOFError) as exc:  # the bus went away
                err(f"gamemode: session bus lost: {exc or type(exc).__name__}; games are no longer followed")
                return
            except Exception as exc:  # never a thread's traceback: one line; the journal has every change
                err(f"gamemode: {type(exc).__name__}: {exc}; games are no longer followed")
                return
            if not stopped.is_set():
                for line in lines:
                    say(line)

    t = threading.Thread(target=loop, name="gamemode", daemon=True)
    t.start()

    def stop() -> None:
        stopped.set()
        t.join(timeout=2.0)
        if follower.latencies_ms:
            ms = sorted(follower.latencies_ms)
            say(f"gamemode: {len(ms)} game(s) tuned, GameRegistered -> rule applied median {ms[len(ms) // 2]:.1f} ms")
        games.close()

    return stop
