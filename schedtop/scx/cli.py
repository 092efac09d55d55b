"""`schedtop scx`: run the scheduler headless, with periodic stats lines.

The TUI runs this same command as a supervised child (``--json --control stdin``):
stats come back as JSON lines on stdout, commands go in as JSON lines on
stdin, and stdin closing (the app went away) unloads the scheduler.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from typing import Any

from schedtop.scx.policies import DEFAULT, SHIPPED

# How long the loop gets to come back by itself: after an ejection the kernel runs EEVDF and the
# loop is an ordinary thread, so 1 s is plenty; a stop request may meet a busy machine (the
# supervisor itself waits 5 s before SIGTERM).
EJECT_GRACE_S = 1.0
STOP_GRACE_S = 3.0
# The guard's look interval: every wake-up takes the GIL from the loop, so a few per second,
# not more; the graces above are several intervals long.
GUARD_LOOK_S = 0.25


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", default=DEFAULT, metavar="NAME|FILE.py",
                        help=f"scheduling policy: {', '.join(SHIPPED)} or your own FILE.py (default {DEFAULT})")
    parser.add_argument("--partial", action="store_true",
                        help="schedule only tasks moved to SCHED_EXT (safe on a desktop); default: every task")
    parser.add_argument("--slice-us", type=int, default=5000, metavar="N", help="global time slice (default 5000)")
    parser.add_argument("--timeout-ms", type=int, default=5000, metavar="N",
                        help="watchdog: eject if a runnable task waits this long (1..30000, default 5000)")
    parser.add_argument("--stats-interval", type=float, default=1.0, metavar="S",
                        help="seconds between stats lines (default 1)")
    parser.add_argument("--duration", type=float, default=0.0, metavar="S", help="unload after S seconds (0: run until ^C)")
    parser.add_argument("--json", action="store_true", help="stats as JSON lines")
    parser.add_argument("--control", choices=["stdin"], help="read JSON-line commands on stdin (used by the TUI)")
    parser.add_argument("--per-event", action="store_true",
                        help="decide every task at every enqueue in the policy (no plans applied by BPF): the rustland way")
    parser.add_argument("--loop-preempt", action="store_true",
                        help="a woken loop preempts its CPU (lower decision latency, chopped slices)")
    parser.add_argument("--stats-socket", default=None, metavar="PATH",
                        help="serve scx_stats here for scx tools and schedtop (default /var/run/scx/root/stats; "
                             "'none' to disable)")
    parser.add_argument("-v", "--verbose", action="count", default=0)


def _fail(text: str, code: int = 1) -> int:
    print(f"schedtop scx: {text}", file=sys.stderr)
    return code


def stats_line(s: dict[str, Any]) -> str:
    r = s.get("rates", {})
    c = s.get("counters", {})

    def us(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}"

    pf = s.get("page_faults_after_warmup")
    return (
        f"[{s.get('uptime_s', 0):7.1f}s] {s.get('policy')} slice={s.get('slice_ns', 0) // 1000}us "
        f"queued={r.get('nr_queued', 0):.0f}/s sched={r.get('nr_scheduled', 0):.0f}/s "
        f"user={r.get('nr_user_dispatches', 0):.0f}/s kernel={r.get('nr_kernel_dispatches', 0):.0f}/s "
        f"cancel={c.get('nr_cancelled', 0)} bounce={c.get('nr_bounced', 0)} fail={c.get('nr_failed', 0)} "
        f"congest={c.get('nr_congested', 0)} depth={s.get('user_queue', 0)} "
        f"lat p50/p99={us(s.get('dispatch_p50_us'))}/{us(s.get('dispatch_p99_us'))}us "
        f"pf={'-' if pf is None else pf} cpu={s.get('cpu_pct', 0):.1f}% rss={s.get('rss_kb', 0) // 1024}MB"
    )


def _emit(obj: dict[str, Any], as_json: bool, lock: threading.Lock) -> None:
    text = json.dumps(obj) if as_json else stats_line(obj)
    with lock:
        try:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass


def _reexec_with_malloc() -> None:
    """The loop must not fault after warm-up; pymalloc maps and unmaps its arenas as
    objects come and go, glibc malloc with a reserved, never-trimmed heap does not
    (loop.harden). PYTHONMALLOC is read at interpreter start, hence the re-exec."""
    if os.environ.get("PYTHONMALLOC") == "malloc" or os.environ.get("SCHEDTOP_SCX_NO_REEXEC"):
        return
    os.environ["PYTHONMALLOC"] = "malloc"
    try:
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-m", "schedtop", "scx", *sys.argv[2:]])
    except OSError:
        pass  # run as we are; the page-fault count will tell


def run(args: argparse.Namespace) -> int:
    from schedtop.scx.knobs import Knobs
    from schedtop.scx.loader import LoadConfig, LoadError, Scheduler, preflight
    from schedtop.scx.loop import Loop
    from schedtop.scx.policies import load_policy
    from schedtop.scx.policy import MAX_SLICE_NS, MIN_SLICE_NS, PolicyError

    slice_ns = args.slice_us * 1000
    if not MIN_SLICE_NS <= slice_ns <= MAX_SLICE_NS:
        return _fail(f"--slice-us must be {MIN_SLICE_NS // 1000}..{MAX_SLICE_NS // 1000}, got {args.slice_us}", 2)
    if not 1 <= args.timeout_ms <= 30000:
        return _fail(f"--timeout-ms must be 1..30000, got {args.timeout_ms}", 2)
    if args.stats_interval <= 0:
        return _fail("--stats-interval must be > 0", 2)
    nr_cpus = os.cpu_count() or 1
    if os.geteuid() == 0 and sys.argv[1:2] == ["scx"]:
        _reexec_with_malloc()
    try:
        policy = load_policy(args.policy, slice_ns=slice_ns, nr_cpus=nr_cpus)
        preflight()
        sched = Scheduler(LoadConfig(partial=args.partial, slice_ns=slice_ns, timeout_ms=args.timeout_ms,
                                     loop_preempt=args.loop_preempt))
    except (PolicyError, LoadError) as exc:
        return _fail(str(exc))

    loop = Loop(sched, policy, Knobs(nr_cpus), stats_interval=args.stats_interval, plans=not args.per_event)
    lock = threading.Lock()
    ready = threading.Event()
    done = threading.Event()

    def printer() -> None:
        # Runs beside the loop: a slow terminal or reader blocks this thread, never the loop.
        shown = None
        while not done.is_set():
            ready.wait(1.0)
            ready.clear()
            latest = loop.latest
            if latest is not shown and "uptime_s" in latest and not done.is_set():
                _emit(latest, args.json, lock)
                shown = latest

    def control() -> None:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                cmd = json.loads(line)
                if not isinstance(cmd, dict) or "cmd" not in cmd:
                    raise ValueError("a command is an object with a 'cmd'")
            except ValueError as exc:
                _emit({"event": "bad_command", "error": str(exc)}, True, lock)
                continue
            loop.command(cmd)
        loop.stop()  # stdin closed: our supervisor is gone

    loop.on_stats = lambda _s: ready.set()
    threading.Thread(target=printer, name="scx-stats", daemon=True).start()
    mapped = threading.Lock()
    threading.Thread(target=_guard, args=(loop, sched, done, lock, args.json, mapped), name="scx-guard",
                     daemon=True).start()
    if args.control == "stdin":
        threading.Thread(target=control, name="scx-control", daemon=True).start()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: loop.stop())
    if args.duration > 0:
        timer = threading.Timer(args.duration, loop.stop)
        timer.daemon = True
        timer.start()

    mode = "partial" if args.partial else "full"
    kernel_note = sched.compat.line()  # what this kernel's sched_ext lacks, "" for nothing
    if args.json:
        _emit({"event": "loaded", "policy": policy.name, "mode": mode, "pid": os.getpid(),
               "slice_ns": slice_ns, "timeout_ms": args.timeout_ms, "kernel_note": kernel_note}, True, lock)
    else:
        _emit_text(f"schedtop scx: loaded ({policy.name}, {mode} mode, slice {args.slice_us}us, "
                   f"timeout {args.timeout_ms}ms); ^C unloads", lock)
        if kernel_note:
            _emit_text(f"schedtop scx: {kernel_note}", lock)
    stats_server = _serve_stats(args.stats_socket, loop, lock)
    try:
        outcome = loop.run()
    except LoadError as exc:
        done.set()
        with mapped:
            sched.close()
        return _fail(str(exc))
    finally:
        done.set()
        ready.set()
        if stats_server is not None:
            stats_server.stop()
    with mapped:
        sched.close()
    time.sleep(0)  # let the printer see done
    final = dict(loop.latest)
    if args.json:
        _emit({"event": "exit", "reason": outcome.reason, "text": outcome.text, "code": outcome.code,
               "stats": final}, True, lock)
    else:
        if final.get("uptime_s") is not None:
            _emit_text(stats_line(final), lock)
        _emit_text(f"schedtop scx: {outcome.text}", lock, err=outcome.code != 0)
    return outcome.code


def where_stuck(thread_id: int | None) -> str:
    """file:line in function of the innermost Python frame of a thread (the policy, usually)."""
    import traceback

    frame = sys._current_frames().get(thread_id) if thread_id is not None else None
    if frame is None:
        return "an unknown place"
    last = traceback.extract_stack(frame)[-1]
    return f"{os.path.basename(last.filename)}:{last.lineno} in {last.name}"


def _guard(loop: Any, sched: Any, done: threading.Event, lock: threading.Lock, as_json: bool,
           mapped: threading.Lock) -> None:
    """Ejections and stop requests are noticed by the loop between batches; a policy stuck in
    decide() or tick() never gets back there, and the process would hang on for ever while the
    kernel already runs EEVDF. The struct_ops link dies with the process, so leaving is an unload."""
    since: float | None = None
    main = threading.main_thread().ident
    while not done.wait(GUARD_LOOK_S):
        with mapped:  # the exit record lives in the object's mmap; close() unmaps it under this lock
            if done.is_set():
                return
            info = sched.exit_info()
        if info is None and not loop.stop_requested:
            since = None
            continue
        since = since if since is not None else time.monotonic()
        if time.monotonic() - since < (EJECT_GRACE_S if info is not None else STOP_GRACE_S):
            continue
        where = where_stuck(main)
        if info is not None:
            reason, code = "ejected", 2
            text = f"the kernel ejected the scheduler: {info.text}; the policy loop was stuck at {where}"
        else:
            reason, code = "policy", 3
            text = f"asked to unload, the policy loop did not return within {STOP_GRACE_S:g} s (stuck at {where})"
        with lock:  # held to the end: the main thread's own exit report cannot interleave
            if done.is_set():
                return
            out = {"event": "exit", "reason": reason, "text": text, "code": code, "stats": dict(loop.latest)}
            try:
                if as_json:
                    sys.stdout.write(json.dumps(out) + "\n")
                else:
                    sys.stderr.write(f"schedtop scx: {text}\n")
                sys.stdout.flush()
                sys.stderr.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass
            os._exit(code)


def _serve_stats(path: str | None, loop: Any, lock: threading.Lock) -> Any:
    """The loop's stats over scx_stats (0600, root only); a socket we cannot serve is a warning."""
    if path == "none":
        return None
    from schedtop.export.loop_stats import serve
    from schedtop.export.scx_stats import DEFAULT_PATH, StatsError

    try:
        return serve(lambda: loop.latest, path or DEFAULT_PATH)
    except (StatsError, OSError) as exc:
        _emit_text(f"schedtop scx: scx_stats not served: {exc}", lock, err=True)
        return None


def _emit_text(text: str, lock: threading.Lock, err: bool = False) -> None:
    with lock:
        stream = sys.stderr if err else sys.stdout
        try:
            stream.write(text + "\n")
            stream.flush()
        except (BrokenPipeError, ValueError):
            pass
