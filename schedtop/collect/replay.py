"""Record and replay sessions: versioned JSON Lines.

File format (one JSON object per line, flushed per line so a crash loses at
most the line being written):

    {"schedtop_replay": 1, "schema": SCHEMA_VERSION, "created": <unix time>, "host": ..., "kernel": ...}
    {"t": "snapshot", "data": <model.to_dict(Snapshot)>}
    {"t": "action", "data": {...}}          # what the user did (steer, scx, ...), as the area recorded it

A path ending in .gz is written gzip-compressed (same lines); load_replay reads both.

`schedtop_replay` is the container version (this module's), `schema` the
snapshot schema (model.SCHEMA_VERSION). Either being newer than this build
understands is an error, as is anything malformed or truncated: load_replay
raises ReplayError with one line to show the user.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import time
import zlib
from dataclasses import dataclass, replace
from typing import Any, Mapping

from schedtop.collect.fold import fold_processes
from schedtop.model import SCHEMA_VERSION, SchemaError, Snapshot, snapshot_from_dict

REPLAY_VERSION = 1


class ReplayError(Exception):
    """A replay file that cannot be used; str() is one line for the user."""


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _default(obj: Any) -> Any:
    """json.dumps hook: dataclasses as dicts of their fields, other Mappings as dicts."""
    names = _FIELD_NAMES.get(type(obj))
    if names is None:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            names = _FIELD_NAMES[type(obj)] = tuple(f.name for f in dataclasses.fields(obj))
        elif isinstance(obj, Mapping):
            return {str(k): v for k, v in obj.items()}
        else:
            raise TypeError(f"cannot record a {type(obj).__name__}")
    return {n: getattr(obj, n) for n in names}


def encode_snapshot(s: Snapshot) -> str:
    """The JSON of model.to_dict(s), about 4x cheaper: json's C encoder walks the tuples and
    scalars and calls back only for dataclasses (25 ms -> ~6 ms at 1000 tasks)."""
    # NaN is written as the token NaN rather than failing the recording (json reads it back).
    return json.dumps(s, default=_default, separators=(",", ":"))


class Recorder:
    """Appends snapshots and actions to a replay file, one flushed line each."""

    def __init__(self, path: str | os.PathLike[str], *, host: str = "", kernel: str = "") -> None:
        self.path = os.fspath(path)
        if self.path.endswith(".gz"):
            # Long sessions: ~500 KB of JSON per frame at 1000 threads. Level 1 keeps the
            # cost small; every flush is a zlib sync point, so a crash loses one line at most.
            self._f = gzip.open(self.path, "wt", compresslevel=1, encoding="utf-8")
        else:
            self._f = open(self.path, "w", encoding="utf-8")
        uname = os.uname()
        self._line({
            "schedtop_replay": REPLAY_VERSION,
            "schema": SCHEMA_VERSION,
            "created": time.time(),
            "host": host or uname.nodename,
            "kernel": kernel or uname.release,
        })

    def _line(self, obj: Mapping[str, Any]) -> None:
        if self._f is None:
            raise ValueError("recorder is closed")
        self._f.write(json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n")
        self._f.flush()

    def snapshot(self, s: Snapshot) -> None:
        if self._f is None:
            raise ValueError("recorder is closed")
        self._f.write('{"t":"snapshot","data":' + encode_snapshot(s) + "}\n")
        self._f.flush()

    def action(self, d: Mapping[str, Any]) -> None:
        # Stamp actions so a replay can place them between snapshots.
        data = dict(d)
        data.setdefault("wall", time.time())
        self._line({"t": "action", "data": data})

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class Replay:
    header: Mapping[str, Any]
    snapshots: tuple[Snapshot, ...]
    # Each action with "index": the number of snapshots recorded before it.
    actions: tuple[Mapping[str, Any], ...] = ()


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_replay(text: str, name: str = "replay") -> Replay:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif lines:
        # Every line we write ends with '\n': a last line without one was cut off.
        raise ReplayError(f"{name}: truncated (line {len(lines)} is incomplete)")
    if not lines:
        raise ReplayError(f"{name}: empty file, not a schedtop recording")
    try:
        header = json.loads(lines[0])
    except (ValueError, RecursionError):
        raise ReplayError(f"{name}: not a schedtop recording (line 1 is not JSON)") from None
    if not isinstance(header, dict) or "schedtop_replay" not in header:
        raise ReplayError(f"{name}: not a schedtop recording (no schedtop_replay header)")
    version, schema = header.get("schedtop_replay"), header.get("schema")
    if not _int(version) or not _int(schema):
        raise ReplayError(f"{name}: bad header (version and schema must be integers)")
    if version > REPLAY_VERSION or schema > SCHEMA_VERSION:
        raise ReplayError(
            f"{name}: written by a newer schedtop (format {version}, schema {schema}; "
            f"this one reads format {REPLAY_VERSION}, schema {SCHEMA_VERSION})")
    if version < 1 or schema < 1:
        raise ReplayError(f"{name}: bad header (format {version}, schema {schema})")
    snaps: list[Snapshot] = []
    actions: list[Mapping[str, Any]] = []
    for no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            raise ReplayError(f"{name}: line {no} is not JSON") from None
        if not isinstance(rec, dict) or rec.get("t") not in ("snapshot", "action") or "data" not in rec:
            raise ReplayError(f"{name}: line {no} is not a snapshot or action record")
        if rec["t"] == "action":
            if not isinstance(rec["data"], dict):
                raise ReplayError(f"{name}: line {no}: action data must be an object")
            actions.append({**rec["data"], "index": len(snaps)})
            continue
        try:
            snaps.append(snapshot_from_dict(rec["data"]))
        except (SchemaError, TypeError, ValueError, ArithmeticError, RecursionError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ReplayError(f"{name}: line {no}: {msg}") from None
    if not snaps:
        raise ReplayError(f"{name}: no snapshots recorded")
    return Replay(header=header, snapshots=tuple(snaps), actions=tuple(actions))


def load_replay(path: str | os.PathLike[str]) -> Replay:
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ReplayError(f"{name}: {exc.strerror or exc}") from None
    if raw[:2] == b"\x1f\x8b":
        # Decompress what is there: a recorder that crashed left no gzip trailer, but its
        # last sync point ends a complete line (a cut inside a line is caught as truncated).
        try:
            raw = zlib.decompressobj(wbits=31).decompress(raw)
        except zlib.error:
            raise ReplayError(f"{name}: corrupt gzip data") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ReplayError(f"{name}: not a schedtop recording (not UTF-8 text)") from None
    return parse_replay(text, name)


class ReplaySource:
    """Plays a Replay like a live source: each collect() returns the next frame.

    The UI owns the clock: it calls collect() every `delay / speed` seconds
    unless paused, and uses step()/seek() for stepping. At the end, collect()
    keeps returning the last frame (at_end is True).
    """

    def __init__(self, replay: Replay) -> None:
        self.replay = replay
        self.pos = -1  # index of the frame last returned; -1 before the first
        self.speed = 1.0
        self.threads = True  # False: thread rows are folded into process rows, as live

    def __len__(self) -> int:
        return len(self.replay.snapshots)

    @property
    def at_end(self) -> bool:
        return self.pos >= len(self.replay.snapshots) - 1

    def current(self) -> Snapshot:
        return self._frame(max(self.pos, 0))

    def _frame(self, i: int) -> Snapshot:
        s = self.replay.snapshots[i]
        if s.source != "replay":
            s = replace(s, source="replay", extras={**s.extras, "recorded_source": s.source})
        if not self.threads:
            s = replace(s, tasks=fold_processes(s.tasks))
        return s

    def collect(self) -> Snapshot:
        if not self.at_end:
            self.pos += 1
        return self.current()

    def step(self, n: int = 1) -> Snapshot:
        return self.seek(self.pos + n)

    def seek(self, i: int) -> Snapshot:
        self.pos = min(max(i, 0), len(self.replay.snapshots) - 1)
        return self.current()

    def actions_at(self, i: int) -> tuple[Mapping[str, Any], ...]:
        """Actions recorded between frame i-1 and frame i."""
        return tuple(a for a in self.replay.actions if a.get("index") == i)

    def add_extra(self, name: str, fn: Any) -> None:
        """Replays carry their recorded extras; live-only sections are ignored."""

    def close(self) -> None:
        pass
