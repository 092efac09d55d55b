"""MangoHud log parsing on fixture files (one real vkcube log from MangoHud 0.6.8 on this
project's machine) and hostile ones; the statistics' definitions; MANGOHUD_CONFIG."""

from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import pytest

from schedtop.collect import frametime as ft

FIXTURES = Path(__file__).parent.parent / "fixtures" / "mangohud"
REAL = FIXTURES / "vkcube_2026-12-06_22-04-09.csv"
HEADER = (
    "os,cpu,gpu,ram,kernel,driver,cpuscheduler\n"
    "Debian GNU/Linux 12 (bookworm),AMD EPYC,,24683772,6.18.44,,\n"
    "fps,frametime,cpu_load,gpu_load,cpu_temp,gpu_temp,gpu_core_clock,gpu_mem_clock,"
    "gpu_vram_used,gpu_power,ram_used,elapsed\n"
)


def row(ft_us: float | str, elapsed: int | str = 1) -> str:
    return f"60,{ft_us},5,0,0,0,0,0,0,0,0.2,{elapsed}\n"


def write(tmp_path: Path, text: str | bytes, name: str = "game_2026-12-06_22-00-00.csv") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


def test_real_log() -> None:
    log = ft.parse_log(REAL)
    assert (log.program, log.stamp) == ("vkcube", "2026-12-06_22-04-09")
    assert log.frames == len(REAL.read_text().splitlines()) - 3 == 112
    assert dict(log.system)["os"] == "Debian GNU/Linux 12 (bookworm)"
    assert log.frametimes_ms[0] == pytest.approx(16.669)
    assert all(10 < v < 25 for v in log.frametimes_ms)
    assert log.first_elapsed_s == pytest.approx(0.149904978)
    assert log.last_elapsed_s is not None and 1.9 < log.last_elapsed_s < 2.1  # a 2 s log


def test_two_sections_appended_in_one_second(tmp_path: Path) -> None:
    # MangoHud names a log by its stop time (1 s) and opens it for append: two stops in one
    # second leave two header blocks in one file
    p = write(tmp_path, HEADER + row(16000) + HEADER + row(17000) + row(18000))
    log = ft.parse_log(p)
    assert log.sections == 2 and log.frametimes_ms == (16.0, 17.0, 18.0)


def test_log_versioning_lines(tmp_path: Path) -> None:
    text = "v1\nv0.6.8\n---------------------SYSTEM INFO---------------------\n" + HEADER.replace(
        "fps,", "--------------------FRAME METRICS--------------------\nfps,", 1
    )
    log = ft.parse_log(write(tmp_path, text + row(20000)))
    assert log.frametimes_ms == (20.0,)


def test_header_only_is_zero_frames(tmp_path: Path) -> None:
    log = ft.parse_log(write(tmp_path, HEADER))
    assert log.frames == 0 and ft.frame_stats(log.frametimes_ms) is None


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        (b"", ":1:", "empty"),
        (HEADER + row(16000) + "60,166", ":5:", "truncated"),
        (HEADER[:50], ":2:", "truncated"),
        (HEADER.splitlines(keepends=True)[0] + HEADER.splitlines(keepends=True)[1], ":2:", "no 'fps,frametime"),
        ("hello,world\n" + row(1), ":1:", "not a MangoHud log"),
        (HEADER + row(16000) + "60,16000,5\n", ":5:", "3 fields, the header has 12"),
        (HEADER + row("abc"), ":4:", "'abc' is not a number"),
        (HEADER + row("nan"), ":4:", "out of range"),
        (HEADER + row("-5"), ":4:", "out of range"),
        (HEADER + row("inf"), ":4:", "out of range"),
        (HEADER + row(16000, "soon"), ":4:", "elapsed 'soon' is not a number"),
        (HEADER + "x" * 10_000 + "\n", ":4:", "longer than 4096"),
        (b"\x00\xff\xfe" * 100 + b"\n", ":1:", "not a MangoHud log"),
    ],
)
def test_hostile_logs_name_file_and_line(tmp_path: Path, text: str | bytes, where: str, what: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ft.FrameLogError) as e:
        ft.parse_log(p)
    assert str(p) + where in str(e.value) and what in str(e.value)


def test_unreadable_path(tmp_path: Path) -> None:
    with pytest.raises(ft.FrameLogError, match="No such file"):
        ft.parse_log(tmp_path / "gone_2026-12-06_22-00-00.csv")
    with pytest.raises(ft.FrameLogError, match="Is a directory"):
        ft.parse_log(tmp_path)


def test_huge_log_bounded_memory(tmp_path: Path) -> None:
    n = 300_000
    p = tmp_path / "big_2026-12-06_22-00-00.csv"
    with p.open("w") as f:
        f.write(HEADER)
        for i in range(n):
            f.write(row(16000 + i % 1000))
    tracemalloc.start()
    log = ft.parse_log(p, max_frames=1000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert log.frames == n and log.dropped == n - 1000 and len(log.frametimes_ms) == 1000
    assert log.frametimes_ms[-1] == pytest.approx((16000 + (n - 1) % 1000) / 1000)
    assert peak < 2_000_000, peak  # the file is ~20 MB


def test_follower_takes_settled_files_and_reports_bad_ones(tmp_path: Path) -> None:
    shutil.copy(REAL, tmp_path / REAL.name)
    f = ft.LogFollower(tmp_path)
    assert f.poll() == []  # present at start: skipped
    write(tmp_path, HEADER + row(16000), "vkcube_2026-12-06_22-10-00.csv")
    write(tmp_path, "0.1% Min FPS,1% Min FPS\n1,2\n", "vkcube_2026-12-06_22-10-00_summary.csv")
    write(tmp_path, HEADER + row("bad"), "vkcube_2026-12-06_22-10-02.csv")
    assert f.poll() == []  # first sight: sizes noted
    got = f.poll()
    assert isinstance(got[0], ft.FrameLog) and got[0].frametimes_ms == (16.0,)
    assert isinstance(got[1], ft.FrameLogError) and ":4:" in str(got[1])
    assert f.poll() == []  # each once
    assert len(ft.LogFollower(tmp_path, existing=True).poll(settled=True)) == 3


def test_stats_definitions() -> None:
    times = [16.0] * 98 + [40.0, 100.0]
    s = ft.frame_stats(times, budget_ms=1000 / 60)
    assert s is not None
    assert (s.frames, s.p50_ms, s.p99_ms, s.max_ms) == (100, 16.0, 40.0, 100.0)
    assert s.low1_fps == pytest.approx(25.0)  # 1000 / p99 ms
    assert s.late == 2  # > 1.5 x 16.67 ms
    assert s.avg_fps == pytest.approx(100 * 1000 / (16 * 98 + 140))
    assert ft.frame_stats(times).late == 0  # type: ignore[union-attr]


def test_config_and_budget() -> None:
    cfg = ft.parse_mangohud_config("output_folder=/tmp/x, fps_limit=60+144,no_display,control=mh-%p")
    assert cfg == {"output_folder": "/tmp/x", "fps_limit": "60+144", "no_display": "", "control": "mh-%p"}
    g = ft.Game(pid=1, comm="g", program="g", output_folder=None, control=None, fps_limit=60)
    assert ft.budget_for(g) == pytest.approx(16.667, abs=1e-3)
    assert ft.budget_for(g, target_fps=120) == pytest.approx(8.333, abs=1e-3)
    assert ft.budget_for(None) is None
    assert ft.split_log_name("my_game_2026-12-06_22-04-09.csv") == ("my_game", "2026-12-06_22-04-09")
    assert ft.split_log_name("vkcube_2026-12-06_22-04-09_summary.csv") is None


def test_log_for_game_by_program_and_folder(tmp_path: Path) -> None:
    log = ft.FrameLog(
        path=str(tmp_path / "vkcube_2026-12-06_22-04-09.csv"),
        program="vkcube",
        stamp="2026-12-06_22-04-09",
        frametimes_ms=(),
    )
    here = ft.Game(pid=5, comm="vkcube", program="vkcube", output_folder=str(tmp_path), control=None, fps_limit=None)
    other = ft.Game(pid=6, comm="vkcube", program="vkcube", output_folder="/elsewhere", control=None, fps_limit=None)
    assert ft.log_for_game(log, [other, here]) == here
    assert ft.log_for_game(log, [other]) is None
