"""Load/unload/ejection detection over successive SchedulerInfo readings, on the host.

The host kernel has no sched_ext, so the sysfs here is a directory laid out like
/sys/kernel/sched_ext and read by the real reader (read_scheduler_info); the exit reasons come
through the real /dev/kmsg (as root we write the kernel's own message format into it).
The same tracker runs against a real loaded scheduler in tests/guest/test_ext_sched.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from schedtop.collect.sched_ext import read_scheduler_info
from schedtop.collect.scx_events import KmsgReader, ScxEventTracker, events_extra, parse_kmsg_record


class FakeSysfs:
    """A directory with the sched_ext sysfs files; each change is written like the kernel would."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.seq = 0
        for name, value in (("state", "disabled"), ("switch_all", "0"), ("nr_rejected", "0"),
                            ("hotplug_seq", "1"), ("enable_seq", "0")):
            (root / name).write_text(value + "\n")

    def load(self, ops: str, events: dict[str, int] | None = None) -> None:
        self.seq += 1
        (self.root / "root").mkdir(exist_ok=True)
        (self.root / "root" / "ops").write_text(ops + "\n")
        self.events(events or {})
        (self.root / "enable_seq").write_text(f"{self.seq}\n")
        (self.root / "state").write_text("enabled\n")
        (self.root / "switch_all").write_text("1\n")

    def events(self, events: dict[str, int]) -> None:
        (self.root / "root" / "events").write_text("".join(f"{k} {v}\n" for k, v in events.items()))

    def unload(self) -> None:
        for f in (self.root / "root").iterdir():
            f.unlink()
        (self.root / "root").rmdir()
        (self.root / "state").write_text("disabled\n")
        (self.root / "switch_all").write_text("0\n")

    def read(self):
        return read_scheduler_info(str(self.root))


@pytest.fixture
def sysfs(tmp_path: Path) -> FakeSysfs:
    return FakeSysfs(tmp_path / "sched_ext")


def kinds(events):
    return [(e.kind, e.ops_name, e.missed) for e in events]


def test_load_unload_and_reload_between_polls(sysfs: FakeSysfs) -> None:
    t = ScxEventTracker()
    assert t.update(sysfs.read(), ts=0.0) == []  # the first reading is a baseline, not an event
    sysfs.load("alpha")
    assert kinds(t.update(sysfs.read(), ts=1.0)) == [("load", "alpha", 0)]
    assert t.update(sysfs.read(), ts=2.0) == []
    # unload + load of another scheduler between two polls: both are seen
    sysfs.unload()
    sysfs.load("beta")
    assert kinds(t.update(sysfs.read(), ts=3.0)) == [("unload", "alpha", 0), ("load", "beta", 0)]
    # three more enables between polls, one still loaded: two pairs were missed
    sysfs.unload(); sysfs.load("x"); sysfs.unload(); sysfs.load("y"); sysfs.unload(); sysfs.load("gamma")
    assert kinds(t.update(sysfs.read(), ts=4.0)) == [("unload", "beta", 0), ("load", "gamma", 2)]
    sysfs.unload()
    assert kinds(t.update(sysfs.read(), ts=5.0)) == [("unload", "gamma", 0)]
    # loaded and gone again between two polls: one marker, not silence
    sysfs.load("blink"); sysfs.unload()
    assert kinds(t.update(sysfs.read(), ts=6.0)) == [("unload", None, 0)]
    assert [e.ts for e in t.events] == [1.0, 3.0, 3.0, 4.0, 4.0, 5.0, 6.0]


def test_a_reading_before_the_kernel_bumps_enable_seq_is_one_load(sysfs: FakeSysfs) -> None:
    """The kernel shows state "enabled" and root/ops a moment before it bumps enable_seq (seen
    in the guest): a poll in that window must count the load once, not as a load later plus a
    phantom unload."""
    t = ScxEventTracker()
    t.update(sysfs.read(), ts=0.0)
    sysfs.load("alpha")
    (sysfs.root / "enable_seq").write_text("0\n")  # the window: enabled, not yet bumped
    ev = t.update(sysfs.read(), ts=1.0)
    assert kinds(ev) == [("load", "alpha", 0)] and ev[0].enable_seq == 1  # the number it is about to get
    (sysfs.root / "enable_seq").write_text("1\n")  # the bump arrives
    assert t.update(sysfs.read(), ts=2.0) == []
    sysfs.unload()
    sysfs.load("beta")  # a real reload afterwards still counts
    assert kinds(t.update(sysfs.read(), ts=3.0)) == [("unload", "alpha", 0), ("load", "beta", 0)]


def test_absent_sched_ext_is_quiet(tmp_path: Path) -> None:
    t = ScxEventTracker()
    for i in range(3):
        info = read_scheduler_info(str(tmp_path / "nope"))
        assert info.ext_state == "absent"
        assert t.update(info, ts=float(i)) == []
    assert t.rates == {}


def test_event_rates_whatever_fields_exist(sysfs: FakeSysfs) -> None:
    t = ScxEventTracker()
    sysfs.load("alpha", {"SCX_EV_SELECT_CPU_FALLBACK": 10, "SCX_EV_SOMETHING_NEW": 0})
    t.update(sysfs.read(), ts=0.0)
    sysfs.events({"SCX_EV_SELECT_CPU_FALLBACK": 30, "SCX_EV_SOMETHING_NEW": 5})
    t.update(sysfs.read(), ts=2.0)
    assert t.rates == {"SCX_EV_SELECT_CPU_FALLBACK": 10.0, "SCX_EV_SOMETHING_NEW": 2.5}
    # a reload resets the kernel's counters: no rate across it (never a negative one)
    sysfs.unload()
    sysfs.load("beta", {"SCX_EV_SELECT_CPU_FALLBACK": 1})
    t.update(sysfs.read(), ts=3.0)
    assert t.rates == {}
    extra = events_extra(t, sysfs.read())
    assert extra["ops"] == "beta" and extra["enable_seq"] == 2
    assert [c["kind"] for c in extra["changes"]] == ["unload", "load"]


def test_kmsg_record_format() -> None:
    line = parse_kmsg_record(b'3,1234,56789,-;sched_ext: BPF scheduler "pyus" disabled (runtime error)\n'
                             b' SUBSYSTEM=x\n')
    assert line is not None and (line.level, line.usec) == (3, 56789)
    assert line.text == 'sched_ext: BPF scheduler "pyus" disabled (runtime error)'
    assert parse_kmsg_record(b"garbage") is None


@pytest.mark.root
def test_exit_reason_from_the_real_kernel_log(sysfs: FakeSysfs) -> None:
    name = f"schedtop-test-{os.getpid()}"
    kmsg = KmsgReader()
    assert kmsg.available, kmsg.error
    t = ScxEventTracker(kmsg)
    t.update(sysfs.read(), ts=0.0)
    sysfs.load(name)
    t.update(sysfs.read(), ts=1.0)

    def log(level: int, text: str) -> None:
        with open("/dev/kmsg", "w") as f:  # one write = one record, at the level we give
            f.write(f"<{level}>{text}\n")

    # The kernel's own lines for an ejection (kernel/sched/ext.c), error level.
    sysfs.unload()
    log(3, f'sched_ext: BPF scheduler "{name}" disabled (runtime error)')
    log(3, f"sched_ext: {name}: dispatch buffer overflow")
    (ev,) = t.update(sysfs.read(), ts=2.0)
    assert (ev.kind, ev.reason, ev.detail) == ("eject", "runtime error", "dispatch buffer overflow")
    assert "EJECTED" in ev.label and "dispatch buffer overflow" in ev.label

    # An ordinary unload, info level; the log line arrives one poll after the state change.
    sysfs.load(name)
    t.update(sysfs.read(), ts=3.0)
    sysfs.unload()
    (ev,) = t.update(sysfs.read(), ts=4.0)
    assert (ev.kind, ev.reason) == ("unload", None)
    log(6, f'sched_ext: BPF scheduler "{name}" disabled (unregistered from user space)')
    t.update(sysfs.read(), ts=5.0)
    last = t.events[-1]
    assert (last.kind, last.reason) == ("unload", "unregistered from user space")
    kmsg.close()


def test_kmsg_without_permission_degrades(tmp_path: Path) -> None:
    r = KmsgReader(str(tmp_path / "no-such-kmsg"))
    assert not r.available and "exit reasons need root" in (r.error or "")
    assert r.read() == []
