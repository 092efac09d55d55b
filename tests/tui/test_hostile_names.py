"""Task names chosen by another user reach root's terminal escaped, never obeyed.

A real child process names itself with prctl(PR_SET_NAME) to an OSC title sequence,
names one thread to a clear-screen + colour sequence and another to Rich markup;
then `--once`, `--once --json`, the TUI under Pilot and the real TUI in tmux are checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from schedtop.textsafe import has_control, rich_text, visible

ROOT = Path(__file__).resolve().parents[2]
SCHEDTOP = ROOT / ".venv" / "bin" / "schedtop"

TITLE = b"\x1b]2;PWNED\x07"  # OSC 2: set the window title
CLEAR = b"\x1b[2J\x1b[31mEVIL\x07"  # erase the screen, go red, ring
MARKUP = b"[red]mk[/red][b"  # Rich/Textual markup

CHILD = textwrap.dedent(r"""
    import ctypes, sys, threading, time
    libc = ctypes.CDLL(None)
    libc.prctl(15, TITLE, 0, 0, 0)  # PR_SET_NAME on the main thread
    ready = []
    def named(name):
        libc.prctl(15, name, 0, 0, 0)
        ready.append(threading.get_native_id())
        while True:
            sum(range(20000)); time.sleep(0.01)  # a little CPU, so it sorts near the top
    for n in (CLEAR, MARKUP):
        threading.Thread(target=named, args=(n,), daemon=True).start()
    while len(ready) < 2:
        time.sleep(0.01)
    print(" ".join(map(str, ready)), flush=True)
    time.sleep(600)
""").replace("TITLE", repr(TITLE)).replace("CLEAR", repr(CLEAR)).replace("MARKUP", repr(MARKUP))


@pytest.fixture(scope="module")
def hostile():
    """(pid, [tid of CLEAR, tid of MARKUP]) of a live child named by the sequences above."""
    p = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        tids = [int(x) for x in p.stdout.readline().split()]
        assert len(tids) == 2
        assert Path(f"/proc/{p.pid}/comm").read_bytes().rstrip(b"\n") == TITLE
        assert Path(f"/proc/{p.pid}/task/{tids[0]}/comm").read_bytes().rstrip(b"\n") == CLEAR
        yield p.pid, tids
    finally:
        p.kill()
        p.wait()


def test_visible_escapes_every_control_character():
    assert visible(TITLE.decode()) == "\\x1b]2;PWNED\\x07"
    assert visible(CLEAR.decode()) == "\\x1b[2J\\x1b[31mEVIL\\x07"
    for c in [*map(chr, range(0x20)), "\x7f", *map(chr, range(0x80, 0xA0)), "\u202e", "\u2066"]:
        out = visible(f"a{c}b")
        assert not has_control(out) and out.startswith("a\\") and out.endswith("b"), repr(c)
    assert visible("caf\udce9") == "caf\\xe9"  # an undecodable byte kept by surrogateescape
    assert visible("kworker/0:1-events") == "kworker/0:1-events"
    assert visible("a\nb", keep_newlines=True) == "a\nb"
    assert visible("a\nb") == "a\\x0ab"
    assert rich_text(MARKUP.decode()).plain == "[red]mk[/red][b"  # Text: never markup


def test_once_text_and_json_carry_no_raw_escape(hostile):
    pid, tids = hostile
    env = {**os.environ, "COLUMNS": "200"}
    text = subprocess.run([str(SCHEDTOP), "--once", "-d", "0.3", "-p", str(pid)], capture_output=True,
                          timeout=60, env=env)
    assert text.returncode == 0, text.stderr
    out = text.stdout.decode()
    assert not has_control(out.replace("\n", "")), repr(out)
    assert "\\x1b]2;PWNED\\x07" in out and "\\x1b[2J\\x1b[31mEVIL\\x07" in out
    assert "[red]mk[/red][b" in out  # shown literally, not as red text
    js = subprocess.run([str(SCHEDTOP), "--once", "--json", "-d", "0.3", "-p", str(pid)],
                        capture_output=True, timeout=60)
    assert js.returncode == 0, js.stderr
    assert b"\x1b" not in js.stdout and b"\x07" not in js.stdout
    names = {t["tid"]: t["comm"] for t in json.loads(js.stdout)["tasks"]}
    # JSON keeps the true name (escaped by JSON itself) for scripts
    assert names[pid] == TITLE.decode() and names[tids[0]] == CLEAR.decode()


def test_tui_shows_the_names_escaped_and_the_panels_intact(hostile):
    from tuikit import run_live, wait_for

    from schedtop.ui.widgets.cpu_panel import CpuPanel
    from schedtop.ui.widgets.header import SchedHeader
    from schedtop.ui.widgets.task_pane import TaskPane
    from schedtop.ui.widgets.task_table import TaskTable

    pid, tids = hostile

    async def body(app, pilot):
        table = app.query_one(TaskTable)
        await wait_for(pilot, lambda: len(table.rows) == 3)
        lines = "\n".join(table.render_lines_for_test())
        assert "\\x1b]2;PWNED\\x07" in lines and "\\x1b[2J\\x1b[31mEVIL" in lines
        assert "[red]mk[/red][b" in lines
        # What reaches the terminal: no control character in any line the table draws
        for y in range(table.size.height):
            strip = table.render_line(y)
            assert not has_control("".join(s.text for s in strip))
        # the whole screen as drawn: header, CPU panel and column header intact
        svg = app.export_screenshot()
        assert "\\x1b]2;PWNED\\x07" in svg and "\x1b" not in svg and "\x07" not in svg
        header = app.query_one(SchedHeader).render().plain
        assert header.startswith("schedtop") and "scheduler" in header and "tasks" in header
        assert app.query_one(CpuPanel).render().plain.startswith("CPU")
        assert "COMMAND" in table.header_text()
        # the side pane names the selected task escaped, as plain text (markup not parsed)
        assert table.select_tid(tids[1])
        await wait_for(pilot, lambda: "mk" in app.query_one(TaskPane).query_one("#pane-summary").render().plain)
        summary = app.query_one(TaskPane).query_one("#pane-summary").render().plain
        assert summary.startswith("[red]mk[/red][b")

    run_live(body, size=(200, 40), pids=(pid,))


@pytest.mark.tmux
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
@pytest.mark.skipif(not SCHEDTOP.exists(), reason="needs .venv/bin/schedtop (make venv)")
def test_real_terminal_keeps_its_title(hostile, tmp_path):
    from test_tmux import Tmux

    pid, tids = hostile
    t = Tmux(f"{SCHEDTOP} -d 0.3 -p {pid} --no-bpf", tmp_path / "rc", width=160, height=40)
    try:
        before = t.pane("#{pane_title}")
        screen = t.wait_text("\\x1b]2;PWNED\\x07", timeout=30)
        assert "\\x1b[2J\\x1b[31mEVIL" in screen and "[red]mk[/red][b" in screen
        time.sleep(1.0)  # a few refreshes: the name is drawn again and again
        screen = t.screen()
        assert "PWNED" in screen and "schedtop" in screen.splitlines()[0]  # the header is still there
        assert t.pane("#{pane_title}") == before and "PWNED" not in t.pane("#{pane_title}")
        t.keys("q")
        assert t.wait_exit() == 0
        assert t.pane("#{pane_title}") == before
    finally:
        t.close()


def test_perfetto_names_are_escaped(hostile, tmp_path):
    from schedtop.export.perfetto import PerfettoWriter, SchedEvent, read_trace

    pid, tids = hostile
    t = time.monotonic_ns()
    out = tmp_path / "h.perfetto-trace"
    with PerfettoWriter(out, ncpus=2) as w:
        w.add([SchedEvent("switch", t, 0, 0, "swapper/0", 120, 0, pid, TITLE.decode(), 120),
               SchedEvent("wakeup", t + 10, 1, tids[0], CLEAR.decode(), 120, target_cpu=1, tgid=pid)])
        w.counter(f"slice {CLEAR.decode()}", 1.0)
    trace = read_trace(out)  # (the raw protobuf has 0x1b bytes of its own: check the strings)
    names = {th.tid: th.name for p in trace.packet if p.HasField("process_tree") for th in p.process_tree.threads}
    assert names[pid] == visible(TITLE.decode()) and names[tids[0]] == visible(CLEAR.decode())
    sw = next(fe.sched_switch for p in trace.packet if p.WhichOneof("data") == "ftrace_events"
              for fe in p.ftrace_events.event if fe.WhichOneof("event") == "sched_switch")
    assert sw.next_comm == "\\x1b]2;PWNED\\x07"
    tracks = [p.track_descriptor.name for p in trace.packet if p.HasField("track_descriptor")]
    assert "slice \\x1b[2J\\x1b[31mEVIL\\x07" in tracks
    strings = [*names.values(), *tracks, sw.next_comm,
               *(a for p in trace.packet if p.HasField("process_tree") for pr in p.process_tree.processes
                 for a in pr.cmdline)]
    assert not any(has_control(x) for x in strings)


def test_scheduler_panel_shows_exit_and_error_text_as_written():
    from textual.markup import to_content

    from schedtop.model import ScxPart
    from schedtop.ui.screens.scx import panel_markup

    cases = {"[red]mk[/red][b": "[red]mk[/red][b", "ends in \\": "ends in \\x5c",
             "x\\[b]y": "x\\x5c[b]y", TITLE.decode(): "\\x1b]2;PWNED\\x07"}
    for bad, shown in cases.items():
        text = to_content(panel_markup(ScxPart(running=False, exit={"reason": "error", "text": bad}))).plain
        assert f"last exit: {shown}\n" in text, text
        assert not has_control(text.replace("\n", ""))
