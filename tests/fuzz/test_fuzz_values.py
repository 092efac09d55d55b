"""Values people type: CPU lists, slices, durations, policies, nice and RT priorities.

Used by `set`, profiles and the TUI's dialogs (the `a` pin dialog calls parse_cpulist, the
`Y` dialog check_rt_priority on its 2-digit field)."""

from __future__ import annotations

import argparse
import math

import pytest
from fuzzing import fuzz, one_line
from hypothesis import example, given
from hypothesis import strategies as st

from schedtop.cli import seconds_in
from schedtop.steer import units

CPU_CHARS = st.text(alphabet="0123456789-, \tall9", max_size=40)
CPU_LIKE = st.lists(st.one_of(st.integers(0, 10**25).map(str),
                              st.tuples(st.integers(0, 10**13), st.integers(0, 10**13)).map(lambda t: f"{t[0]}-{t[1]}")),
                    min_size=1, max_size=6).map(",".join)


@fuzz(300)
@given(st.one_of(st.text(max_size=60), CPU_CHARS, CPU_LIKE), st.booleans())
@example("0-99999999999999999999", True)
@example("0-999999999999", True)
@example("0-9999999999", False)
@example("9" * 5000, False)
@example("٣", False)  # an Arabic-Indic 3: \d in Python's re, not a CPU number
def test_cpulists_are_bounded_or_refused(text, check):
    try:
        cpus = units.parse_cpulist(text, check=check)
    except ValueError as exc:
        one_line(str(exc))
        return
    limit = max(units.possible_cpus()) if check else units.MAX_CPUS - 1
    assert cpus and all(isinstance(c, int) and 0 <= c <= limit for c in cpus)
    assert list(cpus) == sorted(set(cpus))
    if check:
        assert set(cpus) <= set(units.online_cpus())


@fuzz(300)
@given(st.one_of(st.text(max_size=40), st.from_regex(r"\A[0-9]{0,30}(\.[0-9]{0,30})?\s?(ns|us|µs|ms|s)?\Z"),
                 st.integers(-(10**30), 10**30), st.floats(allow_nan=True, allow_infinity=True)))
@example("3")
@example("1e400")
@example(10**5000)
@example(float("inf"))
def test_slices_are_in_the_eevdf_range_or_refused(value):
    try:
        ns = units.parse_slice(value)
    except ValueError as exc:
        one_line(str(exc))
        return
    assert ns == 0 or units.SLICE_MIN_NS <= ns <= units.SLICE_MAX_NS


@fuzz(200)
@given(st.one_of(st.integers(-(10**40), 10**40), st.text(max_size=20), st.floats(), st.none(), st.booleans(),
                 st.lists(st.integers(), max_size=3)))
@example("abc")
@example(10**5000)
def test_nice_and_rt_priority_checks(value):
    for check, lo, hi in ((units.check_nice, -20, 19), (units.check_rt_priority, 1, 99)):
        try:
            v = check(value)
        except ValueError as exc:
            one_line(str(exc))
            number = isinstance(value, int) and not isinstance(value, bool)
            assert ("out of range" in str(exc)) == number, str(exc)  # "abc" is not a number
            continue
        assert isinstance(v, int) and lo <= v <= hi


@fuzz(100)
@given(st.text(max_size=20))
def test_policy_names(text):
    try:
        p = units.parse_policy(text)
    except ValueError as exc:
        one_line(str(exc), "other, batch, idle, fifo, rr")
        return
    assert p in units.POLICY_NAME


@fuzz(300)
@given(st.one_of(st.text(max_size=30), st.floats().map(repr), st.integers(-(10**30), 10**30).map(str)),
       st.sampled_from([(0.1, 3600.0), (0.01, 86400.0), (0.1, 604800.0)]))
@example("inf", (0.1, 3600.0))
@example("nan", (0.01, 86400.0))
@example("1e12", (0.01, 86400.0))
@example("0", (0.01, 86400.0))
@example("-1", (0.1, 3600.0))
@example("0.00001", (0.1, 3600.0))
def test_durations_are_finite_and_in_range(text, bounds):
    conv = seconds_in(*bounds)
    try:
        v = conv(text)
    except argparse.ArgumentTypeError as exc:
        one_line(str(exc))
        return
    assert math.isfinite(v) and bounds[0] <= v <= bounds[1]


@pytest.mark.parametrize("typed", ["1", "99", "0", "00", "", "9"])
def test_the_policy_dialogs_priority_field(typed):
    """The `Y` dialog's field takes [0-9]{0,2}: every value it can hold is checked alike."""
    try:
        assert 1 <= units.check_rt_priority(int(typed or "0")) <= 99
    except ValueError as exc:
        one_line(str(exc), "1..99")
