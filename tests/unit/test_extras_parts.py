"""The typed parts of Snapshot.extras read every part older recordings carry, field for field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schedtop.model import BpfPart, Extras, KernelCaps, SchedExtPart, StatsPart, to_dict

ROOT = Path(__file__).resolve().parents[1]
RECORDINGS = ("fixtures/session.jsonl", "fixtures/session_6.1.jsonl", "tui/session-bpf.jsonl")


def _recorded_extras(name: str) -> list[dict]:
    out = []
    for line in (ROOT / name).read_text().splitlines():
        rec = json.loads(line)
        if "data" in rec:
            out.append(rec["data"].get("extras", {}))
    return out


@pytest.mark.parametrize("name", RECORDINGS)
def test_recorded_parts_load_whole(name):
    """Each part a recording has loads (none dropped) and gives back every value it recorded."""
    seen = set()
    for extras in _recorded_extras(name):
        parts = Extras.from_json(extras)
        out = to_dict(parts)
        for key, value in extras.items():
            if key == "sched_detail":  # moved to Snapshot.detail (test_model_roundtrip)
                continue
            assert getattr(parts, key) is not None, f"{name}: extras.{key} was dropped"
            seen.add(key)
            if isinstance(value, dict):
                for k, v in value.items():
                    assert out[key][k] == v, f"{name}: extras.{key}.{k}"
            else:
                assert out[key] == value
    if name.endswith("session_6.1.jsonl"):
        assert {"kernel", "bpf", "sched_ext", "scx_stats", "collector"} <= seen


def test_missing_parts_stay_out_of_the_json_form():
    assert to_dict(Extras()) == {}
    caps = KernelCaps(release="6.1.0", fair="CFS", task_slice=False, base_slice=None)
    assert to_dict(Extras(kernel=caps)) == {"kernel": caps.to_dict()}


def test_a_part_that_does_not_parse_is_dropped_not_fatal():
    parts = Extras.from_json({"bpf": {"sample_rate": "many"}, "sched_ext": {"state": "enabled"},
                              "scx_stats": [1, 2], "someone_elses": {"x": 1}})
    assert parts.bpf is None and parts.scx_stats is None
    assert parts.sched_ext == SchedExtPart(state="enabled")


def test_round_trip_through_json():
    parts = Extras(bpf=BpfPart(sample_rate=128, programs={"handle_switch": "tp_btf"}, warnings=("w",)),
                   scx_stats=StatsPart(path="/run/x", ok=True, metrics={"a.b": 3}))
    assert Extras.from_json(json.loads(json.dumps(to_dict(parts)))) == parts
