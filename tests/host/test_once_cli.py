"""`schedtop --once` as a user runs it: a subprocess, its output parsed back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from schedtop.collect.replay import load_replay
from schedtop.model import SCHEMA_VERSION, snapshot_from_dict

ROOT = Path(__file__).resolve().parents[2]
SESSION = ROOT / "tests" / "fixtures" / "session.jsonl"


def schedtop(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "schedtop", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_once_json_round_trips():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        os.setpriority(os.PRIO_PROCESS, sleeper.pid, 3)
        r = schedtop("--once", "--json", "-d", "0.3", "--no-bpf")
    finally:
        sleeper.kill()
        sleeper.wait()
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["schema"] == SCHEMA_VERSION
    snap = snapshot_from_dict(data)
    assert 0.2 < snap.interval_s < 2
    assert len(snap.cpus) == os.cpu_count()
    row = next(t for t in snap.tasks if t.tid == sleeper.pid)
    assert row.nice == 3 and row.comm.startswith("python")
    assert snap.source in ("procfs", "procfs+debugfs")


def test_once_follow_pid_json():
    r = schedtop("--once", "--json", "-d", "0.2", "--no-bpf", "-p", "1")
    assert r.returncode == 0, r.stderr
    snap = snapshot_from_dict(json.loads(r.stdout))
    assert snap.tasks and {t.pid for t in snap.tasks} == {1}


def test_once_table():
    r = schedtop("--once", "-d", "0.2", "--no-bpf")
    assert r.returncode == 0, r.stderr
    assert "CPUs" in r.stdout and "tasks by CPU%" in r.stdout
    assert "EEVDF" in r.stdout or "sched_ext" in r.stdout


def test_once_record_writes_a_replay(tmp_path):
    out = tmp_path / "once.jsonl"
    r = schedtop("--once", "--json", "-d", "0.2", "--no-bpf", "--record", str(out))
    assert r.returncode == 0, r.stderr
    rep = load_replay(out)
    assert len(rep.snapshots) == 2
    assert rep.snapshots[1] == snapshot_from_dict(json.loads(r.stdout))


def test_once_replay_prints_last_frame():
    r = schedtop("--once", "--json", "--replay", str(SESSION))
    assert r.returncode == 0, r.stderr
    assert snapshot_from_dict(json.loads(r.stdout)).ts == load_replay(SESSION).snapshots[-1].ts


def test_bad_replay_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(SESSION.read_text()[:5000])  # truncated mid-line
    for args in (["--once", "--replay", str(bad)], ["--once", "--replay", str(tmp_path / "missing")]):
        r = schedtop(*args)
        assert r.returncode == 2
        assert r.stdout == ""
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_record_into_missing_dir_is_one_line():
    r = schedtop("--once", "--no-bpf", "--record", "/nonexistent/dir/x.jsonl")
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
