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

A recording of up to EAGER_BYTES of text is decoded and checked whole at load.
A larger one (an hour at 1 s with 1000 threads is ~1.7 GB) is indexed instead:
the header, every action and the line structure are checked at load, and each
snapshot is decoded when first asked for (Frames, an LRU of CACHE_FRAMES), so a
bad snapshot line raises the same ReplayError (file, line, reason) when reached.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import stat
import tempfile
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import IO, Any, BinaryIO, TypeGuard, overload

from schedtop.collect.fold import rows_for
from schedtop.model import SCHEMA_VERSION, Extras, SchemaError, Snapshot, ViewRequest, snapshot_from_dict
from schedtop.outfile import open_output

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
    if type(obj) is Extras:  # as to_dict: a part not collected is left out
        return {n: v for n in names if (v := getattr(obj, n)) is not None}
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
        # No planted symlink followed, no other user's file in /tmp clobbered (outfile.py).
        raw = self._raw = os.fdopen(open_output(self.path), "wb")
        if self.path.endswith(".gz"):
            # Long sessions: ~500 KB of JSON per frame at 1000 threads. Level 1 keeps the
            # cost small; every flush is a zlib sync point, so a crash loses one line at most.
            self._f: IO[str] | None = gzip.open(raw, "wt", compresslevel=1, encoding="utf-8")
        else:
            self._f = io.TextIOWrapper(raw, encoding="utf-8")
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
            try:
                self._f.close()
            finally:
                self._f = None
                self._raw.close()  # gzip leaves a file object it was given open

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class Replay:
    header: Mapping[str, Any]
    # A tuple (small recordings, decoded and checked at load) or a Frames (large ones,
    # decoded on first access): either way len() and indexing, oldest first.
    snapshots: Sequence[Snapshot]
    # Each action with "index": the number of snapshots recorded before it.
    actions: tuple[Mapping[str, Any], ...] = ()


def _int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_header(first: str, name: str) -> dict[str, Any]:
    try:
        header = json.loads(first)
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
    return header


def _record(line: str, no: int, name: str) -> tuple[str, Any]:
    """One record line -> ("snapshot", Snapshot) or ("action", dict); the eager and lazy
    paths both go through here, so a bad line reads the same whenever it is found."""
    try:
        rec = json.loads(line)
    except (ValueError, RecursionError):
        raise ReplayError(f"{name}: line {no} is not JSON") from None
    if not isinstance(rec, dict) or rec.get("t") not in ("snapshot", "action") or "data" not in rec:
        raise ReplayError(f"{name}: line {no} is not a snapshot or action record")
    if rec["t"] == "action":
        if not isinstance(rec["data"], dict):
            raise ReplayError(f"{name}: line {no}: action data must be an object")
        return "action", rec["data"]
    try:
        return "snapshot", snapshot_from_dict(rec["data"])
    except (SchemaError, TypeError, ValueError, ArithmeticError, RecursionError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReplayError(f"{name}: line {no}: {msg}") from None


def parse_replay(text: str, name: str = "replay") -> Replay:
    """Eager: every line decoded and checked now (small recordings; see load_replay)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif lines:
        # Every line we write ends with '\n': a last line without one was cut off.
        raise ReplayError(f"{name}: truncated (line {len(lines)} is incomplete)")
    if not lines:
        raise ReplayError(f"{name}: empty file, not a schedtop recording")
    header = _check_header(lines[0], name)
    snaps: list[Snapshot] = []
    actions: list[Mapping[str, Any]] = []
    for no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        kind, value = _record(line, no, name)
        if kind == "action":
            actions.append({**value, "index": len(snaps)})
        else:
            snaps.append(value)
    if not snaps:
        raise ReplayError(f"{name}: no snapshots recorded")
    return Replay(header=header, snapshots=tuple(snaps), actions=tuple(actions))


# Above this much text a recording is indexed at load and its frames decoded on demand:
# decoding costs ~0.08 ms per task per frame, so an hour at 1 s with 1000 threads would
# take minutes and GBs eagerly. Below it, everything is checked before the first frame.
EAGER_BYTES = 8 << 20
# A recording's JSON compresses about 10-20x at level 1: a .gz that inflates far more than
# that is not one (a gzip of zeros), and is refused before it fills the temporary disk.
GUNZIP_RATIO = 200
GUNZIP_MIN_CAP = 1 << 30
# Frames kept decoded: the one shown, a step back and forth, and the one in flight.
CACHE_FRAMES = 8
# How Recorder.snapshot starts every snapshot line: only such lines are left for later.
_SNAPSHOT_PREFIX = b'{"t":"snapshot","data":'


class Frames(Sequence[Snapshot]):
    """The snapshots of a large recording, decoded on first access (small LRU cache).

    `f` is the open recording (or, for .gz, a private unlinked temporary file with its
    text) and `spans` each snapshot line's (start, end, line number). Lines are read with
    pread, not mmap: a file truncated under a running replay (say, recorded over) then
    gives an error for that frame instead of a SIGBUS. A line that turns out to be bad
    raises ReplayError (file, line, reason) each time it is asked for.
    """

    def __init__(self, f: BinaryIO, spans: list[tuple[int, int, int]], name: str,
                 cache_frames: int = CACHE_FRAMES) -> None:
        self._f = f
        self._spans = spans
        self._name = name
        self._cache: OrderedDict[int, Snapshot] = OrderedDict()
        self._bad: dict[int, str] = {}
        self._cache_frames = max(1, cache_frames)
        self._lock = threading.Lock()  # the poller's worker and the UI's step both read
        self.decoded = 0  # frames decoded so far (a cost the tests and bench check)

    def __len__(self) -> int:
        return len(self._spans)

    def line_of(self, i: int) -> int:
        """The file line number frame i was recorded on."""
        return self._spans[i][2]

    @overload
    def __getitem__(self, i: int) -> Snapshot: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[Snapshot, ...]: ...
    def __getitem__(self, i: int | slice) -> Snapshot | tuple[Snapshot, ...]:
        if isinstance(i, slice):
            return tuple(self[k] for k in range(*i.indices(len(self))))
        n = len(self._spans)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("frame index out of range")
        with self._lock:
            snap = self._cache.get(i)
            if snap is not None:
                self._cache.move_to_end(i)
                return snap
            if i in self._bad:
                raise ReplayError(self._bad[i])
            start, end, no = self._spans[i]
            try:
                kind, snap = _record(self._text(start, end, no), no, self._name)
            except ReplayError as exc:
                self._bad[i] = str(exc)
                raise
            self.decoded += 1
            self._cache[i] = snap
            if len(self._cache) > self._cache_frames:
                self._cache.popitem(last=False)
            return snap

    def _text(self, start: int, end: int, no: int) -> str:
        try:
            raw = os.pread(self._f.fileno(), end - start, start)
        except (OSError, ValueError) as exc:  # ValueError: closed
            raise ReplayError(f"{self._name}: line {no}: cannot read it ({exc})") from None
        if len(raw) != end - start:
            raise ReplayError(f"{self._name}: line {no}: cut off (the file shrank since it was loaded)")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ReplayError(f"{self._name}: line {no} is not UTF-8 text") from None

    def __iter__(self) -> Iterator[Snapshot]:
        for i in range(len(self)):
            yield self[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (tuple, list, Frames)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def close(self) -> None:
        with self._lock:
            self._cache.clear()
            self._f.close()


_CHUNK = 1 << 20


def _lines(f: BinaryIO, name: str) -> Iterator[tuple[int, int, bytes | None]]:
    """Each line of `f` from its current offset: (start, end, its bytes), with None for the
    bytes of a snapshot line (one starting with the Recorder's prefix: read when shown).

    Memory is one chunk plus the line it cuts, whatever the file's size."""
    carry, base = b"", f.tell()  # base: the file offset of carry[0]
    no = 0
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            break
        data = carry + chunk if carry else chunk
        i = 0
        while (j := data.find(b"\n", i)) >= 0:
            no += 1
            # The header (line 1) is always returned, whatever it starts with.
            snap = no > 1 and data.startswith(_SNAPSHOT_PREFIX, i, j)
            yield base + i, base + j, None if snap else data[i:j]
            i = j + 1
        carry, base = data[i:], base + i
    if carry:
        raise ReplayError(f"{name}: truncated (line {no + 1} is incomplete)")


def index_replay(f: BinaryIO, name: str, cache_frames: int = CACHE_FRAMES) -> Replay:
    """Lazy: check the header and every action now, find the snapshot lines, decode none.

    `f` is positioned at the start of the text and stays open (Frames reads from it). The
    cut-off check is the eager one (the last byte must end a line). Snapshot lines are
    recognised by the prefix Recorder writes; any other line is decoded now, so a
    hand-made file with other key orders still loads, just eagerly.
    """
    spans: list[tuple[int, int, int]] = []
    actions: list[Mapping[str, Any]] = []
    header: dict[str, Any] | None = None
    no = 0
    for no, (start, end, line) in enumerate(_lines(f, name), start=1):
        if header is None:
            assert line is not None
            try:
                first = line.decode("utf-8")
            except UnicodeDecodeError:
                raise ReplayError(f"{name}: not a schedtop recording (not UTF-8 text)") from None
            header = _check_header(first, name)
            continue
        if line is None:
            spans.append((start, end, no))
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise ReplayError(f"{name}: line {no} is not UTF-8 text") from None
        if text.strip():
            kind, value = _record(text, no, name)
            if kind == "action":
                actions.append({**value, "index": len(spans)})
            else:  # a snapshot line written some other way: decoded now, re-read when shown
                spans.append((start, end, no))
    if header is None:
        raise ReplayError(f"{name}: empty file, not a schedtop recording")
    if not spans:
        raise ReplayError(f"{name}: no snapshots recorded")
    return Replay(header=header, snapshots=Frames(f, spans, name, cache_frames), actions=tuple(actions))


def _gunzip_to_file(f: BinaryIO, name: str, cap: int) -> tuple[Any, int]:
    """Decompress into a private unlinked temporary file; returns it and the text size.

    Decompresses what is there: a recorder that crashed left no gzip trailer, but its last
    sync point ends a complete line (a cut inside a line is caught as truncated). More than
    `cap` bytes of text is refused: a gzip of zeros must not fill the disk."""
    out = tempfile.TemporaryFile()
    d = zlib.decompressobj(wbits=31)
    try:
        while not d.eof:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            while chunk:  # at most 1 MiB of output per step, however well it compresses
                out.write(d.decompress(chunk, 1 << 20))
                chunk = d.unconsumed_tail
                if out.tell() > cap:
                    out.close()
                    raise ReplayError(f"{name}: decompresses to over {cap >> 20} MiB, "
                                      "far more than a recording of its size")
        out.write(d.flush())  # a match cut by the 1 MiB step above, at the very end
    except zlib.error:
        out.close()
        raise ReplayError(f"{name}: corrupt gzip data") from None
    except OSError as exc:
        out.close()
        raise ReplayError(f"{name}: {exc.strerror or exc}") from None
    return out, out.tell()


def load_replay(path: str | os.PathLike[str], *, eager_bytes: int = EAGER_BYTES,
                cache_frames: int = CACHE_FRAMES) -> Replay:
    """Read a recording. Up to `eager_bytes` of text: every line checked now (parse_replay).
    Above: the header and actions checked now, snapshots decoded when first shown
    (index_replay), so loading costs a scan of the text, not a decode of every frame."""
    name = os.fspath(path)
    if not name:
        raise ReplayError("no replay file named (an empty path)")
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
        f = os.fdopen(os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb")
    except OSError as exc:
        raise ReplayError(f"{name}: {exc.strerror or exc}") from None
    keep = False  # the lazy path keeps its file open (Frames reads from it)
    try:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):  # /dev/zero never ends, a FIFO blocks: only files
            what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise ReplayError(f"{name}: {what}: a recording is a file written by --record")
        if f.read(2) == b"\x1f\x8b":
            f.seek(0)
            tmp, size = _gunzip_to_file(f, name, max(GUNZIP_MIN_CAP, GUNZIP_RATIO * st.st_size))
            f.close()
            f = tmp
        else:
            size = os.fstat(f.fileno()).st_size
        f.seek(0)
        if size <= eager_bytes:
            return _parse_bytes(f.read(), name)
        replay = index_replay(f, name, cache_frames)
        keep = True
        return replay
    except OSError as exc:
        raise ReplayError(f"{name}: {exc.strerror or exc}") from None
    finally:
        if not keep:
            f.close()


def _parse_bytes(raw: bytes, name: str) -> Replay:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ReplayError(f"{name}: not a schedtop recording (not UTF-8 text)") from None
    return parse_replay(text, name)


def last_good_frame(replay: Replay) -> tuple[Snapshot, list[str]]:
    """The last frame that decodes, and the errors of the bad frames after it (newest first).
    Only a lazy recording can have bad frames (an eager one was checked at load)."""
    errors: list[str] = []
    for i in range(len(replay.snapshots) - 1, -1, -1):
        try:
            return replay.snapshots[i], errors
        except ReplayError as exc:
            errors.append(str(exc))
    raise ReplayError(errors[0] if len(errors) == 1 else f"{errors[0]} (and no earlier frame decodes either)")


class ReplaySource:
    """Plays a Replay like a live source: each collect() returns the next frame.

    The UI owns the clock: it calls collect() every `delay / speed` seconds
    unless paused, and uses step()/seek() for stepping. At the end, collect()
    keeps returning the last frame (at_end is True).

    A frame of a large recording that turns out to be bad (see Frames) raises ReplayError
    from collect() with the position left on the last good frame, so playing stops there
    with the error shown; step()/seek() do move onto it (and raise), so the user can step
    past it.
    """

    def __init__(self, replay: Replay) -> None:
        self.replay = replay
        self.pos = -1  # index of the frame last returned; -1 before the first
        self.speed = 1.0

    def __len__(self) -> int:
        return len(self.replay.snapshots)

    @property
    def at_end(self) -> bool:
        return self.pos >= len(self.replay.snapshots) - 1

    def current(self, request: ViewRequest | None = None) -> Snapshot:
        return self._frame(max(self.pos, 0), request)

    def _frame(self, i: int, request: ViewRequest | None = None) -> Snapshot:
        s = self.replay.snapshots[i]
        tasks = rows_for(s.tasks, request)  # as live
        if s.source == "replay" and tasks is s.tasks:
            return s
        # A new frame from the recorded one, whole; the recording keeps its threads and source.
        extras = s.extras if s.source == "replay" else replace(s.extras, recorded_source=s.source)
        return replace(s, source="replay", extras=extras, tasks=tasks)

    def collect(self, request: ViewRequest | None = None) -> Snapshot:
        """The next frame. A request's thread/process choice is honoured; the detail it asks
        for is whatever was recorded."""
        if self.at_end:
            return self.current(request)
        snap = self._frame(self.pos + 1, request)  # a bad frame raises before the position moves
        self.pos += 1
        return snap

    def step(self, n: int = 1, request: ViewRequest | None = None) -> Snapshot:
        return self.seek(self.pos + n, request)

    def seek(self, i: int, request: ViewRequest | None = None) -> Snapshot:
        self.pos = min(max(i, 0), len(self.replay.snapshots) - 1)
        return self.current(request)

    def actions_at(self, i: int) -> tuple[Mapping[str, Any], ...]:
        """Actions recorded between frame i-1 and frame i."""
        return tuple(a for a in self.replay.actions if a.get("index") == i)

    def add_extra(self, name: str, fn: Any) -> None:
        """Replays carry their recorded parts; live-only ones are ignored."""

    def close(self) -> None:
        close = getattr(self.replay.snapshots, "close", None)
        if close is not None:
            close()
