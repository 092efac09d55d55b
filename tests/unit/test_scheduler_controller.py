"""The scheduler controller without Textual: what it tells the app after a load that never
happened, after one that did, and whether it tries at all."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from schedtop.model import SchedulerInfo
from schedtop.scx.loader import SCHED_EXT_DIR
from schedtop.scx.supervisor import ScxOptions, ScxState, ScxView
from schedtop.ui.controllers.scheduler import SchedulerController, load_refusal


def _phase(ctl: SchedulerController) -> str | None:
    part = ctl.part()
    assert part is not None  # a load was asked for: the snapshot has the scheduler's part
    return part.phase


def _wait(cond, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_refusal_says_what_is_really_loaded():
    absent = load_refusal(SchedulerInfo(kind="eevdf", ext_state="absent"))
    assert absent is not None and "no sched_ext" in absent and "nothing was loaded" in absent
    other = load_refusal(SchedulerInfo(kind="sched_ext", ext_state="enabled", ops_name="schedtop_min"))
    assert other is not None and "schedtop_min" in other and "nothing was loaded" in other
    ours = load_refusal(SchedulerInfo(kind="schedtop", ext_state="enabled", ops_name="schedtop"))
    assert ours is not None and "another process" in ours
    assert load_refusal(SchedulerInfo(kind="eevdf", ext_state="disabled")) is None
    assert load_refusal(None) is None  # nothing collected yet: the child has the last word


def test_a_load_that_never_happened_is_a_failed_load_not_an_ejection():
    """The real child (`schedtop scx`) on this kernel: it exits before it loads anything."""
    if SCHED_EXT_DIR.exists():
        import pytest

        pytest.skip("here loading would succeed: the guest tests cover that path")
    posted: list[Any] = []
    actions: list[dict] = []
    ctl = SchedulerController(posted.append, actions.append, ScxOptions(policy="fifo"))
    ctl.load()
    _wait(lambda: any(isinstance(m, SchedulerController.Exited) for m in posted))
    exited = next(m for m in posted if isinstance(m, SchedulerController.Exited))
    assert exited.loaded is False and exited.exit["reason"] == "error" and exited.exit["text"]
    _wait(lambda: not ctl.running)
    assert not ctl.loaded and _phase(ctl) == "failed"
    assert [a["type"] for a in actions] == ["scx.load", "scx.exit"]
    assert not ctl.steer("boost", 1)  # nothing runs: no knob is sent, none recorded


@dataclass
class _Child:
    """Stands in for the supervised child where no machine here has sched_ext: it
    loads, then the kernel ejects it (the guest tests run the real one)."""

    options: ScxOptions
    on_change: Any
    state: ScxState = field(default_factory=ScxState)
    alive: bool = False
    sent: list[dict] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.alive

    def start(self) -> None:
        self.alive = True
        self.state = ScxState(running=True)

    def send(self, **cmd: Any) -> bool:
        self.sent.append(cmd)
        return self.alive

    def stop(self) -> None:
        self.alive = False

    def view(self) -> ScxView:
        return ScxView.of(self.state, self.alive, self.options)


def test_an_ejection_after_a_load_is_reported_as_one():
    posted: list[Any] = []
    ctl = SchedulerController(posted.append, lambda a: None, supervisor=_Child)  # type: ignore[arg-type]
    ctl.load()
    child = ctl.supervisor
    assert isinstance(child, _Child)
    assert ctl.running and not ctl.loaded and _phase(ctl) == "loading"
    child.state.loaded = {"event": "loaded", "ops": "schedtop"}
    assert ctl.loaded and _phase(ctl) == "loaded"
    assert ctl.steer("boost", 42) and child.sent[-1] == {"cmd": "boost", "pid": 42}
    child.state.exit = {"reason": "ejected", "text": "runnable task stall", "code": None}
    child.on_change(child.state)
    child.on_change(child.state)  # the watcher and the reader may both report it: said once
    exits = [m for m in posted if isinstance(m, SchedulerController.Exited)]
    assert len(exits) == 1 and exits[0].loaded is True and exits[0].exit["reason"] == "ejected"


def test_the_supervisors_view_is_a_frozen_copy_of_its_state():
    """What part() is made from: the real supervisor (not started here) copies its state whole,
    read-only, so the reader thread's later changes do not show through."""
    import dataclasses

    import pytest

    from schedtop.scx.supervisor import ScxSupervisor

    sup = ScxSupervisor(ScxOptions(policy="fifo", partial=True))
    sup.state.loaded = {"event": "loaded", "ops": "schedtop"}
    sup.state.exit = {"reason": "ejected", "text": "runnable task stall", "code": None}
    v = sup.view()
    assert not v.running and v.options.policy == "fifo" and v.options.partial
    assert v.loaded == {"event": "loaded", "ops": "schedtop"}
    assert v.exit is not None and v.exit["text"] == "runnable task stall"
    sup.state.loaded["ops"] = "other"
    sup.state.exit = None
    assert v.loaded["ops"] == "schedtop" and v.exit is not None
    with pytest.raises(TypeError):
        v.loaded["ops"] = "x"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.running = True  # type: ignore[misc]
