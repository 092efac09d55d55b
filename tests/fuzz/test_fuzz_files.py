"""Profiles and the config, fuzzed as text and as TOML structures: a Profile/Config, or the
loader's error as one line that names the file (and the line, where the file has one)."""

from __future__ import annotations

import json
import math

from fuzzing import fuzz, one_line
from hypothesis import example, given
from hypothesis import strategies as st

from schedtop.steer.profiles import RULE_KEYS, TOP_KEYS, ProfileError, parse
from schedtop.ui.config import ConfigError, load_config, parse_config

SCALARS = st.one_of(st.integers(-(10**30), 10**30), st.floats(), st.booleans(), st.text(max_size=12),
                    st.sampled_from(["fifo", "ext", "0-9999999999", "3ms", "3", "*", "abc", "default", "all"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=8)


def toml_value(v) -> str:
    """A TOML literal for v (inline tables and arrays; nan/inf as TOML spells them)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string (\\uXXXX escapes included)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


@st.composite
def profile_texts(draw):
    lines = [f"{k} = {toml_value(draw(VALUES))}" for k in draw(st.lists(st.sampled_from(TOP_KEYS[:3]), max_size=2, unique=True))]
    for _ in range(draw(st.integers(0, 3))):
        lines.append("[[rule]]")
        for k in draw(st.lists(st.sampled_from(RULE_KEYS + ("bogus",)), max_size=5, unique=True)):
            lines.append(f"{k} = {toml_value(draw(VALUES))}")
    return "\n".join(lines) + "\n"


def _check_profile(text: str) -> None:
    try:
        prof = parse(text, "fuzz.toml", has_ext=False)
    except ProfileError as exc:
        one_line(str(exc))
        assert str(exc).startswith("fuzz.toml"), str(exc)
        return
    assert prof.rules and 0.1 <= prof.poll_s <= 3600
    for r in prof.rules:
        t = r.tuning
        assert t.nice is None or -20 <= t.nice <= 19
        assert t.rt_priority is None or 1 <= t.rt_priority <= 99
        assert t.affinity is None or all(0 <= c < 8192 for c in t.affinity)
        assert t.slice_ns is None or t.slice_ns == 0 or 100_000 <= t.slice_ns <= 100_000_000


@fuzz(120)
@given(profile_texts())
@example('name = "x"\nrule = [1, 2]\n')
@example('name = "x"\n[[rule]]\ncomm = "a"\nnice = "abc"\n')
@example('name = "x"\n[[rule]]\ncomm = "a"\naffinity = "0-9999999999"\n')
@example("x = " + "[" * 3000 + "]" * 3000 + "\n")
@example("x = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n")
@example('name = "x"\npoll = nan\n[[rule]]\ncomm = "a"\nnice = 1\n')
def test_structured_profiles(text):
    _check_profile(text)


@fuzz(200)
@given(st.lists(st.sampled_from([*'[]{}="\'#\n =,.abc1-*', "[[rule]]\n", "nice", "comm", '"""', "'''"]),
                max_size=60).map("".join))
def test_profile_text_soup(text):
    _check_profile(text)


@fuzz(150)
@given(st.dictionaries(st.sampled_from(["delay", "theme", "keymap", "x"]), VALUES, max_size=3))
@example({"delay": float("nan")})
@example({"delay": float("inf")})
@example({"delay": 0.00001})
@example({"keymap": [1]})
def test_config_structures(data):
    try:
        c = parse_config(data)
    except ConfigError as exc:
        one_line(str(exc))
        return
    assert c.delay is None or 0.1 <= c.delay <= 3600


@fuzz(150)
@given(st.binary(max_size=200))
@example(b"delay = nan\n")
@example(b"\xff\xfe")
@example(b"x = " + b"[" * 5000 + b"]" * 5000)
def test_config_bytes(tmp_path_factory, raw):
    f = tmp_path_factory.mktemp("cfg") / "c.toml"
    f.write_bytes(raw)
    try:
        load_config(f)
    except ConfigError as exc:
        one_line(str(exc), str(f))
