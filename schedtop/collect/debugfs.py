"""The exact per-CPU run queues, from debugfs /sys/kernel/debug/sched/debug (root only).

Per CPU the file gives `.nr_running`, `.nr_switches`, `.curr->pid`, one
`cfs_rq[N]:/path` block per task group (with `.avg_vruntime`), and a
"runnable tasks" table. On 6.x that table lists every task whose task_cpu()
is this CPU, sleeping ones too; the first column says which: '>R' is on the
CPU now, 'R' is queued, anything else is not on the run queue.

Row format (kernel/sched/debug.c print_task), comm is '%15s' at a fixed place.
EEVDF (6.6+; 6.12 and 6.18 checked):
 S            task   PID       vruntime   eligible    deadline             slice  ...
>R            grep  9477       134.797777   E         136.197777           1.400000 ...
A custom per-task slice (6.12+) adds an 'S' between deadline and slice.
CFS (6.1) has no eligibility, deadline or slice; its vruntime column is `tree-key`:
 S            task   PID         tree-key  switches  prio     wait-time             sum-exec        sum-sleep
>R            bash   612      1234.567890       123   120         0.000000         10.000000      1000.000000
and its cfs_rq blocks have .min_vruntime, not .avg_vruntime (so no lag). Which one a
file is comes from the table's header line, never from the kernel version.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field

from schedtop import kernel_paths
from schedtop.collect.procfs import split_ns
from schedtop.model import QueuedTask

DEBUGFS = kernel_paths.DEBUGFS
SCHED_DEBUG = kernel_paths.SCHED_DEBUG


class DebugfsUnavailable(Exception):
    """debugfs cannot be read: not root, not mountable, or the kernel lacks it."""


@dataclass(frozen=True, slots=True)
class RowTask:
    """One row of a CPU's 'runnable tasks' table, in any state."""

    cpu: int
    state: str  # '>R' on the CPU now, 'R' queued, else 'S', 'D', 'I', ...
    comm: str
    pid: int
    vruntime_ns: int
    eligible: bool | None  # None on CFS: the kernel has no such thing
    deadline_ns: int | None  # None on CFS
    custom_slice: bool
    slice_ns: int | None  # None on CFS
    sum_exec_ns: int
    switches: int
    prio: int
    wait_ns: int
    group: str


@dataclass(frozen=True, slots=True)
class CpuRq:
    cpu: int
    nr_running: int = 0
    nr_switches: int = 0
    curr_pid: int = 0
    # task-group path -> avg_vruntime (ns) of that group's cfs_rq on this CPU
    avg_vruntime: dict[str, int] = field(default_factory=dict)
    rows: tuple[RowTask, ...] = ()  # the queued rows only ('>R' and 'R'), in file order


@dataclass(frozen=True, slots=True)
class SchedDebug:
    cpus: tuple[CpuRq, ...]
    base_slice_ns: int | None = None
    fair: str = "EEVDF"  # "EEVDF" or "CFS", from the run-queue table's header
    # tid -> (cpu, its row text) for every task listed, queued or not. A row that is
    # byte-identical to the previous read means the task neither ran, woke, nor changed
    # prio: LiveSource then reuses its procfs sample instead of reading three files.
    fingerprints: dict[int, tuple[int, str]] = field(default_factory=dict)

    def queues(self) -> tuple[QueuedTask, ...]:
        """Queued tasks of every CPU in pick order: EEVDF's eligible first, then by deadline;
        CFS's leftmost (smallest vruntime) first."""
        out: list[QueuedTask] = []
        for rq in self.cpus:
            queued = list(rq.rows)
            if self.fair == "CFS":
                queued.sort(key=lambda r: (r.state != ">R", r.vruntime_ns))
            else:
                queued.sort(key=lambda r: (r.state != ">R", not r.eligible, r.deadline_ns or 0))
            for r in queued:
                avg = rq.avg_vruntime.get(r.group)
                out.append(
                    QueuedTask(
                        cpu=rq.cpu,
                        pid=r.pid,
                        comm=r.comm,
                        running=r.state == ">R",
                        eligible=r.eligible,
                        vruntime_ns=r.vruntime_ns,
                        deadline_ns=r.deadline_ns,
                        slice_ns=r.slice_ns,
                        sum_exec_ns=r.sum_exec_ns,
                        switches=r.switches,
                        prio=r.prio,
                        wait_ns=r.wait_ns,
                        # Lag in virtual time, V - v_i, against this task's own cfs_rq
                        # (CFS has no avg_vruntime: no lag, rather than a made-up one).
                        lag_ns=(avg - r.vruntime_ns) if avg is not None else None,
                    )
                )
        return tuple(out)


def _group(line: str) -> str:
    # The group path is the last column when CONFIG_CGROUP_SCHED is on; a cgroup
    # name may hold spaces, so take everything from its leading '/' (after comm).
    return line[g + 2 :].rstrip() if (g := line.find("  /", 18)) >= 0 else "/"


def parse_row(cpu: int, line: str, fair: str = "EEVDF") -> RowTask | None:
    if len(line) < 20:
        return None
    state = line[:2].strip() if line.startswith(">R") else line[1:2]
    comm = line[3:18].strip()
    rest = line[18:].split()
    state = ">R" if line.startswith(">R") else state
    try:
        if fair == "CFS":
            # PID tree-key switches prio wait-time sum-exec sum-sleep ...
            if len(rest) < 6:
                return None
            return RowTask(cpu=cpu, state=state, comm=comm, pid=int(rest[0]), vruntime_ns=split_ns(rest[1]),
                           eligible=None, deadline_ns=None, custom_slice=False, slice_ns=None,
                           sum_exec_ns=split_ns(rest[5]), switches=int(rest[2]), prio=int(rest[3]),
                           wait_ns=split_ns(rest[4]), group=_group(line))
        custom = len(rest) > 5 and rest[4] == "S"
        if custom:
            del rest[4]
        if len(rest) < 9:
            return None
        return RowTask(
            cpu=cpu,
            state=state,
            comm=comm,
            pid=int(rest[0]),
            vruntime_ns=split_ns(rest[1]),
            eligible=rest[2] == "E",
            deadline_ns=split_ns(rest[3]),
            custom_slice=custom,
            slice_ns=split_ns(rest[4]),
            sum_exec_ns=split_ns(rest[5]),
            switches=int(rest[6]),
            prio=int(rest[7]),
            wait_ns=split_ns(rest[8]),
            group=_group(line),
        )
    except (ValueError, IndexError):
        return None


def table_format(header: str) -> str:
    """'CFS' for 6.1's `tree-key` table, else 'EEVDF' (eligible/deadline/slice columns)."""
    return "CFS" if "tree-key" in header else "EEVDF"


# A task row: state (2 chars), comm (%15s), pid. Matched over a whole table at C speed,
# since a busy machine lists thousands of rows per CPU and most are sleeping tasks.
_ROW = re.compile(r"^((?:>R| \S) .{15} +(\d+) .*)$", re.M)


def _parse_header(cpu: int, lines: list[str]) -> tuple[int, int, int, dict[str, int]]:
    nr_running = nr_switches = curr = 0
    avg: dict[str, int] = {}
    group: str | None = None
    for line in lines:
        if line.startswith("cfs_rq["):
            group = line.split(":", 1)[1].strip() or "/"
            continue
        if line.startswith(("rt_rq[", "dl_rq[")):
            group = None
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        try:
            if group is None and key == ".nr_running":
                nr_running = int(value)
            elif group is None and key == ".nr_switches":
                nr_switches = int(value)
            elif group is None and key == ".curr->pid":
                curr = int(value)
            elif group is not None and key == ".avg_vruntime":
                avg[group] = split_ns(value)
        except ValueError:
            continue
    return nr_running, nr_switches, curr, avg


def parse_sched_debug(text: str) -> SchedDebug:
    base_slice = None
    head, *chunks = text.split("\ncpu#")
    for line in head.splitlines():
        if line.strip().startswith(".sysctl_sched_base_slice"):
            try:
                base_slice = split_ns(line.split(":", 1)[1])
            except ValueError:
                pass
    cpus: list[CpuRq] = []
    fingerprints: dict[int, tuple[int, str]] = {}
    fair = "EEVDF"
    for chunk in chunks:
        try:
            cpu = int(chunk.split(",", 1)[0])
        except ValueError:
            continue
        header, _, table = chunk.partition("\nrunnable tasks:\n")
        fair = table_format(table.split("\n", 1)[0]) if table else fair
        nr_running, nr_switches, curr, avg = _parse_header(cpu, header.splitlines()[1:])
        rows = []
        for line, pid in _ROW.findall(table):
            fingerprints[int(pid)] = (cpu, line)
            # Only queued rows ('>R' running, ' R' waiting) are parsed: the table also
            # lists every sleeping task whose last CPU is this one.
            if line[1] == "R":
                row = parse_row(cpu, line, fair)
                if row is not None:
                    rows.append(row)
        cpus.append(CpuRq(cpu, nr_running, nr_switches, curr, avg, tuple(rows)))
    return SchedDebug(tuple(cpus), base_slice, fair, fingerprints)


def ensure_mounted() -> None:
    """Mount debugfs if it is absent (root only); raise DebugfsUnavailable otherwise."""
    if os.path.exists(SCHED_DEBUG):
        return
    if os.geteuid() != 0:
        raise DebugfsUnavailable("not root: run-queue lengths are estimates (debugfs needs root)")
    if not os.path.ismount(DEBUGFS):
        r = subprocess.run(["mount", "-t", "debugfs", "none", DEBUGFS],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise DebugfsUnavailable(f"cannot mount debugfs: {r.stderr.strip() or r.returncode}")
    if not os.path.exists(SCHED_DEBUG):
        raise DebugfsUnavailable(f"{SCHED_DEBUG} absent (kernel without CONFIG_SCHED_DEBUG?)")


def read_sched_debug(path: str = SCHED_DEBUG) -> SchedDebug:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_sched_debug(f.read())
    except OSError as exc:
        raise DebugfsUnavailable(f"cannot read {path}: {exc.strerror or exc}") from None
