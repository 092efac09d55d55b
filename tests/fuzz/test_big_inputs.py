"""The issue's unbounded inputs, each in a child with 1 GiB of address space and a deadline:
before the fixes these grew to GBs (MemoryError tracebacks under the limit) or never ended."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from bounded import assert_one_line_error, run_bounded

SESSION = Path(__file__).resolve().parents[1] / "fixtures" / "session.jsonl"

CPULIST = """
import sys
from schedtop.steer import units
for check in (True, False):
    for text in sys.argv[1:]:
        try:
            units.parse_cpulist(text, check=check)
        except ValueError as exc:
            print(exc)
        else:
            raise SystemExit(f"accepted {text[:40]!r}")
"""


def test_huge_cpu_lists_are_refused_in_bounded_memory():
    texts = ["0-99999999999999999999", "0-999999999999", "0-9999999999", "9" * 100_000, "0-" + "9" * 5000]
    r = run_bounded([], code=CPULIST.replace("sys.argv[1:]", repr(texts)), timeout=60)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-1000:]
    lines = r.stdout.splitlines()
    assert len(lines) == 2 * len(texts) and all("does not exist" in ln or "too long" in ln for ln in lines), lines


def test_set_pin_huge_is_one_line():
    r = run_bounded(["set", str(os.getpid()), "--pin", "0-999999999999"])
    assert_one_line_error(r, "--pin", "does not exist")


def test_profile_affinity_huge_is_one_line(tmp_path):
    f = tmp_path / "aff.toml"
    f.write_text('name = "x"\n[[rule]]\ncomm = "nothing-matches-this"\naffinity = "0-9999999999"\n')
    assert_one_line_error(run_bounded(["profile", "check", str(f)]), f"{f}:4:", "does not exist")


@pytest.mark.parametrize("argv", [["profile", "apply", "/dev/zero"], ["profile", "check", "/dev/zero"],
                                  ["--once", "--replay", "/dev/zero"], ["--once", "--config", "/dev/zero", "--no-bpf"]])
def test_dev_zero_is_refused_not_read(argv):
    assert_one_line_error(run_bounded(argv, timeout=60), "/dev/zero", "not a regular file")


def test_a_fifo_replay_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "s.jsonl"
    os.mkfifo(fifo)
    assert_one_line_error(run_bounded(["--once", "--replay", str(fifo)], timeout=60), str(fifo), "not a regular file")


def test_a_profile_with_200000_globs_is_refused_at_once(tmp_path):
    f = tmp_path / "globs.toml"
    # 200 000 globs in under 1 MiB (the size cap would refuse the file otherwise).
    f.write_text('name = "g"\n[[rule]]\nnice = 1\ncomm = [' + ",".join(['"a*"'] * 200_000) + "]\n")
    assert f.stat().st_size < (1 << 20)
    assert_one_line_error(run_bounded(["profile", "check", str(f)], timeout=60), f"{f}:", "at most 1000")


@pytest.mark.parametrize("depth", [3000, 5000, 100_000])
def test_deep_nesting_is_refused_in_profile_and_config(tmp_path, depth):
    f = tmp_path / "deep.toml"
    f.write_text("x = " + "[" * depth + "]" * depth + "\n")
    assert_one_line_error(run_bounded(["profile", "check", str(f)]), f"{f}:1:", "nested over")
    assert_one_line_error(run_bounded(["--once", "--no-bpf", "--config", str(f)]), f"{f}:1:", "nested over")


def test_once_replay_prints_the_replays_data_not_live():
    r = run_bounded(["--once", "--json", "--replay", str(SESSION)])
    assert r.returncode == 0, r.stderr
    import json

    from schedtop.collect.replay import load_replay

    last = load_replay(SESSION).snapshots[-1]
    got = json.loads(r.stdout)
    assert (got["host"], got["kernel"], got["ts"]) == (last.host, last.kernel, last.ts)
    assert len(got["tasks"]) == len(last.tasks)  # the recording's tasks, not this machine's


@pytest.mark.skipif(os.geteuid() != 0, reason="trace records as root")
def test_trace_into_dev_full_is_a_message_not_a_traceback():
    r = _trace(["-o", "/dev/full", "-t", "0.2"])
    assert_one_line_error_lines = [ln for ln in r.stderr.splitlines() if "recording for" not in ln]
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert assert_one_line_error_lines == ["schedtop trace: recording failed: /dev/full: No space left on device"], r.stderr




def test_once_record_through_a_planted_symlink_is_refused(tmp_path):
    target = tmp_path / "root-owned"
    target.write_text("precious\n")
    link = tmp_path / "x.jsonl"
    link.symlink_to(target)
    r = run_bounded(["--once", "--no-bpf", "-d", "0.1", "--record", str(link)])
    assert_one_line_error(r, str(link), "symbolic link")
    assert target.read_text() == "precious\n"


def _trace(argv: list[str]):
    r = run_bounded(["trace", *argv], timeout=120)
    if "BPF tier" in r.stderr:
        pytest.skip(r.stderr.strip())
    return r


@pytest.mark.skipif(os.geteuid() != 0, reason="trace records as root")
def test_trace_through_a_planted_symlink_is_refused(tmp_path):
    target = tmp_path / "root-owned"
    target.write_text("precious\n")
    link = tmp_path / "x.perfetto-trace"
    link.symlink_to(target)
    assert_one_line_error(_trace(["-o", str(link), "-t", "0.1"]), str(link), "symbolic link")
    assert target.read_text() == "precious\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="trace records as root")
def test_trace_stats_socket_that_is_not_there_claims_no_counters(tmp_path):
    r = _trace(["-o", str(tmp_path / "x.perfetto-trace"), "-t", "0.1", "--stats", "/nonexistent.sock"])
    assert_one_line_error(r, "--stats /nonexistent.sock", "no scx_stats there")
    assert "with schedtop scx counters" not in r.stderr and not (tmp_path / "x.perfetto-trace").exists()
