"""Profiles' policy = "ext" and group_nice at load: what they become, and where a kernel without
sched_ext refuses "ext" (file, line, reason) before anything is changed. The live behaviour is in
tests/host/test_profile_group_nice.py (session groups of real children) and
tests/guest/test_profile_ext_guest.py (SCHED_EXT under schedtop's scheduler)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from schedtop.steer import units
from schedtop.steer.actions import SteerError, Tuning, check_tuning, sched_ext_available
from schedtop.steer.profiles import ProfileError, builtin_names, load, parse

ROOT = Path(__file__).resolve().parents[2]
NO_EXT = sched_ext_available() is False  # this host (6.18, no CONFIG_SCHED_CLASS_EXT); not the guest

EXT_PROFILE = ('name = "e"\n'
               '[[rule]]\n'
               'name = "keep"\n'
               'comm = "b"\n'
               'nice = 3\n'
               '[[rule]]\n'
               'name = "into ext"\n'
               'comm = "a"\n'
               'policy = "ext"\n'
               'nice = -2\n'
               'affinity = "0"\n'
               'group_nice = -10\n')


def test_ext_and_group_nice_parse_into_one_tuning():
    prof = parse(EXT_PROFILE)  # a pure check of the file: no kernel judged
    r = prof.rules[1]
    assert r.tuning == Tuning(policy=units.SCHED_EXT, nice=-2, affinity=(0,), group_nice=-10)
    assert r.tuning.group_target() == -10 and prof.uses_ext
    assert prof.describe()[2] == "  into ext: comm a -> EXT, nice -2, pin 0, session group nice -10"
    assert not parse('[[rule]]\ncomm = "a"\nnice = 1\n').uses_ext


def test_group_nice_alone_is_a_change_and_is_not_the_thread_nice():
    t = parse('[[rule]]\ncomm = "a"\ngroup_nice = -7\n').rules[0].tuning
    assert t.group_nice == -7 and t.nice is None and not t.is_empty()
    assert t.describe() == "session group nice -7"
    # the fair boost's form (--group): the group gets the thread nice
    assert Tuning(nice=-10, group=True).group_target() == -10 and Tuning(nice=-10).group_target() is None
    with pytest.raises(SteerError, match="session group nice 20 is out of range: -20..19"):
        check_tuning(Tuning(group_nice=20))  # for callers that build a Tuning themselves


@pytest.mark.skipif(not NO_EXT, reason="this kernel has sched_ext: the guest test loads such a profile")
def test_ext_profile_is_refused_at_load_on_a_kernel_without_sched_ext(tmp_path):
    f = tmp_path / "ext.toml"
    f.write_text(EXT_PROFILE)
    with pytest.raises(ProfileError) as exc:
        load(f)
    assert str(exc.value) == (f'{f}:9: policy "ext" needs a kernel with sched_ext (CONFIG_SCHED_CLASS_EXT); '
                              "this kernel has none (no /sys/kernel/sched_ext)")
    assert load(f, here=False).uses_ext  # describing it (profile list) still works
    exe = [sys.executable, "-m", "schedtop", "profile"]
    for args in (["check", str(f)], ["apply", str(f)]):
        r = subprocess.run([*exe, *args], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 1 and r.stdout == "", (args, r.stdout)
        assert r.stderr == f"schedtop: {exc.value}\n", (args, r.stderr)
    # the TUI's --profile: the same line, exit 2, before any screen or change
    r = subprocess.run([sys.executable, "-m", "schedtop", "--profile", str(f), "--no-bpf"], capture_output=True,
                       text=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL,
                       env={**os.environ, "SCHEDTOP_STATE_DIR": str(tmp_path / "state")})
    assert r.returncode == 2 and f"schedtop: {exc.value}" in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_profile_list_still_lists_every_shipped_profile():
    r = subprocess.run([sys.executable, "-m", "schedtop", "profile", "list"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "Traceback" not in r.stderr
    assert [line.split()[0] for line in r.stdout.splitlines()] == builtin_names()


def test_shipped_profiles_give_session_groups_their_nice():
    daemons = next(r for r in load("audio").rules if r.label == "audio daemons")
    assert (daemons.tuning.nice, daemons.tuning.group_nice) == (-11, -11)
    gaming = {r.label: r.tuning for r in load("gaming").rules}
    assert (gaming["games"].group_nice, gaming["builds"].group_nice) == (-5, 10)
