"""Read-only mode: `schedtop --read-only`, and every session `schedtop serve` runs without --allow-steer.

The keys that would change the machine answer with why instead of acting: every binding whose
id is under ``schedtop.steer.`` or ``schedtop.scx.`` (retuning a task, the base slice, loading or
driving schedtop's sched_ext scheduler; not the scheduler panel, which only shows), ``T`` (a
trace file written by the user running schedtop) and the changes screen's undo and restore.
They are found by binding id, so a keymap that moves a key keeps it refused, and the action
names come from the bindings themselves. The app also opens no steering journal (no recovery
offer, no profile): refusing here is the first fence, not the only one.
"""

from __future__ import annotations

from functools import cache
from typing import Any

REFUSED_ID_PREFIXES = ("schedtop.steer.", "schedtop.scx.", "steer.changes.")
SHOWN_IDS = frozenset({"schedtop.scx.panel", "steer.changes.close"})  # under those prefixes, only look
WRITE_IDS = frozenset({"schedtop.trace"})

STEER_OFF = "steering off (--read-only)"
STEER_OFF_WEB = "steering off (serve without --allow-steer)"


def action_name(action: Any) -> str:
    """'steer_nice(-1)', 'app.steer_nice(-1)' or a parsed (namespace, name, params) -> 'steer_nice'."""
    if isinstance(action, tuple):
        return str(action[1])
    return str(action).partition("(")[0].rpartition(".")[2].strip()


def refused_by_ids(bindings: list[Any]) -> frozenset[str]:
    """The action names of the bindings read-only mode refuses."""
    names = set()
    for b in bindings:
        ident = getattr(b, "id", None) or ""
        if ident in WRITE_IDS or (ident.startswith(REFUSED_ID_PREFIXES) and ident not in SHOWN_IDS):
            names.add(action_name(b.action))
    return frozenset(names)


@cache
def refused_actions() -> frozenset[str]:
    from schedtop.ui.app import SchedtopApp
    from schedtop.ui.screens.changes import ChangesScreen
    from schedtop.ui.screens.main import MainScreen

    return refused_by_ids([*SchedtopApp.BINDINGS, *MainScreen.BINDINGS, *ChangesScreen.BINDINGS])


def refused(action: Any) -> bool:
    return action_name(action) in refused_actions()


def off_text(web: bool) -> str:
    return STEER_OFF_WEB if web else STEER_OFF


def refusal(action: Any, web: bool) -> str | None:
    """What a refused key answers; None for a key that only looks."""
    if not refused(action):
        return None
    return f"{off_text(web)}: this key would change the machine, so it does nothing here"


def mode_text(mode: str, web: bool) -> str:
    """The header's mode ('live', 'PAUSED', 'REPLAY 3/60 x1 playing') with steering's state."""
    return off_text(web) if mode == "live" else f"{mode}  {off_text(web)}"
