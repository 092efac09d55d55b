"""Write scheduling events as a Perfetto trace (ui.perfetto.dev shows its CPU-scheduling tracks).

The file is a stream of TracePackets built with the `perfetto` package's generated protobuf
classes (perfetto.protos...), never hand-encoded:
  - a ClockSnapshot, so the tools can line our BOOTTIME timestamps up with wall time;
  - SystemInfo (uname, CPU count);
  - FtraceEventBundles, one per CPU per flush, holding sched_switch / sched_waking /
    sched_wakeup / sched_wakeup_new / sched_migrate_task events: the same packets Perfetto's own
    ftrace data source writes, so the UI builds its CPU and thread-state tracks from them;
  - a ProcessTree naming every pid and tid the events mention (read from /proc at the end, or
    from the events' comm for tasks that exited meanwhile);
  - FtraceStats at the end with per-CPU entries and dropped (overrun) counts, a "lost_events"
    flag on every bundle that follows a drop, and a "schedtop" counter track of dropped events:
    dropped events are in the file, never hidden;
  - optional counter tracks (TrackDescriptor + TrackEvent counters), e.g. the embedded
    scheduler's user-space queue depth and dispatch latency.

Event timestamps arrive in CLOCK_MONOTONIC ns (bpf_ktime_get_ns) and are shifted to BOOTTIME,
the clock Perfetto assumes for ftrace data.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb
from perfetto.trace_builder.proto_builder import StreamingTraceProtoBuilder

from schedtop.outfile import open_output
from schedtop.textsafe import visible

SEQ_ID = 0x5C4ED  # our trusted_packet_sequence_id for track events
KINDS = ("switch", "waking", "wakeup", "wakeup_new", "migrate")
# sched_switch prev_state bits as the kernel's TASK_REPORT encodes them (Perfetto decodes these).
TASK_RUNNING = 0
DROPPED_TRACK = "schedtop: dropped events"


@dataclass(frozen=True, slots=True)
class SchedEvent:
    """One scheduler event, whichever tracepoint it came from.

    switch:      pid/comm/prio = prev task, prev_state; next_* = the task switched in
    waking/wakeup/wakeup_new: pid/comm/prio = the woken task, target_cpu
    migrate:     pid/comm/prio, orig_cpu -> dest_cpu
    """

    kind: str
    ts_ns: int  # CLOCK_MONOTONIC
    cpu: int  # the CPU that emitted the event
    pid: int  # tid, in kernel terms
    comm: str
    prio: int = 120
    prev_state: int = 0
    next_pid: int = 0
    next_comm: str = ""
    next_prio: int = 120
    target_cpu: int = -1
    orig_cpu: int = -1
    dest_cpu: int = -1
    tgid: int = 0  # 0 = unknown (resolved from /proc at the end)
    common_pid: int = -1  # the task current when the event fired (the waker); -1 = unknown


def boottime_offset_ns() -> int:
    """BOOTTIME - MONOTONIC: time spent suspended. Measured by bracketing to stay accurate."""
    best = None
    for _ in range(3):
        m0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        b = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        m1 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        cand = (m1 - m0, b - (m0 + m1) // 2)
        best = cand if best is None or cand[0] < best[0] else best
    return best[1]


@dataclass(frozen=True, slots=True)
class TraceSummary:
    path: str
    events: Mapping[str, int]  # written events by kind
    dropped: int
    pids: int
    bytes: int


class PerfettoWriter:
    """Stream SchedEvents into a .perfetto-trace file; `close()` writes the metadata and stats.

    Events may arrive in any order across CPUs but must be in time order per CPU (as a per-CPU
    or a single ring buffer delivers them); each `add()` batch is flushed as one bundle per CPU.
    """

    def __init__(self, path: str | os.PathLike[str], ncpus: int | None = None, sample_rate: int = 1,
                 proc_root: str = "/proc", exclusive: bool = False) -> None:
        self.path = os.fspath(path)
        self.ncpus = ncpus or os.cpu_count() or 1
        self.sample_rate = sample_rate
        self.proc_root = proc_root
        self.counts: dict[str, int] = {k: 0 for k in KINDS}
        self.per_cpu: dict[int, int] = {}
        self.dropped = 0
        self.dropped_per_cpu: dict[int, int] = {}
        self._comm: dict[int, str] = {}
        self._tgid: dict[int, int] = {}
        self._procs: dict[int, tuple[int, list[str]]] = {}  # tgid -> (ppid, cmdline), read when first seen
        self._lost_pending: set[int] = set()
        self._curr: dict[int, int] = {}  # cpu -> the task last switched in there
        self._offset = boottime_offset_ns()
        self._tracks: dict[str, int] = {}
        self._track_last: dict[str, int] = {}
        self._first_track_event = True
        self._first_ts: int | None = None
        self._last_ts = 0
        # exclusive: a name schedtop chose (the TUI's T): a new file only. Either way no
        # planted symlink is followed and no one else's file in /tmp is overwritten.
        self._file: IO[bytes] = os.fdopen(open_output(self.path, exclusive=exclusive), "wb")
        self._out = StreamingTraceProtoBuilder(self._file)
        self._closed = False
        self._header()

    def __enter__(self) -> PerfettoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- packets -------------------------------------------------------------

    def _packet(self) -> pb.TracePacket:
        return self._out.create_packet()

    def _write(self, packet: pb.TracePacket) -> None:
        self._out.write_packet(packet)

    def _header(self) -> None:
        p = self._packet()
        p.timestamp = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        for clock_id, clk in ((pb.BUILTIN_CLOCK_BOOTTIME, time.CLOCK_BOOTTIME),
                              (pb.BUILTIN_CLOCK_MONOTONIC, time.CLOCK_MONOTONIC),
                              (pb.BUILTIN_CLOCK_REALTIME, time.CLOCK_REALTIME)):
            c = p.clock_snapshot.clocks.add()
            c.clock_id = clock_id
            c.timestamp = time.clock_gettime_ns(clk)
        p.clock_snapshot.primary_trace_clock = pb.BUILTIN_CLOCK_BOOTTIME
        self._write(p)
        p = self._packet()
        u = os.uname()
        p.system_info.utsname.sysname = u.sysname
        p.system_info.utsname.release = u.release
        p.system_info.utsname.version = u.version
        p.system_info.utsname.machine = u.machine
        p.system_info.num_cpus = self.ncpus
        p.system_info.hz = os.sysconf("SC_CLK_TCK")
        p.system_info.page_size = os.sysconf("SC_PAGE_SIZE")
        self._write(p)

    def add(self, events: Iterable[SchedEvent]) -> int:
        """Write a batch as one FtraceEventBundle per CPU; returns how many were written."""
        per_cpu: dict[int, list[SchedEvent]] = {}
        for ev in events:
            per_cpu.setdefault(ev.cpu, []).append(ev)
        n = 0
        for cpu in sorted(per_cpu):
            evs = per_cpu[cpu]
            evs.sort(key=lambda e: e.ts_ns)
            p = self._packet()
            bundle = p.ftrace_events
            bundle.cpu = cpu
            if cpu in self._lost_pending or -1 in self._lost_pending:
                bundle.lost_events = True
                self._lost_pending.discard(cpu)
            for ev in evs:
                self._event(bundle.event.add(), ev)
                n += 1
            self._write(p)
            self.per_cpu[cpu] = self.per_cpu.get(cpu, 0) + len(evs)
        self._lost_pending.discard(-1)
        return n

    def _note(self, pid: int, comm: str, tgid: int = 0) -> None:
        if pid not in self._comm and pid:
            self._meta(pid, tgid)
        if comm:
            self._comm[pid] = visible(comm)  # thread names: shown escaped, like everywhere else
        else:
            self._comm.setdefault(pid, "")
        if tgid:
            self._tgid[pid] = tgid

    def _meta(self, tid: int, tgid: int) -> None:
        """Read a new task's process while it still exists (short-lived tasks are gone by the end)."""
        tgid = tgid or _read_tgid(self.proc_root, tid)
        if not tgid:
            return
        self._tgid[tid] = tgid
        if tgid not in self._procs:
            cmdline = _read_cmdline(self.proc_root, tgid)
            if cmdline:
                self._procs[tgid] = (_read_ppid(self.proc_root, tgid), cmdline)

    def _event(self, fe: pb.FtraceEvent, ev: SchedEvent) -> None:
        ts = ev.ts_ns + self._offset
        fe.timestamp = ts
        # FtraceEvent.pid is the task current on that CPU: prev for a switch, the waker for a
        # wakeup. Without it from the source, the last task switched in on that CPU is the one.
        if ev.common_pid >= 0:
            fe.pid = ev.common_pid
        elif ev.kind == "switch":
            fe.pid = ev.pid
        else:
            fe.pid = self._curr.get(ev.cpu, ev.pid)
        self._first_ts = ts if self._first_ts is None else min(self._first_ts, ts)
        self._last_ts = max(self._last_ts, ts)
        self.counts[ev.kind] = self.counts.get(ev.kind, 0) + 1
        self._note(ev.pid, ev.comm, ev.tgid)
        if ev.kind == "switch":
            s = fe.sched_switch
            s.prev_comm, s.prev_pid, s.prev_prio, s.prev_state = visible(ev.comm), ev.pid, ev.prio, ev.prev_state
            s.next_comm, s.next_pid, s.next_prio = visible(ev.next_comm), ev.next_pid, ev.next_prio
            self._note(ev.next_pid, ev.next_comm)
            self._curr[ev.cpu] = ev.next_pid
        elif ev.kind == "waking":
            w = fe.sched_waking
            w.comm, w.pid, w.prio, w.success, w.target_cpu = visible(ev.comm), ev.pid, ev.prio, 1, ev.target_cpu
        elif ev.kind == "wakeup":
            w = fe.sched_wakeup
            w.comm, w.pid, w.prio, w.success, w.target_cpu = visible(ev.comm), ev.pid, ev.prio, 1, ev.target_cpu
        elif ev.kind == "wakeup_new":
            w = fe.sched_wakeup_new
            w.comm, w.pid, w.prio, w.success, w.target_cpu = visible(ev.comm), ev.pid, ev.prio, 1, ev.target_cpu
        elif ev.kind == "migrate":
            m = fe.sched_migrate_task
            m.comm, m.pid, m.prio, m.orig_cpu, m.dest_cpu = visible(ev.comm), ev.pid, ev.prio, ev.orig_cpu, ev.dest_cpu
        else:
            raise ValueError(f"unknown event kind {ev.kind!r}")

    def dropped_events(self, n: int, cpu: int = -1, ts_ns: int | None = None) -> None:
        """Record that `n` events were lost (ring buffer full); they show in the file three ways."""
        if n <= 0:
            return
        self.dropped += n
        self.dropped_per_cpu[cpu] = self.dropped_per_cpu.get(cpu, 0) + n
        self._lost_pending.add(cpu)
        ts = (ts_ns + self._offset) if ts_ns is not None else time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        self.counter(DROPPED_TRACK, self.dropped, ts_ns=ts, boottime=True, unit="events")

    # --- counter tracks ------------------------------------------------------

    def _track(self, name: str, unit: str) -> int:
        uuid = self._tracks.get(name)
        if uuid is None:
            uuid = (zlib.crc32(f"schedtop/{name}".encode()) << 8) | len(self._tracks) + 1
            self._tracks[name] = uuid
            p = self._packet()
            p.trusted_packet_sequence_id = SEQ_ID
            if self._first_track_event:
                p.sequence_flags = pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
                self._first_track_event = False
            p.track_descriptor.uuid = uuid
            p.track_descriptor.name = visible(name)  # may hold a task or scx_stats name
            p.track_descriptor.counter.SetInParent()
            if unit:
                p.track_descriptor.counter.unit_name = unit
            self._write(p)
        return uuid

    def counter(self, name: str, value: float, ts_ns: int | None = None, unit: str = "",
                boottime: bool = False) -> None:
        """A sample on a named counter track (ts in CLOCK_MONOTONIC ns unless boottime=True)."""
        uuid = self._track(name, unit)
        if ts_ns is None:
            ts = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        else:
            ts = ts_ns if boottime else ts_ns + self._offset
        ts = max(ts, self._track_last.get(name, 0))  # a counter track must not go back in time
        self._track_last[name] = ts
        p = self._packet()
        p.timestamp = ts
        p.trusted_packet_sequence_id = SEQ_ID
        p.sequence_flags = pb.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE
        p.track_event.type = pb.TrackEvent.TYPE_COUNTER
        p.track_event.track_uuid = uuid
        if float(value).is_integer():
            p.track_event.counter_value = int(value)
        else:
            p.track_event.double_counter_value = float(value)
        self._write(p)

    # --- end -------------------------------------------------------------------

    def _process_tree(self) -> pb.TracePacket:
        p = self._packet()
        p.timestamp = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        tree = p.process_tree
        procs: dict[int, tuple[int, list[str]]] = {}
        for tid, comm in sorted(self._comm.items()):
            if tid == 0:  # the idle tasks ("swapper/N"): one process 0 so every pid is named
                procs.setdefault(0, (0, ["swapper"]))
                continue
            tgid = self._tgid.get(tid) or _read_tgid(self.proc_root, tid) or tid
            if tgid not in procs:
                procs[tgid] = self._procs.get(tgid) or (
                    _read_ppid(self.proc_root, tgid),
                    _read_cmdline(self.proc_root, tgid) or [self._comm.get(tgid) or comm or str(tgid)])
            if tid != tgid:
                t = tree.threads.add()
                t.tid, t.tgid = tid, tgid
                if comm:
                    t.name = comm
        for pid, (ppid, cmdline) in sorted(procs.items()):
            pr = tree.processes.add()
            pr.pid, pr.ppid = pid, ppid
            pr.cmdline.extend(visible(a) for a in cmdline)
        # A process's main thread is named by its comm too (the UI labels threads by name).
        for pid in sorted(procs):
            if pid and self._comm.get(pid):
                t = tree.threads.add()
                t.tid, t.tgid, t.name = pid, pid, self._comm[pid]
        return p

    def close(self) -> TraceSummary:
        if self._closed:
            return self.summary()
        self._closed = True
        self._write(self._process_tree())
        p = self._packet()
        p.timestamp = max(self._last_ts, 1)
        fs = p.ftrace_stats
        fs.phase = pb.FtraceStats.END_OF_TRACE
        for cpu in sorted(set(self.per_cpu) | {c for c in self.dropped_per_cpu if c >= 0} | set(range(self.ncpus))):
            cs = fs.cpu_stats.add()
            cs.cpu = cpu
            cs.entries = self.per_cpu.get(cpu, 0)
            cs.read_events = self.per_cpu.get(cpu, 0)
            cs.overrun = self.dropped_per_cpu.get(cpu, 0)
            cs.dropped_events = self.dropped_per_cpu.get(cpu, 0)
        self._write(p)
        # The totals as a final counter sample too, so a reader sees them on the timeline.
        self.counter(DROPPED_TRACK, self.dropped, ts_ns=max(self._last_ts, 1), boottime=True,
                     unit="events")
        if self.sample_rate > 1:
            self.counter("schedtop: sample rate (1 in N)", self.sample_rate, ts_ns=self._first_ts or 1,
                         boottime=True)
        self._file.close()
        return self.summary()

    def summary(self) -> TraceSummary:
        size = Path(self.path).stat().st_size if Path(self.path).exists() else 0
        pids = len([p for p in self._comm if p])
        return TraceSummary(self.path, {k: v for k, v in self.counts.items()}, self.dropped, pids, size)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _status_field(proc: str, pid: int, name: bytes) -> int:
    data = _read(f"{proc}/{pid}/status")
    if data:
        for line in data.splitlines():
            if line.startswith(name + b":"):
                try:
                    return int(line.split()[1])
                except (IndexError, ValueError):
                    return 0
    return 0


def _read_tgid(proc: str, tid: int) -> int:
    # /proc/TID/status works for any thread id, not only for group leaders.
    return _status_field(proc, tid, b"Tgid")


def _read_ppid(proc: str, pid: int) -> int:
    return _status_field(proc, pid, b"PPid")


def _read_cmdline(proc: str, pid: int) -> list[str]:
    data = _read(f"{proc}/{pid}/cmdline")
    if not data:
        return []
    return [a.decode("utf-8", "replace") for a in data.rstrip(b"\0").split(b"\0")]


# --- reading back (tests, `schedtop trace --check`) ------------------------------


def read_trace(path: str | os.PathLike[str]) -> pb.Trace:
    trace = pb.Trace()
    with open(path, "rb") as f:
        trace.ParseFromString(f.read())
    return trace


@dataclass(frozen=True, slots=True)
class TraceContents:
    counts: Mapping[str, int]
    switch_pids: frozenset[int]
    event_pids: frozenset[int]
    process_pids: frozenset[int]
    thread_tids: frozenset[int]
    dropped: int
    lost_bundles: int
    counters: Mapping[str, list[tuple[int, float]]]
    cpus: frozenset[int]


def summarize(trace: pb.Trace) -> TraceContents:
    """Count what a trace holds, through the generated classes only."""
    names = {"sched_switch": "switch", "sched_waking": "waking", "sched_wakeup": "wakeup",
             "sched_wakeup_new": "wakeup_new", "sched_migrate_task": "migrate"}
    counts = {k: 0 for k in KINDS}
    switch_pids: set[int] = set()
    event_pids: set[int] = set()
    procs: set[int] = set()
    threads: set[int] = set()
    overrun = 0
    lost = 0
    cpus: set[int] = set()
    track_names: dict[int, str] = {}
    counters: dict[str, list[tuple[int, float]]] = {}
    for p in trace.packet:
        which = p.WhichOneof("data")
        if which == "ftrace_events":
            cpus.add(p.ftrace_events.cpu)
            lost += int(p.ftrace_events.lost_events)
            for fe in p.ftrace_events.event:
                kind = fe.WhichOneof("event")
                if kind in names:
                    counts[names[kind]] += 1
                if kind == "sched_switch":
                    switch_pids.update((fe.sched_switch.prev_pid, fe.sched_switch.next_pid))
                elif kind in names:
                    event_pids.add(getattr(fe, kind).pid)
        elif which == "process_tree":
            procs.update(pr.pid for pr in p.process_tree.processes)
            threads.update(t.tid for t in p.process_tree.threads)
        elif which == "ftrace_stats":
            overrun += sum(c.overrun for c in p.ftrace_stats.cpu_stats)
        elif which == "track_descriptor":
            track_names[p.track_descriptor.uuid] = p.track_descriptor.name
        elif which == "track_event" and p.track_event.type == pb.TrackEvent.TYPE_COUNTER:
            te = p.track_event
            v = te.double_counter_value if te.HasField("double_counter_value") else te.counter_value
            counters.setdefault(track_names.get(te.track_uuid, str(te.track_uuid)), []).append((p.timestamp, v))
    # Drops we could pin on a CPU are ftrace overruns; the counter track holds every drop.
    marked = counters.get(DROPPED_TRACK, [])
    dropped = int(max((v for _, v in marked), default=0))
    return TraceContents(counts, frozenset(switch_pids), frozenset(event_pids | switch_pids), frozenset(procs),
                         frozenset(threads), max(dropped, overrun), lost, counters, frozenset(cpus))
