"""A user without CAP_SYS_NICE (uid 65534): what restore cannot put back (a nice below the one
RLIMIT_NICE allows) does not stop the rest (pin, slice, BATCH, the session's nice); it is said
once and dropped from the journal, so neither the next restore nor the next start asks again."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

import steer_procs as sp
from steer_procs import schedtop, spawn

pytestmark = pytest.mark.root

# A new session inside the interpreter (setsid(1) cannot exec the venv's python as nobody here).
SETSID_INPROC = "import os, sys; os.setsid(); code = sys.argv[3]; sys.argv = ['-c'] + sys.argv[4:]; exec(code)"

SESSION = r"""
import json, sys
from pathlib import Path
from schedtop.steer.actions import Tuning, read_params, ref_for
from schedtop.steer.change import change
from schedtop.steer.journal import Journal
j = Journal.session(Path(sys.argv[1]))
print("ready", flush=True)
for line in sys.stdin:
    cmd, *a = line.split()
    if cmd == "end":
        print(json.dumps([o.line() for o in j.restore_all()]), flush=True)
        break
    ref = ref_for(int(a[0]))
    tuning = Tuning(nice=read_params(ref).nice + int(a[1])) if cmd == "nice" else Tuning(affinity=(int(a[1]),))
    print(json.dumps(change([ref], tuning, j, force=True).summary()), flush=True)  # the TUI's "yes"
"""


@pytest.fixture
def nobody_env(nobody_install):
    xdg = Path(tempfile.mkdtemp(prefix="schedtop-xdg-"))  # pytest's tmp_path is not reachable by nobody
    shutil.chown(xdg, "nobody", "nogroup")
    yield xdg, {"XDG_STATE_HOME": str(xdg), "SCHEDTOP_STATE_DIR": ""}, nobody_install
    shutil.rmtree(xdg, ignore_errors=True)


def _group_nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])  # "/autogroup-N nice V"


def _as_nobody(env, *args):
    return schedtop(*args, env=env[0], prefix=sp.NOBODY, exe=env[1].schedtop)


def test_nonroot_restore_puts_back_pin_slice_batch_and_says_the_nice_once(nobody_env):
    xdg, env, inst = nobody_env
    env = (env, inst)
    c = spawn("stt-nr", prefix=[*sp.NOBODY, str(inst.python), "-c", SETSID_INPROC], python=inst.python)
    try:
        base = sp.slice_ns(c.pid)
        autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
        for args in (["--nice", "1", "--force"], ["--pin", "0"], ["--slice", "3ms"], ["--batch"],
                     ["--nice", "5", "--force"] + (["--group"] if autogroup else [])):
            r = _as_nobody(env, "set", str(c.pid), *args)
            assert r.returncode == 0, (args, r.stderr)
        assert sp.snapshot(c.pid) == (3, 0, 5, 3_000_000, "0")
        r = _as_nobody(env, "restore")
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert sp.snapshot(c.pid) == (0, 0, 5, base, "0-1"), r.stdout + r.stderr  # all but the nice
        if autogroup:
            assert _group_nice(c.pid) == 0
        assert "nice not put back to +0: failed to set" in r.stderr and "RLIMIT_NICE allows nice >= 20" in r.stderr
        assert "dropped from the journal (this user cannot undo it)" in r.stderr
        assert r.stderr.count("nice not put back") == 1
        again = _as_nobody(env, "restore")  # said once: not asked again
        assert again.returncode == 0 and again.stdout.strip() == "nothing to restore", again.stderr
        assert not (xdg / "schedtop" / "cli.json").exists()
    finally:
        c.kill()


class NobodySession:
    def __init__(self, state: Path, python) -> None:
        self.proc = subprocess.Popen([*sp.NOBODY, str(python), "-c", SESSION, str(state)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def do(self, *cmd: str):
        self.proc.stdin.write(" ".join(cmd) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())


@pytest.mark.parametrize("ending", ["quit", "kill9"])
def test_nonroot_session_journal_is_cleared_of_what_it_restored(nobody_env, ending):
    """After F8 (confirmed) and a pin as nobody, the end of the session (or restore after kill -9)
    puts the pin back, says the nice once, and leaves no journal to ask about at the next start."""
    xdg, env, inst = nobody_env
    env = (env, inst)
    c = spawn("stt-nrs", prefix=sp.NOBODY, python=inst.python)
    state = xdg / "schedtop"
    try:
        s = NobodySession(state, inst.python)
        s.do("nice", str(c.pid), "+1")
        s.do("pin", str(c.pid), "1")
        assert (sp.nice(c.pid), sp.affinity(c.pid)) == (1, "1")
        if ending == "quit":
            lines = s.do("end")
            s.proc.wait(timeout=30)
            assert any("dropped from the journal" in x for x in lines), lines
        else:
            s.proc.send_signal(signal.SIGKILL)
            s.proc.wait()
            r = _as_nobody(env, "restore")
            assert r.returncode == 1 and "dropped from the journal" in r.stderr, r.stderr
        assert (sp.nice(c.pid), sp.affinity(c.pid)) == (1, "0-1")
        assert list(state.glob("session-*.json")) == []
        r = _as_nobody(env, "restore")
        assert r.returncode == 0 and r.stdout.strip() == "nothing to restore", r.stdout + r.stderr
    finally:
        c.kill()


CHECK = r"""
import sys
from schedtop.steer.actions import Tuning, ref_for
from schedtop.steer.change import check
ref = ref_for(int(sys.argv[1]))
print(check([ref], Tuning(nice=5)))
print(check([ref], Tuning(affinity=(0,))))
"""


def test_the_tui_can_ask_before_a_change_nobody_could_not_undo(nobody_env):
    """change.check(): the reason the TUI shows in its confirmation, None when it can go ahead."""
    xdg, env, inst = nobody_env
    c = spawn("stt-nrc", prefix=sp.NOBODY, python=inst.python)
    try:
        r = subprocess.run([*sp.NOBODY, str(inst.python), "-c", CHECK, str(c.pid)], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == [
            f"nice 0 -> 5 on pid {c.pid} cannot be undone by you: going back to nice 0 needs root or "
            "CAP_SYS_NICE (RLIMIT_NICE allows nice >= 20)", "None"]
        assert sp.nice(c.pid) == 0  # asking changes nothing
    finally:
        c.kill()
