"""Small TUI faults a new user met: help's `[`, the RT priority field, the changes pane,
a session group counted as a thread, "threads 1" on a thread, and VRUNTIME's unit."""

from __future__ import annotations

import asyncio

from textual.app import App
from textual.widgets import DataTable, Input, OptionList, Static

from schedtop.steer import units
from schedtop.ui.screens.changes import ChangeRow, ChangesScreen
from schedtop.ui.screens.help import HelpScreen
from schedtop.ui.screens.queue import QueueScreen
from schedtop.ui.screens.steer import POLICY_CHOICES, PolicyChooser
from schedtop.ui.widgets.task_pane import TaskPane
from schedtop.ui.widgets.task_table import TaskTable
from tuikit import run_replay, wait_for


def _text(widget: Static) -> str:
    return widget.render().plain


def test_help_shows_the_bracket_keys_as_typed_and_aligned():
    async def body(app, pilot):
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        lines = _text(app.screen.query_one("#help-text", Static)).splitlines()
        less = next(line for line in lines if "Sample less" in line)
        more = next(line for line in lines if "Sample more" in line)
        assert less.split()[0] == "[" and more.split()[0] == "]"  # was "[[/]"
        assert "[[/]" not in "\n".join(lines)
        # every key is right-aligned in 12 cells, so each description starts at column 16
        rows = [line for line in lines if line.startswith("  ") and len(line) > 16 and line[15] == " "]
        assert less in rows and more in rows
        assert len({line.index("Sample") for line in (less, more)}) == 1
        quit_ = next(line for line in lines if " Quit " in line)
        assert quit_.index("Quit") == less.index("Sample") == 16

    run_replay(body, size=(120, 60))


class _Host(App):
    def __init__(self, screen) -> None:
        super().__init__()
        self._first = screen
        self.result: object = "pending"

    def on_mount(self) -> None:
        def done(value: object) -> None:
            self.result = value

        self.push_screen(self._first, done)


def _run(app: App, body, size=(120, 40)) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await body(pilot)

    asyncio.run(main())


def test_rt_priority_takes_three_digits_and_refuses_100():
    host = _Host(PolicyChooser("sleep[123]", "OTHER nice 0"))

    async def body(pilot):
        screen = host.screen
        prio = screen.query_one("#policy-prio", Input)
        prio.focus()
        prio.value = ""
        await pilot.press("1", "0", "0")
        assert prio.value == "100"  # whole, not "10"
        await pilot.press("enter")
        assert "1..99" in _text(screen.query_one("#policy-error", Static))
        assert host.result == "pending" and screen.focused is prio  # refused, and said why
        # choosing FIFO with 100 still typed is refused too
        options = screen.query_one(OptionList)
        options.focus()
        options.highlighted = [k for k, _ in POLICY_CHOICES].index("fifo")
        await pilot.press("enter")
        assert host.result == "pending" and "1..99" in _text(screen.query_one("#policy-error", Static))
        prio.value = ""
        prio.focus()
        await pilot.press("9", "9", "enter")
        assert _text(screen.query_one("#policy-error", Static)) == ""
        await pilot.press("enter")  # the list has the focus again, FIFO highlighted
        await wait_for(pilot, lambda: host.result != "pending")
        assert host.result == (units.SCHED_FIFO, 99)

    _run(host, body)


def _many_steps() -> list[ChangeRow]:
    nice = " + ".join(f"nice {-i}: hog" for i in range(1, 10))
    before = "OTHER nice 0 slice 1.40ms affinity 0-1"
    return [
        ChangeRow("4242:99", "a-rather-long-command-name[4242]", " + ".join(
            lbl.split(": ")[0] for lbl in nice.split(" + ")) + " + pin 0", before,
            "OTHER nice -9 slice 1.40ms affinity 0"),
        ChangeRow("group:17", "autogroup-17 (session of bash[100])", "nice -5", "session nice 0", "session nice -5"),
    ]


def test_changes_pane_keeps_original_and_now_whole_at_120_columns():
    rows = _many_steps()
    host = _Host(ChangesScreen(lambda: rows, lambda k: "", lambda: "", lambda: ""))

    async def body(pilot):
        screen = host.screen
        table = screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        screen.refresh_rows()
        await pilot.pause()
        labels = [str(c.label) for c in table.columns.values()]
        assert labels == ["TASK", "CHANGES", "ORIGINAL", "NOW"]
        cells = [[str(c) for c in table.get_row_at(i)] for i in range(2)]
        # whole after 10 steps (wrapped onto a second line if need be, never cut)
        assert cells[0][2].replace("\n", " ") == rows[0].before and cells[0][3].replace("\n", " ") == rows[0].now
        assert cells[0][1].replace("\n", " ") == "nice ×9 + pin 0"  # nine F7 presses are one change, wrapped, whole
        widths = [c.width for c in table.columns.values()]
        assert sum(widths) + 2 * len(widths) <= table.size.width
        for row in cells:
            for text, w in zip(row, widths):
                assert all(len(line) <= w for line in text.splitlines())
        assert "…" not in "".join(c for row in cells for c in row)
        status = _text(screen.query_one("#changes-status", Static))
        assert status == "1 thread and 1 session group changed"  # was "2 thread(s) changed"

    _run(host, body, size=(120, 30))


def test_a_thread_is_not_shown_as_threads_1_and_vruntime_has_its_unit():
    async def body(app, pilot):
        table = app.query_one(TaskTable)
        snap = app.snapshot
        by_pid: dict[int, list] = {}
        for t in snap.tasks:
            by_pid.setdefault(t.pid, []).append(t)
        pid, threads = max(by_pid.items(), key=lambda kv: len(kv[1]))
        assert len(threads) > 1
        side = next(t for t in threads if t.tid != pid)
        assert table.select_tid(side.tid)
        pane = app.query_one(TaskPane)
        await wait_for(pilot, lambda: f"tid {side.tid}" in _text(pane.query_one("#pane-summary", Static)))
        summary = _text(pane.query_one("#pane-summary", Static))
        assert f"thread of {len(threads)} in pid {pid}" in summary and "threads 1" not in summary
        # VRUNTIME: seconds with the unit, in the table, the pane and the queue view alike
        pos = 0
        for col, w in table._columns:
            if col.key == "vruntime":
                break
            pos += w + 1
        queued = {q.pid: q for q in snap.queues}
        row = next(t for t in table.rows if t.tid in queued and t.vruntime_ns)
        cell = table.row_text(row)[pos:pos + w].strip()
        assert cell == f"{row.vruntime_ns / 1e9:.3f}s"
        assert f"vruntime {side.vruntime_ns / 1e9:.3f}s " in summary
        app.push_screen(QueueScreen(row.cpu))
        await wait_for(pilot, lambda: isinstance(app.screen, QueueScreen) and app.screen.query("#queue-text"))
        await pilot.pause()
        queue = _text(app.screen.query_one("#queue-text", Static))
        assert "in seconds" in queue
        assert f"{queued[row.tid].vruntime_ns / 1e9:.6f}s" in queue

    run_replay(body, size=(200, 50))
