"""sched_ext scheduler loads, unloads and ejections, detected from successive SchedulerInfo readings.

The sysfs tells us *that* something happened: `enable_seq` counts every successful enable since
boot, and `state` / `root/ops` say what runs now. Polling can miss a quick unload+load, so a
rise of `enable_seq` by N while a scheduler stayed "enabled" is still N loads (and N unloads).
The *why* comes from the kernel log: on disable the kernel prints
  sched_ext: BPF scheduler "NAME" disabled (REASON)
at error level for runtime errors, scx_bpf_error() and watchdog stalls (followed by a line with
the scheduler's own message), at info level for ordinary unregistration. /dev/kmsg needs root;
without it events carry no reason.

`root/events` counters (6.15+) are turned into per-second rates, whatever fields the kernel has.
They reset when a new scheduler instance loads, so no rate is reported across an enable_seq change.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from schedtop.model import SchedExtPart, SchedulerInfo, ScxChange, to_dict

# Reasons from kernel/sched/ext.c scx_exit_reason(); the first three are errors (ejections).
EJECT_REASONS = ("runtime error", "scx_bpf_error", "runnable task stall")
SYSRQ_REASON = "disabled by sysrq-S"

EXTRA_VERSION = 1  # of the "sched_ext" extra's layout (documented in the README)

_DISABLED = re.compile(r'sched_ext: BPF scheduler "(?P<name>[^"]*)" disabled \((?P<reason>[^)]*)\)')
_ENABLED = re.compile(r'sched_ext: BPF scheduler "(?P<name>[^"]*)" enabled')
_DETAIL = re.compile(r"sched_ext: (?P<name>[^:\s]+): (?P<msg>.+)")


@dataclass(frozen=True, slots=True)
class KmsgLine:
    level: int  # syslog level: 3 = err, 6 = info
    usec: int  # kernel timestamp (CLOCK_MONOTONIC µs)
    text: str


@dataclass(frozen=True, slots=True)
class ScxEvent:
    """One change of the scheduler in charge, for markers on the timeline."""

    ts: float  # time.monotonic() of the reading that saw it
    wall: float
    kind: str  # "load", "unload" or "eject"
    ops_name: str | None
    enable_seq: int | None
    reason: str | None = None  # the kernel's exit reason, where the log told us
    detail: str | None = None  # the scheduler's own exit message (errors only)
    missed: int = 0  # further load/unload pairs between two readings that polling could not see

    @property
    def label(self) -> str:
        name = self.ops_name or "?"
        text = {"load": f"loaded {name}", "unload": f"unloaded {name}", "eject": f"EJECTED {name}"}[self.kind]
        if self.reason:
            text += f" ({self.reason})"
        if self.detail:
            text += f": {self.detail}"
        if self.missed:
            text += f" [+{self.missed} missed]"
        return text

    def to_change(self) -> ScxChange:
        """The event as a snapshot carries it."""
        return ScxChange(ts=self.ts, wall=self.wall, kind=self.kind, ops=self.ops_name,
                         enable_seq=self.enable_seq, reason=self.reason, detail=self.detail,
                         missed=self.missed, label=self.label)

    def to_dict(self) -> dict[str, Any]:
        return {"ts": self.ts, "wall": self.wall, "kind": self.kind, "ops": self.ops_name,
                "enable_seq": self.enable_seq, "reason": self.reason, "detail": self.detail,
                "missed": self.missed, "label": self.label}


class KmsgReader:
    """New kernel-log records since we opened /dev/kmsg (non-blocking), sched_ext lines only."""

    def __init__(self, path: str = "/dev/kmsg", from_start: bool = False) -> None:
        self.error: str | None = None
        self._fd = -1
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            if not from_start:
                os.lseek(self._fd, 0, os.SEEK_END)
        except OSError as exc:
            self.error = f"{path}: {exc.strerror} (exit reasons need root)"

    @property
    def available(self) -> bool:
        return self._fd >= 0

    def read(self) -> list[KmsgLine]:
        out: list[KmsgLine] = []
        while self._fd >= 0:
            try:
                rec = os.read(self._fd, 8192)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten before we read it; skip ahead
                    continue
                self.error = str(exc)
                break
            if not rec:
                break
            line = parse_kmsg_record(rec)
            if line is not None and "sched_ext" in line.text:
                out.append(line)
        return out

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def parse_kmsg_record(rec: bytes) -> KmsgLine | None:
    """One /dev/kmsg record: "PRI,SEQ,USEC,FLAGS[,...];TEXT\\n[ continuation lines]"."""
    head, sep, body = rec.decode("utf-8", "replace").partition(";")
    if not sep:
        return None
    parts = head.split(",")
    try:
        level = int(parts[0]) & 7
        usec = int(parts[2])
    except (ValueError, IndexError):
        return None
    return KmsgLine(level, usec, body.split("\n", 1)[0])


@dataclass
class _ExitNote:
    name: str
    reason: str
    error: bool
    detail: str | None = None


class ScxEventTracker:
    """Feed it every SchedulerInfo; it returns the loads/unloads/ejections since the last one."""

    def __init__(self, kmsg: KmsgReader | None = None, keep: int = 256) -> None:
        self.kmsg = kmsg
        self.events: deque[ScxEvent] = deque(maxlen=keep)
        self._prev: SchedulerInfo | None = None
        self._prev_ts: float | None = None
        self._rates: dict[str, float] = {}
        self._exits: deque[_ExitNote] = deque(maxlen=16)
        self._seq_owed = False  # a load counted before the kernel bumped enable_seq for it

    @property
    def rates(self) -> Mapping[str, float]:
        """root/events counters per second over the last interval ({} across a (re)load)."""
        return self._rates

    def _read_log(self) -> None:
        if self.kmsg is None:
            return
        for line in self.kmsg.read():
            m = _DISABLED.search(line.text)
            if m:
                reason = m["reason"]
                self._exits.append(_ExitNote(m["name"], reason, line.level <= 3 or reason in EJECT_REASONS))
                continue
            if _ENABLED.search(line.text):
                continue
            m = _DETAIL.search(line.text)
            if m and self._exits and self._exits[-1].name == m["name"] and self._exits[-1].detail is None:
                self._exits[-1].detail = m["msg"].strip()

    def _exit_for(self, name: str | None) -> _ExitNote | None:
        for i in range(len(self._exits) - 1, -1, -1):
            note = self._exits[i]
            if name is None or note.name == name:
                del self._exits[i]
                return note
        return None

    def _unload(self, ts: float, wall: float, prev: SchedulerInfo) -> ScxEvent:
        note = self._exit_for(prev.ops_name)
        if note is None:
            return ScxEvent(ts, wall, "unload", prev.ops_name, prev.enable_seq)
        kind = "eject" if note.error or note.reason == SYSRQ_REASON else "unload"
        return ScxEvent(ts, wall, kind, prev.ops_name, prev.enable_seq, note.reason, note.detail)

    def update(self, info: SchedulerInfo, ts: float | None = None, wall: float | None = None) -> list[ScxEvent]:
        ts = time.monotonic() if ts is None else ts
        wall = time.time() if wall is None else wall
        self._read_log()
        prev, prev_ts = self._prev, self._prev_ts
        self._prev, self._prev_ts = info, ts
        if prev is None:
            self._rates = {}
            return []
        out: list[ScxEvent] = []
        was_on = prev.ext_state == "enabled"
        is_on = info.ext_state == "enabled"
        if info.enable_seq is not None and prev.enable_seq is not None:
            loads = max(info.enable_seq - prev.enable_seq, 0)
            # The kernel bumps enable_seq just after state reads "enabled" and root/ops appears
            # (seen in the guest): a reading in between shows a load with no bump yet. Count it
            # then, and not a second time (as an unload plus a load) when the bump arrives.
            if loads and self._seq_owed:
                loads -= 1
                self._seq_owed = False
            if is_on and not was_on and not loads:
                loads, self._seq_owed = 1, True
        else:  # a kernel without enable_seq: the state and ops name are all we have
            loads = int(is_on and (not was_on or prev.ops_name != info.ops_name))
        if was_on and (not is_on or loads):
            # The old scheduler went away; any loads in between that are gone again were missed.
            out.append(dataclasses.replace(self._unload(ts, wall, prev), missed=0 if is_on else loads))
        elif not was_on and not is_on and loads:
            # Loaded and unloaded again between two readings: one marker, with the log's reason.
            note = self._exit_for(None)
            out.append(ScxEvent(ts, wall, "eject" if note and note.error else "unload",
                                note.name if note else None, info.enable_seq,
                                note.reason if note else None, note.detail if note else None, loads - 1))
        if is_on and loads:
            seq = info.enable_seq + 1 if self._seq_owed and info.enable_seq is not None else info.enable_seq
            out.append(ScxEvent(ts, wall, "load", info.ops_name, seq, missed=loads - 1))
        self.events.extend(out)
        self._late_reasons()
        self._rates = self._event_rates(prev, info, ts - prev_ts if prev_ts is not None else 0.0, bool(out))
        return out

    def _late_reasons(self) -> None:
        """A log line that arrives a poll after the unload it explains (we saw "disabling" first)."""
        for note in self._exits:
            for i in range(len(self.events) - 1, -1, -1):
                ev = self.events[i]
                if ev.ops_name == note.name and ev.kind == "unload" and ev.reason is None:
                    kind = "eject" if note.error or note.reason == SYSRQ_REASON else "unload"
                    self.events[i] = dataclasses.replace(ev, kind=kind, reason=note.reason, detail=note.detail)
                    break
        self._exits.clear()

    @staticmethod
    def _event_rates(prev: SchedulerInfo, info: SchedulerInfo, dt: float, changed: bool) -> dict[str, float]:
        if changed or dt <= 0 or info.ext_state != "enabled":
            return {}
        rates: dict[str, float] = {}
        for name, value in info.events.items():
            old = prev.events.get(name)
            if old is not None and value >= old:
                rates[name] = (value - old) / dt
        return rates

    def recent(self, since: float | None = None) -> list[ScxEvent]:
        return [e for e in self.events if since is None or e.ts >= since]


def events_part(tracker: ScxEventTracker, info: SchedulerInfo, limit: int = 32,
                ctxt_per_s: float | None = None, warning: str | None = None) -> SchedExtPart:
    """Snapshot.extras.sched_ext: sysfs values, event rates and recent load/unload events."""
    return SchedExtPart(
        version=EXTRA_VERSION,
        state=info.ext_state,
        ops=info.ops_name,
        switch_all=info.switch_all,
        enable_seq=info.enable_seq,
        nr_rejected=info.nr_rejected,
        hotplug_seq=info.hotplug_seq,
        events=dict(info.events),
        event_rates={k: round(v, 3) for k, v in tracker.rates.items()},
        changes=tuple(e.to_change() for e in list(tracker.events)[-limit:]),
        exit_reasons=tracker.kmsg is not None and tracker.kmsg.available,
        ctxt_per_s=ctxt_per_s,
        warning=warning,
    )


def events_extra(tracker: ScxEventTracker, info: SchedulerInfo, limit: int = 32) -> dict[str, Any]:
    """events_part() in its JSON form, as `--once --json` writes it."""
    out: dict[str, Any] = to_dict(events_part(tracker, info, limit))
    return out


def iter_labels(events: Iterable[ScxEvent]) -> list[str]:
    return [e.label for e in events]
