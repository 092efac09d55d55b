"""The TUI's pure parts (formatting, layout, config) and its run() entry point's error paths."""

from __future__ import annotations

import argparse
import dataclasses
import os

import pytest
from tuikit import SESSION, run_pilot, wait_for

from schedtop.cli import monitor_parser
from schedtop.collect.replay import load_replay
from schedtop.model import BpfPart, Extras, Histogram, ScxChange
from schedtop.ui.config import Config, ConfigError, check_keymap, load_config
from schedtop.ui.run import known_binding_ids, run
from schedtop.collect.fold import fold_processes
from schedtop.ui.widgets.format import bar, compact_cpus, fmt_ns, matches
from schedtop.ui.widgets.latency import histogram_columns
from schedtop.ui.widgets.task_table import COLUMNS, layout_columns


def test_compact_cpus_like_taskset():
    assert compact_cpus((0, 1)) == "0-1"
    assert compact_cpus((0, 1, 2, 5, 7, 8)) == "0-2,5,7-8"
    assert compact_cpus((3,)) == "3"
    assert compact_cpus(()) == "-"


def test_fmt_ns_units():
    assert fmt_ns(850) == "850ns"
    assert fmt_ns(12_300) == "12.3µs"
    assert fmt_ns(1_400_000) == "1.40ms"
    assert fmt_ns(2_500_000_000) == "2.50s"
    assert fmt_ns(None) == "-"


def test_bar_has_eighth_resolution_and_fixed_width():
    assert bar(0.0, 4) == "    "
    assert bar(1.0, 4) == "████"
    assert bar(0.5, 4) == "██  "
    assert len(bar(0.33, 10)) == 10


def test_filter_matches_comm_or_pid_prefix():
    t = load_replay(SESSION).snapshots[0].tasks[0]
    assert matches(t, t.comm.upper()[:3])
    assert matches(t, str(t.pid)[:3])
    assert not matches(t, "no-such-command")


def test_fold_processes_sums_rates_per_pid():
    tasks = load_replay(SESSION).snapshots[-1].tasks
    folded = fold_processes(tasks)
    assert len(folded) == len({t.pid for t in tasks})
    for row in folded:
        members = [t for t in tasks if t.pid == row.pid]
        assert row.nr_threads == len(members)
        assert row.vol_cs_per_s == pytest.approx(sum(t.vol_cs_per_s for t in members))


@pytest.mark.parametrize("width", [60, 79, 119, 199])
def test_columns_fit_the_width_and_keep_the_essentials(width):
    cols = layout_columns(width, COLUMNS)
    used = sum(w for _, w in cols) + len(cols) - 1
    assert used <= width
    keys = [c.key for c, _ in cols]
    assert {"pid", "comm", "cpu_pct"} <= set(keys)
    if width >= 79:
        assert {"vruntime", "wait", "tid"} <= set(keys)
    order = [c.key for c in COLUMNS]
    assert keys == sorted(keys, key=order.index)  # display order never changes


def test_histogram_columns_scale_to_the_peak():
    h = Histogram(bounds_us=tuple(float(1 << k) for k in range(12)),
                  counts=(0, 1, 4, 8, 2, 0, 0, 0, 0, 0, 1, 0), total=16)
    lines = histogram_columns(h, rows=4, col_w=2)
    assert len(lines) == 5  # 4 chart rows + axis
    assert lines[0][3 * 2] == "█"  # the peak bucket reaches the top row
    assert "1µs" in lines[-1] and "1ms" in lines[-1]


def test_config_file_keymap_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert load_config() == Config()  # no file: defaults
    cfg = tmp_path / "schedtop" / "config.toml"
    cfg.parent.mkdir()
    cfg.write_text('delay = 0.5\ntheme = "nord"\n[keymap]\n"schedtop.pause" = "p"\n')
    c = load_config()
    assert (c.delay, c.theme, dict(c.keymap)) == (0.5, "nord", {"schedtop.pause": "p"})
    check_keymap(c, known_binding_ids(__import__("schedtop.ui.app", fromlist=["SchedtopApp"]).SchedtopApp))
    cfg.write_text("delay = [\n")
    with pytest.raises(ConfigError, match="bad TOML"):
        load_config()
    cfg.write_text("delay = -1\n")
    with pytest.raises(ConfigError, match="delay"):
        load_config()
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="unknown binding id"):
        check_keymap(Config(keymap={"schedtop.nope": "x"}), {"schedtop.pause"})


def _args(*argv: str) -> argparse.Namespace:
    return monitor_parser().parse_args(list(argv))


def test_run_reports_bad_input_in_one_line(tmp_path, capsys):
    bad = tmp_path / "future.jsonl"
    bad.write_text('{"schedtop_replay": 99, "schema": 1}\n')
    assert run(_args("--replay", str(bad))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "newer schedtop" in err
    cfg = tmp_path / "c.toml"
    cfg.write_text('[keymap]\n"schedtop.nope" = "x"\n')
    assert run(_args("--replay", str(SESSION), "--config", str(cfg))) == 2
    assert "unknown binding id" in capsys.readouterr().err
    assert run(_args("--replay", str(SESSION), "--record", str(tmp_path / "r.jsonl"))) == 2
    assert "cannot be used together" in capsys.readouterr().err
    cfg.write_text('theme = "no-such-theme"\n')
    assert run(_args("--replay", str(SESSION), "--config", str(cfg))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown theme 'no-such-theme'" in err


def test_live_session_records_snapshots_and_actions(tmp_path):
    """--record from the TUI: every collected frame and the actions land in a file replay can load."""
    from schedtop.collect.live import LiveSource
    from schedtop.collect.replay import Recorder
    from schedtop.ui.app import SchedtopApp

    out = tmp_path / "s.jsonl"
    src = LiveSource(pids=(os.getpid(),), use_bpf=False, use_debugfs=False)
    rec = Recorder(out)
    app = SchedtopApp(src, delay=0.1, record=rec)

    async def body(pilot):
        await wait_for(pilot, lambda: app.history.frames >= 3)
        app.record_action({"kind": "test", "text": "marker from the UI"})
        await wait_for(pilot, lambda: app.history.frames >= 4)

    try:
        run_pilot(app, body)
    finally:
        rec.close()
        src.close()
    replay = load_replay(out)
    assert len(replay.snapshots) >= 4
    assert [a["text"] for a in replay.actions] == ["marker from the UI"]
    assert any(t.tid == os.getpid() for t in replay.snapshots[-1].tasks)


def test_latency_panel_and_bpf_counters_render():
    """The BPF tier's fields (histogram, per-task percentiles, extras.bpf) reach the screen."""
    from schedtop.collect.replay import Replay, ReplaySource
    from schedtop.ui.app import SchedtopApp
    from schedtop.ui.widgets.latency import LatencyPanel
    from schedtop.ui.widgets.task_table import TaskTable

    base = load_replay(SESSION)
    hist = Histogram(bounds_us=tuple(float(1 << k) for k in range(16)),
                     counts=(3, 9, 30, 12, 4, 2, 1, 0, 0, 0, 5, 7, 2, 0, 0, 1), total=76,
                     p50_us=5.0, p90_us=1500.0, p99_us=4000.0, max_us=40000.0)
    snaps = tuple(
        dataclasses.replace(
            s, latency=dataclasses.replace(hist, p99_us=1000.0 * (i + 1)),
            tasks=tuple(dataclasses.replace(t, lat_p50_us=3.0, lat_p99_us=900.0, lat_max_us=2000.0) for t in s.tasks),
            extras=Extras(bpf=BpfPart(sample_rate=1, dropped=7, events=1234)),
        )
        for i, s in enumerate(base.snapshots)
    )
    app = SchedtopApp(ReplaySource(Replay(base.header, snaps)), delay=1.0, paused=True)

    async def body(pilot):
        await wait_for(pilot, lambda: app.snapshot is not None)
        await pilot.press("full_stop", "full_stop")
        panel = app.query_one(LatencyPanel)
        assert panel.display
        summary = str(panel.query_one("#lat-summary").render())
        assert "p99 3.00ms" in summary and "max 40.0ms" in summary and "n=76" in summary
        assert list(app.history.p99_us) == [1000.0, 2000.0, 3000.0]
        keys = [c.key for c in app.query_one(TaskTable).visible_columns()]
        assert "lat_p99" in keys
        status = str(app.query_one("#status").render())
        assert "dropped=7" in status and "sample_rate=1" in status
        await pilot.resize_terminal(100, 30)
        await wait_for(pilot, lambda: not panel.display)  # too narrow for the histogram

    run_pilot(app, body, size=(160, 40))



def test_every_binding_has_an_id_and_a_tooltip():
    """The keymap remaps by id and the help/palette show tooltips: no binding may lack either."""
    from schedtop.ui.app import SchedtopApp
    from schedtop.ui.screens.detail import DetailScreen
    from schedtop.ui.screens.help import HelpScreen
    from schedtop.ui.screens.main import MainScreen
    from schedtop.ui.screens.queue import QueueScreen
    from schedtop.ui.screens.too_small import TooSmallScreen
    from schedtop.ui.widgets.filter_box import FilterBox
    from schedtop.ui.widgets.task_table import TaskTable

    ids = []
    for cls in (SchedtopApp, MainScreen, TaskTable, FilterBox, HelpScreen, QueueScreen, DetailScreen, TooSmallScreen):
        for b in cls.BINDINGS:
            assert b.id and b.tooltip, f"{cls.__name__}: {b.key} -> {b.action}"
            ids.append(b.id)
    assert len(ids) == len(set(ids)), "binding ids must be unique"
    known = known_binding_ids(SchedtopApp)
    assert set(ids) <= known
    assert any(i.startswith("queue.") for i in known) and "filter.clear" in known


def test_latency_sparkline_marks_scheduler_changes():
    """The main view's p99 trail gets the `x` screen's load/unload marks, under the sample
    the change was seen at; without changes the marks row stays hidden."""
    import asyncio
    from pathlib import Path

    from textual.app import App

    from schedtop.ui.history import History
    from schedtop.ui.widgets.latency import LatencyPanel

    snaps = load_replay(Path(__file__).with_name("session-bpf.jsonl")).snapshots
    hist = History()
    for s in snaps:
        hist.update(s)
    assert len(hist.p99_ts) == len(hist.p99_us) >= 4
    changes = [ScxChange(ts=hist.p99_ts[1] + 0.01, kind="load"), ScxChange(ts=hist.p99_ts[-1], kind="unload")]

    class One(App):
        def compose(self):
            yield LatencyPanel(id="latency")

    async def main():
        app = One()
        async with app.run_test(size=(60, 12)) as pilot:
            panel = app.query_one(LatencyPanel)
            panel.show(snaps[-1].latency, hist.p99_us, hist.p99_ts, ())
            await pilot.pause()
            assert not app.query_one("#lat-marks-row").display
            panel.show(snaps[-1].latency, hist.p99_us, hist.p99_ts, changes)
            await pilot.pause()
            assert app.query_one("#lat-marks-row").display
            text = str(app.query_one("#lat-marks").render())
            n = len(hist.p99_us)
            assert len(text) == n and text[1] == "▲" and text[-1] == "▼"
            assert text.replace("▲", "").replace("▼", "").strip() == ""

    asyncio.run(main())
