"""Modal screens for steering: yes/no confirmation, the CPU chooser and the policy chooser.

They only collect a choice and dismiss with it; the steering session does the syscalls.
`screen_for` turns what a session's Reply waits on into the screen that asks it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, OptionList, Static
from textual.widgets.option_list import Option

from schedtop.steer import units
from schedtop.textsafe import visible
from schedtop.ui.controllers.steering import Ask, ChooseCpus, ChoosePolicy, Reply, ShowChanges
from schedtop.ui.screens.changes import ChangesScreen
from schedtop.ui.widgets.text import safe

MODAL_CSS = """
%s {
    align: center middle;
}
%s > Vertical {
    width: 72;
    height: auto;
    max-height: 90%%;
    padding: 1 2;
    border: thick $primary;
    background: $surface;
}
%s .steer-error {
    color: $error;
    height: auto;
}
%s .steer-hint {
    color: $text-muted;
    height: auto;
}
%s Horizontal {
    height: auto;
    margin-top: 1;
}
"""


def _css(name: str) -> str:
    return MODAL_CSS % ((name,) * 5)


class ConfirmScreen(ModalScreen[bool]):
    """Yes/no. `y`/Enter on Yes confirms, `n`/Esc declines."""

    DEFAULT_CSS = _css("ConfirmScreen")
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="steer.confirm.yes", tooltip="Confirm"),
        Binding("n,escape", "answer(False)", "No", id="steer.confirm.no", tooltip="Cancel"),
    ]

    def __init__(self, title: str, message: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.title_text = title
        self.message = message
        self.yes, self.no = yes, no

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            # title and message may name a task: plain text, never markup
            box.border_title = safe("$t", t=self.title_text)
            yield Static(Content(visible(self.message, keep_newlines=True)), id="confirm-text")
            with Horizontal():
                yield Button(f"{self.yes} (y)", variant="warning", id="confirm-yes")
                yield Button(f"{self.no} (n)", id="confirm-no")

    def on_mount(self) -> None:
        # the safe default; a dialog torn down while mounting (the app quitting) has no buttons
        for button in self.query("#confirm-no").results(Button):
            button.focus()

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")


class CpuChooser(ModalScreen["tuple[int, ...] | None"]):
    """Type a CPU list (0, 0-1, 0,2, all) or press a CPU's digit; Enter applies, Esc cancels."""

    DEFAULT_CSS = _css("CpuChooser")
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="steer.cpus.cancel", tooltip="Close without pinning")]

    def __init__(self, who: str, current: tuple[int, ...], online: tuple[int, ...]) -> None:
        super().__init__()
        self.who = who
        self.current = current
        self.online = online

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = safe("Pin $who", who=self.who)
            box.border_subtitle = "Enter to pin, Esc to cancel"
            yield Static(f"online CPUs: [b]{units.format_cpulist(self.online)}[/b]   "
                         f"now: [b]{units.format_cpulist(self.current)}[/b]")
            yield Input(value=units.format_cpulist(self.current), placeholder="e.g. 0, 0-1, 0,2 or all",
                        id="cpus-input")
            yield Static("", classes="steer-error", id="cpus-error")
            yield Static("A single CPU, a list, a range, or all.", classes="steer-hint")

    def on_mount(self) -> None:
        inp = self.query_one(Input)
        inp.focus()
        inp.action_select_all()

    @on(Input.Submitted, "#cpus-input")
    def _submit(self, event: Input.Submitted) -> None:
        try:
            cpus = units.parse_cpulist(event.value)
        except ValueError as exc:
            self.query_one("#cpus-error", Static).update(safe("$e", e=exc))
            return
        self.dismiss(cpus)

    def action_cancel(self) -> None:
        self.dismiss(None)


POLICY_CHOICES: list[tuple[str, str]] = [
    ("other", "OTHER  normal fair-class (EEVDF) task"),
    ("batch", "BATCH  fair, but never preempts on wakeup: for hogs"),
    ("idle", "IDLE   runs only when nothing else wants the CPU"),
    ("fifo", "FIFO   real-time, runs until it blocks (priority below)"),
    ("rr", "RR     real-time, round robin among equal priorities"),
]


class PolicyChooser(ModalScreen["tuple[int, int] | None"]):
    """Pick a policy; FIFO/RR take the priority typed below (default 88, PipeWire's)."""

    DEFAULT_CSS = _css("PolicyChooser") + """
PolicyChooser OptionList { height: auto; max-height: 8; }
"""
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="steer.policy.cancel", tooltip="Close without changing")]

    def __init__(self, who: str, current: str) -> None:
        super().__init__()
        self.who = who
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = safe("Policy for $who", who=self.who)
            box.border_subtitle = "Enter to set, Esc to cancel"
            yield Static(safe("now: [b]$now[/b]", now=self.current))
            yield OptionList(*[Option(text, id=key) for key, text in POLICY_CHOICES], id="policy-list")
            yield Static("RT priority for FIFO/RR (1..99):", classes="steer-hint")
            # 3 digits, so 100 is typed whole and refused, never silently read as 10
            yield Input(value="88", id="policy-prio", restrict=r"[0-9]*", max_length=3)
            yield Static("", classes="steer-error", id="policy-error")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def _priority(self) -> int | None:
        """The typed RT priority, or None after saying why it is refused."""
        error = self.query_one("#policy-error", Static)
        try:
            prio = units.check_rt_priority(int(self.query_one("#policy-prio", Input).value or "0"))
        except ValueError as exc:
            error.update(safe("$e", e=exc))
            return None
        error.update("")
        return prio

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        policy = units.parse_policy(event.option.id or "other")
        prio = 0
        if policy in units.RT_POLICIES:
            got = self._priority()
            if got is None:
                self.query_one("#policy-prio", Input).focus()
                return
            prio = got
        self.dismiss((policy, prio))

    @on(Input.Submitted, "#policy-prio")
    def _prio_done(self) -> None:
        if self._priority() is not None:  # a bad value keeps the focus here, with its message
            self.query_one(OptionList).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)


def screen_for(item: Ask | ChooseCpus | ChoosePolicy | ShowChanges) -> tuple[ModalScreen[Any], Callable[[Any], Reply]]:
    """The screen that asks what `item` waits on, and what to do with the value it is dismissed with."""
    if isinstance(item, Ask):
        ask = item
        return ConfirmScreen(ask.title, ask.text, yes=ask.yes, no=ask.no), lambda yes: ask.answer(bool(yes))
    if isinstance(item, ChooseCpus):
        return CpuChooser(item.who, item.current, item.online), item.answer
    if isinstance(item, ChoosePolicy):
        return PolicyChooser(item.who, item.current), item.answer
    return ChangesScreen(item.rows, item.undo_row, item.undo_last, item.restore_all), lambda _: []
