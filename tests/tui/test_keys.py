"""Pilot tests of the keys, driven by the recorded session (ReplaySource) or the live machine."""

from __future__ import annotations

import os

import pytest

from schedtop.ui.app import SchedtopApp
from schedtop.ui.config import Config
from schedtop.ui.screens.detail import DetailScreen
from schedtop.ui.screens.help import HelpScreen
from schedtop.ui.screens.main import MainScreen
from schedtop.ui.screens.queue import QueueScreen, eevdf_order
from schedtop.ui.widgets.task_table import TaskTable
from tuikit import replay_app, run_live, run_pilot, run_replay, wait_for


def test_first_frame_renders_every_task_of_the_replay():
    async def body(app, pilot):
        table = app.query_one(TaskTable)
        first = app.source.replay.snapshots[0]
        assert {t.tid for t in table.rows} == {t.tid for t in first.tasks}
        # Default sort: CPU% descending.
        pct = [t.cpu_pct for t in table.rows]
        assert pct == sorted(pct, reverse=True)
        assert "REPLAY 1/6" in app.mode_text()

    run_replay(body)


def test_sort_keys_and_header_click():
    async def body(app, pilot):
        table = app.query_one(TaskTable)
        visible = [c.key for c in table.visible_columns()]
        await pilot.press("greater_than_sign")
        nxt = visible[(visible.index("cpu_pct") + 1) % len(visible)]
        assert table.sort_key == nxt
        await pilot.press("less_than_sign")
        assert table.sort_key == "cpu_pct"
        await pilot.press("w")
        assert table.sort_key == "wait" and table.sort_reverse
        waits = [t.wait_ns_per_s for t in table.rows]
        assert waits == sorted(waits, reverse=True)
        await pilot.press("i")
        waits = [t.wait_ns_per_s for t in table.rows]
        assert waits == sorted(waits)
        # Click the COMMAND header: ascending by name.
        x = 0
        for col, w in table._columns:
            if col.key == "comm":
                break
            x += w + 1
        await pilot.click(TaskTable, offset=(x + 1, 0))
        assert table.sort_key == "comm" and not table.sort_reverse
        names = [t.comm.lower() for t in table.rows]
        assert names == sorted(names)
        assert "sort comm" in app.view_text()

    run_replay(body)


def test_filter_by_name_and_pid_then_clear():
    async def body(app, pilot):
        table = app.query_one(TaskTable)
        total = len(table.rows)
        await pilot.press("slash", "h", "o", "g")
        assert table.rows and all("hog" in t.comm for t in table.rows)
        hogs = [t for t in app.snapshot.tasks if "hog" in t.comm]
        assert len(table.rows) == len(hogs)
        await pilot.press("enter")  # keeps the filter, back to the table
        assert app.focused is table and table.filter_text == "hog"
        await pilot.press("escape")
        assert len(table.rows) == total and table.filter_text == ""
        pid = str(hogs[0].pid)
        await pilot.press("slash", *pid, "enter")
        assert [t.pid for t in table.rows] == [hogs[0].pid]

    run_replay(body)


def test_select_moves_cursor_and_sticks_to_the_task():
    async def body(app, pilot):
        table = app.query_one(TaskTable)
        await pilot.press("down", "down")
        chosen = app.selected_task()
        assert chosen is table.rows[2]
        await pilot.press("i")  # reverse the sort: the cursor follows the same thread
        assert app.selected_task().tid == chosen.tid
        assert table.rows.index(app.selected_task()) == len(table.rows) - 3
        await pilot.press("home")
        assert table.cursor == 0
        # The mouse: a click selects a row, a double click opens its detail.
        await pilot.click(TaskTable, offset=(20, 4))
        assert table.cursor == int(table.scroll_y) + 3
        target = app.selected_task()
        await pilot.click(TaskTable, offset=(20, 4), times=2)
        assert isinstance(app.screen, DetailScreen) and app.screen.tid == target.tid

    run_replay(body)


def test_replay_step_back_speed_and_end():
    async def body(app, pilot):
        snaps = app.source.replay.snapshots
        assert app.snapshot.wall == snaps[0].wall
        await pilot.press("full_stop", "full_stop")
        assert app.snapshot.wall == snaps[2].wall and "REPLAY 3/6" in app.mode_text()
        await pilot.press("comma")
        assert app.snapshot.wall == snaps[1].wall
        await pilot.press("plus", "plus")
        assert app.source.speed == 4.0
        await pilot.press("minus")
        assert app.source.speed == 2.0
        for _ in range(10):
            await pilot.press("full_stop")
        assert app.snapshot.wall == snaps[-1].wall and app.source.at_end
        # Play from the start at 16x: the replay runs to the end on its own.
        app.source.seek(0)
        app.source.speed = 16.0
        await pilot.press("space")
        await wait_for(pilot, lambda: app.source.at_end and app.snapshot.wall == snaps[-1].wall, 5)
        assert "end" in app.mode_text()

    run_replay(body)


def test_threads_toggle_folds_processes():
    async def body(app, pilot):
        table = app.query_one(TaskTable)
        assert "tid" in [c.key for c in table.visible_columns()]
        threads = app.snapshot.tasks
        await pilot.press("t")
        assert not app.thread_mode
        assert "tid" not in [c.key for c in table.visible_columns()]
        pids = [t.pid for t in table.rows]
        assert len(pids) == len(set(pids)) == len({t.pid for t in threads})
        # The source folded this frame for the new request; the view shows it as given.
        assert table.tasks == app.snapshot.tasks and {t.tid for t in app.snapshot.tasks} == set(pids)
        # pid 1's threads fold into one row whose CPU% is their sum.
        threads_of_1 = [t for t in threads if t.pid == 1]
        row = next(t for t in table.rows if t.pid == 1)
        assert row.nr_threads == len(threads_of_1)
        assert row.cpu_pct == pytest.approx(sum(t.cpu_pct for t in threads_of_1))
        await pilot.press("t")
        assert len(table.rows) == len(app.snapshot.tasks)

    run_replay(body)


def test_process_mode_holds_across_replay_steps():
    async def body(app, pilot):
        await pilot.press("t", "full_stop", "full_stop", "comma")
        pids = [t.pid for t in app.snapshot.tasks]
        assert app.source.pos == 1 and len(pids) == len(set(pids)) and app.query_one(TaskTable).tasks == app.snapshot.tasks
        await pilot.press("t")
        assert len(app.snapshot.tasks) == len(app.source.current().tasks) > len(pids)

    run_replay(body)


def test_live_threads_toggle_asks_the_source_for_processes_now():
    """`t` sends a request for process rows and collects at once (not at the next tick): the
    frame shown is the one the source folded."""
    async def body(app, pilot):
        await wait_for(pilot, lambda: any(t.tid != t.pid for t in app.snapshot.tasks))  # some thread rows
        frames = app.history.frames
        await pilot.press("t")
        await wait_for(pilot, lambda: app.history.frames > frames, 1.5)  # the 5 s tick is far
        snap = app.snapshot
        assert all(t.tid == t.pid for t in snap.tasks) and app.query_one(TaskTable).tasks == snap.tasks
        assert len({t.pid for t in snap.tasks}) == len(snap.tasks)

    run_live(body, delay=5.0)


def test_follow_shows_only_the_selected_process():
    async def body(app, pilot):
        table = app.query_one(TaskTable)
        pid = app.selected_task().pid
        await pilot.press("f")
        assert {t.pid for t in table.rows} == {pid}
        await pilot.press("f")
        assert len(table.rows) == len(app.snapshot.tasks)

    run_replay(body)


def test_follow_pids_from_the_command_line():
    async def body(app, pilot):
        rows = app.query_one(TaskTable).rows
        assert rows and {t.pid for t in rows} == {1}

    run_replay(body, pids=(1,))


def test_help_is_generated_from_every_binding():
    async def body(app, pilot):
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        ids = {r.binding_id for r in app.screen.rows}
        for b in [*SchedtopApp.BINDINGS, *MainScreen.BINDINGS]:  # the app's, the view's and every area's appear
            assert b.id in ids, b.id
        assert {"table.up", "table.down"} <= ids
        text = str(app.screen.query_one("#help-text").render())
        assert "Pause" in text and "schedtop.pause" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)

    run_replay(body)


def test_queue_screen_is_in_eevdf_order():
    async def body(app, pilot):
        cpu = app.selected_task().cpu
        await pilot.press("e")
        assert isinstance(app.screen, QueueScreen) and app.screen.cpu == cpu
        queue = [q for q in app.snapshot.queues if q.cpu == cpu]
        assert queue, "the fixture was recorded as root: it has debugfs queues"
        text = str(app.screen.query_one("#queue-text").render())
        ordered = eevdf_order(queue)
        positions = [text.index(str(q.pid)) for q in ordered]
        assert positions == sorted(positions)
        await pilot.press("right")
        assert app.screen.cpu == (cpu + 1) % len(app.snapshot.cpus)
        await pilot.press("escape")
        assert not isinstance(app.screen, QueueScreen)
        # Clicking a CPU's bar opens that CPU's queue (row 1 of the panel is CPU 0, row 2 CPU 1).
        await pilot.click("#cpus", offset=(10, 2))
        assert isinstance(app.screen, QueueScreen) and app.screen.cpu == app.snapshot.cpus[1].cpu

    run_replay(body)


def test_quit_runs_the_mixin_exit_hooks():
    app = replay_app(paused=True)
    calls = []
    app.steering.close = lambda: calls.append("steer")  # the seam the steer journal restores through

    async def body(pilot):
        await wait_for(pilot, lambda: app.snapshot is not None)
        await pilot.press("q")

    run_pilot(app, body)
    assert calls == ["steer"]
    assert app.return_code == 0


def test_keymap_from_config_remaps_by_id():
    async def body(app, pilot):
        await pilot.press("space")
        assert not app.paused
        await pilot.press("p")
        assert app.paused

    run_replay(body, paused=False, config=Config(keymap={"schedtop.pause": "p"}))


def test_keymap_remaps_a_main_screen_key_by_id_and_the_help_shows_it():
    async def body(app, pilot):
        await pilot.press("e")
        assert not isinstance(app.screen, QueueScreen)  # e is no longer the queue's key
        await pilot.press("Q")
        assert isinstance(app.screen, QueueScreen)
        await pilot.press("escape", "question_mark")
        row = next(r for r in app.screen.rows if r.binding_id == "schedtop.queue")
        assert row.keys == "Q" and row.group == "schedtop"

    run_replay(body, config=Config(keymap={"schedtop.queue": "Q"}))


def test_the_main_views_keys_do_not_act_from_the_queue_screen():
    async def body(app, pilot):
        await pilot.press("e")
        queue = app.screen
        assert isinstance(queue, QueueScreen)
        box = app.query_one("#filter")
        await pilot.press("slash", "x")  # was: the hidden filter took focus and the x
        assert not box.display and app.screen is queue and queue.focused is not box
        assert box.value == ""
        await pilot.press("e")  # was: a second queue screen on top of this one
        assert app.screen is queue and sum(isinstance(s, QueueScreen) for s in app.screen_stack) == 1
        threads = app.thread_mode
        await pilot.press("t", "f", "greater_than_sign", "H")
        assert app.thread_mode == threads and app.follow_pid is None and app.latency_wanted
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
        await pilot.press("slash")  # on the main screen the same keys act
        assert box.display and app.screen.focused is box

    run_replay(body)


def test_help_lists_the_keys_of_the_screen_it_was_opened_on():
    async def body(app, pilot):
        await pilot.press("question_mark")
        main_ids = {r.binding_id for r in app.screen.rows}
        assert {"schedtop.quit", "schedtop.filter", "schedtop.queue", "schedtop.steer.boost"} <= main_ids
        await pilot.press("escape", "e", "question_mark")
        assert isinstance(app.screen, HelpScreen)
        ids = {r.binding_id for r in app.screen.rows}
        assert {"queue.close", "queue.prev_cpu", "schedtop.help", "schedtop.pause"} <= ids
        assert not ids & {"schedtop.filter", "schedtop.queue", "schedtop.threads", "schedtop.steer.boost",
                          "schedtop.scx.toggle", "schedtop.trace", "schedtop.bpf.histogram"}
        assert [r.group for r in app.screen.rows][0] == "schedtop"

    run_replay(body)


def test_command_palette_lists_app_actions():
    from schedtop.ui.palette import ActionsProvider

    async def body(app, pilot):
        provider = ActionsProvider(app.screen)
        names = [name for name, _, _ in provider._commands()]
        assert {"Pause", "Help", "Queue", "Detail", "Filter"} <= set(names)
        hits = [h async for h in provider.search("paus")]
        assert hits and "Pause" in str(hits[0].match_display)
        hits[0].command()  # runs the bound action
        await wait_for(pilot, lambda: app.paused is False)  # started paused: the palette's Pause toggled it
        hits = [h async for h in provider.search("sort by vrunt")]
        hits[0].command()
        assert app.query_one(TaskTable).sort_key == "vruntime"
        await pilot.press("ctrl+p")
        assert app.screen.__class__.__name__ == "CommandPalette"

    run_replay(body)


def test_too_small_terminal_shows_a_message_then_recovers():
    async def body(app, pilot):
        assert app.screen.__class__.__name__ == "TooSmallScreen"
        text = str(app.screen.query_one("#too-small-text").render())
        assert "too small" in text and "40x12" in text
        await pilot.resize_terminal(100, 30)
        await wait_for(pilot, lambda: app.screen.__class__.__name__ != "TooSmallScreen")
        assert app.query_one(TaskTable).rows

    run_replay(body, size=(40, 12))


def test_pause_freezes_the_view_while_live_collection_continues():
    async def body(app, pilot):
        await wait_for(pilot, lambda: app.history.frames >= 2)
        await pilot.press("space")
        frozen, frames = app.snapshot, app.history.frames
        await wait_for(pilot, lambda: app.history.frames >= frames + 2)
        assert app.snapshot is frozen and app.latest is not frozen
        assert app.pending >= 2 and "PAUSED" in app.mode_text()
        await pilot.press("space")
        assert app.snapshot is app.latest and app.mode_text() == "live"

    run_live(body)


def test_detail_gets_proc_sched_fields_through_the_collector():
    me = os.getpid()

    async def body(app, pilot):
        app.query_one(TaskTable).select_tid(me)
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen) and app.screen.tid == me
        assert app.view_request().detail_tid == me
        await wait_for(pilot, lambda: "se.vruntime" in str(app.screen.query_one("#detail-fields-text").render()))
        await wait_for(pilot, lambda: len(app.history.trail(me).wait_ns_per_s) >= 3)
        await pilot.press("escape")
        assert app.view_request().detail_tid is None

    run_live(body, pids=(me,))


def test_wide_side_pane_follows_the_cursor_with_proc_fields():
    """At 200 columns the selected task sits beside the table; the collector reads its /proc sched."""
    from schedtop.ui.widgets.task_pane import TaskPane

    me = os.getpid()

    async def body(app, pilot):
        pane = app.query_one(TaskPane)
        assert pane.display
        await wait_for(pilot, lambda: app.query_one(TaskTable).select_tid(me))
        # the pane follows on the table's CursorMoved message, which is handled after this call
        await wait_for(pilot, lambda: app.view_request().detail_tid == me)
        await wait_for(pilot, lambda: "se.vruntime" in str(pane.query_one("#pane-fields").render()))
        assert f"pid {me}" in str(pane.query_one("#pane-summary").render())
        await pilot.resize_terminal(120, 40)
        await wait_for(pilot, lambda: not pane.display and app.view_request().detail_tid is None)

    run_live(body, size=(200, 60), pids=(me,))
