"""The scx_stats protocol: a client for any sched_ext scheduler's stats socket, and a server for ours.

Wire format (sched-ext/scx rust/scx_stats): one JSON object per line over a UNIX stream socket.
  request   {"req": "stats_meta"}                 -> {"errno": 0, "args": {"resp": {NAME: META, ...}}}
  request   {"req": "stats", "args": {"target": "top", ...}}
                                                   -> {"errno": 0, "args": {"resp": VALUE}}
  failure                                          -> {"errno": 22, "args": {"resp": "message"}}
`args` is a string -> string map; a missing "target" means "top". META describes one struct:
  {"name": "Metrics", "desc": "...", "top": "true", "user": {...},
   "fields": {"nr_queued": {"datum": "u64", "desc": "..."},
              "per_cpu":   {"array": "u64"},
              "doms":      {"dict": {"key": "u64", "datum": {"struct": "Dom"}}}}}
where a kind is "i64", "u64", "float", "string" or {"struct": NAME}.

OpenMetrics names, as scx's own scxstats_to_openmetrics reads them: a struct's "user" may hold
`_om_prefix` (put before its fields' names) and `_om_label` (the label that names a member of a
dict of that struct: real schedulers nest only that way, e.g. scx_layered's layers, scx_rusty's
nodes and domains); a field's `_om_skip` keeps it out. `flatten` gives every leaf its dotted path
and, where the metadata names one, that OpenMetrics name and labels; a shape the convention has
no name for (a dict of plain numbers, a struct as a datum, schedtop's own older shape) keeps its
path only. `openmetrics_problems` says where a server breaks the rules that tool relies on.

The client never blocks its caller for long: every socket operation has a deadline, and
`StatsPoller` runs the client on its own thread so a slow or broken server costs a warning,
never a frozen UI. The server is a small selector loop on one thread (no thread per client),
with a 0600 socket and an SO_PEERCRED check that admits only root (and our own uid).
"""

from __future__ import annotations

import errno as errno_mod
import json
import logging
import os
import re
import selectors
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schedtop.model import StatsPart, to_dict
from schedtop.textsafe import visible

log = logging.getLogger(__name__)

DEFAULT_PATH = "/var/run/scx/root/stats"
MAX_LINE = 4 << 20  # a reply larger than this is a broken server, not stats
SCALAR_KINDS = ("i64", "u64", "float", "string")
EXTRA_VERSION = 1  # of the "scx_stats" extra's layout (documented in the README)


class StatsError(Exception):
    """The server could not be reached, timed out, or answered with an error."""


# --- metadata ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatsField:
    name: str
    shape: str  # "datum", "array" or "dict"
    kind: str  # "i64" | "u64" | "float" | "string" | "struct:NAME"
    key: str | None = None  # dict key kind
    desc: str = ""
    user: Mapping[str, str] = field(default_factory=dict)

    @property
    def struct(self) -> str | None:
        return self.kind[7:] if self.kind.startswith("struct:") else None


@dataclass(frozen=True, slots=True)
class StatsStruct:
    name: str
    fields: tuple[StatsField, ...]
    desc: str = ""
    top: bool = False
    user: Mapping[str, str] = field(default_factory=dict)


def _kind(raw: Any, where: str) -> str:
    if isinstance(raw, str) and raw in SCALAR_KINDS:
        return raw
    if isinstance(raw, dict) and isinstance(raw.get("struct"), str):
        return "struct:" + raw["struct"]
    raise StatsError(f"stats_meta: {where}: unknown kind {repr(raw)[:60]}")


def _label(name: str) -> str:
    """A struct or field name from the server, for a one-line message: escaped, cut."""
    return visible(name)[:80]


def parse_meta(raw: Any) -> dict[str, StatsStruct]:
    """The `stats_meta` reply as StatsStructs; unknown extra keys are ignored (forward compatible)."""
    if not isinstance(raw, dict):
        raise StatsError("stats_meta: expected an object")
    out: dict[str, StatsStruct] = {}
    for name, m in raw.items():
        if not isinstance(m, dict) or not isinstance(m.get("fields", {}), dict):
            raise StatsError(f"stats_meta: {_label(name)}: expected an object with fields")
        fields = []
        for fname, f in sorted(m.get("fields", {}).items()):
            if not isinstance(f, dict):
                raise StatsError(f"stats_meta: {_label(f'{name}.{fname}')}: expected an object")
            key = None
            where = _label(f"{name}.{fname}")
            if "datum" in f:
                shape, kind = "datum", _kind(f["datum"], where)
            elif "array" in f:
                shape, kind = "array", _kind(f["array"], where)
            elif "dict" in f and isinstance(f["dict"], dict):
                shape = "dict"
                kind = _kind(f["dict"].get("datum"), where)
                key = _kind(f["dict"].get("key"), where)
            else:
                raise StatsError(f"stats_meta: {where}: no datum/array/dict")
            fields.append(StatsField(fname, shape, kind, key, str(f.get("desc", "")), _user(f.get("user"))))
        out[name] = StatsStruct(
            name=str(m.get("name", name)),
            fields=tuple(fields),
            desc=str(m.get("desc", "")),
            top=bool(m.get("top")),
            user=_user(m.get("user")),
        )
    return out


def _user(raw: Any) -> dict[str, str]:
    """A struct's or field's "user" map (string -> string on the wire); anything else is dropped."""
    if not isinstance(raw, dict):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v)[:200] for k, v in raw.items()}


def top_struct(meta: Mapping[str, StatsStruct], value: Any = None) -> StatsStruct | None:
    """The struct the "top" target serves. Some servers mark more than one struct top (scx_lavd:
    SysStats and SchedSample) and the metadata does not say which was added first: given the
    reply, the one whose fields it has (and whose fields it lacks fewest of) wins."""
    tops = [s for s in meta.values() if s.top]
    if len(tops) > 1 and isinstance(value, dict):
        keys = set(value)

        def fit(s: StatsStruct) -> int:
            names = {f.name for f in s.fields}
            return len(names & keys) - len(names - keys)

        return max(tops, key=fit)  # the first of equals
    return tops[0] if tops else None


FieldSpec = tuple[str, str] | tuple[str, str, Mapping[str, str]]


def struct_meta(name: str, fields: Mapping[str, FieldSpec], desc: str = "", top: bool = False,
                user: Mapping[str, str] | None = None) -> dict:
    """One struct's wire metadata from {field: (kind, desc[, user])}; kind "u64", "[u64]" or
    "{string:Name}". `user` (the struct's, or a field's third item) are the `_`-attributes
    rust/scx_stats puts in "user", e.g. {"_om_prefix": "l_", "_om_label": "layer"}, {"_om_skip": "true"}."""
    wire_fields: dict[str, Any] = {}

    def kind(text: str) -> Any:
        return text if text in SCALAR_KINDS else {"struct": text}

    for fname, spec in fields.items():
        k, fdesc = spec[0], spec[1]
        fuser = spec[2] if len(spec) > 2 else None
        if k.startswith("[") and k.endswith("]"):
            entry: dict[str, Any] = {"array": kind(k[1:-1])}
        elif k.startswith("{") and k.endswith("}") and ":" in k:
            key, datum = k[1:-1].split(":", 1)
            entry = {"dict": {"key": kind(key), "datum": kind(datum)}}
        else:
            entry = {"datum": kind(k)}
        if fdesc:
            entry["desc"] = fdesc
        if fuser:
            entry["user"] = dict(fuser)
        wire_fields[fname] = entry
    out: dict[str, Any] = {"name": name, "fields": wire_fields}
    if desc:
        out["desc"] = desc
    if top:
        out["top"] = "true"
    if user:
        out["user"] = dict(user)
    return out


Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Metric:
    """One leaf value of a stats reply, named by its path (e.g. "doms.3.events").

    `name` and `labels`: its OpenMetrics series where the metadata names one (`_om_prefix` of
    its struct + its field's name; the `_om_label` of each dict of structs above it with that
    member's key; an array's element also has "index"); None: the path is all there is.
    `skip`: the server marked it (or a field above it) `_om_skip`.
    """

    path: str
    value: int | float | str | None
    kind: str
    desc: str = ""
    name: str | None = None
    labels: Labels = ()
    skip: bool = False


def flatten(meta: Mapping[str, StatsStruct], value: Any, struct: StatsStruct | None = None) -> list[Metric]:
    """Walk a stats reply along its metadata, so metrics we have never seen can still be shown.

    Values the metadata does not describe are kept too (kind "?"), because servers send them.
    """
    struct = struct or top_struct(meta, value)
    out: list[Metric] = []
    _walk(meta, struct, value, "", out, 0, (), False)
    return out


def _leaf(out: list[Metric], path: str, value: Any, kind: str, desc: str,
          name: str | None = None, labels: Labels = (), skip: bool = False) -> None:
    if isinstance(value, bool):
        value = int(value)
    if value is None or isinstance(value, (int, float, str)):
        out.append(Metric(path, value, kind, desc, name, labels, skip))
    else:
        try:
            text = json.dumps(value, sort_keys=True)[:200]
        except (RecursionError, ValueError):  # nested about as deep as json.loads allows
            text = "(nested too deep)"
        out.append(Metric(path, text, kind, desc, None, (), skip))


def _walk(meta: Mapping[str, StatsStruct], struct: StatsStruct | None, value: Any, prefix: str,
          out: list[Metric], depth: int, labels: Labels | None, skip: bool) -> None:
    """`labels`: the OpenMetrics labels down to this struct, None where the convention has no
    names (inside a dict of numbers, a struct datum, a dict of structs without _om_label)."""
    if depth > 8:  # metadata loops are a server bug; stop rather than recurse forever
        return
    if not isinstance(value, dict):
        _leaf(out, prefix or "value", value, struct.name if struct else "?", struct.desc if struct else "",
              skip=skip)
        return
    described = {f.name: f for f in struct.fields} if struct else {}
    om_prefix = struct.user.get("_om_prefix", "") if struct and labels is not None else ""
    for key in sorted(value):
        path = f"{prefix}.{key}" if prefix else str(key)
        f = described.get(key)
        v = value[key]
        if f is None:
            if isinstance(v, dict):
                _walk(meta, None, v, path, out, depth + 1, None, skip)
            else:
                _leaf(out, path, v, "?", "", skip=skip)
            continue
        inner = meta.get(f.struct) if f.struct else None
        fskip = skip or "_om_skip" in f.user
        name = om_prefix + f.name if labels is not None else None
        if f.shape == "datum":
            if f.struct:
                _walk(meta, inner, v, path, out, depth + 1, None, fskip)
            else:
                _leaf(out, path, v, f.kind, f.desc, name, labels or (), fskip)
        elif f.shape == "array" and isinstance(v, list):
            for i, item in enumerate(v):
                if f.struct:
                    _walk(meta, inner, item, f"{path}.{i}", out, depth + 1, None, fskip)
                elif labels is not None:
                    _leaf(out, f"{path}.{i}", item, f.kind, f.desc, name, (*labels, ("index", str(i))), fskip)
                else:
                    _leaf(out, f"{path}.{i}", item, f.kind, f.desc, skip=fskip)
        elif f.shape == "dict" and isinstance(v, dict):
            label = inner.user.get("_om_label") if inner is not None else None
            for k in sorted(v, key=_natural):
                if f.struct:
                    below = (*labels, (label, str(k))) if labels is not None and label else None
                    _walk(meta, inner, v[k], f"{path}.{k}", out, depth + 1, below, fskip)
                else:
                    _leaf(out, f"{path}.{k}", v[k], f.kind, f.desc, skip=fskip)
        else:
            _leaf(out, path, v, f.kind, f.desc, skip=fskip)


# --- the OpenMetrics convention ---------------------------------------------------------

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
NUMBER_KINDS = ("i64", "u64", "float")


def openmetrics_problems(meta: Mapping[str, StatsStruct], value: Any = None) -> list[str]:
    """Where a server's metadata (and, given one, its reply) breaks what scx's
    scxstats_to_openmetrics relies on; [] for a server it reads whole. Its rules: one top struct;
    the only nesting is a dict whose datum is a struct carrying `_om_label` (a dict of numbers or a
    struct as a datum makes it fail on the reply); gauge names (`_om_prefix` + field) unique and
    valid; labels along a path distinct and valid; every number field a number in the reply."""
    problems: list[str] = []
    tops = [s for s in meta.values() if s.top]
    if len(tops) != 1:
        problems.append(f"{len(tops)} structs marked top ({', '.join(s.name for s in tops)})")
    top = top_struct(meta, value)
    if top is None:
        return problems
    names: dict[str, str] = {}

    def visit(s: StatsStruct, where: str, labels: tuple[str, ...], depth: int) -> None:
        prefix = s.user.get("_om_prefix", "")
        for f in s.fields:
            p = f"{where}.{f.name}"
            if "_om_skip" in f.user or f.shape == "array" or (f.shape == "datum" and f.kind == "string"):
                continue  # not a gauge: the tool passes these by
            if f.shape == "datum" and f.kind in NUMBER_KINDS:
                name = prefix + f.name
                if not _METRIC_NAME.fullmatch(name):
                    problems.append(f"{p}: {name!r} is not a metric name")
                elif name in names:
                    problems.append(f"{p}: gauge {name!r} again (first {names[name]}): add an _om_prefix")
                names.setdefault(name, p)
                continue
            inner = meta.get(f.struct) if f.struct else None
            if f.shape != "dict" or inner is None:
                what = f"struct {f.struct}" if f.struct else f.kind
                problems.append(f"{p}: a {f.shape} of {what}: the only nesting is a dict of structs with _om_label")
                continue
            label = inner.user.get("_om_label", "")
            if not label:
                problems.append(f"{p}: dict of {inner.name}, which has no _om_label")
            elif not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
                problems.append(f"{p}: _om_label {label!r} is not a label name")
            elif label in labels:
                problems.append(f"{p}: label {label!r} twice on one path")
            elif depth < 8:
                visit(inner, p, (*labels, label), depth + 1)

    visit(top, "", (), 0)
    if value is not None:
        _reply_problems(meta, top, value, "", problems, 0)
    return problems


def _reply_problems(meta: Mapping[str, StatsStruct], s: StatsStruct, value: Any, where: str,
                    problems: list[str], depth: int) -> None:
    if not isinstance(value, dict):
        problems.append(f"{where or 'reply'}: {s.name} is not an object")
        return
    fields = {f.name: f for f in s.fields}
    for key, v in value.items():
        p = f"{where}.{key}"
        f = fields.get(key)
        if isinstance(v, dict) and not (f is not None and f.shape == "dict" and f.struct):
            problems.append(f"{p}: an object where the metadata has no dict of structs")
        elif f is None:
            continue
        elif f.shape == "datum" and f.kind in NUMBER_KINDS and "_om_skip" not in f.user and \
                (isinstance(v, bool) or not isinstance(v, (int, float))):
            problems.append(f"{p}: {f.kind} field holds {json.dumps(v)[:40]}")
        elif f.shape == "dict" and f.struct and isinstance(v, dict) and depth < 8:
            inner = meta.get(f.struct)
            for k, item in v.items():
                if inner is not None:
                    _reply_problems(meta, inner, item, f"{p}.{k}", problems, depth + 1)


_NUMBER = re.compile(r"-?[0-9]{1,19}")


def _natural(key: str) -> tuple[int, Any]:
    # Only plain numbers sort as numbers: "--1", "²" and a 5000-digit key sort as text.
    return (0, int(key)) if _NUMBER.fullmatch(key) else (1, key)


# --- client -----------------------------------------------------------------


def parse_reply(reply: bytes, path: str, req: str) -> Any:
    """One reply line's `resp`, or StatsError with one line: whatever the server sent."""
    try:
        msg = json.loads(reply)
    except (ValueError, RecursionError):  # RecursionError: [[[[... nested past the stack
        raise StatsError(f"{path}: reply is not JSON: {reply[:80]!r}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("errno", 0), int) or isinstance(msg.get("errno"), bool):
        raise StatsError(f"{path}: reply has no errno: {reply[:80]!r}")
    args = msg.get("args")
    if args is not None and not isinstance(args, dict):
        raise StatsError(f"{path}: reply's args is not an object: {reply[:80]!r}")
    resp = (args or {}).get("resp")
    err = msg.get("errno", 0)
    if err != 0:
        why = os.strerror(err) if 0 < err < 4096 else f"errno {err}" if abs(err) < 10**9 else "bad errno"
        raise StatsError(f"{path}: {req}: {why} ({visible(str(resp))[:120]})")
    return resp



class StatsClient:
    """A blocking client whose every call returns (or raises StatsError) within `timeout` seconds."""

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH, timeout: float = 1.0) -> None:
        self.path = os.fspath(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""

    def __enter__(self) -> StatsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._buf = b""

    def _connect(self, deadline: float) -> socket.socket:
        if self._sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            s.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                s.connect(self.path)
            except TimeoutError:
                s.close()
                raise StatsError(f"{self.path}: connect timed out") from None
            except OSError as exc:
                s.close()
                raise StatsError(f"{self.path}: {exc.strerror or exc}") from None
            self._sock = s
        return self._sock

    def request(self, req: str, args: Mapping[str, str] | None = None) -> Any:
        """Send one request and return the reply's `resp`; the connection is kept for the next call."""
        deadline = time.monotonic() + self.timeout
        line = json.dumps({"req": req, "args": dict(args or {})}).encode() + b"\n"
        try:
            s = self._connect(deadline)
            self._send(s, line, deadline)
            reply = self._read_line(s, deadline)
        except StatsError:
            self.close()  # a half-read reply would desynchronise the next request
            raise
        try:
            return parse_reply(reply, self.path, req)
        except StatsError:
            self.close()
            raise

    def _send(self, s: socket.socket, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StatsError(f"{self.path}: write timed out")
            s.settimeout(left)
            try:
                n = s.send(view)
            except TimeoutError:
                raise StatsError(f"{self.path}: write timed out") from None
            except OSError as exc:
                raise StatsError(f"{self.path}: {exc.strerror or exc}") from None
            view = view[n:]

    def _read_line(self, s: socket.socket, deadline: float) -> bytes:
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StatsError(f"{self.path}: read timed out after {self.timeout:g}s")
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                raise StatsError(f"{self.path}: read timed out after {self.timeout:g}s") from None
            except OSError as exc:
                raise StatsError(f"{self.path}: {exc.strerror or exc}") from None
            if not chunk:
                raise StatsError(f"{self.path}: connection closed by the server")
            self._buf += chunk
            if len(self._buf) > MAX_LINE:
                raise StatsError(f"{self.path}: reply longer than {MAX_LINE} bytes")
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def meta(self) -> dict[str, StatsStruct]:
        return parse_meta(self.request("stats_meta"))

    def stats(self, target: str | None = None, **args: str) -> Any:
        if target is not None:
            args["target"] = target
        return self.request("stats", args)


@dataclass(frozen=True, slots=True)
class StatsReading:
    """What the poller last saw: metrics (with metadata) or the error that replaced them."""

    path: str
    ts: float  # time.monotonic() of the reading
    ok: bool
    metrics: tuple[Metric, ...] = ()
    top: str | None = None  # name of the top struct
    desc: str = ""
    error: str | None = None
    latency_ms: float | None = None  # how long the stats request took

    def to_part(self) -> StatsPart:
        """The reading as Snapshot.extras.scx_stats carries it."""
        return StatsPart(
            version=EXTRA_VERSION,
            path=self.path,
            ok=self.ok,
            top=self.top,
            desc=self.desc,
            error=self.error,
            latency_ms=None if self.latency_ms is None else round(self.latency_ms, 3),
            metrics={m.path: m.value for m in self.metrics},
            kinds={m.path: m.kind for m in self.metrics},
            descs={m.path: m.desc for m in self.metrics if m.desc},
            om_names={m.path: m.name for m in self.metrics if m.name and not m.skip},
            om_labels={m.path: dict(m.labels) for m in self.metrics if m.name and m.labels and not m.skip},
            om_skip=tuple(m.path for m in self.metrics if m.skip),
        )

    def to_extra(self) -> dict[str, Any]:
        """to_part() in its JSON form (`--once --json` "extras.scx_stats")."""
        out: dict[str, Any] = to_dict(self.to_part())
        return out


def read_once(path: str | os.PathLike[str] = DEFAULT_PATH, timeout: float = 1.0) -> StatsReading:
    """One meta + stats round trip; never raises (the error is in the reading)."""
    p = os.fspath(path)
    t0 = time.monotonic()
    try:
        with StatsClient(p, timeout) as c:
            meta = c.meta()
            t1 = time.monotonic()
            value = c.stats()
            t2 = time.monotonic()
    except StatsError as exc:
        return StatsReading(p, t0, False, error=str(exc))
    top = top_struct(meta, value)
    return StatsReading(p, t2, True, tuple(flatten(meta, value, top)), top.name if top else None,
                        top.desc if top else "", latency_ms=(t2 - t1) * 1e3)


class StatsPoller:
    """Reads a stats socket on its own thread every `interval` s; `latest()` never blocks.

    Metadata is fetched on (re)connect only. A socket that does not exist is normal (no scheduler
    serves stats) and is reported as ok=False with a short error, polled again at the same rate.
    """

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH, interval: float = 1.0,
                 timeout: float = 0.5) -> None:
        self.path = os.fspath(path)
        self.interval = interval
        self.timeout = timeout
        self._latest: StatsReading | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> StatsPoller:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="scx-stats-poller", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout * 3 + 1)
            self._thread = None

    def latest(self) -> StatsReading | None:
        with self._lock:
            return self._latest

    def _run(self) -> None:
        client = StatsClient(self.path, self.timeout)
        meta: dict[str, StatsStruct] | None = None
        try:
            while not self._stop.is_set():
                t0 = time.monotonic()
                try:
                    if meta is None:
                        meta = client.meta()
                    t1 = time.monotonic()
                    value = client.stats()
                    t2 = time.monotonic()
                    top = top_struct(meta, value)
                    reading = StatsReading(self.path, t2, True, tuple(flatten(meta, value, top)),
                                           top.name if top else None, top.desc if top else "",
                                           latency_ms=(t2 - t1) * 1e3)
                except StatsError as exc:
                    meta = None  # a restarted scheduler may serve different metrics
                    client.close()
                    reading = StatsReading(self.path, time.monotonic(), False, error=str(exc))
                with self._lock:
                    self._latest = reading
                self._stop.wait(max(self.interval - (time.monotonic() - t0), 0.01))
        finally:
            client.close()


# --- server -----------------------------------------------------------------


StatsFn = Callable[[Mapping[str, str]], Any]


@dataclass
class _Conn:
    sock: socket.socket
    inbuf: bytes = b""
    outbuf: bytes = b""


def peer_uid(sock: socket.socket) -> int:
    """The connecting process's uid, from the kernel (SO_PEERCRED), not from anything it sent."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


class StatsServer:
    """Serve `stats_fn(args)` as the "top" target and `meta` for stats_meta on a UNIX socket.

    `meta` is the wire metadata ({name: struct_meta(...)}); `targets` adds more named targets.
    The socket is created 0600 in a directory we check is not writable by others; peers whose
    SO_PEERCRED uid is not root (or ours) are closed without a reply. `start()` binds and spawns
    one thread; `stop()` closes everything and removes the socket.
    """

    def __init__(self, path: str | os.PathLike[str], stats_fn: StatsFn, meta: Mapping[str, Any],
                 targets: Mapping[str, StatsFn] | None = None, max_clients: int = 32) -> None:
        self.path = Path(path)
        self.meta = dict(meta)
        self.targets: dict[str, StatsFn] = {"top": stats_fn, **(targets or {})}
        self.max_clients = max_clients
        self.allowed_uids = {0, os.geteuid()}
        self.requests = 0  # served requests (for tests and our own stats)
        self.rejected = 0  # peers refused by the credential check
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        self._stop = threading.Event()
        self._bound: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket we bound
        parse_meta(self.meta)  # fail at construction, not on the first client

    def __enter__(self) -> StatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _prepare_dir(self) -> None:
        parent = self.path.parent
        parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        st = parent.lstat()
        if not stat.S_ISDIR(st.st_mode):
            raise StatsError(f"{parent}: not a directory")
        if st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
            # Someone else could swap our socket for theirs; refuse rather than serve from there.
            raise StatsError(f"{parent}: must be owned by root and not group/world-writable")
        try:
            old = self.path.lstat()
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(old.st_mode):
            raise StatsError(f"{self.path}: exists and is not a socket; not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(0.2)
        try:
            probe.connect(os.fspath(self.path))
        except OSError:
            self.path.unlink()  # stale socket from a process that died
        else:
            raise StatsError(f"{self.path}: another stats server is serving there")
        finally:
            probe.close()

    def start(self) -> StatsServer:
        if self._thread is not None:
            return self
        self._prepare_dir()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old_umask = os.umask(0o177)  # the socket is born 0600: no window where others may connect
        try:
            listener.bind(os.fspath(self.path))
        except OSError as exc:
            listener.close()
            raise StatsError(f"{self.path}: bind: {exc.strerror or exc}") from None
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        st = self.path.lstat()
        self._bound = (st.st_dev, st.st_ino)  # stop() removes this socket only, never a successor's
        listener.listen(16)
        listener.setblocking(False)
        self._listener = listener
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="scx-stats-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        self._thread.join(timeout=5)
        self._thread = None
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self._wake_r = self._wake_w = -1
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        # Once our listener is closed, a new server may already have taken the path over (it sees
        # ours as stale): unlinking by name would delete *its* socket, so check it is still ours.
        try:
            st = self.path.lstat()
            if stat.S_ISSOCK(st.st_mode) and (st.st_dev, st.st_ino) == self._bound:
                self.path.unlink()
        except FileNotFoundError:
            pass
        self._bound = None

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        assert self._listener is not None
        sel.register(self._listener, selectors.EVENT_READ, None)
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        conns: dict[int, _Conn] = {}
        try:
            while not self._stop.is_set():
                for key, events in sel.select(timeout=1.0):
                    if key.data == "wake":
                        continue
                    if key.data is None:
                        self._accept(sel, conns)
                        continue
                    conn: _Conn = key.data
                    if events & selectors.EVENT_READ and not self._on_read(conn):
                        self._drop(sel, conns, conn)
                        continue
                    if events & selectors.EVENT_WRITE and not self._on_write(conn):
                        self._drop(sel, conns, conn)
                        continue
                    if conn.sock.fileno() in conns:
                        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbuf else 0)
                        sel.modify(conn.sock, want, conn)
        finally:
            for conn in list(conns.values()):
                conn.sock.close()
            sel.close()

    def _accept(self, sel: selectors.BaseSelector, conns: dict[int, _Conn]) -> None:
        assert self._listener is not None
        try:
            sock, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        try:
            uid = peer_uid(sock)
        except OSError:
            uid = -1
        if uid not in self.allowed_uids or len(conns) >= self.max_clients:
            self.rejected += 1
            log.warning("scx_stats: refused a client (uid %d, %d clients)", uid, len(conns))
            sock.close()
            return
        sock.setblocking(False)
        conn = _Conn(sock)
        conns[sock.fileno()] = conn
        sel.register(sock, selectors.EVENT_READ, conn)

    def _drop(self, sel: selectors.BaseSelector, conns: dict[int, _Conn], conn: _Conn) -> None:
        conns.pop(conn.sock.fileno(), None)
        try:
            sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def _on_read(self, conn: _Conn) -> bool:
        try:
            chunk = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if not chunk:
            return False
        conn.inbuf += chunk
        if len(conn.inbuf) > MAX_LINE:
            return False
        while b"\n" in conn.inbuf:
            line, _, conn.inbuf = conn.inbuf.partition(b"\n")
            if line.strip():
                conn.outbuf += self.reply_line(line)
        return self._on_write(conn)

    def _on_write(self, conn: _Conn) -> bool:
        while conn.outbuf:
            try:
                n = conn.sock.send(conn.outbuf)
            except (BlockingIOError, InterruptedError):
                return len(conn.outbuf) <= MAX_LINE * 4  # a client that never reads is dropped
            except OSError:
                return False
            conn.outbuf = conn.outbuf[n:]
        return True

    def reply_line(self, line: bytes) -> bytes:
        reply = self.handle(line)
        try:
            text = json.dumps(reply, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:  # stats_fn returned something JSON cannot carry
            text = json.dumps({"errno": errno_mod.EIO, "args": {"resp": f"unserialisable stats: {exc}"}})
        return text.encode() + b"\n"

    def handle(self, line: bytes) -> dict[str, Any]:
        """One request line -> one reply object (errors are replies too, as in scx_stats)."""
        self.requests += 1
        try:
            req = json.loads(line)
            if not isinstance(req, dict) or not isinstance(req.get("req"), str):
                raise ValueError("expected {\"req\": ...}")
            args = req.get("args") or {}
            if not isinstance(args, dict):
                raise ValueError("args must be an object")
        except ValueError as exc:
            return {"errno": errno_mod.EINVAL, "args": {"resp": f"bad request: {exc}"}}
        if req["req"] == "stats_meta":
            return {"errno": 0, "args": {"resp": self.meta}}
        if req["req"] == "stats":
            target = str(args.get("target", "top"))
            fn = self.targets.get(target)
            if fn is None:
                return {"errno": errno_mod.EINVAL, "args": {"resp": f"unknown stat target {target!r}"}}
            try:
                return {"errno": 0, "args": {"resp": fn({str(k): str(v) for k, v in args.items()})}}
            except Exception as exc:  # the scheduler's stats must never take the server down
                log.warning("scx_stats: target %s failed: %s", target, exc)
                return {"errno": errno_mod.EIO, "args": {"resp": f"{type(exc).__name__}: {exc}"}}
        return {"errno": errno_mod.EINVAL, "args": {"resp": f"unknown command {req['req']!r}"}}
