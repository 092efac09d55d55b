"""The schedtop TUI: a timer wakes a collector thread, the thread posts Snapshots, widgets render them.

The collection loop and the replay transport live in poller.py (mixed in);
this module applies each SnapshotReady inside `batch_update()` (widgets only
render what they are given) and holds the app-wide keys; the main view and its keys
are screens/main.py's MainScreen. Steering is a SteeringSession and schedtop's scheduler a SchedulerController
(plain objects made in __init__); the sched_ext area's keys (x, T) still come from the ExtActions mixin.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import Screen

from schedtop.collect.live import LiveSource
from schedtop.collect.sched_ext import SCHED_EXT_SYSFS
from schedtop.model import Snapshot, Task, ViewRequest
from schedtop.textsafe import visible
from schedtop.ui import readonly
from schedtop.ui.config import Config, ConfigError
from schedtop.ui.controllers.scheduler import SchedulerController
from schedtop.ui.controllers.steering import Note, Quit, Reply, SteeringSession
from schedtop.ui.ext_actions import ExtActions
from schedtop.ui.history import History
from schedtop.ui.palette import ActionsProvider
from schedtop.ui.poller import Poller, SnapshotReady
from schedtop.ui.screens.detail import DetailScreen
from schedtop.ui.screens.help import HelpScreen, help_rows
from schedtop.ui.screens.main import MainScreen
from schedtop.ui.screens.too_small import TooSmallScreen, too_small
from schedtop.ui.widgets.cpu_panel import CpuPanel
from schedtop.ui.widgets.header import SchedHeader
from schedtop.ui.widgets.latency import LatencyPanel
from schedtop.ui.widgets.status import StatusBar
from schedtop.ui.widgets.task_pane import TaskPane
from schedtop.ui.widgets.task_table import TaskTable

LATENCY_MIN_WIDTH = 110  # below this the histogram would squeeze the CPU bars
PANE_MIN_WIDTH = 180  # the task table needs ~135 columns; the side pane takes the rest
EXIT_GRACE_S = 3.0  # after a signal, how long Textual may take to restore the terminal


def _b(key: str, action: str, description: str, ident: str, tooltip: str, show: bool = True, **kw: Any) -> Binding:
    return Binding(key, action, description, show=show, id=f"schedtop.{ident}", tooltip=tooltip, **kw)


# The app-wide keys: they act from every screen (the main view's are MainScreen's).
APP_BINDINGS: list[Binding] = [
    _b("q", "quit", "Quit", "quit", "Quit schedtop (journaled changes are restored)"),
    _b("question_mark,f1", "help", "Help", "help", "Show every key, generated from the bindings"),
    _b("space", "pause", "Pause", "pause", "Freeze the view; collection keeps counting"),
    _b("full_stop", "step(1)", "Step", "replay_step", "Replay: show the next frame (pauses)"),
    _b("comma", "step(-1)", "Back", "replay_back", "Replay: show the previous frame (pauses)"),
    _b("plus", "speed(1)", "Faster", "replay_faster", "Replay: play faster", show=False),
    _b("minus", "speed(-1)", "Slower", "replay_slower", "Replay: play slower", show=False),
]
REPLAY_ACTIONS = {"step", "speed"}


def action_text(action: dict) -> str:
    """A recorded action in one short phrase, whatever area wrote it."""
    for key in ("text", "summary", "description", "message"):
        if isinstance(action.get(key), str):
            return action[key]
    fields = [f"{k}={v}" for k, v in action.items() if k not in ("wall", "index") and not isinstance(v, (dict, list))]
    return " ".join(fields[:4]) or "action"


class SchedtopApp(Poller, ExtActions, App[int]):
    TITLE = "schedtop"
    CSS_PATH = Path(__file__).with_name("schedtop.tcss")  # absolute: subclasses live elsewhere
    COMMANDS = App.COMMANDS | {ActionsProvider}
    HELP_GROUP = "schedtop"
    BINDINGS: ClassVar[list[BindingType]] = list(APP_BINDINGS)
    MAIN_SCREEN: ClassVar[type[MainScreen]] = MainScreen

    def __init__(
        self,
        source: Any,
        *,
        delay: float = 1.0,
        pids: tuple[int, ...] | list[int] = (),
        record: Any = None,
        config: Config | None = None,
        args: Any = None,
        paused: bool = False,
        read_only: bool = False,
    ) -> None:
        super().__init__()
        self.source = source
        self.delay = delay
        self.pids = tuple(pids)
        self.recorder = record
        self.config = config or Config()
        self.args = args
        self.replay = hasattr(source, "step") and hasattr(source, "seek")
        self.read_only = read_only  # steering keys answer readonly.refusal() instead of acting
        self.snapshot: Snapshot | None = None  # what the widgets show (frozen while paused)
        self.latest: Snapshot | None = None  # newest collected
        self.history = History()
        self.paused = paused  # a replay started paused shows its first frame and waits
        self.pending = 0  # frames collected while paused
        self.thread_mode = True  # what the next request asks for; only frames of this mode are shown
        self._view_frame = False  # a frame asked for by a view change: shown even while paused
        self.detail_tid: int | None = None  # whose /proc sched the next collect reads (detail screen, side pane)
        self.follow_pid: int | None = None
        self.latency_wanted = True  # `H`: the user's choice; the panel also needs data and width
        self.error: str | None = None
        self.collect_ms: float = 0.0
        self.poller_init()
        root = source.sched_ext_root if isinstance(source, LiveSource) else SCHED_EXT_SYSFS
        self.scheduler = SchedulerController(self.post_message, self.record_action, sched_ext_root=root)
        self.steering = SteeringSession(self.post_message, self.record_action, self.scheduler, live=not self.replay,
                                        keep=bool(getattr(args, "keep", False)),
                                        exec_hook=not getattr(args, "no_bpf", False),
                                        gamemode=not getattr(args, "no_gamemode", False))
        if read_only:
            self.steering.live = False  # no journal, no recovery, no profile: nothing it could change
        self._profile: str | None = getattr(args, "profile", None)
        self._hooks_done = False
        self._warned: set[str] = set()  # warnings already shown as a banner
        if self.config.theme:
            if self.config.theme not in self.available_themes:
                known = ", ".join(sorted(self.available_themes))
                raise ConfigError(f"{self.config.path or 'config'}: unknown theme {self.config.theme!r} (known: {known})")
            self.theme = self.config.theme

    # --- layout -------------------------------------------------------------

    def on_mount(self) -> None:
        if self.config.keymap:
            self.set_keymap(dict(self.config.keymap))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread (tests): nothing to install

    def main_mounted(self, main: MainScreen) -> None:
        """The main view is composed (MainScreen's mount, after the App's): the parts start."""
        table = main.query_one(TaskTable)
        table.thread_mode = self.thread_mode
        if self.pids:
            table.set_only_pids(self.pids)
        table.focus()
        main.query_one("#latency").display = False
        main.query_one(TaskPane).display = self.size.width >= PANE_MIN_WIDTH
        self._render_state()
        if not self.replay and hasattr(self.source, "add_extra"):
            self.source.add_extra("scx", self.scheduler.part)
        self.tell(self.steering.start())
        self.ext_mount()
        self._poll()
        self._check_size()
        if self._profile:  # last: a profile that does not load ends the app, every part mounted
            self.start_profile(self._profile)

    def _on_signal(self, sig: int) -> None:
        # Restore first: the journal must never wait on the terminal.
        self.run_exit_hooks()
        # When the terminal hung up (tmux kill-session, a closed ssh), Textual's shutdown blocks
        # for ever writing to the dead pty. Everything that matters is done; leave in any case.
        watchdog = threading.Timer(EXIT_GRACE_S, os._exit, (128 + sig,))
        watchdog.daemon = True
        watchdog.start()
        self.exit(128 + sig)

    def get_default_screen(self) -> Screen:
        return self.MAIN_SCREEN(id="_default")

    def _check_size(self) -> None:
        small = too_small(*self.size)
        showing = isinstance(self.screen, TooSmallScreen)
        if small and not showing:
            self.push_screen(TooSmallScreen())
        elif not small and showing:
            self.pop_screen()

    def _layout_pane(self) -> None:
        pane = self.query_one(TaskPane)
        wide = self.size.width >= PANE_MIN_WIDTH
        if pane.display != wide:
            pane.display = wide
            self._show_pane()
            if not wide and not isinstance(self.screen, DetailScreen):
                self.detail_tid = None  # nothing shows the fields any more

    def _show_pane(self) -> None:
        pane = self.query_one(TaskPane)
        if not pane.display:
            return
        table = self.query_one(TaskTable)
        task = table.selected
        tid = task.tid if task is not None else None
        if not self.replay and not isinstance(self.screen, DetailScreen):
            self.detail_tid = tid  # the next collect reads its /proc sched fields for the pane
        detail = self.snapshot.detail if self.snapshot is not None else None
        pane.show(task, tid, self.history.trail(tid) if tid is not None else None, detail, self.replay,
                  siblings=table.siblings(task) if task is not None else None)

    def _layout_latency(self) -> None:
        lat = self.query_one("#latency", LatencyPanel)
        snap = self.snapshot
        lat.display = bool(self.latency_wanted and snap is not None and snap.latency is not None
                           and self.size.width >= LATENCY_MIN_WIDTH)

    # --- what mixins use ----------------------------------------------------

    def view_request(self) -> ViewRequest:
        """What the next collect is asked for: built on the UI thread, read by the collector's."""
        return ViewRequest(threads=self.thread_mode, detail_tid=None if self.replay else self.detail_tid)

    def selected_task(self) -> Task | None:
        if self.snapshot is None:
            return None
        return self.query_one(TaskTable).selected

    def notify(self, message: str, *args: Any, markup: bool = False, **kwargs: Any) -> None:  # type: ignore[override]
        """Notifications echo task names and kernel text: shown escaped, never read as markup."""
        super().notify(visible(message, keep_newlines=True), *args, markup=markup, **kwargs)

    def record_action(self, action: dict) -> None:
        if self.recorder is None:
            return
        with self._record_lock:
            self.recorder.action(action)

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        if not self.is_running:
            # Shutting down: the screens' widgets are being removed, and a collection that
            # finished meanwhile must not render into them (NoMatches CpuPanel, 4 in 15 exits).
            return
        if message.error is not None:
            self.error = message.error
            self._render_state()
            return
        snap = message.snapshot
        assert snap is not None
        if message.threads != self.thread_mode:
            return  # collected for the view before `t`: view_changed() asked for one in the new mode
        self.error = None
        self.collect_ms = message.elapsed * 1000
        self.latest = snap
        if not self.replay:
            for w in snap.warnings:
                if w not in self._warned:
                    self._warned.add(w)
                    self.notify(w, title="schedtop", severity="warning", timeout=8)
        self.history.update(snap)
        if self.paused and not self.replay and not self._view_frame:  # a replay frame in flight is still shown
            self.pending += 1
            self._render_state()
            return
        self.pending = 0
        self._view_frame = False
        self.show(snap)

    def view_changed(self) -> None:
        """The thread/process mode changed: the source folds (or not) the frame it gives for
        the new request. A replay gives this frame again at once; live, a collect starts now
        and its frame is shown even while paused (it answers a key)."""
        if self.replay:
            self.latest = self.source.current(self.view_request())
            self.show(self.latest)
            return
        self._view_frame = True
        self.poll_now()

    def show(self, snap: Snapshot) -> None:
        """Render a snapshot everywhere (the only place widgets get data)."""
        self.snapshot = snap
        tasks = snap.tasks  # threads or processes, as the request asked: the source folds
        with self.batch_update():
            self.query_one(CpuPanel).show(snap)
            self._layout_latency()
            lat = self.query_one(LatencyPanel)
            if lat.display:
                ext = snap.extras.sched_ext
                changes = ext.changes if ext is not None else ()
                lat.show(snap.latency, self.history.p99_us, self.history.p99_ts, changes)
            self.query_one(TaskTable).set_tasks(
                tasks,
                thread_mode=self.thread_mode,
                show_lat=any(t.lat_p99_us is not None for t in tasks),
                show_ext=any(t.ext_enabled is not None for t in tasks),
            )
            self._show_pane()
            self._render_state()
            for screen in self.screen_stack:
                # A screen pushed this turn may not be composed yet; its own on_mount
                # draws self.snapshot, so only screens whose mount finished get frames.
                if hasattr(screen, "show_snapshot") and screen.is_mounted:
                    screen.show_snapshot(snap)

    def mode_text(self) -> str:
        if self.read_only:
            return readonly.mode_text(self._mode_text(), self.is_web)
        return self._mode_text()

    def _mode_text(self) -> str:
        if self.replay:
            src = self.source
            if src.at_end and not self.paused:
                state = "end"
            else:
                state = "paused" if self.paused else "playing"
            return f"REPLAY {src.pos + 1}/{len(src)} x{src.speed:g} {state}"
        if self.paused:
            return f"PAUSED ({self.pending} new)" if self.pending else "PAUSED"
        return "live"

    def view_text(self) -> str:
        table = self.query_one(TaskTable)
        parts = [f"{len(table.rows)}/{len(table.tasks)} {'threads' if self.thread_mode else 'processes'}"]
        parts.append(f"sort {table.sort_key}{'↓' if table.sort_reverse else '↑'}")
        if table.filter_text:
            parts.append(f"filter {table.filter_text!r}")
        if table.only_pids:
            parts.append("follow " + ",".join(map(str, sorted(table.only_pids))))
        if self.collect_ms and not self.replay:
            parts.append(f"collect {self.collect_ms:.0f}ms")
        if self.recorder is not None:
            parts.append(f"● rec {getattr(self.recorder, 'path', '')}")
        if self.replay and self.snapshot is not None:
            # What the user did just before this frame, as recorded (steer changes, markers...).
            for a in self.source.actions_at(self.source.pos):
                parts.append(f"⏺ {action_text(a)}")
        return "  ".join(parts)

    def _render_state(self) -> None:
        self.query_one(SchedHeader).show(self.snapshot, self.mode_text(), [g.label() for g in self.steering.games()])
        self.query_one(StatusBar).show(self.snapshot, self.view_text(), self.error)

    # --- actions ------------------------------------------------------------

    async def run_action(self, action: Any, default_namespace: Any = None, namespaces: Any = None) -> bool:
        if self.read_only and (why := readonly.refusal(action, self.is_web)):
            self.notify(why, severity="warning", timeout=6)
            return True
        return await super().run_action(action, default_namespace, namespaces)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in REPLAY_ACTIONS and not self.replay:
            return False  # hidden from footer, help and palette in live mode
        if self.read_only and readonly.refused(action):
            return None  # greyed in the footer; the key still gets its answer (run_action)
        return True

    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            if self.latest is not None and self.latest is not self.snapshot:
                self.show(self.latest)
            self.pending = 0
            if self.replay:
                self._arm()
        self._render_state()

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(help_rows(self, self.screen.active_bindings)))

    # --- schedtop's sched_ext scheduler ------------------------------------

    def on_scheduler_controller_note(self, message: SchedulerController.Note) -> None:
        self.notify(message.text, severity=message.severity, timeout=message.timeout)

    def on_scheduler_controller_exited(self, message: SchedulerController.Exited) -> None:
        text = str(message.exit.get("text"))  # plain: dialogs and notifications never read markup
        if not message.loaded:  # it never got into the kernel: nothing was ejected
            self.notify(f"schedtop's scheduler did not load: {text}", severity="error", timeout=15)
            return
        if message.exit.get("reason") == "stopped":
            self.notify("schedtop's scheduler unloaded: back on EEVDF")
            return
        from schedtop.ui.screens.steer import ConfirmScreen

        self.notify(f"scheduler gone: {text}", severity="error", timeout=15)

        def reload(yes: bool | None) -> None:
            if yes:
                self.scheduler.load()

        self.push_screen(ConfirmScreen(
            "Scheduler ejected", f"{text}\n\nThe machine runs on EEVDF again. Reload schedtop's scheduler?",
            yes="Reload"), reload)

    # --- steering (SteeringSession) ---------------------------------------

    def start_profile(self, spec: str) -> None:
        """What --profile does once the app is mounted."""
        self.tell(self.steering.start_profile(spec))

    def on_steering_note(self, message: Note) -> None:
        self.tell([message])

    def tell(self, reply: Reply) -> None:
        """What the steering session answered, in order: notes, and the screen that asks what a
        change waits on (the value it is dismissed with goes back to the session)."""
        from schedtop.ui.screens.steer import screen_for

        for item in reply:
            if isinstance(item, Note):
                self.notify(item.text, severity=item.severity, timeout=item.timeout)
            elif isinstance(item, Quit):
                text = item.text
                atexit.register(lambda: print(text, file=sys.__stderr__, flush=True))
                self.exit(item.code, return_code=item.code)
            else:
                screen, answer = screen_for(item)
                self.push_screen(screen, lambda value, answer=answer: self.tell(answer(value)))

    def _steering_close(self) -> None:
        msg = self.steering.close()
        if msg:
            # The terminal still belongs to Textual here: say it once the app is gone.
            # (sys.stderr is Textual's capture now, so look the real one up at exit time.)
            atexit.register(lambda: print(msg, file=sys.__stderr__, flush=True))

    # --- exit ---------------------------------------------------------------

    def run_exit_hooks(self) -> None:
        """Each part's exit hook, exactly once (quit key, SIGTERM/SIGHUP, or run()'s finally)."""
        if self._hooks_done:
            return
        self._hooks_done = True
        self.poller_stop()
        for hook in (self.ext_unmount, self.scheduler.close, self._steering_close):
            try:
                hook()
            except Exception as exc:  # one area's failure must not skip another's restore
                self.log.error(f"{hook.__name__}: {exc}")

    def exit(self, result: int | None = None, return_code: int = 0, message: Any = None) -> None:
        self.run_exit_hooks()
        super().exit(result, return_code, message)
