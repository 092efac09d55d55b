"""Profiles: shipped examples load, bad ones are rejected with file, line and reason, matching
follows the documented rules, and live application reaches tasks started later."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from schedtop.steer import units
from schedtop.steer.journal import Journal, ensure_dir
from schedtop.steer.profiles import ProfileError, ProfileRunner, builtin_names, load, parse

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_profiles_load_and_are_package_data():
    assert {"audio", "gaming"} <= set(builtin_names())
    audio = load("audio")
    assert audio.path.endswith("schedtop/steer/profiles/audio.toml")
    fifo = [r for r in audio.rules if r.tuning.policy == units.SCHED_FIFO]
    assert fifo and all(r.tuning.rt_priority == 88 for r in fifo)
    gaming = load("gaming")
    assert all(r.tuning.policy not in units.RT_POLICIES for r in gaming.rules)


BAD = [
    ('name = "x"\n[[rule]]\ncomm = "a"\npolicy = "fifo"\npriority = 120\n', 5, "RT priority 120 is out of range: 1..99"),
    ('name = "x"\n[[rule]]\ncomm = "a"\nnice = -30\n', 4, "nice -30 is out of range: -20..19"),
    ('[[rule]]\ncomm = "a"\n\nslice = "50us"\n', 4, "out of range: EEVDF allows 0.1ms..100ms"),
    ('[[rule]]\ncomm = "a"\npolicy = "realtime"\n', 3, "bad policy 'realtime'"),
    ('[[rule]]\ncomm = "a"\nnice = 1\n[[rule]]\ncomm = "b"\ncolour = "red"\n', 6, "unknown key 'colour' in rule 2"),
    ('[[rule]]\nnice = 1\n', 1, "matches everything"),
    ('[[rule]]\ncomm = "a"\n', 1, "changes nothing"),
    ('[[rule]]\ncomm = "a"\npolicy = "fifo"\nslice = "1ms"\n', 4, "not to fifo/rr"),
    ('[[rule]]\ncomm = "a"\nnice = 1\npriority = 5\n', 4, "priority needs policy"),
    ('[[rule]]\ncomm = "a"\naffinity = "x"\n', 3, "bad CPU list"),
    ('name = "x"\n[[rule]\ncomm = "a"\n', 2, "TOML syntax"),
    ('name = "x"\n', 1, "at least one [[rule]]"),
    ('name = "x"\nspeed = 3\n[[rule]]\ncomm="a"\nnice=1\n', 2, "unknown key 'speed'"),
    ('poll = 0\n[[rule]]\ncomm="a"\nnice=1\n', 1, "poll must be seconds"),
    ('[[rule]]\ncomm = []\nnice=1\n', 2, "comm must be a glob string or a list"),
    ('[[rule]]\ncomm = "a"\nnice = 1\ngroup_nice = 25\n', 4, "group_nice 25 is out of range: -20..19"),
    ('[[rule]]\ncomm = "a"\ngroup_nice = -21\n', 3, "group_nice -21 is out of range: -20..19"),
    ('[[rule]]\ncomm = "a"\ngroup_nice = "-5"\n', 3, "group_nice must be an integer -20..19"),
    ('[[rule]]\ncomm = "a"\ngroup_nice = true\n', 3, "group_nice must be an integer -20..19"),
    ('[[rule]]\ncomm = "a"\npolicy = "ext"\npriority = 88\n', 4, "priority is for fifo/rr: under policy \"ext\""),
    ('[[rule]]\ncomm = "a"\npolicy = "ext"\nslice = "1ms"\n', 4, "slice is the EEVDF slice: under policy \"ext\""),
    ('[[rule]]\ncomm = "a"\npolicy = "extra"\n', 3, "use one of other, batch, idle, fifo, rr, ext"),
]


@pytest.mark.parametrize("text,line,reason", BAD, ids=[b[2][:24] for b in BAD])
def test_bad_profile_names_file_line_and_reason(tmp_path, text, line, reason):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ProfileError) as exc:
        load(f)
    msg = str(exc.value)
    assert msg.startswith(f"{f}:{line}: "), msg
    assert reason in msg


def test_profile_check_cli_exit_codes(tmp_path):
    exe = [sys.executable, "-m", "schedtop", "profile", "check"]
    ok = subprocess.run([*exe, "audio"], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0 and "audio.toml: OK" in ok.stdout
    f = tmp_path / "p.toml"
    f.write_text('[[rule]]\ncomm = "a"\npolicy = "fifo"\npriority = 0\n')
    bad = subprocess.run([*exe, str(f)], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 1 and bad.stderr.strip() == f"schedtop: {f}:4: RT priority 0 is out of range: 1..99"
    missing = subprocess.run([*exe, str(tmp_path / "nope.toml")], capture_output=True, text=True, cwd=ROOT)
    assert missing.returncode == 1 and "cannot read" in missing.stderr and "Traceback" not in missing.stderr


def test_matching_rules_first_match_wins():
    prof = parse('[[rule]]\ncomm = "pw*"\nthread = "data-loop*"\npolicy = "fifo"\n'
                 '[[rule]]\ncomm = ["pw*", "wp"]\nnice = -11\n'
                 '[[rule]]\nexe = "/usr/bin/game*"\nslice = "1ms"\n'
                 '[[rule]]\ncgroup = "*/build.slice*"\npolicy = "batch"\n')
    r = ProfileRunner(prof, journal=None)  # matching only
    assert r.match("pw", "data-loop.0", "", "").index == 0
    assert r.match("pw", "pw", "", "").index == 1
    assert r.match("wp", "data-loop.0", "", "").index == 1
    assert r.match("x", "x", "/usr/bin/game-x", "").index == 2
    assert r.match("x", "x", "/bin/x", "0::/user.slice/build.slice/make\n").index == 3
    assert r.match("x", "x", "/bin/x", "0::/user.slice\n") is None


def _nice(pid, tid=None):
    with open(f"/proc/{pid}/task/{tid or pid}/stat", "rb") as f:  # a comm may be any bytes
        return int(f.read().rsplit(b")", 1)[1].split()[16])


@pytest.mark.root
def test_live_application_reaches_tasks_started_later(tmp_path):
    tag = "p" + uuid.uuid4().hex[:6]
    prof = parse(f'name = "t"\n[[rule]]\ncomm = "{tag}*"\nthread = "{tag}*"\nnice = 6\n')
    j = Journal.session(ensure_dir(tmp_path / "st"))
    runner = ProfileRunner(prof, j)
    code = ("import ctypes,sys,time; ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0);"
            "print('ok', flush=True); time.sleep(300)")
    first = subprocess.Popen([sys.executable, "-c", code, f"{tag}a"], stdout=subprocess.PIPE, text=True)
    late = None
    try:
        first.stdout.readline()
        runner.poll()
        assert _nice(first.pid) == 6
        late = subprocess.Popen([sys.executable, "-c", code, f"{tag}b"], stdout=subprocess.PIPE, text=True)
        late.stdout.readline()
        assert _nice(late.pid) == 0
        reps = runner.poll()  # a task started after the profile was applied
        assert _nice(late.pid) == 6 and sum(r.changed for r in reps) == 1
        assert runner.poll() == []  # nothing new: no journal churn
        assert len(j) == 2
        j.restore_all()
        assert (_nice(first.pid), _nice(late.pid)) == (0, 0)
    finally:
        for p in (first, late):
            if p is not None:
                p.kill()
                p.wait()


@pytest.mark.root
def test_a_name_that_is_not_utf8_is_matched_not_fatal(tmp_path):
    """Any user may name a process with bytes that are not UTF-8 (prctl PR_SET_NAME): the poll
    reads it with a replacement character, matches it and tunes it, instead of raising."""
    tag = "u" + uuid.uuid4().hex[:6]
    prof = parse(f'name = "t"\n[[rule]]\ncomm = "{tag}*"\nthread = "{tag}*"\nnice = 4\n')
    j = Journal.session(ensure_dir(tmp_path / "st"))
    runner = ProfileRunner(prof, j)
    code = ("import ctypes,sys,time; ctypes.CDLL(None).prctl(15, sys.argv[1].encode() + b'\\xff\\xfe', 0, 0, 0);"
            "print('ok', flush=True); time.sleep(300)")
    p = subprocess.Popen([sys.executable, "-c", code, tag], stdout=subprocess.PIPE, text=True)
    try:
        p.stdout.readline()
        with open(f"/proc/{p.pid}/comm", "rb") as f:
            assert f.read().rstrip(b"\n") == tag.encode() + b"\xff\xfe"
        reps = runner.poll()
        assert _nice(p.pid) == 4 and sum(r.changed for r in reps) == 1
        j.restore_all()
        assert _nice(p.pid) == 0
    finally:
        p.kill()
        p.wait()
