"""The real `schedtop` on the live machine in a real terminal (tmux), driven by keys.

Each test uses its own tmux server (-L), so it never touches anyone's sessions.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEDTOP = ROOT / ".venv" / "bin" / "schedtop"

pytestmark = [
    pytest.mark.tmux,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux"),
    pytest.mark.skipif(not SCHEDTOP.exists(), reason="needs .venv/bin/schedtop (make venv)"),
]


class Tmux:
    """A private tmux server running `sh -c 'CMD; echo $? > RC'` (the shell keeps the exit status)."""

    def __init__(self, cmd: str, rc_file: Path, width: int = 120, height: int = 40) -> None:
        self.rc_file = rc_file
        cmd = f"{cmd}; echo $? > {rc_file}"
        self.sock = f"schedtop-test-{os.getpid()}-{time.monotonic_ns()}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TMUX")}
        env["TERM"] = "xterm-256color"
        self.env = env
        self.tmux("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), cmd,
                  ";", "set-option", "-t", "t", "remain-on-exit", "on")

    def tmux(self, *args: str) -> str:
        r = subprocess.run(["tmux", "-f", "/dev/null", "-L", self.sock, *args], capture_output=True,
                           text=True, env=self.env, timeout=10)
        if r.returncode != 0:
            raise AssertionError(f"tmux {args[0]}: {r.stderr.strip()}")
        return r.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def keys(self, *keys: str) -> None:
        for k in keys:
            self.tmux("send-keys", "-t", "t", k)
            time.sleep(0.15)

    def literal(self, text: str) -> None:
        self.tmux("send-keys", "-t", "t", "-l", text)

    def pane(self, fmt: str) -> str:
        return self.tmux("display-message", "-p", "-t", "t", fmt).strip()

    def wait(self, pred, what: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if pred(text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; screen:\n{text}")

    def wait_text(self, needle: str, timeout: float = 15.0) -> str:
        return self.wait(lambda s: needle in s, repr(needle), timeout)

    def app_pid(self) -> int:
        """schedtop's pid: the pane's shell's child."""
        shell = int(self.pane("#{pane_pid}"))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            children = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
            if children:
                return int(children[0])
            time.sleep(0.05)
        raise AssertionError("no schedtop process under the pane's shell")

    def wait_exit(self, timeout: float = 10.0) -> int:
        """The exit status of schedtop, as its shell saw it (128+N when a signal killed it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.rc_file.exists() and self.rc_file.read_text().strip():
                return int(self.rc_file.read_text())
            time.sleep(0.1)
        raise AssertionError("schedtop did not exit; screen:\n" + self.screen())

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True, env=self.env)


@pytest.fixture
def probe(tmp_path):
    """A sleeping child with a comm of its own, to filter and select."""
    exe = tmp_path / "stprobe"
    shutil.copy("/bin/sleep", exe)
    p = subprocess.Popen([str(exe), "600"])
    yield p
    p.kill()
    p.wait()


def test_live_keys_sort_filter_select_pause_help_quit(probe, tmp_path):
    t = Tmux(f"{SCHEDTOP} -d 0.5 --no-bpf", tmp_path / "rc")
    try:
        t.wait_text("scheduler EEVDF")
        t.wait_text("sort cpu_pct")
        # sort: next column
        t.keys(">")
        t.wait(lambda s: "sort " in s and "sort cpu_pct" not in s, "a new sort column")
        # filter by name
        t.keys("/")
        t.wait_text("filter: command name or pid")
        t.literal("stprobe")
        t.keys("Enter")
        screen = t.wait(lambda s: "filter 'stprobe'" in s and f"{probe.pid}" in s, "the probe row")
        assert "1/" in screen
        # select it and open its detail: the /proc sched fields come through the collector
        t.keys("Enter")
        screen = t.wait_text(f"task {probe.pid}")
        t.wait_text("se.vruntime")
        t.keys("Escape")
        t.wait_text("filter 'stprobe'")
        # pause: the header says so
        t.keys("Space")
        t.wait_text("PAUSED")
        t.keys("Space")
        t.wait(lambda s: "PAUSED" not in s, "unpause")
        # help, generated from the bindings
        t.keys("?")
        t.wait_text("schedtop help")
        t.wait_text("schedtop.pause")
        t.keys("Escape")
        t.wait(lambda s: "schedtop help" not in s, "help closed")
        # quit: the process exits 0 and leaves the alternate screen
        t.keys("q")
        assert t.wait_exit() == 0
        assert t.pane("#{alternate_on}") == "0"
    finally:
        t.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_signal_exits_cleanly(tmp_path, sig):
    t = Tmux(f"{SCHEDTOP} -d 0.5 --no-bpf", tmp_path / "rc")
    try:
        t.wait_text("scheduler EEVDF")
        os.kill(t.app_pid(), sig)
        # 128+N either way; what matters is that the app left the alternate screen (a clean exit
        # through the exit hooks, where the steer journal restores).
        assert t.wait_exit() == 128 + sig
        assert t.pane("#{alternate_on}") == "0"
        assert "Traceback" not in t.screen()
    finally:
        t.close()


def test_bad_replay_file_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"schedtop_replay": 1, "schema": 1}\n{"t": "snapshot", "data": {"ts": 1}}')
    r = subprocess.run([str(SCHEDTOP), "--replay", str(bad)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert str(bad) in r.stderr



def test_replay_in_a_real_terminal(tmp_path):
    """--replay drives the same TUI with no live source: it plays, pauses, steps and quits."""
    session = ROOT / "tests" / "fixtures" / "session.jsonl"
    t = Tmux(f"{SCHEDTOP} --replay {session}", tmp_path / "rc")
    try:
        t.wait_text("REPLAY 1/6")
        t.wait_text("hog-pinned0")
        t.keys("Space")
        t.wait(lambda s: "paused" in s, "paused")
        frame = int(t.screen().split("REPLAY ")[1].split("/")[0])
        after = min(frame + 1, 6)
        t.keys(".")
        t.wait_text(f"REPLAY {after}/6")
        t.keys(",")
        t.wait_text(f"REPLAY {after - 1}/6")
        t.keys("q")
        assert t.wait_exit() == 0
    finally:
        t.close()
