"""`schedtop serve`: the same TUI in a web browser (textual-serve), on 127.0.0.1:9646 by default.

Each browser tab gets its own `schedtop` process, started with --read-only unless --allow-steer
(the header then says "steering off (serve without --allow-steer)" and the steering keys answer
with that). --allow-steer is refused on an address beyond loopback, and prints a URL with a
token, the only way in. Listening beyond loopback is said loudly: the page has no password.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

DEFAULT_LISTEN = "127.0.0.1:9646"
MAX_SESSIONS = 64


def _listen(text: str) -> tuple[str, int]:
    from schedtop.exporter.cli import listen_address

    return listen_address(text, DEFAULT_LISTEN)


def _sessions(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_SESSIONS:
        raise argparse.ArgumentTypeError(f"not a count in 1..{MAX_SESSIONS}: {text!r}")
    return int(text)


def configure(p: argparse.ArgumentParser) -> None:
    from schedtop.cli import pid_list, seconds_in
    from schedtop.ui.config import MAX_DELAY, MIN_DELAY

    p.add_argument("--listen", type=_listen, default=_listen(DEFAULT_LISTEN), metavar="HOST:PORT",
                   help=f"where to serve the page (default {DEFAULT_LISTEN}: this machine only)")
    p.add_argument("--allow-steer", action="store_true",
                   help="let the browser steer (loopback only; the URL printed at start carries a token)")
    p.add_argument("--public-url", metavar="URL", default=None,
                   help="the address browsers use when it is not HOST:PORT (a reverse proxy)")
    p.add_argument("--max-sessions", type=_sessions, default=4, metavar="N",
                   help=f"browser tabs at once, each its own schedtop process (1..{MAX_SESSIONS}, default 4)")
    p.add_argument("--replay", metavar="FILE", help="serve a recorded session instead of this machine")
    p.add_argument("-d", "--delay", type=seconds_in(MIN_DELAY, MAX_DELAY), default=None, metavar="SECONDS",
                   help="refresh interval (default: the config's delay, else 1.0)")
    p.add_argument("-p", "--pid", type=pid_list, action="extend", default=[], metavar="PID[,PID...]",
                   help="follow these pids")
    p.add_argument("--no-bpf", action="store_true", help="procfs only, never load BPF")
    p.add_argument("--config", metavar="FILE", help="config file (default: XDG config schedtop/config.toml)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")


def check(args: Any) -> str | None:
    from schedtop.serve.server import is_loopback

    if args.replay is not None and not args.replay.strip():
        return "--replay needs a file name"
    if args.public_url is not None and not args.public_url.startswith(("http://", "https://")):
        return f"--public-url: expected http://HOST[:PORT] or https://..., got {args.public_url!r}"
    if args.allow_steer and not is_loopback(args.listen[0]):
        return (f"--allow-steer is for a loopback address only: anyone who reaches {args.listen[0]} "
                "could retune this machine")
    return None


def app_command(args: Any) -> list[str]:
    """What each browser session runs: this schedtop (through session.py, which ends it with the
    server), read-only unless --allow-steer."""
    import os

    cmd = [sys.executable, "-m", "schedtop.serve.session", str(os.getpid())]
    if args.delay is not None:
        cmd += ["-d", f"{args.delay:g}"]
    if args.pid:
        cmd += ["-p", ",".join(map(str, args.pid))]
    if args.no_bpf:
        cmd.append("--no-bpf")
    if args.replay:
        cmd += ["--replay", os.path.abspath(args.replay)]
    if args.config:
        cmd += ["--config", os.path.abspath(args.config)]
    if not args.allow_steer:
        cmd.append("--read-only")
    return cmd


def _fail(message: str, code: int) -> int:
    print(f"schedtop serve: {message}", file=sys.stderr)
    return code


def run(args: Any) -> int:
    # What a session would refuse is refused here: in the browser it would only read "Session ended".
    from schedtop.ui.config import ConfigError, load_config

    try:
        load_config(args.config)
    except ConfigError as exc:
        return _fail(str(exc), 2)
    if args.replay:
        from schedtop.collect.replay import ReplayError, load_replay

        try:
            load_replay(args.replay)
        except ReplayError as exc:
            return _fail(str(exc), 2)

    from schedtop.serve.server import SchedtopServer, bind, is_loopback

    host, port = args.listen
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        sock = bind(host, port)
    except OSError as exc:
        return _fail(f"cannot listen on {where}: {exc.strerror or exc}", 1)
    server = SchedtopServer("exec " + shlex.join(app_command(args)), host=host, port=port, title="schedtop",
                            allow_steer=args.allow_steer, max_sessions=args.max_sessions,
                            public_url=args.public_url)
    url = (args.public_url or f"http://{where}").rstrip("/") + "/"
    what = f"replay of {args.replay}" if args.replay else "this machine"
    steer = "steering ON" if args.allow_steer else "steering off (--allow-steer turns it on)"
    print(f"schedtop serve: serving {what} on {url} ({steer}; at most {args.max_sessions} sessions)",
          file=sys.stderr, flush=True)
    if args.allow_steer:
        print(f"schedtop serve: open {url}?token={server.token} (without the token the page is refused: "
              "whoever has it can steer)", file=sys.stderr, flush=True)
    if not is_loopback(host):
        bar = "!" * 72
        print(f"{bar}\nschedtop serve: WARNING: listening on {where}, beyond this machine: anyone who can "
              f"reach it sees every task here (no password, no TLS).\n{bar}", file=sys.stderr, flush=True)
    server.serve_on(sock)
    return 0
