"""The live profile's BPF exec/rename hook (bpf/exec.bpf.c) on this kernel: real execs and real
thread renames are reported with the right pid and name, the record layout matches the object's
BTF, and `schedtop profile apply --watch` tunes a program started after its poll at once, where
polling alone would wait for the next interval."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

import steer_procs as sp
from schedtop.bpf.btf import Btf, ctypes_layout
from schedtop.steer import exec_watch
from schedtop.steer.exec_watch import EXEC_EXEC, EXEC_RENAME, ExecBss, ExecEvent, open_watch
from steer_procs import schedtop, state  # noqa: F401 (autouse fixture)

pytestmark = [pytest.mark.root, pytest.mark.bpf,
              pytest.mark.skipif(not exec_watch.OBJECT.exists(), reason="exec.bpf.o not built (make bpf)")]

SCHEDTOP = os.path.join(os.path.dirname(sys.executable), "schedtop")


@pytest.fixture
def hook():
    w, why = open_watch()
    assert w is not None, why
    yield w
    w.close()


def _collect(w, want, timeout=5.0):
    got, end = [], time.monotonic() + timeout
    while time.monotonic() < end and not want(got):
        got += w.wait(100)
    return got


def _named_sleep(tmp_path: Path, name: str) -> Path:
    """A program whose comm after exec is `name` (the kernel takes it from the path's last part)."""
    link = tmp_path / name
    link.symlink_to("/bin/sleep")
    return link


def test_layout_matches_the_objects_btf(hook):
    from schedtop.bpf.libbpf import BpfObject

    with BpfObject.open(exec_watch.OBJECT) as obj:
        btf = Btf.of_object(obj)
        assert btf.struct_fields("exec_event") == ctypes_layout(ExecEvent)
        assert btf.struct_fields("exec_bss") == ctypes_layout(ExecBss)


def test_exec_and_thread_rename_are_reported(hook, tmp_path):
    name = "stx" + uuid.uuid4().hex[:8]
    before = hook.counts()
    child = subprocess.Popen([_named_sleep(tmp_path, name), "30"])
    try:
        got = _collect(hook, lambda g: any(e.tgid == child.pid and e.kind == EXEC_EXEC for e in g))
        ex = [e for e in got if e.tgid == child.pid and e.kind == EXEC_EXEC]
        assert ex and ex[0].comm == name and ex[0].tid == child.pid
    finally:
        child.kill()
        child.wait()
    # A thread that names itself the way PipeWire's data loops do (prctl PR_SET_NAME).
    code = ("import ctypes, threading, time\n"
            "def run():\n"
            "    ctypes.CDLL(None).prctl(15, b'data-loop.7', 0, 0, 0)\n"
            "    time.sleep(30)\n"
            "threading.Thread(target=run, daemon=True).start()\n"
            "time.sleep(30)\n")
    py = subprocess.Popen([sys.executable, "-c", code])
    try:
        got = _collect(hook, lambda g: any(e.tgid == py.pid and e.kind == EXEC_RENAME and e.comm == "data-loop.7"
                                           for e in g))
        ren = [e for e in got if e.tgid == py.pid and e.comm == "data-loop.7"]
        assert ren and ren[0].kind == EXEC_RENAME and ren[0].tid != py.pid  # the thread, not the leader
        assert (Path(f"/proc/{py.pid}/task/{ren[0].tid}/comm").read_text().strip()) == "data-loop.7"
    finally:
        py.kill()
        py.wait()
    after = hook.counts()
    assert after.execs >= before.execs + 2 and after.renames > before.renames and after.dropped == 0


def _watch(prof: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([SCHEDTOP, "profile", "apply", str(prof), "--watch", "--interval", "30", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _first_line(p: subprocess.Popen, timeout: float = 10.0) -> str:
    line = p.stdout.readline()  # the hook/poll line comes before the first poll
    assert line, p.stderr.read()
    return line


@pytest.mark.parametrize("hooked", [True, False], ids=["exec-hook", "poll-only"])
def test_profile_tunes_a_new_program_at_once_with_the_hook(tmp_path, hooked):
    name = "stx" + uuid.uuid4().hex[:8]
    prof = tmp_path / "p.toml"
    prof.write_text(f'name = "t"\npoll = 30\n[[rule]]\ncomm = "{name}"\nnice = 6\n')
    program = _named_sleep(tmp_path, name)
    # Running before the watcher starts, so its first poll tunes it and says so: that line marks
    # the first poll as over (a fixed 0.5 s wait was too short under load, and the poll then
    # caught the child below in poll-only mode).
    early = subprocess.Popen([program, "30"])
    sess = _watch(prof, *(() if hooked else ("--no-exec-hook",)))
    try:
        head = _first_line(sess)
        assert ("tuned at once (BPF tp_btf)" in head) if hooked else ("polling every 30s (--no-exec-hook)" in head)
        first_poll = sess.stdout.readline()  # printed once the whole scan is done
        assert "rule 1: 1 thread changed" in first_poll and sp.nice(early.pid) == 6, first_poll
        child = subprocess.Popen([program, "30"])  # the first poll is over: only the hook can see it
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < 2.0 and sp.nice(child.pid) != 6:
                time.sleep(0.01)
            took = time.monotonic() - t0
            if hooked:
                assert sp.nice(child.pid) == 6, "the exec hook did not tune the new program within 2 s"
                assert took < 1.0, took
            else:
                assert sp.nice(child.pid) == 0  # the next poll is 30 s away
        finally:
            sess.send_signal(signal.SIGTERM)
            out, err = sess.communicate(timeout=30)
            if hooked:
                assert sp.nice(child.pid) == 0 and "restored on exit: 2 restored" in out, out + err
            assert sp.nice(early.pid) == 0, out + err
            child.kill()
            child.wait()
    finally:
        if sess.poll() is None:
            sess.kill()
        early.kill()
        early.wait()
    assert sess.returncode == 0, err


def test_without_root_the_hook_says_why_and_polling_goes_on(nobody_install):
    d = Path(tempfile.mkdtemp(prefix="schedtop-prof-"))  # pytest's tmp_path is not reachable by nobody
    try:
        d.chmod(0o755)
        prof = d / "p.toml"
        prof.write_text('name = "t"\npoll = 30\n[[rule]]\ncomm = "nothing-matches-this"\nnice = 6\n')
        xdg = d / "xdg"
        xdg.mkdir()
        shutil.chown(xdg, "nobody", "nogroup")
        env = {"XDG_STATE_HOME": str(xdg), "SCHEDTOP_STATE_DIR": ""}
        r = schedtop("profile", "apply", str(prof), "--watch", "--duration", "0.5", env=env, prefix=sp.NOBODY,
                     exe=nobody_install.schedtop)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        assert "polling every 30s (needs root" in r.stdout, r.stdout
    finally:
        shutil.rmtree(d, ignore_errors=True)
