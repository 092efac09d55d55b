"""Readers of /proc: per-CPU times, the pid and tid lists, and per thread
/proc/PID/task/TID/{stat,sched,schedstat}.

Per thread we need the stat line's last CPU (field 39), starttime, policy and
rt_priority, plus the scheduler's own files, so one raw read per file is cheaper
than a psutil Process object per thread (measured in BENCHMARKS.md). The per-CPU
times and the pid list are two small reads as well; they were psutil's, which cost
the TUI's start ~10-17 ms of import and ~1.5 MB for nothing else.

Every reader takes a procfs root so the parsers run on fixture trees and on
the live /proc alike. A task that exits mid-read (ENOENT/ESRCH) or belongs to
another user (EACCES/EPERM) is normal: its reader returns None, quietly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from schedtop import kernel_paths

CLK_TCK = os.sysconf("SC_CLK_TCK")

# Errors that mean "this task is gone or not ours": skip it, say nothing.
_QUIET = (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError)


def read_bytes(path: str) -> bytes | None:
    """The whole file, or None if the task vanished or is not readable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except _QUIET:
        return None
    try:
        # One read covers every per-task file (< 4 KB); loop only for bigger ones.
        data = os.read(fd, 16384)
        if len(data) < 16384:
            return data
        chunks = [data]
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except (*_QUIET, OSError):  # ESRCH can also surface as a plain OSError on read
        return None
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class StatFields:
    """The fields of /proc/PID/task/TID/stat that we use."""

    comm: str
    state: str
    ppid: int
    flags: int  # field 9: the task's PF_* flags (PF_KTHREAD, PF_NO_SETAFFINITY...)
    utime_ticks: int
    stime_ticks: int
    prio: int  # kernel prio: stat field 18 ("priority") + 100
    nice: int
    num_threads: int
    starttime: int  # field 22, clock ticks since boot
    cpu: int  # field 39: last CPU it ran on
    rt_priority: int  # field 40
    policy: int  # field 41


def parse_stat(data: bytes) -> StatFields | None:
    # comm may hold spaces and ')' itself: it ends at the LAST ')'.
    open_ = data.find(b"(")
    close = data.rfind(b")")
    if open_ < 0 or close < open_:
        return None
    rest = data[close + 2 :].split()
    if len(rest) < 39:
        return None
    try:
        # rest[0] is field 3 (state); field N is rest[N - 3].
        return StatFields(
            comm=data[open_ + 1 : close].decode("utf-8", "replace"),
            state=rest[0].decode("ascii", "replace"),
            ppid=int(rest[1]),
            flags=int(rest[6]),
            utime_ticks=int(rest[11]),
            stime_ticks=int(rest[12]),
            prio=int(rest[15]) + 100,
            nice=int(rest[16]),
            num_threads=int(rest[17]),
            starttime=int(rest[19]),
            cpu=int(rest[36]),
            rt_priority=int(rest[37]),
            policy=int(rest[38]),
        )
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class SchedFields:
    """The fields of /proc/PID/task/TID/sched that the task table shows."""

    vruntime_ns: int | None
    slice_ns: int | None
    nr_switches: int
    nr_voluntary: int
    nr_involuntary: int
    ext_enabled: bool | None


def stat_at(path: str) -> StatFields | None:
    """The stat line at ``path`` (/proc/PID/stat or /proc/PID/task/TID/stat), parsed; None once gone."""
    data = read_bytes(path)
    return parse_stat(data) if data else None


def same_process(pid: int, starttime: int) -> bool:
    """``pid`` is still the process that started at ``starttime``, and not a zombie (a killed
    owner lingers as Z until it is reaped)."""
    st = stat_at(kernel_paths.proc_stat(pid))
    return st is not None and st.starttime == starttime and st.state not in ("Z", "X")


def split_ns(text: str | bytes) -> int:
    """A kernel SPLIT_NS value ('1234.567890' milliseconds) as integer ns, exactly."""
    if isinstance(text, bytes):
        text = text.decode("ascii")
    text = text.strip()
    neg = text.startswith("-")
    if neg:
        text = text[1:]
    whole, _, frac = text.partition(".")
    ns = int(whole or "0") * 1_000_000 + int((frac + "000000")[:6] or "0")
    return -ns if neg else ns


def parse_sched_all(data: bytes) -> dict[str, str]:
    """Every 'key : value' line of /proc/PID/sched, as text (the detail pane shows them all)."""
    out: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").splitlines()[2:]:
        key, sep, value = line.partition(":")
        if sep and key.strip() and "," not in key:
            out[key.strip()] = value.strip()
    return out


def _field(data: bytes, key: bytes) -> bytes | None:
    """The value of the line 'key   : value' (keys start a line; values are one token)."""
    i = data.find(b"\n" + key + b" ")
    if i < 0:
        return None
    colon = data.find(b":", i)
    end = data.find(b"\n", colon)
    return data[colon + 1 : end if end >= 0 else len(data)].strip()


def parse_sched(data: bytes) -> SchedFields:
    # str.find per key is ~5x cheaper than a regex over the whole 1.5 KB file:
    # this runs once per thread per refresh.
    def num(key: bytes) -> int:
        v = _field(data, key)
        try:
            return int(v) if v is not None else 0
        except ValueError:
            return 0

    def ns(key: bytes) -> int | None:
        # se.vruntime is ms with 6 decimals (SPLIT_NS); se.slice is plain ns on 6.x.
        v = _field(data, key)
        try:
            return None if v is None else split_ns(v) if b"." in v else int(v)
        except ValueError:
            return None

    ext = _field(data, b"ext.enabled")
    return SchedFields(
        vruntime_ns=ns(b"se.vruntime"),
        slice_ns=ns(b"se.slice"),
        nr_switches=num(b"nr_switches"),
        nr_voluntary=num(b"nr_voluntary_switches"),
        nr_involuntary=num(b"nr_involuntary_switches"),
        ext_enabled=None if ext is None else ext.strip() not in (b"0", b"0.000000"),
    )


@dataclass(frozen=True, slots=True)
class Schedstat:
    runtime_ns: int
    wait_ns: int
    timeslices: int


def parse_schedstat(data: bytes) -> Schedstat | None:
    parts = data.split()
    if len(parts) < 3:
        return None
    try:
        return Schedstat(int(parts[0]), int(parts[1]), int(parts[2]))
    except ValueError:
        return None


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """'0-3,8,10-11' -> (0, 1, 2, 3, 8, 10, 11)."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return tuple(cpus)


def parse_cpu_times(data: bytes) -> list[tuple[float, float]]:
    """(busy, total) seconds per CPU from /proc/stat. Fields: user nice system idle iowait
    irq softirq steal guest guest_nice; guest time is already counted in user, so the
    total stops at steal; idle + iowait is not busy."""
    out = []
    for line in data.splitlines():
        if not (line.startswith(b"cpu") and line[3:4].isdigit()):
            continue
        try:
            v = [int(x) for x in line.split()[1:9]]
        except ValueError:
            continue
        total = sum(v) / CLK_TCK
        idle = sum(v[3:5]) / CLK_TCK
        out.append((total - idle, total))
    return out


@dataclass(frozen=True, slots=True)
class ThreadSample:
    """One thread's raw counters from one read: no rates yet."""

    pid: int
    tid: int
    stat: StatFields
    sched: SchedFields | None
    schedstat: Schedstat | None
    affinity: tuple[int, ...]


class ProcfsReader:
    """Reads threads and CPU times under one procfs root."""

    def __init__(self, root: str = kernel_paths.PROC) -> None:
        self.root = root.rstrip("/") or "/"
        self.live = os.path.realpath(self.root) == kernel_paths.PROC

    # --- system-wide -------------------------------------------------------

    def cpu_times(self) -> list[tuple[float, float]]:
        """Per CPU (busy, total) seconds, from the cpuN lines of /proc/stat."""
        return parse_cpu_times(read_bytes(f"{self.root}/stat") or b"")

    def pids(self) -> list[int]:
        try:
            return sorted(int(d) for d in os.listdir(self.root) if d.isdigit())
        except _QUIET:
            return []

    def uptime(self) -> float:
        data = read_bytes(f"{self.root}/uptime")
        try:
            return float(data.split()[0]) if data else 0.0
        except (ValueError, IndexError):
            return 0.0

    def loadavg(self) -> tuple[float, float, float]:
        data = read_bytes(f"{self.root}/loadavg")
        try:
            a, b, c = (float(x) for x in data.split()[:3]) if data else (0.0, 0.0, 0.0)
            return (a, b, c)
        except ValueError:
            return (0.0, 0.0, 0.0)

    # --- per task ----------------------------------------------------------

    def tids(self, pid: int) -> list[int]:
        try:
            return [int(t) for t in os.listdir(f"{self.root}/{pid}/task") if t.isdigit()]
        except _QUIET:
            return []

    def affinity(self, pid: int, tid: int) -> tuple[int, ...]:
        if self.live:
            try:
                return tuple(sorted(os.sched_getaffinity(tid)))
            except (ProcessLookupError, PermissionError, OSError):
                return ()
        # Fixture trees: the same mask from status (the live path avoids that 1.3 KB read).
        data = read_bytes(f"{self.root}/{pid}/task/{tid}/status")
        if data:
            for line in data.splitlines():
                if line.startswith(b"Cpus_allowed_list:"):
                    return parse_cpu_list(line.split(b":", 1)[1].decode())
        return ()

    def stat(self, pid: int, tid: int) -> StatFields | None:
        data = read_bytes(f"{self.root}/{pid}/task/{tid}/stat")
        return parse_stat(data) if data else None

    def thread(self, pid: int, tid: int) -> ThreadSample | None:
        """One thread; None if it vanished."""
        return self.thread_from(pid, tid, *self.probe(pid, tid))

    def probe(self, pid: int, tid: int) -> tuple[bytes | None, bytes | None]:
        """stat and schedstat, raw: the two small files that change whenever the thread
        runs, wakes or is retuned. Unchanged bytes let a caller keep its old sample."""
        base = f"{self.root}/{pid}/task/{tid}"
        return read_bytes(base + "/stat"), read_bytes(base + "/schedstat")

    def thread_from(self, pid: int, tid: int, stat_data: bytes | None,
                    schedstat_data: bytes | None) -> ThreadSample | None:
        """A full sample from already-read stat and schedstat bytes (reads sched, affinity)."""
        st = parse_stat(stat_data) if stat_data else None
        if st is None:
            return None
        sched_data = read_bytes(f"{self.root}/{pid}/task/{tid}/sched")
        return ThreadSample(
            pid=pid,
            tid=tid,
            stat=st,
            sched=parse_sched(sched_data) if sched_data else None,
            schedstat=parse_schedstat(schedstat_data) if schedstat_data else None,
            affinity=self.affinity(pid, tid),
        )

    def threads(self, pids: Sequence[int] = ()) -> list[ThreadSample]:
        """Every thread of every process (or of `pids` only)."""
        out: list[ThreadSample] = []
        for pid in pids or self.pids():
            for tid in self.tids(pid):
                s = self.thread(pid, tid)
                if s is not None:
                    out.append(s)
        return out

    def sched_fields(self, pid: int, tid: int) -> dict[str, str]:
        """All of /proc/PID/task/TID/sched for the detail pane ({} if gone)."""
        data = read_bytes(f"{self.root}/{pid}/task/{tid}/sched")
        return parse_sched_all(data) if data else {}
