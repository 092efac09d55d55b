"""GameMode's games get a profile's game rule: schedtop listens where gamemoded does.

gamemoded (Feral's GameMode) owns `com.feralinteractive.GameMode` on the user's session bus,
object /com/feralinteractive/GameMode, interface com.feralinteractive.GameMode: a game asks
for game mode with RegisterGame(i pid) (gamemoderun's preloaded library does) or another
program asks for it with RegisterGameByPID(i caller, i game); gamemoded then emits
GameRegistered(i pid, o path) and, when the game asks to leave or its reaper finds it dead,
GameUnregistered(i pid, o path). ListGames() -> a(io) lists the games registered now.

GameModeBus is that interface over a blocking connection (jeepney): one thread owns it.
GameFollower turns its events into ProfileRunner.pin()/unpin() calls: a registered game gets
the rule (journaled like every change, by change()), and it is given back when the game
unregisters, exits (checked at every step, not left to gamemoded's reaper) or GameMode leaves
the bus. Games registered before schedtop started come from ListGames; a GameMode that starts
later is seen by its bus name appearing (NameOwnerChanged).

The session bus: $DBUS_SESSION_BUS_ADDRESS, else /run/user/UID/bus. Under sudo it is the
invoking user's (SUDO_UID), and that user's bus refuses root: the socket is connected and
authenticated by a short helper process running as the user, which hands the descriptor over.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from jeepney import DBusAddress, MatchRule, Message, MessageType, new_method_call
from jeepney.bus import get_connectable_addresses
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from jeepney.low_level import HeaderFields, MessageFlag
from jeepney.wrappers import DBusErrorResponse

from schedtop.collect.procfs import stat_at
from schedtop.steer.journal import summarize
from schedtop.steer.profiles import Profile, ProfileRunner, Rule, load

NAME = "com.feralinteractive.GameMode"
PATH = "/com/feralinteractive/GameMode"
IFACE = "com.feralinteractive.GameMode"
CONNECT_TIMEOUT_S = 2.0


class GameModeError(Exception):
    """No session bus, or it cannot be reached: one line for the user."""


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # registered, unregistered, appeared (GameMode took its name), vanished
    pid: int = 0
    at: float = 0.0  # time.monotonic() when schedtop read it off the bus


# --- the session bus ----------------------------------------------------------------------------


def session_bus(env: dict[str, str] | None = None) -> tuple[str, int | None]:
    """(address, uid to connect as; None: this process's own) of the session bus GameMode
    listens on. Under sudo (root with SUDO_UID) the invoking user's."""
    env = dict(os.environ) if env is None else env
    uid: int | None = None
    if os.geteuid() == 0 and env.get("SUDO_UID", "0").isdigit() and int(env.get("SUDO_UID", "0")) != 0:
        uid = int(env["SUDO_UID"])
    addr = env.get("DBUS_SESSION_BUS_ADDRESS", "").strip()
    if addr:
        return addr, uid
    run = f"/run/user/{uid if uid is not None else os.getuid()}/bus"
    if os.path.exists(run):
        return f"unix:path={run}", uid
    raise GameModeError(f"no session bus: DBUS_SESSION_BUS_ADDRESS is not set and {run} does not exist "
                        "(GameMode runs on the desktop user's session bus; start schedtop in that session)")


# The helper run as the bus's user: connect, authenticate (SASL EXTERNAL with its own uid, as
# the bus checks against the socket's peer credentials), hand the descriptor back. Stdlib only.
_HELPER = r"""
import os, socket, sys
path, out = sys.argv[1], socket.socket(fileno=int(sys.argv[2]))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(float(sys.argv[3]))
s.connect(path)
s.sendall(b"\0AUTH EXTERNAL " + str(os.geteuid()).encode().hex().encode() + b"\r\n")
line = b""
while not line.endswith(b"\r\n"):
    got = s.recv(1)
    if not got:
        break
    line += got
if not line.startswith(b"OK "):
    sys.exit("the bus refused user %d: %s" % (os.geteuid(), line.decode(errors="replace").strip() or "closed"))
s.sendall(b"BEGIN\r\n")
socket.send_fds(out, [b"ok"], [s.fileno()])
"""


def _socket_path(addr: str) -> str:
    try:
        return str(next(get_connectable_addresses(addr)))
    except (StopIteration, ValueError, RuntimeError) as exc:
        raise GameModeError(f"session bus address {addr!r}: {exc or 'no unix socket in it'}") from None


def _connect_as(addr: str, uid: int) -> DBusConnection:
    import pwd

    try:
        gid = pwd.getpwuid(uid).pw_gid
    except KeyError:
        raise GameModeError(f"session bus of SUDO_UID {uid}: no such user") from None
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    # The system's python: a venv or pyenv under /root is not reachable by the user (stdlib only).
    python = next((p for p in ("/usr/bin/python3", "/bin/python3") if os.path.exists(p)),
                  os.path.realpath(sys.executable))
    try:
        proc = subprocess.run([python, "-I", "-S", "-c", _HELPER, _socket_path(addr), str(theirs.fileno()),
                               str(CONNECT_TIMEOUT_S)], pass_fds=[theirs.fileno()], user=uid, group=gid,
                              extra_groups=[], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, timeout=CONNECT_TIMEOUT_S * 3, cwd="/")
        theirs.close()
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            raise GameModeError(f"cannot connect to the session bus {addr} as uid {uid}: {why}")
        ours.settimeout(CONNECT_TIMEOUT_S)
        _, fds, _, _ = socket.recv_fds(ours, 16, 1)
    except (OSError, subprocess.SubprocessError) as exc:
        raise GameModeError(f"cannot connect to the session bus {addr} as uid {uid}: {exc}") from None
    finally:
        ours.close()
        theirs.close()
    if not fds:
        raise GameModeError(f"cannot connect to the session bus {addr} as uid {uid}: no socket handed over")
    sock = socket.socket(fileno=fds[0])
    sock.settimeout(CONNECT_TIMEOUT_S)
    try:
        conn = DBusConnection(sock)  # says Hello
    except (OSError, TimeoutError) as exc:
        sock.close()
        raise GameModeError(f"session bus {addr}: {exc}") from None
    sock.settimeout(None)
    return conn


def connect(env: dict[str, str] | None = None) -> DBusConnection:
    """A connection to the session bus (see session_bus()); GameModeError with one line."""
    addr, uid = session_bus(env)
    if uid is not None and uid != os.geteuid():
        return _connect_as(addr, uid)
    try:
        return open_dbus_connection(addr, auth_timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError, RuntimeError) as exc:
        raise GameModeError(f"cannot connect to the session bus {addr}: {exc}") from None
    except Exception as exc:  # jeepney's AuthenticationError and kin
        raise GameModeError(f"cannot connect to the session bus {addr}: {type(exc).__name__}: {exc}") from None


class GameModeBus:
    """GameMode's side of the bus, subscribed before anything is asked (no event is lost
    between ListGames and the first signal)."""

    def __init__(self, conn: DBusConnection) -> None:
        self.conn = conn
        self._gm = DBusAddress(PATH, bus_name=NAME, interface=IFACE)
        games = MatchRule(type="signal", interface=IFACE, path=PATH)
        owner = MatchRule(type="signal", sender="org.freedesktop.DBus", interface="org.freedesktop.DBus",
                          member="NameOwnerChanged", path="/org/freedesktop/DBus")
        owner.add_arg_condition(0, NAME)
        self._games: deque[Message] = deque()
        self._owner: deque[Message] = deque()
        self._handles = [conn.filter(games, queue=self._games), conn.filter(owner, queue=self._owner)]
        for rule in (games, owner):
            self._call(message_bus.AddMatch(rule))

    def _call(self, msg: Message, timeout: float = CONNECT_TIMEOUT_S) -> tuple:
        reply = self.conn.send_and_get_reply(msg, timeout=timeout)
        if reply.header.message_type == MessageType.error:
            raise DBusErrorResponse(reply)
        return reply.body

    def present(self) -> bool:
        """GameMode owns its name on this bus now."""
        return bool(self._call(message_bus.NameHasOwner(NAME))[0])

    def list_games(self) -> list[int]:
        """The pids GameMode has registered now (its ListGames: an array of (pid, object path))."""
        msg = new_method_call(self._gm, "ListGames")
        msg.header.flags |= MessageFlag.no_auto_start  # ask the running one; never start gamemoded
        (games,) = self._call(msg)
        return [int(pid) for pid, _path in games]

    def events(self, timeout: float) -> list[Event]:
        """What came within ``timeout`` seconds (returns at the first message, or after it)."""
        end = time.monotonic() + timeout
        while not self._games and not self._owner:
            left = end - time.monotonic()
            if left <= 0:
                break
            try:
                self.conn.recv_messages(timeout=left)
            except TimeoutError:
                break
        out = []
        while self._owner:
            _name, _old, new = self._owner.popleft().body
            out.append(Event("appeared" if new else "vanished", at=time.monotonic()))
        while self._games:
            m = self._games.popleft()
            member = m.header.fields.get(_MEMBER)
            if member in ("GameRegistered", "GameUnregistered") and m.body:
                kind = "registered" if member == "GameRegistered" else "unregistered"
                out.append(Event(kind, int(m.body[0]), time.monotonic()))
        return out

    def close(self) -> None:
        for h in self._handles:
            h.close()
        self.conn.close()


_MEMBER = HeaderFields.member


# --- games into pins ------------------------------------------------------------------------------


def game_rule(spec: str = "gaming") -> tuple[Profile, Rule]:
    """The profile and its GameMode rule (`gamemode = "RULE"` at its top); ValueError if none."""
    prof = load(spec)
    rule = prof.game_rule
    if rule is None:
        raise ValueError(f"profile {prof.name} ({prof.path}) names no rule for GameMode's games: "
                         "add gamemode = \"RULE\" at its top")
    return prof, rule


@dataclass(frozen=True, slots=True)
class Game:
    pid: int
    comm: str

    def label(self) -> str:
        return f"{self.comm}[{self.pid}]"


class GameFollower:
    """One thread's follower: waits on the bus, pins registered games to the rule, unpins them.
    ``lock``: held around every runner call (the runner may be polled from another thread);
    ``stopped``: once set (by the owner, before it restores under that lock) no game is pinned."""

    def __init__(self, bus: GameModeBus, runner: ProfileRunner, rule: Callable[[], Rule],
                 lock: AbstractContextManager | None = None, stopped: threading.Event | None = None) -> None:
        self.bus = bus
        self.runner = runner
        self._rule = rule
        self._lock = lock if lock is not None else nullcontext()
        self._stopped = stopped or threading.Event()  # set: the owner restores; pin nothing more
        self.present = False
        self.latencies_ms: list[float] = []  # signal read -> rule applied, per registration
        self._games: dict[int, Game] = {}
        self._glock = threading.Lock()  # games() is read from the UI thread

    def games(self) -> list[Game]:
        with self._glock:
            return list(self._games.values())

    def start(self) -> list[str]:
        """Pick up the games GameMode has registered already; say whether it runs."""
        self.present = self.bus.present()
        if not self.present:
            return [f"gamemode: waiting for {NAME} on the session bus (gamemoded is not running)"]
        out = [f"gamemode: {NAME} is on the session bus"]
        for pid in self.bus.list_games():
            out += self._register(pid, time.monotonic(), "registered before schedtop started")
        return out

    def step(self, timeout: float) -> list[str]:
        """Wait up to ``timeout`` s for GameMode's signals; act on them and on games that exited."""
        out: list[str] = []
        for ev in self.bus.events(timeout):
            if ev.kind == "registered":
                out += self._register(ev.pid, ev.at)
            elif ev.kind == "unregistered":
                out += self._unregister(ev.pid, "unregistered")
            elif ev.kind == "appeared":
                self.present = True
                out.append(f"gamemode: {NAME} appeared on the session bus")
                for pid in self.bus.list_games():
                    out += self._register(pid, ev.at, "registered already")
            else:
                self.present = False
                out.append(f"gamemode: {NAME} left the session bus")
                for pid in list(self._games):
                    out += self._unregister(pid, "GameMode left")
        for pid, pin in list(self.runner.pins.items()):
            if pid in self._games and not self.runner.pin_alive(pin):
                out += self._unregister(pid, "exited")
        return out

    def close(self) -> list[str]:
        """Give back every game's rule (the journal's restore would too; this says which)."""
        out: list[str] = []
        for pid in list(self._games):
            out += self._unregister(pid, "schedtop stops")
        return out

    def _register(self, pid: int, at: float, why: str = "registered") -> list[str]:
        if pid in self._games:
            return []
        st = stat_at(f"/proc/{pid}/stat")
        if st is None:
            return [f"gamemode: game {pid} {why} but is gone already"]
        game = Game(pid, st.comm)
        rule = self._rule()
        label = f"gamemode: {game.label()} (rule {rule.label})"
        with self._lock:
            if self._stopped.is_set():
                return []
            reports = self.runner.pin(pid, rule, label)
        ms = (time.monotonic() - at) * 1000
        with self._glock:
            self._games[pid] = game
        if why == "registered":
            self.latencies_ms.append(ms)
        out = [f"gamemode: {game.label()} {why}: {rule.tuning.describe()} ({ms:.1f} ms)"]
        out += [r.summary() for r in reports]
        out += [e for r in reports for e in (x.error for x in r.errors())]
        return out

    def _unregister(self, pid: int, why: str) -> list[str]:
        with self._glock:
            game = self._games.pop(pid, None)
        if game is None:
            return []
        with self._lock:
            outcomes = self.runner.unpin(pid)
        return [f"gamemode: {game.label()} {why}: {summarize(outcomes) if outcomes else 'nothing to give back'}"
                + "".join(f"; {o.line()}" for o in outcomes if o.status == "failed")]
