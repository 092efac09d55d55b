"""The frame-time source against a real game: vkcube on lavapipe under a real Xvfb with the
MangoHud layer, idle and beside a real stress-ng CPU load; and the mangoapp queue on a real
SysV queue with real syscalls."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from schedtop.collect import frametime as ft

NEEDED = ("Xvfb", "vkcube", "stress-ng")
LAYERS = Path("/usr/share/vulkan/implicit_layer.d")


def _missing() -> list[str]:
    out = [p for p in NEEDED if shutil.which(p) is None]
    if not list(LAYERS.glob("MangoHud*.json")):
        out.append("mangohud")
    return out


def _stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


@pytest.fixture
def xvfb() -> Iterator[str]:
    """A real Xvfb on a display number it picks itself (-displayfd: never one in use)."""
    if _missing():
        pytest.skip(f"not installed: {' '.join(_missing())} (make deps)")
    r, w = os.pipe()
    p = subprocess.Popen(
        ["Xvfb", "-displayfd", str(w), "-screen", "0", "640x480x24", "-nolisten", "tcp"],
        pass_fds=(w,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(w)
    try:
        with os.fdopen(r) as f:
            num = f.readline().strip()
        assert num.isdigit(), f"Xvfb gave no display number (exit {p.poll()})"
        yield f":{num}"
    finally:
        _stop(p)


@pytest.fixture
def vkcube(xvfb: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """vkcube with MangoHud: logs to a fresh folder, a control socket, 60 fps limit, no overlay.
    Logging is started and stopped by the test through the control socket."""
    logs = tmp_path / "logs"
    logs.mkdir()
    env = dict(os.environ)
    env.update(
        DISPLAY=xvfb,
        MANGOHUD="1",
        MANGOHUD_CONFIG=f"output_folder={logs},log_interval=0,fps_limit=60,no_display,control=schedtop-test-%p",
        VK_ICD_FILENAMES="/usr/share/vulkan/icd.d/lvp_icd.x86_64.json",
    )
    p = subprocess.Popen(["vkcube"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield p, logs
    finally:
        _stop(p)


def _wait_game(pid: int, timeout: float = 20.0) -> ft.Game:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        games = {g.pid: g for g in ft.find_games()}
        if pid in games:
            return games[pid]
        time.sleep(0.2)
    raise AssertionError(f"find_games never listed pid {pid}")


def _connect(name: str, timeout: float = 10.0) -> ft.MangoHudControl:
    end = time.monotonic() + timeout
    while True:
        try:
            return ft.MangoHudControl(name)
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def _chunk(ctl: ft.MangoHudControl, follower: ft.LogFollower, seconds: float) -> ft.FrameLog:
    ctl.start()
    time.sleep(seconds)
    assert ctl.stop(), "MangoHud never said LoggingFinished"
    got = follower.poll(settled=True)
    assert len(got) == 1, got
    (log,) = got
    assert isinstance(log, ft.FrameLog), log
    time.sleep(1.1)  # the next log's name (stop time, 1 s resolution) must differ
    return log


@pytest.mark.timeout(120)
def test_vkcube_frames_idle_and_under_load(vkcube: tuple[subprocess.Popen[bytes], Path]) -> None:
    proc, logs = vkcube
    game = _wait_game(proc.pid)
    assert game.comm == "vkcube" and game.program == "vkcube"
    assert game.output_folder == str(logs)
    assert game.control == f"schedtop-test-{proc.pid}"
    assert game.fps_limit == 60
    budget = ft.budget_for(game)
    assert budget == pytest.approx(16.667, abs=0.01)

    follower = ft.LogFollower(logs, program=game.program)
    seconds = 4.0
    with _connect(game.control) as ctl:
        time.sleep(1.0)  # past vkcube's start-up frames
        idle = _chunk(ctl, follower, seconds)
        load = subprocess.Popen(
            ["stress-ng", "--cpu", "4", "--timeout", "60"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            time.sleep(1.0)
            loaded = _chunk(ctl, follower, seconds)
        finally:
            _stop(load)
        idle_after = _chunk(ctl, follower, seconds)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""

    for log in (idle, loaded, idle_after):
        assert log.program == "vkcube" and log.dropped == 0
        assert ft.log_for_game(log, ft.find_games()) == game
    # the VM is shared with other sessions: one idle window can catch their load too, so
    # "idle" is the quieter of the windows before and after the stress
    s_before = ft.frame_stats(idle.frametimes_ms, budget)
    s_load = ft.frame_stats(loaded.frametimes_ms, budget)
    s_after = ft.frame_stats(idle_after.frametimes_ms, budget)
    assert s_before is not None and s_load is not None and s_after is not None
    print(f"\nidle:   {s_before}\nloaded: {s_load}\nafter:  {s_after}")
    s_idle = min(s_before, s_after, key=lambda s: s.p99_ms)
    # ~60 fps for 4 s: 240 frames; the idle chunks near that (MangoHud starts logging a few
    # frames late: ~217 here)
    assert all(150 <= lg.frames <= 260 for lg in (idle, idle_after)), (idle.frames, idle_after.frames)
    assert s_idle.p50_ms == pytest.approx(16.7, abs=2.0)
    # under 4 CPU hogs on this 2-core VM lavapipe renders slower: fewer frames, a higher p99
    # (robust: p99 is compared, not the count's exact value, since the hogs' share varies)
    assert 10 <= loaded.frames <= 260, loaded.frames
    assert s_load.p99_ms > s_idle.p99_ms
    assert s_load.late >= s_idle.late


@pytest.mark.timeout(60)
def test_log_written_by_log_duration_is_followed(xvfb: str, tmp_path: Path) -> None:
    """Without a control socket: autostart_log + log_duration writes one log when it ends."""
    logs = tmp_path / "logs"
    logs.mkdir()
    follower = ft.LogFollower(logs)
    env = dict(os.environ)
    env.update(
        DISPLAY=xvfb,
        MANGOHUD="1",
        MANGOHUD_CONFIG=f"output_folder={logs},autostart_log=1,log_interval=0,log_duration=2,fps_limit=60,no_display",
        VK_ICD_FILENAMES="/usr/share/vulkan/icd.d/lvp_icd.x86_64.json",
    )
    p = subprocess.Popen(["vkcube"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        got: list[ft.FrameLog | ft.FrameLogError] = []
        end = time.monotonic() + 30
        while not got and time.monotonic() < end:
            time.sleep(0.5)
            got = follower.poll()  # unsettled: taken once its size held still over a poll
        assert p.poll() is None
    finally:
        _stop(p)
    assert len(got) == 1, got
    (log,) = got
    assert isinstance(log, ft.FrameLog), log
    assert 60 <= log.frames <= 130, log.frames  # 2 s at <= 60 fps


# --- the mangoapp queue ------------------------------------------------------------------------
# gamescope is the only real sender and cannot run here (no DRM: "physical device does not
# support DRM format modifiers"), so the test sends messages of gamescope's exact layout on
# a real queue with real msgsnd; the reader under test uses msgget/msgrcv as against gamescope.


def _send(msqid: int, payload: bytes) -> None:
    buf = ctypes.create_string_buffer(payload)
    assert ft.LIBC.msgsnd(msqid, buf, len(payload) - ctypes.sizeof(ctypes.c_long), ft.IPC_NOWAIT) == 0, os.strerror(
        ctypes.get_errno()
    )


def test_mangoapp_queue_reads_gamescope_messages(tmp_path: Path) -> None:
    anchor = tmp_path / "mangoapp"
    anchor.write_text("")
    key = ft.mangoapp_key(str(anchor))
    assert key != -1
    with pytest.raises(OSError, match="No such file"):
        ft.MangoAppQueue.open(key)  # not created yet: the reader never creates one by itself
    sender = ft.LIBC.msgget(key, ft.IPC_CREAT | 0o600)
    assert sender >= 0
    try:
        q = ft.MangoAppQueue.open(key)
        assert q.read() == []  # empty: IPC_NOWAIT returns at once
        for i in range(3):
            m = ft.MangoAppMsgV1(
                msg_type=1,
                version=1,
                pid=4242,
                app_frametime_ns=16_000_000 + i,
                fsr_upscale=1,
                fsr_sharpness=2,
                visible_frametime_ns=16_600_000 + i,
                latency_ns=2**64 - 1,
                output_width=1280,
                output_height=800,
                display_refresh=90,
                flags=0b10,
                engine_name=b"vkcube",
            )
            _send(sender, bytes(m))
        # an older, shorter sender (up to latency_ns), a wrong version, mangohudctl's type 2
        short = ft.MangoAppMsgV1(msg_type=1, version=1, pid=7, app_frametime_ns=5, visible_frametime_ns=6, latency_ns=7)
        _send(sender, bytes(short)[: ft.MangoAppMsgV1.output_width.offset])
        _send(sender, bytes(ft.MangoAppMsgV1(msg_type=1, version=2, pid=9)))
        _send(sender, bytes(ft.MangoAppMsgV1(msg_type=2, version=1, pid=10)))
        frames = q.read()
        assert [f.app_frametime_ns for f in frames] == [16_000_000, 16_000_001, 16_000_002, 5]
        f0 = frames[0]
        assert (f0.pid, f0.visible_frametime_ns, f0.output_width, f0.display_refresh) == (4242, 16_600_000, 1280, 90)
        assert f0.steam_focused and not f0.wants_hdr and f0.engine == "vkcube" and f0.latency_ns == 2**64 - 1
        assert frames[3].latency_ns == 7 and frames[3].output_width is None and frames[3].engine == ""
        assert q.skipped == 1
        assert q.read() == []  # the type-2 control message is left for MangoHud
    finally:
        ft.LIBC.msgctl(sender, ft.IPC_RMID, None)


@pytest.mark.timeout(60)
def test_frames_cli_once_json(vkcube: tuple[subprocess.Popen[bytes], Path]) -> None:
    """`schedtop frames --pid N --once --json` as a user runs it: one 2 s log's statistics."""
    import json
    import sys

    proc, _ = vkcube
    _wait_game(proc.pid)
    schedtop = Path(sys.executable).with_name("schedtop")
    r = subprocess.run(
        [str(schedtop), "frames", "--pid", str(proc.pid), "--interval", "2", "--once", "--json", "--wait", "30"],
        capture_output=True,
        text=True,
        timeout=45,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["game"]["pid"] == proc.pid and out["game"]["comm"] == "vkcube"
    assert 60 <= out["frames"] <= 130, out  # 2 s at <= 60 fps
    first, last = out["elapsed_s"]
    assert 0 <= first < 1.0 and 1.0 < last < 2.5, out  # the first ~0.1-0.3 s are not logged
    assert out["stats"]["budget_ms"] == pytest.approx(16.667, abs=0.01)
    assert 10 < out["stats"]["p50_ms"] < 30 and out["stats"]["low1_fps"] > 0
    r = subprocess.run([str(schedtop), "frames", "--pid", "1", "--once"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "no MangoHud layer" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.timeout(90)
def test_source_ends_a_log_left_running_and_cli_stops_logging_on_sigterm(
    vkcube: tuple[subprocess.Popen[bytes], Path],
) -> None:
    import sys

    proc, logs = vkcube
    game = _wait_game(proc.pid)
    assert game.control is not None
    with _connect(game.control) as ctl:
        ctl.start()  # a client that goes away with logging on (as a killed one would)
    time.sleep(3.0)
    with ft.FrameSource(game, interval=1.5) as src:
        assert src.chunked
        left = sorted(logs.glob("vkcube_*[0-9].csv"))
        assert len(left) == 1 and ft.parse_log(left[0]).frames >= 120  # the 3 s one, ended at start
        got: list[ft.FrameLog | ft.FrameLogError] = []
        end = time.monotonic() + 20
        while not got and time.monotonic() < end:
            time.sleep(0.2)
            got = src.poll()
    assert len(got) == 1 and isinstance(got[0], ft.FrameLog), got
    assert 30 <= got[0].frames <= 110, got[0].frames  # 1.5 s at <= 60 fps, not the 3 s left before
    time.sleep(1.1)
    before = set(logs.glob("vkcube_*[0-9].csv"))
    schedtop = Path(sys.executable).with_name("schedtop")
    cli = subprocess.Popen(
        [str(schedtop), "frames", "--pid", str(proc.pid), "--interval", "60"], stderr=subprocess.PIPE
    )
    time.sleep(4.0)  # its start: imports, find_games, the 1 s wait for a log left running
    cli.send_signal(signal.SIGTERM)
    assert cli.wait(15) == 0, cli.stderr.read() if cli.stderr else ""
    new = set(logs.glob("vkcube_*[0-9].csv")) - before
    assert len(new) >= 1, "schedtop frames left MangoHud logging on"
    assert max(ft.parse_log(p).frames for p in new) >= 20  # the 1-2 s it logged, written at exit


def test_find_games_reads_a_real_process_config(tmp_path: Path) -> None:
    """A real process that maps a file named like the layer, with MANGOHUD_CONFIG's other
    shapes: an fps_limit list (its first value counts; 0 = no limit), no output folder."""
    import sys

    fake = tmp_path / "libMangoHud_test.so"
    fake.write_bytes(b"\0" * 4096)
    code = (
        "import mmap, sys, time\n"
        f"f = open({str(fake)!r}, 'rb')\n"
        "m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    plain = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    procs = []
    try:
        for cfg in ("fps_limit=0+144,control=ctl-%p-x", "fps_limit=144+60,output_folder=/tmp/somewhere"):
            env = dict(os.environ, MANGOHUD_CONFIG=cfg)
            p = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE)
            procs.append(p)
            assert p.stdout is not None and p.stdout.readline() == b"up\n"
        games = {g.pid: g for g in ft.find_games()}
        assert plain.pid not in games  # no layer mapped
        a, b = (games[p.pid] for p in procs)
        assert (a.fps_limit, a.output_folder, a.control) == (None, None, f"ctl-{procs[0].pid}-x")
        assert (b.fps_limit, b.output_folder, b.control) == (144, "/tmp/somewhere", None)
        assert a.program == os.path.basename(os.readlink(f"/proc/{procs[0].pid}/exe"))
        assert a.start_time == pytest.approx(time.time(), abs=30)
        assert ft.game_info(plain.pid) is None and ft.game_info(2**22 + 1) is None  # gone pid
        with pytest.raises(ValueError, match="no MangoHud output_folder"):
            ft.FrameSource(a)
    finally:
        for p in [plain, *procs]:
            p.kill()
            p.wait(5)
