"""Frame times of a running game: MangoHud's own logs and the mangoapp message queue.

Three ways in, all read-only towards the game except the optional log rotation:

* MangoHud's CSV logs (``output_folder=DIR``). MangoHud 0.6.8 writes a log only when
  logging stops (``log_duration`` elapsed, the toggle key, or the control socket), never
  row by row and not on SIGINT/SIGTERM, so a finished file is the unit. When the game
  was started with ``control=NAME`` (``%p`` = its pid), :class:`MangoHudControl` stops and
  restarts logging on MangoHud's abstract control socket, so a follower gets a fresh
  file every few seconds (MangoHud answers ``:LoggingFinished`` after the file is
  written). Without a control socket the follower reads each log as it appears.
  Each (re)start logs nothing until MangoHud's values are valid again: measured here,
  ~0.3 s of frames per log are not recorded (3 s logs hold ~2.7 s of frames).
* :func:`find_games`: processes with the MangoHud layer (``libMangoHud``) mapped,
  with the log folder and control socket from their ``MANGOHUD_CONFIG``.
* :class:`MangoAppQueue`: the SysV message queue gamescope sends one
  ``mangoapp_msg_v1`` to per frame (the layout is gamescope's and scx_utils'; note
  that MangoHud's own header names the two frame-time fields the other way round).

Statistics (:func:`frame_stats`): nearest-rank p50/p99/max of the frame times; "1% low
FPS" is 1000 / p99 frame time in ms (the frame-time definition; MangoHud's summary
file's "1% Min FPS" is instead the mean of the lowest 1% of per-frame FPS values);
a frame is late when it takes more than ``late_factor`` (1.5) times the budget.

Everything returned is a frozen dataclass; nothing here imports the UI.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import math
import os
import re
import socket
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MANGOHUD_LAYER = "libMangoHud"
# Rows kept per log: a huge (or hostile) file is read to the end in bounded memory;
# only the newest MAX_FRAMES frame times are kept and the rest are counted.
MAX_FRAMES = 200_000
MAX_LINE = 4096  # MangoHud's rows are ~80 characters; its header row ~130
LATE_FACTOR = 1.5
_LOG_NAME = re.compile(r"^(?P<program>.+)_(?P<stamp>\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d)\.csv$")
_FRAME_HEADER = "fps,frametime,"


class FrameLogError(ValueError):
    """A MangoHud log that cannot be read; the message names file:line."""


@dataclass(frozen=True, slots=True)
class FrameLog:
    """One finished MangoHud log: frame times in ms, oldest first."""

    path: str
    program: str  # MangoHud's name for the process (its exe's basename)
    stamp: str  # local time logging STOPPED, YYYY-MM-DD_HH-MM-SS (MangoHud names it so)
    frametimes_ms: tuple[float, ...]
    dropped: int = 0  # older rows past MAX_FRAMES, counted but not kept
    sections: int = 1  # logs stopped in the same second are appended to one file
    system: tuple[tuple[str, str], ...] = ()  # os, cpu, gpu, kernel, ... of the first section
    first_elapsed_s: float | None = None  # 'elapsed' of the first and last rows: s since logging
    last_elapsed_s: float | None = None  # started (MangoHud logs nothing for its first ~0.1-0.3 s)

    @property
    def frames(self) -> int:
        return len(self.frametimes_ms) + self.dropped


@dataclass(frozen=True, slots=True)
class FrameStats:
    """Frame-time statistics over a window of frames."""

    frames: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    low1_fps: float  # 1000 / p99_ms
    avg_fps: float  # frames / sum of frame times
    budget_ms: float | None
    late: int  # frames longer than late_factor x budget (0 without a budget)
    late_factor: float = LATE_FACTOR


@dataclass(frozen=True, slots=True)
class Game:
    """A process with the MangoHud layer mapped."""

    pid: int
    comm: str
    program: str  # basename of /proc/PID/exe: the prefix of its log files' names
    output_folder: str | None  # MANGOHUD_CONFIG output_folder (None: unreadable or unset)
    control: str | None  # abstract control socket name, %p replaced
    fps_limit: int | None  # first fps_limit value, None when 0 or unset
    start_time: float = 0.0  # wall-clock start, seconds since the epoch


@dataclass(frozen=True, slots=True)
class MangoAppFrame:
    """One mangoapp_msg_v1 as gamescope sends it per frame."""

    pid: int
    app_frametime_ns: int
    visible_frametime_ns: int | None
    latency_ns: int | None  # 2**64-1: unknown
    fsr_upscale: int
    fsr_sharpness: int
    output_width: int | None = None
    output_height: int | None = None
    display_refresh: int | None = None
    wants_hdr: bool = False
    steam_focused: bool = False
    engine: str = ""


# --- MangoHud logs -------------------------------------------------------------------------


def _lines(path: Path) -> Iterator[tuple[int, str, bool]]:
    """(line number, text without newline, ended with a newline) with bounded line length."""
    try:
        f = path.open("rb")
    except OSError as e:
        raise FrameLogError(f"{path}: {e.strerror or e}") from None
    with f:
        n = 0
        while True:
            raw = f.readline(MAX_LINE + 1)
            if not raw:
                return
            n += 1
            if len(raw) > MAX_LINE:
                raise FrameLogError(f"{path}:{n}: line longer than {MAX_LINE} bytes")
            ended = raw.endswith(b"\n")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            yield n, text.rstrip("\r\n"), ended


def split_log_name(name: str) -> tuple[str, str] | None:
    """'vkcube_2026-12-06_22-04-07.csv' -> ('vkcube', '2026-12-06_22-04-07'); None otherwise."""
    m = _LOG_NAME.match(name)
    if m is None:
        return None
    return m["program"], m["stamp"]


def parse_log(path: str | os.PathLike[str], max_frames: int = MAX_FRAMES) -> FrameLog:
    """Read a MangoHud 0.6.x CSV log. Raises FrameLogError (file:line) on anything else."""
    p = Path(path)
    parts = split_log_name(p.name)
    program, stamp = parts if parts else (p.stem, "")
    kept: deque[float] = deque(maxlen=max(1, max_frames))
    total = 0
    sections = 0
    system: tuple[tuple[str, str], ...] = ()
    sys_keys: list[str] | None = None
    col_ft = -1
    col_el = -1
    ncols = 0
    first_el: float | None = None
    last_el: float | None = None
    state = "start"  # start -> sysvals -> frames (an 'os,' line starts a new section)
    last = 0
    for n, line, ended in _lines(p):
        last = n
        if not ended:
            raise FrameLogError(f"{p}:{n}: truncated (last line has no end of line)")
        if line in ("v1",) or line.startswith("---") or (state != "frames" and line.startswith("v0.")):
            continue  # log_versioning's extra lines
        if line.startswith("os,"):
            sys_keys = line.split(",")
            state = "sysvals"
            continue
        if state == "sysvals":
            if sections == 0 and sys_keys is not None:
                system = tuple(zip(sys_keys, line.split(","), strict=False))
            state = "header"
            continue
        if line.startswith(_FRAME_HEADER):
            cols = line.split(",")
            col_ft = cols.index("frametime")
            col_el = cols.index("elapsed") if "elapsed" in cols else -1
            ncols = len(cols)
            sections += 1
            state = "frames"
            continue
        if state != "frames":
            raise FrameLogError(f"{p}:{n}: not a MangoHud log (expected the 'fps,frametime,...' header)")
        if not line:
            continue
        cells = line.split(",")
        if len(cells) != ncols:
            raise FrameLogError(f"{p}:{n}: {len(cells)} fields, the header has {ncols}")
        try:
            ft_us = float(cells[col_ft])
        except ValueError:
            raise FrameLogError(f"{p}:{n}: frametime {cells[col_ft][:40]!r} is not a number") from None
        if not math.isfinite(ft_us) or ft_us < 0:
            raise FrameLogError(f"{p}:{n}: frametime {cells[col_ft][:40]!r} out of range")
        kept.append(ft_us / 1000.0)
        total += 1
        if col_el >= 0 and sections == 1:
            try:
                el = float(cells[col_el]) / 1e9
            except ValueError:
                raise FrameLogError(f"{p}:{n}: elapsed {cells[col_el][:40]!r} is not a number") from None
            if math.isfinite(el):
                first_el = el if first_el is None else first_el
                last_el = el
    if last == 0:
        raise FrameLogError(f"{p}:1: empty file")
    if sections == 0:
        raise FrameLogError(f"{p}:{last}: no 'fps,frametime,...' header (truncated or not a MangoHud log)")
    return FrameLog(
        path=str(p),
        program=program,
        stamp=stamp,
        frametimes_ms=tuple(kept),
        dropped=total - len(kept),
        sections=sections,
        system=system,
        first_elapsed_s=first_el,
        last_elapsed_s=last_el,
    )


class LogFollower:
    """New finished logs in a MangoHud output folder, oldest first.

    A file is taken once its size held still over one poll (MangoHud writes it in one
    go at stop), or at once when ``settled`` says so (the control socket's
    LoggingFinished). Files present at start are skipped unless ``existing``.
    A log that fails to parse is returned as its FrameLogError, once.
    """

    def __init__(self, folder: str | os.PathLike[str], program: str | None = None, existing: bool = False) -> None:
        self.folder = Path(folder)
        self.program = program
        self._done: set[str] = set()
        self._sizes: dict[str, int] = {}
        if not existing:
            self._done.update(n for n, _ in self._candidates())

    def _candidates(self) -> list[tuple[str, int]]:
        try:
            entries = list(os.scandir(self.folder))
        except OSError:
            return []
        out = []
        for e in entries:
            parts = split_log_name(e.name)
            if parts is None or e.name.endswith("_summary.csv"):
                continue
            if self.program is not None and parts[0] != self.program:
                continue
            try:
                out.append((e.name, e.stat().st_size))
            except OSError:
                continue
        out.sort(key=lambda c: (split_log_name(c[0]) or ("", ""))[1])
        return out

    def poll(self, settled: bool = False) -> list[FrameLog | FrameLogError]:
        out: list[FrameLog | FrameLogError] = []
        for name, size in self._candidates():
            if name in self._done:
                continue
            if not settled and self._sizes.get(name) != size:
                self._sizes[name] = size
                continue
            self._done.add(name)
            self._sizes.pop(name, None)
            try:
                out.append(parse_log(self.folder / name))
            except FrameLogError as e:
                out.append(e)
        return out


def log_for_game(log: FrameLog, games: Iterable[Game]) -> Game | None:
    """The game that wrote a log: same folder, same program name, started before the log."""
    folder = os.path.realpath(os.path.dirname(log.path))
    try:
        stopped = time.mktime(time.strptime(log.stamp, "%Y-%m-%d_%H-%M-%S")) if log.stamp else None
    except ValueError:
        stopped = None
    best: Game | None = None
    for g in games:
        if g.program != log.program and not log.program.startswith(g.comm):
            continue
        if g.output_folder is not None and os.path.realpath(g.output_folder) != folder:
            continue
        if stopped is not None and g.start_time and g.start_time > stopped + 1:
            continue
        if best is None or g.start_time > best.start_time:
            best = g  # the newest matching process: pid reuse leaves older ones out
    return best


# --- finding games ---------------------------------------------------------------------------


def parse_mangohud_config(value: str) -> dict[str, str]:
    """MANGOHUD_CONFIG 'a=1,b,c=x' -> {'a': '1', 'b': '', 'c': 'x'}."""
    out: dict[str, str] = {}
    for item in value.split(","):
        key, _, val = item.partition("=")
        key = key.strip()
        if key:
            out[key] = val.strip()
    return out


def _has_layer(pid_dir: Path) -> bool:
    try:
        with (pid_dir / "maps").open("rb") as f:
            return any(MANGOHUD_LAYER.encode() in line for line in f)
    except OSError:
        return False


def _environ(pid_dir: Path) -> dict[str, str]:
    try:
        raw = (pid_dir / "environ").read_bytes()
    except OSError:
        return {}
    env: dict[str, str] = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            env[k.decode("utf-8", "replace")] = v.decode("utf-8", "replace")
    return env


def _start_time(pid_dir: Path) -> float:
    try:
        stat = (pid_dir / "stat").read_text()
        ticks = int(stat[stat.rindex(")") + 2 :].split()[19])
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return 0.0
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def game_info(pid: int, proc: str = "/proc") -> Game | None:
    """The Game for one pid, or None when the MangoHud layer is not mapped (or it is gone)."""
    d = Path(proc) / str(pid)
    if not _has_layer(d):
        return None
    try:
        comm = (d / "comm").read_text().rstrip("\n")
    except OSError:
        return None
    try:
        program = os.path.basename(os.readlink(d / "exe"))
    except OSError:
        program = comm
    cfg = parse_mangohud_config(_environ(d).get("MANGOHUD_CONFIG", ""))
    control = cfg.get("control") or None
    if control is not None:
        control = control.replace("%p", str(pid))
    limit: int | None = None
    first = cfg.get("fps_limit", "").split("+")[0].strip()
    if first.isdigit() and int(first) > 0:
        limit = int(first)
    return Game(
        pid=pid,
        comm=comm,
        program=program,
        output_folder=cfg.get("output_folder") or None,
        control=control,
        fps_limit=limit,
        start_time=_start_time(d),
    )


def find_games(proc: str = "/proc") -> tuple[Game, ...]:
    """Every process with the MangoHud layer mapped (its maps must be readable: same user or root)."""
    games = []
    try:
        names = os.listdir(proc)
    except OSError:
        return ()
    for name in names:
        if name.isdigit():
            g = game_info(int(name), proc)
            if g is not None:
                games.append(g)
    return tuple(sorted(games, key=lambda g: g.pid))


# --- MangoHud's control socket -----------------------------------------------------------------


class MangoHudControl:
    """MangoHud's abstract control socket (``control=NAME``): stop and restart logging.

    MangoHud takes one client at a time and reads commands once per presented frame.
    Stopping writes the log on the game's present thread (a few ms for a few hundred rows).
    """

    def __init__(self, name: str, timeout: float = 2.0) -> None:
        self.name = name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect("\0" + name)
        except OSError:
            self.sock.close()
            raise
        self._buf = b""

    def _send(self, cmd: bytes) -> None:
        self.sock.sendall(cmd)

    def start(self) -> None:
        self._send(b":logging=1;")

    def stop(self, timeout: float = 3.0) -> bool:
        """Stop logging; True once MangoHud says the log is written (LoggingFinished)."""
        self._buf = b""
        self._send(b":logging=0;")
        end = time.monotonic() + timeout
        while b"LoggingFinished" not in self._buf:
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(4096)
            except TimeoutError:
                return False
            if not chunk:
                return False
            self._buf += chunk
        return True

    def rotate(self, timeout: float = 3.0) -> bool:
        """End the current log (written to the output folder) and start the next one."""
        ok = self.stop(timeout)
        self.start()
        return ok

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> MangoHudControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- statistics --------------------------------------------------------------------------------


def _rank(sorted_ms: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of sorted values."""
    i = max(0, math.ceil(q * len(sorted_ms)) - 1)
    return sorted_ms[min(i, len(sorted_ms) - 1)]


def frame_stats(
    frametimes_ms: Sequence[float], budget_ms: float | None = None, late_factor: float = LATE_FACTOR
) -> FrameStats | None:
    """p50/p99/max, 1% low FPS (1000/p99) and late frames; None for no frames."""
    if not frametimes_ms:
        return None
    s = sorted(frametimes_ms)
    p99 = _rank(s, 0.99)
    total = math.fsum(s)
    late = 0
    if budget_ms is not None and budget_ms > 0:
        limit = budget_ms * late_factor
        late = sum(1 for v in s if v > limit)
    return FrameStats(
        frames=len(s),
        p50_ms=_rank(s, 0.50),
        p99_ms=p99,
        max_ms=s[-1],
        low1_fps=1000.0 / p99 if p99 > 0 else 0.0,
        avg_fps=len(s) * 1000.0 / total if total > 0 else 0.0,
        budget_ms=budget_ms,
        late=late,
        late_factor=late_factor,
    )


def budget_for(game: Game | None, target_fps: float | None = None) -> float | None:
    """Frame budget in ms: a given target, else the game's fps_limit, else None."""
    fps = target_fps if target_fps else (game.fps_limit if game is not None else None)
    return 1000.0 / fps if fps else None


# --- the mangoapp message queue ----------------------------------------------------------------

MANGOAPP_PROJ_ID = 65  # ftok("mangoapp", 65) in gamescope and mangoapp
MANGOAPP_MSG_TYPE = 1  # frame messages; mangohudctl's control messages are type 2
IPC_CREAT = 0o1000
IPC_NOWAIT = 0o4000
IPC_RMID = 0


class MangoAppMsgV1(ctypes.Structure):
    """gamescope's struct mangoapp_msg_v1 (src/mangoapp.cpp), packed; the two flag bits
    (bAppWantsHDR, bSteamFocused) share one byte."""

    _pack_ = 1
    _fields_ = [
        ("msg_type", ctypes.c_long),
        ("version", ctypes.c_uint32),
        ("pid", ctypes.c_uint32),
        ("app_frametime_ns", ctypes.c_uint64),
        ("fsr_upscale", ctypes.c_uint8),
        ("fsr_sharpness", ctypes.c_uint8),
        ("visible_frametime_ns", ctypes.c_uint64),
        ("latency_ns", ctypes.c_uint64),
        ("output_width", ctypes.c_uint32),
        ("output_height", ctypes.c_uint32),
        ("display_refresh", ctypes.c_uint16),
        ("flags", ctypes.c_uint8),
        ("engine_name", ctypes.c_char * 40),
    ]


MSG_TEXT_SIZE = ctypes.sizeof(MangoAppMsgV1) - ctypes.sizeof(ctypes.c_long)


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.ftok.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.ftok.restype = ctypes.c_int
    libc.msgget.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.msgget.restype = ctypes.c_int
    libc.msgrcv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long, ctypes.c_int]
    libc.msgrcv.restype = ctypes.c_ssize_t
    libc.msgsnd.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.msgsnd.restype = ctypes.c_int
    libc.msgctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    libc.msgctl.restype = ctypes.c_int
    return libc


LIBC = _libc()


def mangoapp_key(path: str = "mangoapp") -> int:
    """The queue key gamescope computes: ftok(path, 65). gamescope passes the RELATIVE
    name "mangoapp" (its working directory's file); with no such file ftok fails and
    gamescope uses the key (key_t)-1, which is returned here too."""
    return int(LIBC.ftok(os.fsencode(path), MANGOAPP_PROJ_ID))


def _frame_from(msg: MangoAppMsgV1, size: int) -> MangoAppFrame:
    """Fields past the received size (an older, shorter sender) are None/defaults."""

    def has(name: str) -> bool:
        f = getattr(MangoAppMsgV1, name)
        return size + ctypes.sizeof(ctypes.c_long) >= f.offset + f.size

    latency = msg.latency_ns if has("latency_ns") else None
    return MangoAppFrame(
        pid=msg.pid,
        app_frametime_ns=msg.app_frametime_ns,
        visible_frametime_ns=msg.visible_frametime_ns if has("visible_frametime_ns") else None,
        latency_ns=latency,
        fsr_upscale=msg.fsr_upscale,
        fsr_sharpness=msg.fsr_sharpness,
        output_width=msg.output_width if has("output_width") else None,
        output_height=msg.output_height if has("output_height") else None,
        display_refresh=msg.display_refresh if has("display_refresh") else None,
        wants_hdr=bool(msg.flags & 1) if has("flags") else False,
        steam_focused=bool(msg.flags & 2) if has("flags") else False,
        engine=msg.engine_name.decode("utf-8", "replace") if has("engine_name") else "",
    )


@dataclass
class MangoAppQueue:
    """Read gamescope's per-frame messages without blocking (msgrcv IPC_NOWAIT).

    Like scxtop, this TAKES messages off the queue: a mangoapp overlay on the same queue
    then misses the frames read here, and as mangoapp waits in a blocking msgrcv it wins
    most of them (this reader sees frames reliably only where no mangoapp runs; MSG_COPY
    peeking would not help, mangoapp empties the queue as fast). Messages of another
    version are counted, not parsed.
    """

    key: int
    msqid: int = -1
    skipped: int = 0  # version != 1 or shorter than the pid + app frame time
    _buf: MangoAppMsgV1 = field(default_factory=MangoAppMsgV1)

    @classmethod
    def open(cls, key: int | None = None, create: bool = False) -> MangoAppQueue:
        k = mangoapp_key() if key is None else key
        q = cls(key=k)
        q.msqid = LIBC.msgget(k, (IPC_CREAT | 0o666) if create else 0)
        if q.msqid < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"mangoapp queue (key {k & 0xFFFFFFFF:#x}): {os.strerror(e)}")
        return q

    def read(self, limit: int = 4096) -> list[MangoAppFrame]:
        """Every frame message waiting now (up to limit)."""
        out: list[MangoAppFrame] = []
        min_size = MangoAppMsgV1.app_frametime_ns.offset + 8 - ctypes.sizeof(ctypes.c_long)
        while len(out) < limit:
            ctypes.memset(ctypes.byref(self._buf), 0, ctypes.sizeof(self._buf))
            # MSG_NOERROR (0o10000): a longer, newer message is cut to the v1 size, not refused
            n = LIBC.msgrcv(self.msqid, ctypes.byref(self._buf), MSG_TEXT_SIZE, MANGOAPP_MSG_TYPE, IPC_NOWAIT | 0o10000)
            if n < 0:
                e = ctypes.get_errno()
                if e in (errno.ENOMSG, errno.EAGAIN, errno.EINTR):
                    break
                raise OSError(e, f"mangoapp queue: msgrcv: {os.strerror(e)}")
            if self._buf.version != 1 or n < min_size:
                self.skipped += 1
                continue
            out.append(_frame_from(self._buf, n))
        return out


# --- a live source ------------------------------------------------------------------------------


class FrameSource:
    """One game's finished logs as they come: with a control socket, a new log every
    ``interval`` seconds (stop, which writes it, then start); without one, each log
    MangoHud writes by itself (log_duration or its toggle key) in the output folder.

    close() stops logging when this source started it (the last log is written)."""

    def __init__(self, game: Game, interval: float = 3.0, folder: str | None = None) -> None:
        self.game = game
        self.interval = interval
        where = folder or game.output_folder
        if where is None:
            raise ValueError(
                f"{game.comm}[{game.pid}]: no MangoHud output_folder (set it in MANGOHUD_CONFIG, or give the folder)"
            )
        self.control: MangoHudControl | None = None
        if game.control is not None:
            try:
                self.control = MangoHudControl(game.control)
            except OSError:
                self.control = None  # another client holds it (MangoHud takes one): follow the folder
        if self.control is not None:
            # a log left running (by a killed client, or the toggle key) would make the first
            # log span an unknown time: end it first (no answer when none runs) and skip it
            self.control.stop(timeout=1.0)
        self.follower = LogFollower(where, program=game.program)
        self._due = time.monotonic() + interval
        if self.control is not None:
            self.control.start()

    @property
    def chunked(self) -> bool:
        return self.control is not None

    def poll(self) -> list[FrameLog | FrameLogError]:
        """New logs now (a rotation first when one is due)."""
        settled = False
        if self.control is not None and time.monotonic() >= self._due:
            try:
                settled = self.control.rotate()
            except OSError:
                self.control.close()
                self.control = None  # the game went away or closed the socket
            self._due = time.monotonic() + self.interval
        return self.follower.poll(settled=settled)

    def close(self) -> None:
        if self.control is not None:
            try:
                self.control.stop()
            except OSError:
                pass
            self.control.close()
            self.control = None

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
