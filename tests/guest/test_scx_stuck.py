"""A loop that cannot come back: a user policy stuck in decide() or tick(), and a loop process
frozen by SIGSTOP under the app's supervisor. The kernel's watchdog takes the CPUs back either
way; these tests prove that schedtop then SAYS so (with where the policy hangs), goes away
instead of lingering, and that unloading a frozen loop does not wait for it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from scx_helpers import state, wait_state
from test_scx import scx_proc  # noqa: F401 (the fixture: starts `schedtop scx`, kills it after)

pytestmark = pytest.mark.kernel


def hanging_policy(tmp_path: Path, where: str, after: int) -> Path:
    """A policy that works for `after` calls, then spins for ever in `where` (decide or tick)."""
    f = tmp_path / "hangs.py"
    f.write_text(
        "from schedtop.scx.policy import Policy as Base\n"
        "class Policy(Base):\n"
        "    name = 'hangs'\n"
        "    n = 0\n"
        f"    def {where}(self, *args):\n"
        "        self.n += 1\n"
        f"        while self.n > {after}: pass  # HANG HERE\n"
        f"        return super().{where}(*args)\n"
    )
    return f


def hang_line(f: Path) -> int:
    return next(i for i, line in enumerate(f.read_text().splitlines(), 1) if "HANG HERE" in line)


def test_a_policy_stuck_in_decide_is_ejected_reported_and_gone(tmp_path, scx_proc):
    f = hanging_policy(tmp_path, "decide", after=50)
    scx = scx_proc("--policy", str(f), timeout_ms=2000)
    load = subprocess.Popen(["stress-ng", "--cpu", "2", "--timeout", "4"], stdout=subprocess.DEVNULL)
    wait_state("disabled", 60)  # the watchdog: the queued tasks waited past timeout_ms
    t_off = time.monotonic()
    assert scx.proc.wait(timeout=30) == 2
    gone = time.monotonic() - t_off
    event = scx.exit_event()
    assert event["reason"] == "ejected"
    assert "stall" in event["text"], event["text"]
    assert f"hangs.py:{hang_line(f)} in decide" in event["text"], event["text"]
    assert gone < 10, f"the stuck process lingered {gone:.1f}s after the ejection"  # 1 s grace + TCG
    assert load.wait(timeout=60) == 0


def test_a_policy_stuck_in_tick_still_unloads_when_asked(tmp_path, scx_proc):
    # Partial mode and no SCHED_EXT task: nothing waits on the loop, so no watchdog will come;
    # only the stop request can end it, and the loop never looks at it again.
    f = hanging_policy(tmp_path, "tick", after=5)
    scx = scx_proc("--policy", str(f), "--partial", timeout_ms=2000)
    time.sleep(1.5)  # 5 ticks of POLL_MS (100 ms) go by: it is spinning now
    assert state() == "enabled"
    t0 = time.monotonic()
    scx.proc.send_signal(signal.SIGTERM)
    assert scx.proc.wait(timeout=30) == 3
    took = time.monotonic() - t0
    event = scx.exit_event()
    assert event["reason"] == "policy"
    assert "did not return" in event["text"] and f"hangs.py:{hang_line(f)} in tick" in event["text"], event["text"]
    assert 2.5 < took < 15, took  # the 3 s grace, then out
    wait_state("disabled", 5)  # its link died with it


def _wait(cond, timeout: float, what: str) -> None:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, f"{what}: not within {timeout}s"
        time.sleep(0.05)


def test_the_supervisor_reports_an_ejection_while_its_child_is_frozen() -> None:
    from schedtop.scx.supervisor import ScxOptions, ScxSupervisor, proc_state

    changes: list[tuple[str | None, bool]] = []
    sup = ScxSupervisor(ScxOptions(timeout_ms=2000, stats_interval=0.5),
                        on_change=lambda st: changes.append((st.frozen, st.exit is not None)))
    sup.start()
    proc = sup._proc
    assert proc is not None
    load = subprocess.Popen(["stress-ng", "--cpu", "2", "--timeout", "6"], stdout=subprocess.DEVNULL)
    try:
        _wait(lambda: sup.state.stats.get("uptime_s") is not None, 60, "first stats line")
        assert state() == "enabled"
        os.kill(proc.pid, signal.SIGSTOP)
        _wait(lambda: sup.state.frozen == "stopped", 10, "frozen seen")
        assert sup.view().frozen == "stopped" and sup.state.exit is None
        _wait(lambda: sup.state.exit is not None, 60, "ejection reported")
        exit_ = sup.state.exit
        assert exit_["reason"] == "ejected", exit_
        assert "stall" in exit_["text"] and "stopped" in exit_["text"], exit_["text"]
        assert state() == "disabled"
        # The frozen loop never ran again: it was killed, not thawed, once the ejection was told.
        _wait(lambda: proc.poll() is not None, 10, "frozen loop removed")
        assert proc.returncode == -signal.SIGKILL and not sup.running
        _wait(lambda: not sup.state.running, 10, "reader finished")
        assert sup.state.exit is exit_  # the reader's account of the kill does not replace it
        assert ("stopped", False) in changes and ("stopped", True) in changes
        assert proc_state(proc.pid) is None
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        load.wait(timeout=60)
    wait_state("disabled", 5)


def test_unloading_a_frozen_loop_does_not_wait_for_it() -> None:
    from schedtop.scx.supervisor import ScxOptions, ScxSupervisor

    sup = ScxSupervisor(ScxOptions(timeout_ms=20000, partial=True, stats_interval=0.5))
    sup.start()
    proc = sup._proc
    assert proc is not None
    try:
        _wait(lambda: sup.state.stats.get("uptime_s") is not None, 60, "first stats line")
        os.kill(proc.pid, signal.SIGSTOP)
        _wait(lambda: sup.state.frozen == "stopped", 10, "frozen seen")
        assert state() == "enabled"  # partial mode, nothing in EXT: no watchdog will come
        t0 = time.monotonic()
        sup.stop()
        took = time.monotonic() - t0
        assert took < 2.0, f"stop() took {took:.1f}s (the old path: 5 s for 'stop', 2 s for SIGTERM)"
        wait_state("disabled", 5)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
