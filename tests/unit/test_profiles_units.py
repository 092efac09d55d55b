"""The value parsers shared by `schedtop set`, profiles and the TUI (pure, property-tested)."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from schedtop.steer import units


@given(st.sets(st.integers(0, 255), min_size=1))
def test_cpulist_round_trips(cpus):
    text = units.format_cpulist(cpus)
    assert units.parse_cpulist(text, check=False) == tuple(sorted(cpus))
    assert units.format_cpulist(units.parse_cpulist(text, check=False)) == text


@given(st.integers(units.SLICE_MIN_NS // 1000, units.SLICE_MAX_NS // 1000))
def test_slice_in_range_parses_in_any_unit(us):
    assert units.parse_slice(f"{us}us") == us * 1000
    assert units.parse_slice(str(us * 1000)) == us * 1000  # bare number: ns, like chrt -T


@given(st.one_of(st.integers(1, units.SLICE_MIN_NS - 1), st.integers(units.SLICE_MAX_NS + 1, 10**12)))
def test_slice_out_of_range_is_refused_with_the_range(ns):
    with pytest.raises(ValueError, match=r"0\.1ms\.\.100ms"):
        units.parse_slice(f"{ns}ns")


@pytest.mark.parametrize("text,ns", [("3ms", 3_000_000), ("0.5ms", 500_000), ("1.5 ms", 1_500_000),
                                     ("100us", 100_000), ("default", 0), ("0", 0), ("0.1s", 100_000_000)])
def test_slice_examples(text, ns):
    assert units.parse_slice(text) == ns


@pytest.mark.parametrize("bad", ["", "x", "1-", "3-1", "0,,a", "-1"])
def test_bad_cpulists(bad):
    with pytest.raises(ValueError):
        units.parse_cpulist(bad, check=False)


def test_policy_names_and_ranges():
    assert units.parse_policy("FIFO") == units.SCHED_FIFO and units.parse_policy("normal") == 0
    with pytest.raises(ValueError, match="other, batch, idle, fifo, rr"):
        units.parse_policy("deadline")
    with pytest.raises(ValueError, match="-20..19"):
        units.check_nice(20)
    with pytest.raises(ValueError, match="1..99"):
        units.check_rt_priority(0)
