"""The real TUI in a real terminal (tmux): select a real child task, pin it, boost it, RT-boost it,
undo, quit; /proc is checked after every key, and everything is restored after quit, after
SIGTERM, and (after kill -9) by the crash-recovery prompt of the next start."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.tmux, pytest.mark.root,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]

SCHEDTOP = Path(sys.executable).parent / "schedtop"


def _stat(pid: int) -> list[str]:
    data = Path(f"/proc/{pid}/stat").read_text()
    return data[data.rindex(")") + 2:].split()


def params(pid: int) -> dict:
    st = _stat(pid)
    sl = None
    for line in Path(f"/proc/{pid}/sched").read_text().splitlines():
        if line.startswith("se.slice"):
            sl = int(float(line.split(":")[1]))
    aff = next(l.split(":", 1)[1].strip() for l in Path(f"/proc/{pid}/status").read_text().splitlines()
               if l.startswith("Cpus_allowed_list:"))
    return {"policy": int(st[38]), "rtprio": int(st[37]), "nice": int(st[16]), "slice": sl, "cpus": aff}


def _group_nice(pid: int) -> int | None:
    """The session autogroup's nice, None when autogroup is off or the task has none."""
    if Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() != "1":
        return None
    m = re.fullmatch(r"/autogroup-\d+ nice (-?\d+)\n", Path(f"/proc/{pid}/autogroup").read_text())
    return int(m.group(1)) if m else None


def wait_for(cond, what: str, timeout: float = 15.0):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = cond()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def tmux(server: str, *args: str, **kw) -> subprocess.CompletedProcess:
    """tmux on a server of the test's own (-L): on the shared default server, a session started
    just as the last one was killed met the exiting server ("server exited unexpectedly")."""
    return subprocess.run(["tmux", "-L", server, *args], **kw)


class Tui:
    def __init__(self, child: int, state: Path, extra: str = "") -> None:
        self.name = f"stt-{uuid.uuid4().hex[:8]}"
        self.pidfile = state.parent / f"{self.name}.pid"
        cmd = (f"echo $$ > {self.pidfile}; exec env SCHEDTOP_STATE_DIR={state} {SCHEDTOP} -p {child} --no-bpf {extra}")
        tmux(self.name, "new-session", "-d", "-s", self.name, "-x", "120", "-y", "40", cmd, check=True)
        tmux(self.name, "set-option", "-t", self.name, "remain-on-exit", "on", check=True)
        self.pid = int(wait_for(lambda: self.pidfile.exists() and self.pidfile.read_text().strip(), "tui pid"))
        self.start = _stat(self.pid)[19]  # pids wrap fast on a busy box: know ours by start time

    def screen(self, history: bool = False) -> str:
        extra = ["-S", "-500"] if history else []  # after exit the message may have scrolled
        r = tmux(self.name, "capture-pane", "-p", *extra, "-t", self.name, capture_output=True, text=True)
        return r.stdout

    def keys(self, *keys: str) -> None:
        tmux(self.name, "send-keys", "-t", self.name, *keys, check=True)

    def wait_text(self, text: str, timeout: float = 15.0) -> str:
        def seen() -> str | None:
            s = self.screen()
            return s if text in s else None

        return wait_for(seen, repr(text), timeout)

    def alive(self) -> bool:
        try:
            st = _stat(self.pid)
        except (FileNotFoundError, ProcessLookupError):
            return False
        return st[19] == self.start and st[0] not in "ZX"

    def close(self) -> None:
        if self.alive():  # never a reused pid
            os.kill(self.pid, signal.SIGKILL)
        tmux(self.name, "kill-server", capture_output=True)


@pytest.fixture
def child():
    # Its own session, as an app started elsewhere: `b` also sets that session's autogroup nice,
    # and must not touch the test runner's session.
    p = subprocess.Popen(["sleep", "600"], start_new_session=True)
    yield p.pid
    p.kill()
    p.wait()


@pytest.fixture
def state(tmp_path):
    return tmp_path / "state"


def _start(child: int, state: Path) -> Tui:
    tui = Tui(child, state)
    try:
        # the -p filter shows only our child, so it is the selected (only) row
        wait_for(lambda: re.search(rf"\b{child}\s+{child}\s+sleep\b", tui.screen()), "the child's row", 30)
    except BaseException:
        tui.close()
        raise
    return tui


def test_pin_boost_rt_undo_quit_with_proc_checked(child, state):
    orig = params(child)
    assert orig["cpus"] == "0-1" and orig["policy"] == 0
    tui = _start(child, state)
    try:
        tui.keys("a")
        tui.wait_text("online CPUs")
        tui.keys("7", "Enter")  # no such CPU: refused in the chooser, which stays open
        tui.wait_text("does not exist")  # units: "CPU 7 does not exist: this machine's CPUs are 0-1"
        assert params(child)["cpus"] == "0-1"
        # One key at a time, each after the last one shows (DEL+text in one read was dropped;
        # a fixed 0.3 s between them does not keep them apart on a loaded machine).
        tui.keys("BSpace")
        tui.wait_text("e.g. 0, 0-1, 0,2 or all")  # the placeholder: the input is empty
        tui.keys("1")
        wait_for(lambda: "e.g. 0, 0-1, 0,2 or all" not in tui.screen(), "the typed 1")
        tui.keys("Enter")
        wait_for(lambda: params(child)["cpus"] == "1", "pin to CPU 1")
        assert {k: params(child)[k] for k in ("policy", "nice")} == {"policy": 0, "nice": 0}

        group0 = _group_nice(child)
        tui.keys("b")
        wait_for(lambda: params(child)["nice"] == -10 and params(child)["slice"] == 1_000_000, "boost")
        assert params(child)["cpus"] == "1"
        if group0 is not None:  # autogroup on: the session's nice too, and the TUI says so
            wait_for(lambda: _group_nice(child) == -10, "session group nice")
            tui.wait_text("applies to every task")

        tui.keys("B")
        tui.wait_text("SCHED_FIFO 88?")
        assert params(child)["policy"] == 0  # nothing before the confirmation
        tui.keys("y")
        wait_for(lambda: (params(child)["policy"], params(child)["rtprio"]) == (1, 88), "FIFO 88")

        tui.keys("c")
        tui.wait_text("Active changes")
        # the row, once the table has filled; at 80 columns CHANGES wraps ("pin 1 +" / "boost + RT boost")
        # so that ORIGINAL and NOW stay whole beside it
        wait_for(lambda: "pin 1 +" in (sc := tui.screen()) and "boost + RT boost" in sc, "the changes row")
        tui.keys("Escape")
        # ESC followed at once by z would read as Alt+z: wait until the pane is closed
        wait_for(lambda: "Active changes" not in tui.screen(), "changes pane closed")

        tui.keys("z")  # undo the RT boost only
        wait_for(lambda: params(child)["policy"] == 0, "undo RT boost")
        assert (params(child)["nice"], params(child)["slice"], params(child)["cpus"]) == (-10, 1_000_000, "1")

        tui.keys("q")
        wait_for(lambda: not tui.alive(), "quit")
        wait_for(lambda: "schedtop: restored on exit: 1 restored" in tui.screen(history=True), "exit report")
        assert params(child) == orig and _group_nice(child) == group0
        assert not list(state.glob("session-*.json"))
    finally:
        tui.close()


@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP", "terminal closed"])
def test_signal_or_closed_terminal_restores(child, state, how):
    orig = params(child)
    tui = _start(child, state)
    try:
        tui.keys("b")
        wait_for(lambda: params(child)["nice"] == -10, "boost")
        if how == "terminal closed":  # tmux hangs up on the pane's process
            tmux(tui.name, "kill-session", "-t", tui.name, check=True)
        else:
            os.kill(tui.pid, getattr(signal, how))
        # The restore comes first (the exit hooks run on the signal); the exit may take longer.
        wait_for(lambda: params(child) == orig, f"restore on {how}")
        wait_for(lambda: not tui.alive(), f"exit on {how}", 40)
        assert not list(state.glob("session-*.json"))
    finally:
        tui.close()


def test_kill9_then_next_start_offers_recovery(child, state):
    orig = params(child)
    tui = _start(child, state)
    try:
        tui.keys("D")  # demote to IDLE
        wait_for(lambda: params(child)["policy"] == 5, "SCHED_IDLE")
        os.kill(tui.pid, signal.SIGKILL)
        wait_for(lambda: not tui.alive(), "killed")
        assert params(child)["policy"] == 5 and len(list(state.glob("session-*.json"))) == 1
    finally:
        tui.close()
    tui = Tui(child, state)
    try:
        tui.wait_text("Restore after a crash?", 30)
        tui.keys("y")
        wait_for(lambda: params(child) == orig, "recovery restore")
        tui.keys("q")
        wait_for(lambda: not tui.alive(), "quit")
        assert not list(state.glob("session-*.json"))
    finally:
        tui.close()


def test_profile_applies_live_and_is_restored_on_quit(tmp_path, state):
    tag = "tp" + uuid.uuid4().hex[:6]
    code = ("import ctypes,sys,time; ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0);"
            "print('ok', flush=True); time.sleep(600)")
    kid = subprocess.Popen([sys.executable, "-c", code, tag], stdout=subprocess.PIPE, text=True)
    kid.stdout.readline()
    prof = tmp_path / "p.toml"
    prof.write_text(f'name = "t"\npoll = 0.2\n[[rule]]\ncomm = "{tag}"\nnice = 5\nslice = "3ms"\n')
    name = f"stt-{uuid.uuid4().hex[:8]}"
    pidfile = tmp_path / "tui.pid"
    cmd = (f"echo $$ > {pidfile}; exec env SCHEDTOP_STATE_DIR={state} {SCHEDTOP} -p {kid.pid} --no-bpf "
           f"--profile {prof}")
    tmux(name, "new-session", "-d", "-s", name, "-x", "120", "-y", "40", cmd, check=True)
    try:
        wait_for(lambda: (params(kid.pid)["nice"], params(kid.pid)["slice"]) == (5, 3_000_000), "profile applied", 30)
        tmux(name, "send-keys", "-t", name, "q", check=True)
        wait_for(lambda: params(kid.pid)["nice"] == 0, "restored on quit", 30)
        assert params(kid.pid)["slice"] != 3_000_000
    finally:
        tmux(name, "kill-server", capture_output=True)
        kid.kill()
        kid.wait()


def test_bad_profile_is_rejected_with_file_and_line(tmp_path, state):
    prof = tmp_path / "bad.toml"
    prof.write_text('[[rule]]\ncomm = "x"\nnice = 99\n')
    r = subprocess.run([str(SCHEDTOP), "--profile", str(prof), "--no-bpf"], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "SCHEDTOP_STATE_DIR": str(state)}, stdin=subprocess.DEVNULL)
    assert r.returncode == 2
    assert f"{prof}:3: nice 99 is out of range: -20..19" in r.stdout + r.stderr


def test_policy_chooser_slice_steps_nice_and_demote(child, state):
    orig = params(child)
    tui = _start(child, state)
    try:
        tui.keys("Y")
        tui.wait_text("RT priority for FIFO/RR")
        tui.keys("Down", "Down", "Down", "Down", "Enter")  # OTHER BATCH IDLE FIFO [RR], priority 88
        wait_for(lambda: (params(child)["policy"], params(child)["rtprio"]) == (2, 88), "RR 88")
        tui.keys("S")  # refused on an RT task, with the reason
        tui.wait_text("is RR")  # the refusal names the policy (the toast wraps the rest)
        assert params(child)["policy"] == 2
        tui.keys("Y")
        tui.wait_text("RT priority for FIFO/RR")
        tui.keys("Enter")  # OTHER
        wait_for(lambda: params(child)["policy"] == 0, "back to OTHER")
        tui.keys("S")
        wait_for(lambda: params(child)["slice"] == 500_000, "slice 0.5 ms")
        tui.keys("S")
        wait_for(lambda: params(child)["slice"] == 1_000_000, "slice 1 ms")
        tui.keys("F7")
        wait_for(lambda: params(child)["nice"] == -1, "nice -1")
        tui.keys("F8", "F8")
        wait_for(lambda: params(child)["nice"] == 1, "nice +1")
        tui.keys("d")
        wait_for(lambda: params(child)["policy"] == 3, "BATCH")
        tui.keys("D")
        wait_for(lambda: params(child)["policy"] == 5, "IDLE")
        tui.keys("q")
        wait_for(lambda: not tui.alive(), "quit")
        assert params(child) == orig
    finally:
        tui.close()


def test_scope_key_pins_every_thread_of_the_process(tmp_path, state):
    code = ("import threading,time; [threading.Thread(target=time.sleep, args=(600,), daemon=True).start() "
            "for _ in range(3)]; print('ok', flush=True); time.sleep(600)")
    kid = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    kid.stdout.readline()
    tids = sorted(int(t) for t in os.listdir(f"/proc/{kid.pid}/task"))
    assert len(tids) == 4
    aff = lambda t: next(l.split(":", 1)[1].strip() for l in  # noqa: E731
                         Path(f"/proc/{kid.pid}/task/{t}/status").read_text().splitlines()
                         if l.startswith("Cpus_allowed_list:"))
    tui = Tui(kid.pid, state)
    try:
        wait_for(lambda: tui.screen().count(f"{kid.pid} ") >= 4, "four thread rows", 30)
        tui.keys("A")
        tui.wait_text("every thread of the process")
        tui.keys("a")
        tui.wait_text("online CPUs")
        tui.keys("0", "Enter")
        wait_for(lambda: [aff(t) for t in tids] == ["0"] * 4, "all four threads pinned")
        tui.keys("q")
        wait_for(lambda: not tui.alive(), "quit")
        assert [aff(t) for t in tids] == ["0-1"] * 4
    finally:
        tui.close()
        kid.kill()
        kid.wait()


def test_keep_leaves_changes_for_schedtop_restore(child, state):
    orig = params(child)
    tui = Tui(child, state, "--keep")
    try:
        wait_for(lambda: re.search(rf"\b{child}\s+{child}\s+sleep\b", tui.screen()), "the child's row", 30)
        tui.keys("b")
        wait_for(lambda: params(child)["nice"] == -10, "boost")
        tui.keys("q")
        wait_for(lambda: not tui.alive(), "quit")
        assert params(child)["nice"] == -10  # kept
        wait_for(lambda: "kept changes on 1 thread(s)" in tui.screen(history=True), "exit report")
    finally:
        tui.close()
    r = subprocess.run([str(SCHEDTOP), "restore"], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "SCHEDTOP_STATE_DIR": str(state)})
    assert r.returncode == 0 and "1 restored" in r.stdout
    assert params(child) == orig
