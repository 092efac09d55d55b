"""`schedtop serve` in a real browser: the test starts the server on a free loopback port, drives
Debian's headless Chromium over the DevTools protocol (schedtop/serve/browser.py), types keys and
reads xterm.js's own text; steering is refused unless --allow-steer, and with it the page needs the
token printed at start."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from textual.binding import Binding

from schedtop.serve.browser import Browser, chromium_path

ROOT = Path(__file__).resolve().parents[2]
SCHEDTOP = Path(sys.executable).with_name("schedtop")
SESSION = ROOT / "tests" / "fixtures" / "session.jsonl"
OFF = "steering off (serve without --allow-steer)"

needs_chromium = pytest.mark.skipif(chromium_path() is None, reason="chromium not installed (make deps)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    """`schedtop serve` as a user starts it; its first stderr line says it listens."""

    def __init__(self, *args: str, listen: str | None = None) -> None:
        self.port = free_port()
        self.listen = listen or f"127.0.0.1:{self.port}"
        self.url = f"http://127.0.0.1:{self.port}/"
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([str(SCHEDTOP), "serve", "--listen", self.listen, *args],
                                     stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        self.lines = [self.proc.stderr.readline() for _ in range(2 if "--allow-steer" in args else 1)]
        assert "serving" in self.lines[0], self.lines
        self.listening_s = time.monotonic() - self.t0

    def stop(self) -> str:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=30)
        return err


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])


def row(text: str, pid: int) -> str:
    """The task table's row of pid ('' while it is not shown)."""
    return next((ln for ln in text.splitlines() if ln.split()[:2] == [str(pid), str(pid)]), "")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", data[:16]
    return struct.unpack(">II", data[16:24])


@needs_chromium
def test_the_page_shows_the_table_and_cpus_a_key_works_and_steering_is_refused(tmp_path):
    target = sleeper()
    nice_before = os.getpriority(os.PRIO_PROCESS, target.pid)
    srv = Serve("--no-bpf", "-p", str(target.pid))

    async def drive() -> dict[str, float]:
        async with Browser(1600, 1000) as b:
            await b.goto(srv.url)
            text = await b.wait_text("PID", "COMMAND", OFF, until=lambda t: row(t, target.pid))
            shown = time.monotonic() - srv.t0
            assert "runnable" in text.splitlines()[2], text  # the CPU panel's title line
            assert "python" in row(text, target.pid), text  # the followed task's row
            await b.type("?")  # help: generated from the bindings, with their ids
            await b.wait_text("schedtop.help", "schedtop.steer.boost")
            await b.type("q")  # closes help, not the app
            await b.wait_text("PID", "COMMAND")
            await b.type("b")  # boost: nice -10, 1 ms slice, if it were allowed
            text = await b.wait_text("does nothing here")
            assert "steering off" in text
            await b.screenshot(tmp_path / "served.png")
            return {"browser_start_s": b.started_s, "table_s": shown}

    try:
        times = asyncio.run(drive())
        time.sleep(0.5)
        assert os.getpriority(os.PRIO_PROCESS, target.pid) == nice_before  # b did not act
    finally:
        err = srv.stop()
        target.kill()
        target.wait()
    w, h = png_size(tmp_path / "served.png")
    assert (w, h) == (1600, 1000)
    assert (tmp_path / "served.png").stat().st_size > 30_000  # a drawn terminal, not a blank page
    assert "Traceback" not in err, err
    print(f"\nserve: listening {srv.listening_s:.2f} s, table in the browser {times['table_s']:.2f} s after "
          f"start (chromium itself {times['browser_start_s']:.2f} s)")


@needs_chromium
def test_a_replay_is_served_read_only_with_its_frames():
    srv = Serve("--replay", str(SESSION))

    async def drive() -> None:
        async with Browser(1200, 800) as b:
            await b.goto(srv.url)
            await b.wait_text("REPLAY", OFF, "hog-pinned0")
            await b.type(" ")  # pause
            await b.wait_text("paused")
            await b.type("L")  # load schedtop's scheduler: refused before it asks
            await b.wait_text("does nothing here")

    try:
        asyncio.run(drive())
    finally:
        srv.stop()


def _ws_status(url: str, **headers: str) -> int:
    async def go() -> int:
        async with aiohttp.ClientSession() as http:
            try:
                async with http.ws_connect(url, headers=headers) as ws:
                    await ws.close()
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status
    return asyncio.run(go())


def test_another_sites_page_and_a_rebound_name_are_refused():
    srv = Serve("--replay", str(SESSION))
    try:
        ws = f"ws://127.0.0.1:{srv.port}/ws"
        assert _ws_status(ws, Origin="http://evil.example") == 403
        assert _ws_status(ws, Host=f"evil.example:{srv.port}", Origin=f"http://evil.example:{srv.port}") == 403
        assert _ws_status(ws, Origin=f"http://127.0.0.1:{srv.port}") == 101
    finally:
        err = srv.stop()
    assert "refused a session" in err and "evil.example" in err, err


@needs_chromium
@pytest.mark.root
def test_allow_steer_needs_the_token_then_steers_and_restores_when_the_server_stops():
    target = sleeper()
    nice_before = os.getpriority(os.PRIO_PROCESS, target.pid)
    srv = Serve("--no-bpf", "-p", str(target.pid), "--allow-steer")
    token_line = srv.lines[1]
    assert "?token=" in token_line, srv.lines
    token = token_line.split("?token=", 1)[1].split()[0]

    async def status(url: str) -> int:
        async with aiohttp.ClientSession() as http, http.get(url) as r:
            return r.status

    async def drive() -> None:
        assert await status(srv.url) == 403
        assert _ws_status_async_free(srv.port) == 404  # no token in the path: no such socket
        async with Browser(1600, 1000) as b:
            await b.goto(f"{srv.url}?token={token}")
            text = await b.wait_text("PID", until=lambda t: row(t, target.pid))
            assert "steering off" not in text
            await b.type("b")
            deadline = time.monotonic() + 20
            while os.getpriority(os.PRIO_PROCESS, target.pid) != -10:
                assert time.monotonic() < deadline, await b.terminal_text()
                await asyncio.sleep(0.2)

    try:
        asyncio.run(drive())
        srv.stop()  # the session's app gets textual-serve's quit and restores on its way out
        assert os.getpriority(os.PRIO_PROCESS, target.pid) == nice_before
    finally:
        if srv.proc.poll() is None:
            srv.stop()
        target.kill()
        target.wait()


def _ws_status_async_free(port: int) -> int:
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/ws")
    return c.getresponse().status


@pytest.mark.parametrize("argv,says", [
    (["--listen", "127.0.0.1"], "expected HOST:PORT, e.g. 127.0.0.1:9646"),
    (["--listen", "::1:80"], "needs brackets, e.g. [::1]:9646"),
    (["--listen", "127.0.0.1:99999"], "the port must be a number in 1..65535"),
    (["--listen", "0.0.0.0:9646", "--allow-steer"], "--allow-steer is for a loopback address only"),
    (["--max-sessions", "0"], "not a count in 1..64"),
    (["--public-url", "example"], "--public-url: expected http://"),
])
def test_bad_values_are_one_line_errors(argv, says):
    r = subprocess.run([str(SCHEDTOP), "serve", *argv], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("schedtop serve: error: ") and says in last, r.stderr


def test_a_busy_port_and_a_bad_replay_are_one_line_errors(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        where = f"127.0.0.1:{busy.getsockname()[1]}"
        r = subprocess.run([str(SCHEDTOP), "serve", "--listen", where], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.strip() == f"schedtop serve: cannot listen on {where}: Address already in use"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    r = subprocess.run([str(SCHEDTOP), "serve", "--replay", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and str(bad) in r.stderr, r.stderr


def test_listening_beyond_loopback_is_said_loudly():
    srv = Serve("--replay", str(SESSION), listen=f"0.0.0.0:{free_port()}")
    try:
        assert srv.proc.stderr is not None
        warning = [srv.proc.stderr.readline() for _ in range(3)]
    finally:
        srv.stop()
    assert "WARNING: listening on 0.0.0.0:" in "".join(warning) and "no password" in "".join(warning), warning


def test_read_only_refuses_every_key_that_would_change_the_machine():
    """The TUI's --read-only (what a served session runs with), on the live machine, a real task
    followed: every refused key answers with the note and changes nothing, the other keys work."""
    from schedtop.collect.live import LiveSource
    from schedtop.ui import readonly
    from schedtop.ui.app import SchedtopApp
    from schedtop.ui.screens.main import MainScreen

    target = sleeper()
    before = (os.getpriority(os.PRIO_PROCESS, target.pid), os.sched_getaffinity(target.pid),
              os.sched_getscheduler(target.pid))
    src = LiveSource(pids=(target.pid,), use_bpf=False, use_debugfs=False)
    app = SchedtopApp(src, delay=0.2, pids=(target.pid,), read_only=True)
    refused = [b for b in MainScreen.BINDINGS
               if isinstance(b, Binding) and readonly.action_name(b.action) in readonly.refused_actions()]
    seen: list[str] = []
    orig = app.notify

    def notify(message: object, *a: Any, **kw: Any) -> None:
        seen.append(str(message))
        orig(str(message), *a, **kw)

    app.notify = notify  # type: ignore[method-assign]

    async def body() -> None:
        async with app.run_test(size=(160, 45)) as pilot:
            deadline = time.monotonic() + 10
            while app.snapshot is None or app.selected_task() is None:
                assert time.monotonic() < deadline
                await pilot.pause(0.05)
            assert app.mode_text() == readonly.STEER_OFF
            for b in refused:
                n = len(seen)
                await pilot.press(b.key.split(",")[0])
                await pilot.pause(0.05)
                assert isinstance(app.screen, MainScreen), (b.key, app.screen)
                assert seen[n:] and "does nothing here" in seen[-1], (b.key, seen[n:])
            await pilot.press("t")  # a key that only changes the view still works
            await pilot.pause(0.05)
            assert app.thread_mode is False

    try:
        asyncio.run(body())
        assert app.steering.journal is None
        after = (os.getpriority(os.PRIO_PROCESS, target.pid), os.sched_getaffinity(target.pid),
                 os.sched_getscheduler(target.pid))
        assert after == before
    finally:
        src.close()
        target.kill()
        target.wait()
    assert {"S", "b", "B", "L", "E", "T", "z", "c", "a", "d"} <= {b.key for b in refused}, refused


@needs_chromium
@pytest.mark.root
def test_a_killed_server_takes_its_sessions_with_it_and_they_restore():
    """SIGKILL of the server: each session's schedtop gets SIGTERM from the kernel (session.py),
    restores the boost and exits, instead of running on orphaned with the change in force."""
    target = sleeper()
    nice_before = os.getpriority(os.PRIO_PROCESS, target.pid)
    srv = Serve("--no-bpf", "-p", str(target.pid), "--allow-steer")
    token = srv.lines[1].split("?token=", 1)[1].split()[0]

    async def drive() -> list[int]:
        async with Browser(1600, 1000) as b:
            await b.goto(f"{srv.url}?token={token}")
            await b.wait_text("PID", until=lambda t: row(t, target.pid))
            await b.type("b")
            deadline = time.monotonic() + 20
            while os.getpriority(os.PRIO_PROCESS, target.pid) != -10:
                assert time.monotonic() < deadline, await b.terminal_text()
                await asyncio.sleep(0.2)
            sessions = [int(p) for p in Path(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children").read_text().split()]
            srv.proc.kill()
            srv.proc.wait()
            return sessions

    try:
        sessions = asyncio.run(drive())
        assert sessions
        deadline = time.monotonic() + 15
        while any(Path(f"/proc/{p}").exists() and Path(f"/proc/{p}/stat").read_text().split()[2] != "Z"
                  for p in sessions):
            assert time.monotonic() < deadline, sessions
            time.sleep(0.2)
        assert os.getpriority(os.PRIO_PROCESS, target.pid) == nice_before
    finally:
        if srv.proc.poll() is None:
            srv.stop()
        target.kill()
        target.wait()
