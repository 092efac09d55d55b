"""The snapshot JSON form: what LiveSource builds survives to_dict -> JSON -> snapshot_from_dict."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from schedtop.collect.live import LiveSource
from schedtop.collect.sched_ext import read_scheduler_info
from schedtop.model import SCHEMA_VERSION, SchemaError, ViewRequest, snapshot_from_dict, to_dict


def test_live_snapshot_round_trip():
    src = LiveSource(use_bpf=False)
    src.collect()
    snap = src.collect()
    back = snapshot_from_dict(json.loads(json.dumps(to_dict(snap))))
    assert back == snap
    folded = src.collect(ViewRequest(threads=False))
    assert snapshot_from_dict(json.loads(json.dumps(to_dict(folded)))) == folded


def test_future_schema_rejected():
    data = to_dict(LiveSource(use_bpf=False).collect())
    data["schema"] = SCHEMA_VERSION + 1
    with pytest.raises(SchemaError, match="newer"):
        snapshot_from_dict(data)


def _sysfs(tmp_path, **files):
    root = tmp_path / "sched_ext"
    for name, text in files.items():
        p = root / name.replace("__", "/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text + "\n")
    root.mkdir(exist_ok=True)
    return str(root)


def test_scheduler_absent(tmp_path):
    info = read_scheduler_info(str(tmp_path / "none"))
    assert (info.kind, info.ext_state, info.label) == ("eevdf", "absent", "EEVDF (fair)")


def test_scheduler_disabled(tmp_path):
    root = _sysfs(tmp_path, state="disabled", switch_all="0", enable_seq="3", nr_rejected="0", hotplug_seq="1")
    info = read_scheduler_info(root)
    assert (info.kind, info.ext_state, info.ops_name, info.enable_seq) == ("eevdf", "disabled", None, 3)
    assert info.label == "EEVDF (fair)"


def test_scheduler_other_ops_with_events(tmp_path):
    root = _sysfs(tmp_path, state="enabled", switch_all="1", enable_seq="4", nr_rejected="2",
                  hotplug_seq="1", root__ops="rustland",
                  root__events="SCX_EV_SELECT_CPU_FALLBACK 7\nSCX_EV_DISPATCH_KEEP_LAST 0")
    info = read_scheduler_info(root)
    assert (info.kind, info.ops_name, info.switch_all, info.nr_rejected) == ("sched_ext", "rustland", True, 2)
    assert info.events == {"SCX_EV_SELECT_CPU_FALLBACK": 7, "SCX_EV_DISPATCH_KEEP_LAST": 0}
    assert info.label == "sched_ext: rustland all"


def test_scheduler_schedtop_partial(tmp_path):
    root = _sysfs(tmp_path, state="enabled", switch_all="0", root__ops="schedtop")
    info = read_scheduler_info(root)
    assert (info.kind, info.switch_all) == ("schedtop", False)
    assert info.label == "sched_ext: schedtop partial"
    # Survives the JSON form like the rest of a snapshot.
    snap = replace(LiveSource(use_bpf=False, sched_ext_root=root).collect(), scheduler=info)
    assert snapshot_from_dict(json.loads(json.dumps(to_dict(snap)))).scheduler == info


def test_old_recordings_detail_moves_from_extras_to_its_part():
    """Recordings made before TaskDetail kept the followed task's /proc sched in
    extras["sched_detail"]; they load with it as Snapshot.detail, and round-trip as that."""
    from pathlib import Path

    from schedtop.collect.replay import load_replay
    from schedtop.model import TaskDetail

    raw = (Path(__file__).parents[1] / "tui" / "session-bpf.jsonl").read_text()
    assert '"sched_detail"' in raw  # the old form, as recorded
    snaps = [s for s in load_replay(str(Path(__file__).parents[1] / "tui" / "session-bpf.jsonl")).snapshots]
    with_detail = [s for s in snaps if s.detail is not None]
    assert with_detail and all("sched_detail" not in to_dict(s.extras) for s in snaps)
    d = with_detail[0].detail
    assert isinstance(d, TaskDetail) and d.tid > 0 and "se.vruntime" in d.fields
    assert snapshot_from_dict(json.loads(json.dumps(to_dict(with_detail[0])))) == with_detail[0]
