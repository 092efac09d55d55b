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


def test_pids_as_a_comma_list_and_bad_pids_refused():
    r = schedtop("--once", "--json", "-d", "0.2", "--no-bpf", "-p", f"1,{os.getpid()}")
    assert r.returncode == 0, r.stderr
    assert {t["pid"] for t in json.loads(r.stdout)["tasks"]} == {1, os.getpid()}
    for bad in ("-5", "1,x", ","):
        r = schedtop("--once", "-p", bad)
        assert r.returncode == 2 and "pid" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_config_delay_unless_d_and_a_missing_config_refused(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("delay = 0.3\n")
    r = schedtop("--once", "--json", "--no-bpf", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert 0.25 < json.loads(r.stdout)["interval_s"] < 0.9  # the config's 0.3 s
    r = schedtop("--once", "--json", "--no-bpf", "--config", str(cfg), "-d", "1")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["interval_s"] >= 0.95  # -d 1 given: it wins, even though 1 is the default
    r = schedtop("--once", "--config", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "config file not found" in r.stderr and not r.stdout


def test_a_bad_profile_is_refused_before_the_terminal_is_taken(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\ncomm = "x"\nnice = 99\n')
    r = schedtop("--profile", str(bad), "--no-bpf", timeout=30)
    assert r.returncode == 2 and f"{bad}:" in r.stderr and "nice" in r.stderr, r.stderr
    assert "\x1b[" not in r.stdout + r.stderr  # no alternate screen, no escape codes
