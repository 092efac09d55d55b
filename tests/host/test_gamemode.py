"""GameMode's games get the gaming profile's game rule: Debian's real gamemoded on a private
session bus (dbus-run-session), real games under /usr/games/gamemoderun or registered with
RegisterGameByPID, the result read from /proc (nice, se.slice, the session autogroup's nice)
and from the journal file, never from schedtop's own state.

gamemoded's test config (gamemode.ini in its working directory and $XDG_CONFIG_HOME) sets
renice=0, ioprio=off, softrealtime=off: it changes no priority itself, so every nice seen
here is schedtop's. (It still asks for the "performance" governor; this VM has no cpufreq,
and pkexec is not installed: it logs an error and changes nothing.)"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import pytest
import steer_procs as sp
from jeepney import DBusAddress, MatchRule, new_method_call
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection
from steer_procs import state, wait_for  # noqa: F401 (autouse fixture)

from schedtop.steer import autogroup

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="nice -5 needs root"),
              pytest.mark.skipif(not autogroup.enabled(), reason="kernel.sched_autogroup_enabled is not 1")]

GAMEMODERUN = "/usr/games/gamemoderun"
GM = DBusAddress("/com/feralinteractive/GameMode", bus_name="com.feralinteractive.GameMode",
                 interface="com.feralinteractive.GameMode")
# reaper_freq=10: gamemoded looks for dead games only every 10 s, so an exit seen here is schedtop's own
INI = """[general]
reaper_freq=10
softrealtime=off
renice=0
ioprio=off
inhibit_screensaver=0
"""
# The game's session: a leader shell (its own autogroup) that outlives the game, so the
# session's nice can be read back after the game exited. argv: the game command.
LEADER = ["setsid", "sh", "-c", '"$@"; exec sleep 1000', "leader"]


class Bus:
    """A private session bus with gamemoded on it, owned by ``user`` (None: root)."""

    def __init__(self, workdir: Path, user: str | None = None) -> None:
        self.dir = workdir
        self.user = user
        (workdir / "gamemode.ini").write_text(INI)
        addr_file = workdir / "addr"
        prefix = self._as_user(user)
        env = {**os.environ, "XDG_CONFIG_HOME": str(workdir), "HOME": str(workdir)}
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        self.log = open(workdir / "gamemoded.log", "w")
        self.proc = subprocess.Popen(
            [*prefix, "dbus-run-session", "--", "sh", "-c",
             f'echo "$DBUS_SESSION_BUS_ADDRESS" > {addr_file}; exec gamemoded'],
            cwd=workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        assert wait_for(lambda: addr_file.exists() and addr_file.read_text().strip(), 10), "no bus address"
        self.address = addr_file.read_text().strip()

    def conn(self):
        assert self.user is None, "the user's bus refuses root: ask it through dbus-send as the user"
        return open_dbus_connection(self.address)

    def wait_present(self) -> None:
        def present() -> bool:
            r = subprocess.run([*self._as_user(), "gamemoded", "-s"], env=self.env(), capture_output=True,
                               text=True, timeout=10)
            return "gamemode is" in r.stdout
        # gamemoded -s asks the bus by name: it would start a second gamemoded by activation
        # before ours owns the name, so look for the owner first
        assert wait_for(self._has_owner, 10), "gamemoded did not take its name"
        assert present()

    def _has_owner(self) -> bool:
        if self.user is not None:
            r = subprocess.run([*self._as_user(), "dbus-send", "--session", "--print-reply",
                                "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
                                "org.freedesktop.DBus.NameHasOwner", "string:com.feralinteractive.GameMode"],
                               env=self.env(), capture_output=True, text=True, timeout=10)
            return "boolean true" in r.stdout
        with self.conn() as c:
            return bool(c.send_and_get_reply(message_bus.NameHasOwner("com.feralinteractive.GameMode")).body[0])

    def _as_user(self, user: str | None = "") -> list[str]:
        user = self.user if user == "" else user
        return ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups"] if user else []

    def env(self) -> dict[str, str]:
        return {**os.environ, "DBUS_SESSION_BUS_ADDRESS": self.address}

    def call(self, method: str, *args: int) -> int:
        with self.conn() as c:
            reply = c.send_and_get_reply(new_method_call(GM, method, "i" * len(args), args))
        return reply.body[0] if reply.body else 0

    def games(self) -> list[int]:
        with self.conn() as c:
            return [pid for pid, _ in c.send_and_get_reply(new_method_call(GM, "ListGames")).body[0]]

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


@pytest.fixture
def bus(tmp_path, monkeypatch):
    b = Bus(tmp_path)
    b.wait_present()
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", b.address)
    yield b
    b.stop()


class Watcher:
    """`schedtop profile apply gaming --gamemode` as a real process; its output in a file."""

    def __init__(self, tmp: Path, *extra: str, env: dict | None = None) -> None:
        self.out = tmp / f"watch-{time.monotonic_ns()}.log"
        exe = os.path.join(os.path.dirname(sys.executable), "schedtop")
        self._f = open(self.out, "w")
        self.proc = subprocess.Popen([exe, "profile", "apply", "gaming", "--gamemode", "--no-exec-hook", *extra],
                                     stdout=self._f, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        assert wait_for(lambda: "gamemode: com.feralinteractive.GameMode is" in self.text(), 20), self.text()

    def text(self) -> str:
        return self.out.read_text()

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(20)
        self._f.close()
        return rc


class Game:
    """A game (3 threads) in a session of its own, under gamemoderun or not."""

    def __init__(self, name: str, gamemoderun: bool = True) -> None:
        cmd = [*LEADER, *([GAMEMODERUN] if gamemoderun else []), "/usr/bin/python3", "-c", sp.CHILD, name, "3"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.tids = [int(t) for t in self.proc.stdout.readline().split()]
        assert len(self.tids) == 3
        self.pid = self.tids[0]
        self.leader = self.proc.pid  # the session's shell: outlives the game
        assert os.getsid(self.pid) == self.leader

    def tuned(self) -> bool:
        return all(sp.nice(self.pid, t) == -5 and sp.slice_ns(self.pid, t) == 1_000_000 for t in self.tids) \
            and group_nice(self.leader) == -5

    def state(self) -> list:
        return [(sp.nice(self.pid, t), sp.slice_ns(self.pid, t)) for t in self.tids] + [group_nice(self.leader)]

    def untuned(self) -> bool:
        # as it started: the nice it inherited from this test (which may run under nice -n 5)
        return all(sp.nice(self.pid, t) == os.nice(0) and sp.slice_ns(self.pid, t) != 1_000_000 for t in self.tids) \
            and group_nice(self.leader) == 0

    def kill_game(self, sig: int = signal.SIGKILL) -> None:
        os.kill(self.pid, sig)

        def gone() -> bool:
            try:
                return sp._stat(self.pid, self.pid)[0] in ("Z", "X")
            except (FileNotFoundError, ProcessLookupError):  # reaped by the leader shell
                return True

        assert wait_for(gone, 10)

    def close(self) -> None:
        try:
            os.killpg(self.leader, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def group_nice(pid: int) -> int:
    text = Path(f"/proc/{pid}/autogroup").read_text()  # "/autogroup-123 nice 0"
    return int(text.split()[-1])


def journaled(state_dir: Path) -> dict[int, list[str]]:
    """tid -> labels of the steps that changed it, for every thread a session journal file still
    holds (what a restore would give back), read from the files themselves."""
    out: dict[int, list[str]] = {}
    for f in state_dir.glob("session-*.json"):
        data = json.loads(f.read_text())
        held = {h["key"] for h in data["held"]}
        for step in data["steps"]:
            for e in step["entries"]:
                if f"task:{e['task']['tid']}:{e['task']['starttime']}" in held:
                    out.setdefault(int(e["task"]["tid"]), []).append(step["label"])
    return out


def test_gamemoderun_game_is_tuned_and_its_exit_gives_it_back(bus, tmp_path, state):
    w = Watcher(tmp_path)
    game = Game("stt-gm-exit")
    try:
        assert wait_for(game.tuned, 5), w.text()
        # the workers started after the preload registered the game: they inherited the rule at
        # clone, and the next poll (the profile's 1 s) journals them with the game's old values
        assert wait_for(lambda: set(game.tids) <= set(journaled(state)), 3), journaled(state)
        held = journaled(state)
        # named as gamemoded saw it: the preloaded library registers before the game names itself
        assert all(any(lbl.startswith(f"gamemode: python3[{game.pid}]") for lbl in held[t]) for t in game.tids)
        assert bus.games() == [game.pid]  # gamemoded registered it itself (gamemoderun's preload)
        # SIGKILL: no UnregisterGame from the game; schedtop sees the exit before gamemoded's reaper
        game.kill_game()
        assert wait_for(lambda: group_nice(game.leader) == 0, 3), w.text()
        assert wait_for(lambda: not (set(game.tids) & set(journaled(state))), 3)
        assert f"python3[{game.pid}] exited" in w.text()
        assert w.stop() == 0
        assert "Traceback" not in w.text()
    finally:
        game.close()
        w.stop()


def test_unregister_while_running_gives_it_back_and_latency(bus, tmp_path, state):
    """RegisterGameByPID / UnregisterGameByPID from another client while the game runs; the
    latency from the GameRegistered signal (read by this test's own connection) to the rule
    visible in /proc, over several registrations."""
    game = Game("stt-gm-unreg", gamemoderun=False)
    before = [sp.snapshot(game.pid, t) for t in game.tids]
    w = Watcher(tmp_path)
    lat = []
    try:
        with open_dbus_connection(bus.address) as c:
            q: deque = deque()
            rule = MatchRule(type="signal", interface=GM.interface, member="GameRegistered")
            c.filter(rule, queue=q)
            c.send_and_get_reply(message_bus.AddMatch(rule))
            for _ in range(7):
                assert bus.call("RegisterGameByPID", os.getpid(), game.pid) == 0
                msg = c.recv_until_filtered(q, timeout=5)
                t0 = time.monotonic()
                assert msg.body[0] == game.pid
                while not all(sp.nice(game.pid, t) == -5 for t in game.tids):
                    assert time.monotonic() - t0 < 5, w.text()
                    time.sleep(0.0005)
                lat.append((time.monotonic() - t0) * 1000)
                assert wait_for(game.tuned, 2)
                assert set(game.tids) <= set(journaled(state))
                assert bus.call("UnregisterGameByPID", os.getpid(), game.pid) == 0
                assert wait_for(game.untuned, 3), (game.state(), w.text())
                assert [sp.snapshot(game.pid, t) for t in game.tids] == before  # alive, as it was
                assert wait_for(lambda: not (set(game.tids) & set(journaled(state))), 3)
        own = [float(m) for m in re.findall(r"stt-gm-unreg\[\d+\] registered: .* \(([\d.]+) ms\)", w.text())]
        print(f"\nGameRegistered -> rule in /proc: median {statistics.median(lat):.1f} ms, "
              f"min {min(lat):.1f}, max {max(lat):.1f} over {len(lat)}; schedtop's own (signal read -> "
              f"change done): median {statistics.median(own):.1f} ms over {len(own)}")
        assert len(own) == len(lat)
        assert statistics.median(lat) < 250  # the signal drives it, not the profile's 1 s poll
        assert w.stop(signal.SIGTERM) == 0
    finally:
        game.close()
        w.stop()


def test_game_registered_before_start_is_picked_up_and_sigterm_restores(bus, tmp_path, state):
    game = Game("stt-gm-early")
    try:
        assert wait_for(lambda: bus.games() == [game.pid], 5)
        assert game.untuned(), game.state()
        w = Watcher(tmp_path)
        assert wait_for(game.tuned, 5), w.text()
        assert "registered before schedtop started" in w.text()
        assert w.stop(signal.SIGTERM) == 0
        assert game.untuned()  # the watcher's exit gave it back; the game still runs, registered
        assert bus.games() == [game.pid]
        assert "restored on exit" in w.text()
    finally:
        game.close()


def test_schedtop_restore_after_kill9(bus, tmp_path, state):
    game = Game("stt-gm-kill9")
    w = Watcher(tmp_path)
    try:
        assert wait_for(game.tuned, 5), w.text()
        assert wait_for(lambda: set(game.tids) <= set(journaled(state)), 3)  # workers born tuned: next poll
        w.stop(signal.SIGKILL)
        assert game.tuned()  # nobody gave it back
        r = sp.schedtop("restore")
        assert r.returncode == 0, r.stderr
        assert game.untuned(), r.stdout
        assert not journaled(state)
    finally:
        game.close()
        w.stop()


def test_no_session_bus_is_one_clear_line(tmp_path, monkeypatch):
    env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    exe = os.path.join(os.path.dirname(sys.executable), "schedtop")
    # root under sudo: the invoking user's /run/user/UID/bus; a uid with none
    r = subprocess.run([exe, "profile", "apply", "gaming", "--gamemode"], capture_output=True, text=True,
                       env={**env, "SUDO_UID": "4242"}, timeout=30)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "schedtop: --gamemode: no session bus: DBUS_SESSION_BUS_ADDRESS is not set and /run/user/4242/bus "
        "does not exist (GameMode runs on the desktop user's session bus; start schedtop in that session)"]
    assert r.stdout == ""
    # an address with nothing behind it
    r = subprocess.run([exe, "profile", "apply", "gaming", "--gamemode"], capture_output=True, text=True,
                       env={**env, "DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path}/nobus"}, timeout=30)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"schedtop: --gamemode: cannot connect to the session bus "
                                                   f"unix:path={tmp_path}/nobus: "), r.stderr
    assert "No such file" in lines[0]


def test_profile_without_game_rule_is_refused(tmp_path):
    prof = tmp_path / "p.toml"
    prof.write_text('name = "p"\n[[rule]]\ncomm = "x"\nnice = 1\n')
    r = sp.schedtop("profile", "apply", str(prof), "--gamemode")
    assert r.returncode == 1
    assert "names no rule for GameMode's games" in r.stderr and "Traceback" not in r.stderr


def test_sudo_uses_the_invoking_users_bus(tmp_path, state):
    """Root with SUDO_UID: the bus is that user's, which refuses root's own connection; schedtop
    connects as the user and tunes the user's game (gamemoded and the game run as nobody)."""
    work = Path(tempfile.mkdtemp(prefix="stt-gm-nobody-"))
    os.chmod(work, 0o777)
    b = Bus(work, user="nobody")
    game = None
    try:
        assert wait_for(b._has_owner, 10), (work / "gamemoded.log").read_text()
        with pytest.raises(OSError):
            open_dbus_connection(b.address)  # root itself is refused by the user's bus
        w = Watcher(tmp_path, env={"DBUS_SESSION_BUS_ADDRESS": b.address, "SUDO_UID": "65534"})
        cmd = [*sp.NOBODY, *LEADER, GAMEMODERUN, "/usr/bin/python3", "-c", sp.CHILD, "stt-gm-sudo", "2"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=b.env())
        game = proc
        assert proc.stdout is not None
        tids = [int(t) for t in proc.stdout.readline().split()]
        assert wait_for(lambda: all(sp.nice(tids[0], t) == -5 for t in tids), 5), w.text()
        assert wait_for(lambda: set(tids) <= set(journaled(state)), 3)  # the worker, born tuned: next poll
        assert w.stop() == 0
        assert all(sp.nice(tids[0], t) == os.nice(0) for t in tids), ([sp.nice(tids[0], t) for t in tids], w.text())
    finally:
        if game is not None:
            os.killpg(game.pid, signal.SIGKILL)
            game.wait()
        b.stop()


def test_tui_steering_follows_gamemode_and_the_header_names_the_game(bus, state):
    """The TUI's hook: SteeringSession.start() follows GameMode on the session bus (no profile
    given: the shipped gaming profile's game rule); the header names the game; close() gives
    it back. --no-gamemode (gamemode=False) starts no follower."""
    from schedtop.collect.live import LiveSource
    from schedtop.ui.controllers.steering import SteeringSession
    from schedtop.ui.widgets.header import header_markup

    game = Game("stt-gm-tui", gamemoderun=False)
    posted: list = []
    s = SteeringSession(posted.append, lambda rec: None, None, live=True)  # type: ignore[arg-type]
    off = SteeringSession(posted.append, lambda rec: None, None, live=True, gamemode=False)  # type: ignore[arg-type]
    try:
        s.start()
        off.start()
        assert wait_for(lambda: s._games is not None and s._games.present, 5), s.gamemode_state
        assert bus.call("RegisterGameByPID", os.getpid(), game.pid) == 0
        assert wait_for(game.tuned, 5), [getattr(m, "text", m) for m in posted]
        assert [g.label() for g in s.games()] == [f"stt-gm-tui[{game.pid}]"]
        assert off.games() == [] and off._gm_thread is None
        with LiveSource(pids=(game.pid,), use_bpf=False) as src:
            snap = src.collect()
        line2 = header_markup(snap, "live", [g.label() for g in s.games()]).plain.splitlines()[1]
        assert f"game mode stt-gm-tui[{game.pid}]" in line2
        assert "game mode" not in header_markup(snap, "live", []).plain
        assert any(f"stt-gm-tui[{game.pid}] registered" in getattr(m, "text", "") for m in posted)
        msg = s.close()
        assert msg is not None and "restored" in msg
        assert game.untuned()
    finally:
        s.close()
        off.close()
        game.close()


def _tmux(server: str, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["tmux", "-L", server, *args], **kw)


@pytest.mark.tmux
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
@pytest.mark.parametrize("follow", [True, False], ids=["gamemode", "no-gamemode"])
def test_tui_in_tmux_tunes_the_game_and_names_it(bus, state, follow):
    """The real TUI in a real terminal, on the private bus: a game registered while it runs is
    tuned (checked in /proc) and named in the header; unregistered, it is given back; quit
    leaves nothing. With --no-gamemode nothing happens to it."""
    game = Game("stt-gm-tmux", gamemoderun=False)
    name = f"stt-gm-{os.getpid()}-{follow}"
    exe = Path(sys.executable).parent / "schedtop"
    flag = "" if follow else "--no-gamemode"
    cmd = (f"exec env SCHEDTOP_STATE_DIR={state} DBUS_SESSION_BUS_ADDRESS='{bus.address}' "
           f"{exe} -p {game.pid} --no-bpf {flag}")
    _tmux(name, "new-session", "-d", "-s", name, "-x", "200", "-y", "40", cmd, check=True)
    _tmux(name, "set-option", "-t", name, "remain-on-exit", "on", check=True)

    def screen() -> str:
        return _tmux(name, "capture-pane", "-p", "-t", name, capture_output=True, text=True).stdout

    label = f"game mode stt-gm-tmux[{game.pid}]"
    try:
        assert wait_for(lambda: "stt-gm-tmux" in screen(), 30), screen()
        time.sleep(0.5)  # the follower has connected (its thread starts with the session journal)
        assert bus.call("RegisterGameByPID", os.getpid(), game.pid) == 0
        if not follow:
            time.sleep(2)  # a poll's worth and more: nothing may change
            assert game.untuned() and label not in screen()
            return
        assert wait_for(game.tuned, 5), screen()
        assert wait_for(lambda: label in screen(), 10), screen()
        assert set(game.tids) <= set(journaled(state))
        assert bus.call("UnregisterGameByPID", os.getpid(), game.pid) == 0
        assert wait_for(game.untuned, 5), screen()
        assert wait_for(lambda: label not in screen(), 10), screen()
        assert bus.call("RegisterGameByPID", os.getpid(), game.pid) == 0
        assert wait_for(game.tuned, 5), screen()
        _tmux(name, "send-keys", "-t", name, "q", check=True)
        assert wait_for(game.untuned, 10), screen()  # quit gave it back
    finally:
        _tmux(name, "kill-server", capture_output=True)
        game.close()
