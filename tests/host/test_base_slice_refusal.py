"""The global base slice on this host: the journal records and restores it; where the kernel
refuses debugfs access (this VM's lockdown: EPERM even for root) the CLI and the TUI say so
in one line and journal nothing. The working path is proven in the guest
(tests/guest/test_base_slice_guest.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from schedtop.steer.actions import SteerError, read_base_slice

from schedtop.steer.journal import Journal
from steer_procs import schedtop, state  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.root



def _refused() -> bool:
    try:
        return read_base_slice() < 0  # never: a readable knob is not refused
    except SteerError:
        return True


def test_the_journal_keeps_a_base_slice_step_across_a_reload(state):
    j = Journal.shared(state)
    j.record_base_slice("base slice 3ms", 1_500_000)
    again = Journal.shared(state)
    assert again.active_base_slice() == (1_500_000, ("base slice 3ms",)) and len(again) == 1
    outs = again.restore_all()
    assert len(outs) == 1 and outs[0].base_slice == 1_500_000
    if _refused():  # the kernel refuses: the step stays, so a later restore can try again
        assert outs[0].status == "failed" and "lockdown" in outs[0].message
        assert Journal.shared(state).active_base_slice() is not None
        again.forget_step(again.steps[0].id)
    else:
        assert outs[0].status == "restored"
    assert not (state / "cli.json").exists()


@pytest.mark.skipif(not _refused(), reason="this kernel lets root read base_slice_ns (see the guest test)")
def test_cli_refusal_is_one_clear_line_and_journals_nothing(state):
    r = schedtop("set", "--base-slice", "3ms")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert "base_slice_ns: Operation not permitted" in r.stderr and "per-task slices" in r.stderr
    assert not (state / "cli.json").exists()


def test_non_root_is_told_it_needs_root(tmp_path, nobody_install):
    import shutil
    import tempfile

    import steer_procs as sp

    xdg = Path(tempfile.mkdtemp(prefix="schedtop-xdg-"))
    try:
        shutil.chown(xdg, "nobody", "nogroup")
        r = schedtop("set", "--base-slice", "3ms", env={"XDG_STATE_HOME": str(xdg), "SCHEDTOP_STATE_DIR": ""},
                     prefix=sp.NOBODY, exe=nobody_install.schedtop)
        assert r.returncode == 1 and r.stderr.strip() == "schedtop: the global base slice needs root (debugfs)"
    finally:
        shutil.rmtree(xdg, ignore_errors=True)
    assert os.geteuid() == 0
