"""G (the global EEVDF base slice) on the live app on this host, where the kernel refuses
debugfs access even to root (lockdown): one clear error, nothing journaled. The accepted path
(steps, changes-pane row, restore on quit) runs in the guest: tests/guest/test_base_slice_guest.py."""

from __future__ import annotations

import pytest

from schedtop.steer.actions import SteerError, read_base_slice

from tuikit import capture_notifications, run_live, wait_for



def _refused() -> bool:
    try:
        return read_base_slice() < 0  # never: a readable knob is not refused
    except SteerError:
        return True


@pytest.mark.root
@pytest.mark.skipif(not _refused(), reason="this kernel lets root read base_slice_ns (the guest test covers it)")
def test_g_says_why_it_cannot_and_journals_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SCHEDTOP_STATE_DIR", str(tmp_path / "state"))
    async def body(app, pilot):
        seen = capture_notifications(app)
        assert "schedtop.steer.base_slice" in {b.id for b in app.screen.BINDINGS if getattr(b, "id", None)}
        await pilot.press("G")
        await wait_for(pilot, lambda: any(sev == "error" for _, sev in seen))
        errs = [m for m, sev in seen if sev == "error"]
        assert errs and "base_slice_ns: Operation not permitted" in errs[0] and "lockdown" in errs[0]
        assert app.steering.journal is not None and app.steering.journal.steps == []
        assert all(r.key != "base_slice" for r in app.steering.rows())

    run_live(body)
    assert not list((tmp_path / "state").glob("session-*.json"))
