"""`schedtop` (no subcommand): build the source, the recorder and the config, then run the TUI."""

from __future__ import annotations

import sys
from typing import Any


def _fail(message: str) -> int:
    print(f"schedtop: {message}", file=sys.stderr)
    return 2


def build_source(args: Any) -> Any:
    """A ReplaySource for --replay (ReplayError propagates), else the live machine."""
    if getattr(args, "replay", None):
        from schedtop.collect.replay import ReplaySource, load_replay

        return ReplaySource(load_replay(args.replay))
    from schedtop.collect.live import LiveSource

    # The BPF tier opens in the background from here on, alongside the Textual import and the
    # app's start; the first frame never waits for it (bpf_wait=0). -p only narrows the rows:
    # the tier always sees every task (see LiveSource).
    return LiveSource(pids=tuple(args.pid or ()), threads=True, use_bpf=not args.no_bpf, bpf_wait=0)


def run(args: Any) -> int:
    from schedtop.collect.replay import Recorder, ReplayError
    from schedtop.ui.config import ConfigError, check_keymap, load_config

    config = getattr(args, "config_data", None)
    if config is None:  # not through cli.main (tests build args themselves)
        try:
            config = load_config(getattr(args, "config", None))
        except ConfigError as exc:
            return _fail(str(exc))
    if getattr(args, "profile", None):
        # Refused before the terminal is taken over: the app would load it once running.
        from schedtop.steer.profiles import ProfileError, load

        try:
            load(args.profile)
        except ProfileError as exc:
            return _fail(str(exc))
    if getattr(args, "replay", None) and getattr(args, "record", None):
        return _fail("--record and --replay cannot be used together")
    try:
        source = build_source(args)
    except ReplayError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot start the live source: {exc}")

    from schedtop.ui.app import SchedtopApp

    try:
        if config.keymap:  # finding every id imports every screen: only when there is a keymap
            check_keymap(config, known_binding_ids(SchedtopApp))
    except ConfigError as exc:
        _close(source)
        return _fail(str(exc))

    recorder = None
    if getattr(args, "record", None):
        try:
            recorder = Recorder(args.record)
        except OSError as exc:
            _close(source)
            return _fail(f"cannot record to {args.record}: {exc.strerror or exc}")

    delay = args.delay if args.delay is not None else (config.delay or 1.0)
    try:
        app = SchedtopApp(source, delay=delay, pids=tuple(args.pid or ()), record=recorder, config=config, args=args,
                           read_only=bool(getattr(args, "read_only", False)))
    except ConfigError as exc:
        _close(source)
        if recorder is not None:
            recorder.close()
        return _fail(str(exc))
    try:
        code = app.run()
    finally:
        app.run_exit_hooks()  # after a crash too: the steer journal must restore
        _close(source)
        if recorder is not None:
            recorder.close()
    if app.return_code not in (None, 0):
        return int(app.return_code)
    return int(code or 0)


def known_binding_ids(app_cls: Any) -> set[str]:
    """Every binding id the keymap may name: the app's and those of every widget and screen
    under schedtop.ui (other areas' screens included, found by importing the packages)."""
    import importlib
    import pkgutil

    from textual.dom import DOMNode

    import schedtop.ui.screens
    import schedtop.ui.widgets

    for pkg in (schedtop.ui.screens, schedtop.ui.widgets):
        for mod in pkgutil.iter_modules(pkg.__path__):
            try:
                importlib.import_module(f"{pkg.__name__}.{mod.name}")
            except Exception:  # another area's module that cannot import here adds no ids
                continue
    ids: set[str] = set()
    todo = [DOMNode]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls is app_cls or cls.__module__.startswith("schedtop.ui."):
            ids.update(b.id for b in cls.__dict__.get("BINDINGS", []) if getattr(b, "id", None))
    return ids


def _close(source: Any) -> None:
    close = getattr(source, "close", None)
    if close is not None:
        try:
            close()
        except Exception as exc:
            print(f"schedtop: closing the source: {exc}", file=sys.stderr)
