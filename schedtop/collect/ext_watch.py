"""The sched_ext window as two snapshot parts: Snapshot.extras.sched_ext (SchedExtPart: sysfs,
event rates, load/unload markers) and .scx_stats (StatsPart: whatever the running scheduler
serves on its stats socket).

`ExtWatch.attach(source)` registers both on a LiveSource (`add_extra`); the source calls them on
its collector thread each interval. The stats socket is read by a StatsPoller thread of its own
(so a slow server delays nothing), or synchronously with a short timeout for `--once`.
"""

from __future__ import annotations

import os
import time
from collections import deque
from typing import Any

from schedtop.collect.sched_ext import SCHED_EXT_SYSFS, read_scheduler_info
from schedtop.collect.scx_events import KmsgReader, ScxEventTracker, events_part
from schedtop.export.scx_stats import DEFAULT_PATH, EXTRA_VERSION, StatsPoller, read_once
from schedtop.model import SchedExtPart, StatsPart

EXTRA_SCHED_EXT = "sched_ext"
EXTRA_STATS = "scx_stats"


class ExtWatch:
    def __init__(self, stats_path: str | None = None, poll: bool = True, sched_ext_root: str = SCHED_EXT_SYSFS,
                 stats_timeout: float = 0.5, kmsg: bool = True) -> None:
        self.stats_path = stats_path or os.environ.get("SCHEDTOP_SCX_STATS", DEFAULT_PATH)
        self.root = sched_ext_root
        self.stats_timeout = stats_timeout
        self.tracker = ScxEventTracker(KmsgReader() if kmsg and os.path.isdir(sched_ext_root) else None)
        self._source: Any = None
        self._ctxt: tuple[float, int] | None = None
        self.timeline: deque[tuple[float, float]] = deque(maxlen=120)  # (monotonic ts, ctxt/s)
        self.poller = StatsPoller(self.stats_path, timeout=stats_timeout).start() if poll else None

    def attach(self, source: Any) -> ExtWatch:
        self._source = source
        if hasattr(source, "add_extra"):
            source.add_extra(EXTRA_SCHED_EXT, self.sched_ext)
            source.add_extra(EXTRA_STATS, self.stats)
        return self

    def _ctxt_rate(self, now: float) -> float | None:
        """System-wide context switches per second (/proc/stat ctxt): the timeline under the markers."""
        try:
            with open("/proc/stat", "rb") as f:
                ctxt = next(int(line.split()[1]) for line in f if line.startswith(b"ctxt "))
        except (OSError, StopIteration, ValueError, IndexError):
            return None
        prev, self._ctxt = self._ctxt, (now, ctxt)
        if prev is None or now <= prev[0]:
            return None
        return (ctxt - prev[1]) / (now - prev[0])

    def sched_ext(self) -> SchedExtPart:
        now = time.monotonic()
        info = read_scheduler_info(self.root)
        if self.tracker.update(info, ts=now) and hasattr(self._source, "invalidate"):
            # A (un)load moves every task's ext.enabled without touching the rows the source
            # uses to skip unchanged threads: have it read them all again next interval.
            self._source.invalidate()
        rate = self._ctxt_rate(now)
        if rate is not None:
            self.timeline.append((now, rate))
        kmsg = self.tracker.kmsg
        return events_part(self.tracker, info, ctxt_per_s=None if rate is None else round(rate, 1),
                           warning=kmsg.error if kmsg is not None and not kmsg.available else None)

    def stats(self) -> StatsPart:
        if self.poller is not None:
            reading = self.poller.latest()
            if reading is None:
                return StatsPart(version=EXTRA_VERSION, path=self.stats_path, error="not read yet")
        else:
            if not os.path.exists(self.stats_path):
                return StatsPart(version=EXTRA_VERSION, path=self.stats_path,
                                 error="no scheduler serves stats here")
            reading = read_once(self.stats_path, self.stats_timeout)
        return reading.to_part()

    def close(self) -> None:
        if self.poller is not None:
            self.poller.stop()
            self.poller = None
        if self.tracker.kmsg is not None:
            self.tracker.kmsg.close()
