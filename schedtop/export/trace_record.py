"""Record the BPF tier's event stream into a Perfetto file, on a thread of its own.

Used by `schedtop trace` and by the TUI's `T` key. The recorder opens its *own* BPF tier with
every event sampled (rate 1), so the monitor's sampled stream and its counters are untouched.

Counting is exact: the stream is stopped (sample rate 0) and drained before the start counters
are read, and stopped and drained again before the end counters are read, so the events in the
file equal the tier's `events` counter delta and the drops equal its `dropped` delta.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from schedtop.bpf.trace_events import EVENT_NAMES as BPF_KINDS  # struct event type -> kind
from schedtop.export.perfetto import PerfettoWriter, SchedEvent, TraceSummary

log = logging.getLogger(__name__)

# enum event_type in bpf/trace.h


class EventTier(Protocol):
    """What the recorder needs from the BPF tier (schedtop.collect.bpf)."""

    def events(self) -> list[Any]: ...  # drain the ring buffer
    def set_sample_rate(self, n: int) -> None: ...
    def close(self) -> None: ...


def _text(v: Any) -> str:
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).split(b"\0", 1)[0].decode("utf-8", "replace")
    if isinstance(v, str):
        return v
    try:  # a ctypes char array
        return bytes(v).split(b"\0", 1)[0].decode("utf-8", "replace")
    except TypeError:
        return str(v)


def from_bpf(ev: Any) -> SchedEvent | None:
    """One `struct event` (bpf/trace.h), as the BPF tier decodes it, as a SchedEvent."""
    kind = getattr(ev, "kind", None)
    if not isinstance(kind, str):
        kind = BPF_KINDS.get(int(getattr(ev, "type", 0)))
    if kind is None:
        return None
    cpu = int(ev.cpu)
    target = int(getattr(ev, "target_cpu", -1))
    return SchedEvent(
        kind=kind,
        ts_ns=int(ev.ts_ns),
        cpu=cpu,
        pid=int(ev.pid),
        comm=_text(ev.comm),
        prio=int(getattr(ev, "prio", 120)),
        prev_state=int(getattr(ev, "prev_state", 0)),
        next_pid=int(getattr(ev, "next_pid", 0)),
        next_comm=_text(getattr(ev, "next_comm", b"")),
        next_prio=int(getattr(ev, "next_prio", 120)),
        target_cpu=target,
        orig_cpu=int(getattr(ev, "orig_cpu", -1)),
        dest_cpu=target if kind == "migrate" else -1,
        tgid=int(getattr(ev, "tgid", 0)),
    )


def tier_counters(tier: Any) -> tuple[int, int]:
    """(events written, events dropped) since the tier was opened.

    Dropped counts both losses: the kernel's (ring buffer full) and the tier's own backlog
    overflowing in user space, so nothing that went missing is left out of the file.
    """
    c = tier.counters()
    return int(c["events"]), int(c["dropped"]) + int(c.get("lost_user", 0))


def _reason(exc: Exception, path: str) -> str:
    if isinstance(exc, OSError):
        return f"{path}: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True, slots=True)
class RecordStatus:
    recording: bool
    path: str
    elapsed_s: float
    events: int
    dropped: int
    error: str | None = None


def open_event_tier() -> Any:
    """A fresh BPF tier with the event stream on; raises with a one-line reason if it can't."""
    from schedtop.collect.bpf import open_tier  # the BPF tier owns the BPF side

    try:
        return open_tier(events=True, sample_rate=0)
    except TypeError:  # an open_tier without those knobs: set them after
        tier = open_tier()
        tier.set_sample_rate(0)
        return tier


class TraceRecorder:
    """`start()` a thread that drains events into `path`; `stop()` finishes the file.

    `extra_counters()` (optional) returns {track name: value} sampled every poll, e.g. the
    embedded scheduler's user-space queue depth and dispatch latency.
    """

    def __init__(self, path: str | os.PathLike[str], tier: Any = None, poll_s: float = 0.05,
                 extra_counters: Callable[[], dict[str, float]] | None = None,
                 tier_factory: Callable[[], Any] = open_event_tier, sample_rate: int = 1,
                 exclusive: bool = False) -> None:
        self.path = os.fspath(path)
        self.exclusive = exclusive  # create the file, never open an existing one (see PerfettoWriter)
        self.poll_s = poll_s
        self.sample_rate = sample_rate
        self.extra_counters = extra_counters
        self._tier = tier
        self._own_tier = tier is None
        self._factory = tier_factory
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._written = 0
        self._dropped = 0
        self.error: str | None = None
        self.summary: TraceSummary | None = None
        self.bpf_events = 0  # the tier's counter delta over the recording
        self.bpf_dropped = 0

    # --- control ---------------------------------------------------------------

    def start(self) -> TraceRecorder:
        if self._tier is None:
            self._tier = self._factory()
        tier = self._tier
        tier.set_sample_rate(0)
        tier.events()  # whatever was queued before the window opens is not ours
        self._ev0, self._drop0 = tier_counters(tier)
        self._writer = PerfettoWriter(self.path, sample_rate=self.sample_rate, exclusive=self.exclusive)
        self._t0 = time.monotonic()
        tier.set_sample_rate(self.sample_rate)
        self._thread = threading.Thread(target=self._run, name="perfetto-recorder", daemon=True)
        self._thread.start()
        return self

    def status(self) -> RecordStatus:
        running = self._thread is not None and self._thread.is_alive()
        return RecordStatus(running, self.path, time.monotonic() - self._t0 if self._t0 else 0.0,
                            self._written, self._dropped, self.error)

    def stop(self) -> TraceSummary | None:
        if self._thread is None:
            return self.summary
        self._stop.set()
        self._thread.join(timeout=30)
        self._thread = None
        return self.summary

    def wait(self, seconds: float) -> None:
        self._stop.wait(seconds)

    # --- the thread ------------------------------------------------------------

    def _drain(self, writer: PerfettoWriter) -> int:
        tier = self._tier
        records = tier.events()
        batch = [e for e in (from_bpf(r) for r in records) if e is not None]
        if batch:
            self._written += writer.add(batch)
        _, dropped = tier_counters(tier)
        new = dropped - self._drop0 - self._dropped
        if new > 0:
            self._dropped += new
            writer.dropped_events(new)
        if self.extra_counters is not None:
            try:
                now = time.monotonic_ns()
                for name, value in self.extra_counters().items():
                    if value is not None:
                        writer.counter(name, value, ts_ns=now)
            except Exception as exc:  # a counter source going away must not end the trace
                log.debug("trace counters: %s", exc)
        return len(records)

    def _run(self) -> None:
        writer = self._writer
        tier = self._tier
        try:
            while not self._stop.is_set():
                self._drain(writer)
                self._stop.wait(self.poll_s)
            tier.set_sample_rate(0)
            time.sleep(0.02)  # let events already past the sample check reach the ring buffer
            self._drain(writer)
            # Read the end counters only once the ring buffer stays empty across the read.
            for _ in range(50):
                ev1, drop1 = tier_counters(tier)
                if self._drain(writer) == 0:
                    break
            self.bpf_events = ev1 - self._ev0
            self.bpf_dropped = drop1 - self._drop0
        except Exception as exc:
            self.error = _reason(exc, self.path)
            log.debug("trace recording failed: %s", self.error)
        finally:
            try:
                self.summary = writer.close()
            except Exception as exc:  # e.g. ENOSPC on the last write (-o /dev/full): said once, by stop()
                self.error = self.error or _reason(exc, self.path)
                self.summary = None
            finally:
                if self._own_tier:
                    try:
                        tier.close()
                    except Exception as exc:
                        log.warning("closing the trace tier: %s", exc)
