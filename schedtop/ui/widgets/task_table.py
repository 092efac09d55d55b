"""The task table: a virtual (Line API) table that renders only the rows on screen.

A DataTable re-measures every cell on each refresh (~15 ms for 1000 rows); this
widget keeps the tasks as data and formats only the visible lines, so a refresh
with thousands of threads costs a sort, not a re-layout. Columns that do not
fit the width are dropped by priority, which is what makes 80 columns work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.segment import Segment
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from schedtop.model import Task
from schedtop.textsafe import visible
from schedtop.ui.widgets.format import (
    OVERFLOW,
    SECONDS,
    compact_cpus,
    fit_number,
    fmt_ns,
    fmt_pct,
    fmt_rate,
    fmt_us,
    fmt_vruntime,
    matches,
)


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int
    text: Callable[[Task], str]
    sort: Callable[[Task], Any]
    keep: int  # lower survives longer when the terminal is narrow
    left: bool = False
    descending: bool = True  # first click sorts biggest first
    needs: str = ""  # "" always, "threads", "lat", "ext" or "slice": shown only when the data has it
    tip: str = ""
    fit: Callable[[Task, int], str] | None = None  # a number too wide for its cell, refitted


def _count(get: Callable[[Task], float | None], decimals: int = 0) -> Callable[[Task, int], str]:
    return lambda t, w: fit_number(v, w, decimals) if (v := get(t)) is not None else OVERFLOW * w


def _secs(get: Callable[[Task], float | None], scale: float = 1e9) -> Callable[[Task, int], str]:
    """For durations: the value in seconds, refitted in s/ks/Ms."""
    return lambda t, w: fit_number(v / scale, w, 2, SECONDS) if (v := get(t)) is not None else OVERFLOW * w


def _opt(v: Any) -> tuple[int, Any]:
    # None sorts below every value, whichever the direction.
    return (0, 0) if v is None else (1, v)


def _policy(t: Task) -> str:
    return "DEADLN" if t.policy == "DEADLINE" else t.policy


# keep: which columns survive a narrow terminal (0 always; 80 columns keep up to ~5).
COLUMNS: tuple[Column, ...] = (
    Column("pid", "PID", 7, lambda t: str(t.pid), lambda t: t.pid, 0, descending=False, tip="process id (tgid)",
           fit=_count(lambda t: t.pid)),
    Column("tid", "TID", 7, lambda t: str(t.tid), lambda t: t.tid, 2, descending=False, needs="threads", tip="thread id",
           fit=_count(lambda t: t.tid)),
    Column("comm", "COMMAND", 15, lambda t: visible(t.comm), lambda t: t.comm.lower(), 0, left=True, descending=False),
    Column("state", "S", 1, lambda t: visible(t.state), lambda t: t.state, 3, descending=False,
           tip="R running/runnable, S sleeping, D disk"),
    Column("policy", "POLICY", 6, _policy, lambda t: t.policy, 5, left=True, descending=False),
    Column("nice", "NI", 3, lambda t: str(t.nice), lambda t: t.nice, 9, descending=False, fit=_count(lambda t: t.nice)),
    Column("prio", "PRI", 3, lambda t: str(t.prio), lambda t: t.prio, 11, descending=False, tip="kernel prio",
           fit=_count(lambda t: t.prio)),
    Column("cpu", "CPU", 3, lambda t: str(t.cpu), lambda t: t.cpu, 8, descending=False, tip="last CPU",
           fit=_count(lambda t: t.cpu)),
    Column("affinity", "AFFIN", 7, lambda t: compact_cpus(t.affinity), lambda t: (len(t.affinity), t.affinity), 12, left=True, descending=False),
    Column("vruntime", "VRUNTIME", 10, lambda t: fmt_vruntime(t.vruntime_ns), lambda t: _opt(t.vruntime_ns), 4,
           tip="se.vruntime, in seconds", fit=lambda t, w: fmt_vruntime(t.vruntime_ns, w)),
    Column("slice", "SLICE", 7, lambda t: fmt_ns(t.slice_ns), lambda t: _opt(t.slice_ns), 7, needs="slice",
           tip="se.slice (EEVDF; a CFS kernel has none)",
           fit=_secs(lambda t: t.slice_ns)),
    Column("cpu_pct", "CPU%", 5, lambda t: fmt_pct(t.cpu_pct), lambda t: t.cpu_pct, 1,
           fit=_count(lambda t: t.cpu_pct, 1)),
    Column("runtime", "RUNTIME", 8, lambda t: fmt_ns(t.runtime_ns), lambda t: t.runtime_ns, 13, tip="time on CPU (schedstat)",
           fit=_secs(lambda t: t.runtime_ns)),
    Column("wait", "WAIT/s", 7, lambda t: fmt_ns(t.wait_ns_per_s), lambda t: t.wait_ns_per_s, 2, tip="run-queue wait per second",
           fit=_secs(lambda t: t.wait_ns_per_s)),
    Column("vcs", "VCS/s", 6, lambda t: fmt_rate(t.vol_cs_per_s), lambda t: t.vol_cs_per_s, 14, tip="voluntary switches/s",
           fit=_count(lambda t: t.vol_cs_per_s)),
    Column("ics", "ICS/s", 6, lambda t: fmt_rate(t.invol_cs_per_s), lambda t: t.invol_cs_per_s, 14, tip="involuntary switches/s",
           fit=_count(lambda t: t.invol_cs_per_s)),
    Column("lat_p50", "P50", 7, lambda t: fmt_us(t.lat_p50_us), lambda t: _opt(t.lat_p50_us), 16, needs="lat",
           tip="run-queue latency p50", fit=_secs(lambda t: t.lat_p50_us, 1e6)),
    Column("lat_p99", "P99", 7, lambda t: fmt_us(t.lat_p99_us), lambda t: _opt(t.lat_p99_us), 6, needs="lat",
           tip="run-queue latency p99", fit=_secs(lambda t: t.lat_p99_us, 1e6)),
    Column("lat_max", "LATMAX", 7, lambda t: fmt_us(t.lat_max_us), lambda t: _opt(t.lat_max_us), 15, needs="lat",
           fit=_secs(lambda t: t.lat_max_us, 1e6)),
    Column("ext", "EXT", 3, lambda t: "-" if t.ext_enabled is None else ("yes" if t.ext_enabled else "no"),
           lambda t: _opt(t.ext_enabled), 10, left=True, needs="ext", tip="scheduled by sched_ext"),
)
COLUMN_BY_KEY = {c.key: c for c in COLUMNS}
COMM_MAX = 28
ROW_STEP = 16  # virtual height granularity (see _relayout)


def layout_columns(width: int, available: Iterable[Column]) -> list[tuple[Column, int]]:
    """Choose the columns that fit `width` (one space between them), in display order.

    The command column takes what is left over, up to COMM_MAX."""
    cols = list(available)
    chosen: set[str] = set()
    used = 0
    for col in sorted(cols, key=lambda c: c.keep):
        need = col.width + (1 if chosen else 0)
        if used + need <= width:
            chosen.add(col.key)
            used += need
    spare = max(0, width - used)
    out = []
    for col in cols:
        if col.key in chosen:
            w = col.width + min(spare, COMM_MAX - col.width) if col.key == "comm" else col.width
            out.append((col, w))
    return out


class TaskTable(ScrollView, can_focus=True):
    """Tasks, sorted and filtered, with a cursor that sticks to a tid across refreshes."""

    _layout_key: tuple[int, tuple[str, ...]] | None = None  # (width, columns) the layout was made for

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False, id="table.up", tooltip="Move the cursor up"),
        Binding("down,j", "cursor(1)", "Down", show=False, id="table.down", tooltip="Move the cursor down"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="table.page_up", tooltip="Move a page up"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="table.page_down", tooltip="Move a page down"),
        Binding("home", "first", "First", show=False, id="table.first", tooltip="Go to the first task"),
        Binding("end", "last", "Last", show=False, id="table.last", tooltip="Go to the last task"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "task-table--header",
        "task-table--sorted",
        "task-table--cursor",
        "task-table--running",
        "task-table--dim",
    }

    class SortChanged(Message):
        def __init__(self, key: str, reverse: bool) -> None:
            super().__init__()
            self.key = key
            self.reverse = reverse

    class CursorMoved(Message):
        """The user moved the cursor (the app refreshes what shows the selected task)."""

    class Activated(Message):
        """A row was clicked twice (or Enter pressed by the app)."""

        def __init__(self, task: Task) -> None:
            super().__init__()
            self.task_row = task

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.tasks: tuple[Task, ...] = ()
        self.rows: list[Task] = []
        self.sort_key = "cpu_pct"
        self.sort_reverse = True
        self.filter_text = ""
        self.only_pids: frozenset[int] = frozenset()
        self.thread_mode = True
        self.show_lat = False
        self.show_ext = False
        self.show_slice = True
        self.cursor = 0
        self._selected_tid: int | None = None  # sticky only after the user moved the cursor
        self._columns: list[tuple[Column, int]] = []
        # id(task) -> (task, its row text): a task the collector did not change is the same
        # object next refresh, so its text is not formatted again (cleared when columns change)
        self._text_cache: dict[int, tuple[Task, str]] = {}
        # What render_line drew at each widget line, and in which frame (width, scroll, header):
        # a refresh repaints only the lines whose text or style changed.
        self._drawn: dict[int, tuple[str, str]] = {}
        self._drawn_frame: tuple[int, int, str] | None = None

    # --- data ---------------------------------------------------------------

    def set_tasks(self, tasks: Sequence[Task], *, thread_mode: bool, show_lat: bool, show_ext: bool) -> None:
        self.tasks = tuple(tasks)
        # CFS (6.1) gives no se.slice: no SLICE column of dashes pretending there could be one
        self.show_slice = any(t.slice_ns is not None for t in self.tasks) or not self.tasks
        self.thread_mode = thread_mode
        self.show_lat = show_lat
        self.show_ext = show_ext
        self._rebuild()

    def set_sort(self, key: str, reverse: bool | None = None) -> None:
        col = COLUMN_BY_KEY[key]
        if reverse is None:
            reverse = (not self.sort_reverse) if key == self.sort_key else col.descending
        self.sort_key, self.sort_reverse = key, reverse
        self._rebuild()
        self.post_message(self.SortChanged(key, reverse))

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self._rebuild()

    def set_only_pids(self, pids: Iterable[int]) -> None:
        self.only_pids = frozenset(pids)
        self._rebuild()

    @property
    def selected(self) -> Task | None:
        if 0 <= self.cursor < len(self.rows):
            return self.rows[self.cursor]
        return None

    def siblings(self, task: Task) -> int | None:
        """How many threads of `task`'s process this table holds (None in process mode: rows are folded)."""
        if not self.thread_mode:
            return None
        return sum(1 for t in self.tasks if t.pid == task.pid)

    def visible_columns(self) -> list[Column]:
        return [c for c, _ in self._columns]

    def available_columns(self) -> list[Column]:
        have = {"": True, "threads": self.thread_mode, "lat": self.show_lat, "ext": self.show_ext,
                "slice": self.show_slice}
        return [c for c in COLUMNS if have[c.needs]]

    def _rebuild(self) -> None:
        rows = [t for t in self.tasks if (not self.only_pids or t.pid in self.only_pids) and matches(t, self.filter_text)]
        rows.sort(key=lambda t: t.tid)
        col = COLUMN_BY_KEY.get(self.sort_key, COLUMN_BY_KEY["cpu_pct"])
        rows.sort(key=col.sort, reverse=self.sort_reverse)
        self.rows = rows
        # The cursor follows the selected thread, wherever the sort moved it.
        if self._selected_tid is not None:
            for i, t in enumerate(rows):
                if t.tid == self._selected_tid:
                    self.cursor = i
                    break
        self.cursor = max(0, min(self.cursor, len(rows) - 1))
        self._relayout()
        self._scroll_cursor_visible()
        self._repaint_changed()

    def _repaint_changed(self) -> None:
        """Mark dirty only the lines that would now draw differently. With 1000 sleeping
        threads most visible rows are the same task objects as last refresh; repainting the
        whole table cost the compositor a full render of every line (the bulk of the UI's
        time per refresh)."""
        top = int(self.scroll_y)
        shown = {id(t) for t in self.rows[top : top + self.size.height]}
        self._text_cache = {k: v for k, v in self._text_cache.items() if k in shown}
        if self._drawn_frame != self._frame():
            self.refresh()
            return
        width = self.size.width
        dirty = [y for y in range(1, self.size.height) if self._drawn.get(y) != self._line(y)]
        for y in dirty:
            self.refresh(Region(0, y, width, 1))

    def _frame(self) -> tuple[int, int, str]:
        return (self.size.width, int(self.scroll_y), self.header_text())

    def _line(self, y: int) -> tuple[str, str]:
        """(text, style name) of widget line y >= 1, as render_line draws it."""
        row = int(self.scroll_y) + y - 1
        if row >= len(self.rows):
            return ("", "blank")
        task = self.rows[row]
        c = self._text_cache.get(id(task))
        if c is None or c[0] is not task:
            c = self._text_cache[id(task)] = (task, self.row_text(task))
        kind = "cursor" if row == self.cursor else "running" if task.state == "R" else "plain"
        return (c[1], kind)

    def _relayout(self) -> None:
        width = self.scrollable_content_region.width or self.size.width or 80
        available = self.available_columns()
        key = (width, tuple(c.key for c in available))
        if key != self._layout_key:
            self._layout_key = key
            self._columns = layout_columns(width, available)
            self._text_cache = {}
            self._drawn_frame = None
        # virtual_size is a layout reactive: every change costs a full layout pass (tens of ms).
        # Thread counts wobble every refresh, so grow in steps and shrink only past a margin;
        # the spare rows render blank.
        need = len(self.rows) + 1
        have = self.virtual_size.height
        if need > have or need < have - 2 * ROW_STEP or width != self.virtual_size.width:
            self.virtual_size = Size(width, -(-need // ROW_STEP) * ROW_STEP)

    def on_resize(self, event: events.Resize) -> None:
        self._relayout()
        self._scroll_cursor_visible()
        # The compositor may have drawn the new size before this event, with the columns
        # chosen for the old width (a first snapshot that came before the first layout)
        self.refresh()

    # --- cursor -------------------------------------------------------------

    def move_cursor(self, row: int) -> None:
        if not self.rows:
            return
        self.cursor = max(0, min(row, len(self.rows) - 1))
        self._selected_tid = self.rows[self.cursor].tid
        self._scroll_cursor_visible()
        self.refresh()
        self.post_message(self.CursorMoved())

    def select_tid(self, tid: int) -> bool:
        for i, t in enumerate(self.rows):
            if t.tid == tid:
                self.move_cursor(i)
                return True
        return False

    def _page(self) -> int:
        return max(1, self.size.height - 2)

    def _scroll_cursor_visible(self) -> None:
        h = self.size.height - 1  # minus the header line
        if h <= 0:
            return
        top = int(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + h:
            self.scroll_to(y=self.cursor - h + 1, animate=False)

    def action_cursor(self, delta: int) -> None:
        self.move_cursor(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.move_cursor(self.cursor + direction * self._page())

    def action_first(self) -> None:
        self.move_cursor(0)
        self._selected_tid = None  # back to watching the top of the list

    def action_last(self) -> None:
        self.move_cursor(len(self.rows) - 1)

    # --- mouse --------------------------------------------------------------

    def column_at(self, x: int) -> Column | None:
        pos = 0
        for col, w in self._columns:
            if pos <= x < pos + w + 1:
                return col
            pos += w + 1
        return None

    def on_click(self, event: events.Click) -> None:
        if event.y == 0:
            col = self.column_at(event.x + int(self.scroll_x))
            if col is not None:
                self.set_sort(col.key)
            return
        row = int(self.scroll_y) + event.y - 1
        if 0 <= row < len(self.rows):
            self.move_cursor(row)
            if event.chain >= 2:
                self.post_message(self.Activated(self.rows[row]))

    # --- rendering ----------------------------------------------------------

    def header_text(self) -> str:
        cells = []
        for col, w in self._columns:
            label = col.label
            if col.key == self.sort_key:
                label = ("▼" if self.sort_reverse else "▲") + label
            cells.append(label.ljust(w) if col.left else label.rjust(w))
        return " ".join(cells)

    def row_text(self, task: Task) -> str:
        cells = []
        for col, w in self._columns:
            s = col.text(task)
            if len(s) > w:
                # text keeps its start; a number is refitted, never cut
                s = s[: w - 1] + "…" if col.left else (col.fit(task, w) if col.fit else OVERFLOW * w)
            cells.append(s.ljust(w) if col.left else s.rjust(w))
        return " ".join(cells)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        frame = self._frame()
        if frame != self._drawn_frame:
            self._drawn_frame = frame
            self._drawn = {}
        if y == 0:
            base = self.get_component_rich_style("task-table--header")
            segs = [Segment(frame[2].ljust(width)[:width], base)]
            return Strip(segs, width)
        text, kind = self._drawn[y] = self._line(y)
        if kind == "blank":
            return Strip.blank(width, self.rich_style)
        if kind == "cursor":
            style = self.get_component_rich_style("task-table--cursor")
        elif kind == "running":
            style = self.get_component_rich_style("task-table--running")
        else:
            style = self.rich_style
        return Strip([Segment(text.ljust(width)[:width], style)], width)

    def render_lines_for_test(self) -> list[str]:
        """Header plus the rows as text (used by tests and --once style dumps)."""
        return [self.header_text()] + [self.row_text(t) for t in self.rows]

