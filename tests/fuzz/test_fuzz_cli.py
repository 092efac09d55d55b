"""The command line, fuzzed through the real argparse front end (cli.parse: every option's
bounds are checked there, nothing is run), then a sample as real subprocesses.

Every argv ends in either parsed arguments within their documented bounds, or exit 2 with
argparse's one-line "prog: error: ..." (never a traceback)."""

from __future__ import annotations

import math

import pytest
from bounded import assert_one_line_error, run_bounded
from fuzzing import fuzz
from hypothesis import example, given
from hypothesis import strategies as st

from schedtop import cli

HOSTILE = st.one_of(
    st.sampled_from(["", "-1", "0", "1", "inf", "nan", "1e12", "0.00001", "3", "3ms", "0-999999999999",
                     "/dev/zero", "/dev/full", "/nonexistent.sock", "nosuch", "abc", "--", "-", "all", "1,2"]),
    st.text(max_size=12).filter(lambda t: not t.startswith("-")),
    st.integers(-(10**20), 10**20).map(str),
)

OPTIONS = {
    "": ["-d", "--delay", "-p", "--pid", "--once", "--json", "--record", "--replay", "--no-bpf", "--profile",
         "--keep", "--config", "-v"],
    "set": ["--slice", "--pin", "--cpus", "--nice", "--fifo", "--rr", "--batch", "--idle", "--other", "--ext",
            "-a", "--threads", "--tree", "--name", "--base-slice", "--group", "-q"],
    "profile": ["check", "apply", "list", "--watch", "--keep", "--interval", "--duration", "--no-exec-hook", "-q"],
    "trace": ["-o", "--output", "-t", "--time", "--sample", "--stats", "-v"],
    "restore": ["--list", "-q"],
}


@st.composite
def argvs(draw):
    sub = draw(st.sampled_from(sorted(OPTIONS)))
    words = draw(st.lists(st.one_of(st.sampled_from(OPTIONS[sub]), HOSTILE), max_size=8))
    return ([sub] if sub else []) + words


def _parse(argv, capsys):
    """(args, None) or (None, the one error line); asserts the exit was argparse's."""
    try:
        _, args = cli.parse(argv)
    except SystemExit as exc:
        err = capsys.readouterr().err
        assert exc.code == 2, (argv, exc.code, err)
        assert "Traceback" not in err
        lines = [ln for ln in err.strip().splitlines() if not ln.startswith(("usage:", " "))]
        assert len(lines) == 1 and ": error: " in lines[0], (argv, err)
        return None, lines[0]
    return args, None


def _bounded(argv, args):
    """What every accepted argv promises (the bounds --help documents)."""
    if not argv or argv[0] not in cli.SUBCOMMANDS:
        assert args.delay is None or 0.1 <= args.delay <= 3600
        assert not (args.json and not args.once) and not (args.once and args.profile)
        assert not (args.record and args.replay)
        assert args.replay is None or args.replay.strip()
    elif argv[0] == "trace":
        assert math.isfinite(args.time) and 0.01 <= args.time <= 86400
        assert args.output.strip() and 1 <= args.sample <= 1_000_000
    elif argv[0] == "profile" and args.action == "apply":
        assert args.interval is None or 0.1 <= args.interval <= 3600
        assert args.duration is None or 0.1 <= args.duration <= 604800
        assert args.watch or (args.duration is None and args.interval is None and not args.keep)
    elif argv[0] == "set":
        assert args.pin is None or all(0 <= c < 8192 for c in args.pin)
        assert args.slice is None or args.slice == 0 or 100_000 <= args.slice <= 100_000_000


@fuzz(250)
@given(argv=argvs())
@example(argv=["trace", "-o", "x", "-t", "1e12"])
@example(argv=["trace", "-o", "x", "-t", "inf"])
@example(argv=["trace", "-o", "x", "-t", "nan"])
@example(argv=["trace", "-o", "x", "-t", "0"])
@example(argv=["trace", "-o", "x", "-t", "-1"])
@example(argv=["trace", "-o", "", "-t", "1"])
@example(argv=["-d", "inf"])
@example(argv=["-d", "0.00001"])
@example(argv=["profile", "apply", "audio", "--interval", "-1"])
@example(argv=["profile", "apply", "audio", "--interval", "0"])
@example(argv=["profile", "apply", "audio", "--duration", "5"])
@example(argv=["--once", "--profile", "nosuch"])
@example(argv=["set", "1", "--slice", "3"])
@example(argv=["set", "1", "--pin", "0-999999999999"])
def test_any_argv_parses_within_bounds_or_is_one_usage_error(argv, capsys):
    args, err = _parse(argv, capsys)
    if args is not None:
        _bounded(argv, args)


# The issue's command lines, as a user runs them: a child process, its stderr read back.
SAMPLE = [
    (["trace", "-o", "/tmp/x.trace", "-t", "1e12"], ["-t", "0.01..86400"]),
    (["trace", "-o", "/tmp/x.trace", "-t", "nan"], ["'nan'", "0.01..86400"]),
    (["trace", "-o", "", "-t", "1"], ["-o", "needs a file name"]),
    (["-d", "inf", "--once"], ["-d", "0.1..3600"]),
    (["--once", "--profile", "nosuch"], ["--profile", "profile apply"]),
    (["profile", "apply", "audio", "--interval", "0"], ["--interval", "0.1..3600"]),
    (["profile", "apply", "audio", "--duration", "5"], ["--duration needs --watch"]),
    (["set", "1", "--slice", "3"], ["--slice", "a bare number is ns", "3ms"]),
    (["--once", "--replay", ""], ["--replay needs a file name"]),
]


@pytest.mark.parametrize("argv,needles", SAMPLE, ids=[" ".join(a) or "''" for a, _ in SAMPLE])
def test_the_issues_command_lines_as_subprocesses(argv, needles):
    assert_one_line_error(run_bounded(argv, timeout=60), *needles)
