"""The syscalls that retune one thread, and the read-back that proves they worked.

Everything is per thread (tid), as the kernel does it: policy, RT priority, nice (setpriority
on a tid is per thread on Linux), affinity and the EEVDF slice. Whole-process and name
targeting are built on top of this in targets.py.

The EEVDF per-task slice is `sched_runtime` in `sched_setattr` on a fair-class task (6.12+).
The kernel clamps it to 0.1..100 ms; 0 means "back to the base slice". We read the result
back from `se.slice` in /proc/PID/task/TID/sched.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
from dataclasses import asdict, dataclass, replace
from typing import Any

from schedtop import kernel_paths
from schedtop.collect.procfs import StatFields, parse_stat, read_bytes
from schedtop.steer.units import (
    NICE_POLICIES,
    POLICY_NAME,
    RT_POLICIES,
    SCHED_EXT,
    SCHED_IDLE,
    format_cpulist,
    format_ns,
    online_cpus,
)
from schedtop.textsafe import visible

SYS_sched_setattr = 314  # x86_64
SYS_sched_getattr = 315
SCHED_FLAG_RESET_ON_FORK = 0x01

BASE_SLICE_PATH = kernel_paths.BASE_SLICE_NS
SCHED_EXT_SYSFS = kernel_paths.SCHED_EXT_SYSFS
NO_SCHED_EXT = "this kernel has no sched_ext (CONFIG_SCHED_CLASS_EXT): SCHED_EXT is not available"


class SchedAttr(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_uint32),
        ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64),
        ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32),
        ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64),
        ("sched_period", ctypes.c_uint64),
        ("sched_util_min", ctypes.c_uint32),
        ("sched_util_max", ctypes.c_uint32),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class SteerError(Exception):
    """A change the kernel refused, with a message a chrt/taskset user understands."""

    def __init__(self, message: str, err: int = 0) -> None:
        super().__init__(message)
        self.errno = err


class TaskGone(SteerError):
    """The thread exited, or its pid now belongs to another task (start time differs)."""


@dataclass(frozen=True, slots=True)
class TaskRef:
    """One thread, pinned down by its start time so a reused pid is never mistaken for it."""

    pid: int  # tgid
    tid: int
    starttime: int  # /proc stat field 22, clock ticks since boot
    comm: str = ""

    def label(self) -> str:
        return f"{visible(self.comm)}[{self.tid}]" if self.comm else str(self.tid)  # comm is anyone's: escaped


@dataclass(frozen=True, slots=True)
class TaskParams:
    """Everything schedtop can change on a thread: what the journal saves and restores."""

    policy: int
    rt_priority: int
    nice: int
    affinity: tuple[int, ...]
    slice_ns: int
    reset_on_fork: bool = False

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["affinity"] = list(self.affinity)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TaskParams":
        return cls(policy=int(d["policy"]), rt_priority=int(d["rt_priority"]), nice=int(d["nice"]),
                   affinity=tuple(int(c) for c in d["affinity"]), slice_ns=int(d["slice_ns"]),
                   reset_on_fork=bool(d.get("reset_on_fork", False)))

    def describe(self) -> str:
        pol = POLICY_NAME.get(self.policy, str(self.policy))
        if self.policy in RT_POLICIES:
            pol += f" {self.rt_priority}"
        sl = format_ns(self.slice_ns) if self.slice_ns else "-"
        return (f"{pol} nice {self.nice} slice {sl} "
                f"cpus {format_cpulist(self.affinity)}")


@dataclass(frozen=True, slots=True)
class Tuning:
    """A requested change; None leaves that knob alone. slice_ns 0 = back to the default."""

    policy: int | None = None
    rt_priority: int | None = None
    nice: int | None = None
    slice_ns: int | None = None
    affinity: tuple[int, ...] | None = None
    # Also give the nice to the task's session autogroup (every task of that session), so it
    # counts against other sessions' load; see autogroup.py. Only with nice set.
    group: bool = False
    # The session autogroup's nice on its own (profiles' group_nice), independent of the
    # threads' nice; wins over `group`.
    group_nice: int | None = None

    def group_target(self) -> int | None:
        """The nice to give the targets' session groups, or None to leave them alone."""
        if self.group_nice is not None:
            return self.group_nice
        return self.nice if self.group else None

    def describe(self) -> str:
        parts = []
        if self.policy is not None:
            p = POLICY_NAME.get(self.policy, str(self.policy))
            parts.append(f"{p} {self.rt_priority}" if self.policy in RT_POLICIES else p)
        if self.nice is not None:
            parts.append(f"nice {self.nice:+d}" + (" (+ session group)" if self.group else ""))
        if self.slice_ns is not None:
            parts.append("slice default" if self.slice_ns == 0 else f"slice {format_ns(self.slice_ns)}")
        if self.affinity is not None:
            parts.append(f"pin {format_cpulist(self.affinity)}")
        if self.group_nice is not None:
            parts.append(f"session group nice {self.group_nice:+d}")
        return ", ".join(parts) or "nothing"

    def is_empty(self) -> bool:
        return all(v is None for v in (self.policy, self.nice, self.slice_ns, self.affinity, self.group_nice))


# --- /proc ---------------------------------------------------------------------------------


def task_dir(pid: int, tid: int) -> str:
    return f"/proc/{pid}/task/{tid}"


def read_stat(pid: int, tid: int) -> StatFields | None:
    """The thread's /proc stat line, parsed by the collector's parser; None once it is gone."""
    data = read_bytes(f"{task_dir(pid, tid)}/stat")
    return parse_stat(data) if data else None


def starttime_of(pid: int, tid: int) -> int | None:
    st = read_stat(pid, tid)
    return st.starttime if st is not None else None


def tgid_of(tid: int) -> int | None:
    """The process a tid belongs to (/proc/TID works for any thread id)."""
    try:
        with open(f"/proc/{tid}/status", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def comm_of(pid: int, tid: int) -> str:
    try:
        with open(f"{task_dir(pid, tid)}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().rstrip("\n")
    except OSError:
        return ""


PF_KTHREAD = 0x00200000  # include/linux/sched.h
PF_NO_SETAFFINITY = 0x04000000  # per-CPU kernel threads: userland may not move them
CAP_SYS_NICE = 23


def task_flags(pid: int, tid: int) -> int:
    """/proc stat field 9 (the task's PF_* flags); 0 when unreadable."""
    st = read_stat(pid, tid)
    return st.flags if st is not None else 0


def task_uids(pid: int, tid: int) -> tuple[int, int] | None:
    """(real, effective) uid of a thread, the two the kernel's ownership check compares."""
    try:
        with open(f"{task_dir(pid, tid)}/status", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("Uid:"):
                    ids = line.split()[1:3]
                    return int(ids[0]), int(ids[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def has_cap_sys_nice() -> bool:
    """Whether this process may raise priority at all (root has it; so may a capable binary)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_NICE & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def _not_owner(tid: int) -> str | None:
    """Why the kernel says EPERM for another user's task, or None when the task is ours."""
    me = os.geteuid()
    if me == 0:
        return None
    pid = tgid_of(tid) or tid
    uids = task_uids(pid, tid)
    if uids is None or me in uids:
        return None
    return f"pid {tid} belongs to uid {uids[1]}, not you (uid {me}): another user's task needs root or CAP_SYS_NICE"


def nice_floor(tid: int) -> int | None:
    """The lowest nice the task's RLIMIT_NICE lets an unprivileged user set (None: any)."""
    lim = _rlimit(tid, resource.RLIMIT_NICE)
    if lim is None or lim == resource.RLIM_INFINITY:
        return None
    return 20 - lim


def can_set_nice(tid: int, nice: int) -> bool:
    """The kernel's can_nice(): RLIMIT_NICE allows it, or CAP_SYS_NICE."""
    floor = nice_floor(tid)
    return floor is None or nice >= floor or has_cap_sys_nice()


def ref_for(tid: int, pid: int | None = None) -> TaskRef:
    """A TaskRef for a live tid; raises TaskGone like chrt's 'No such process'."""
    pid = pid if pid is not None else tgid_of(tid)
    st = starttime_of(pid, tid) if pid else None
    if pid is None or st is None:
        raise TaskGone(f"failed to get pid {tid}'s policy: No such process", errno.ESRCH)
    return TaskRef(pid=pid, tid=tid, starttime=st, comm=comm_of(pid, tid))


def is_alive(ref: TaskRef) -> bool:
    """Same thread as when it was recorded: exists and has the same start time."""
    return starttime_of(ref.pid, ref.tid) == ref.starttime


def read_slice_ns(pid: int, tid: int) -> int:
    """se.slice in ns; 0 where the kernel does not show it (RT tasks have no fair slice)."""
    with open(f"{task_dir(pid, tid)}/sched", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("se.slice"):
                return int(float(line.split(":")[1]))
    return 0


def default_slice_ns() -> int:
    """The kernel's base slice: from debugfs when readable, else from a thread that never
    asked for a custom slice (a forked task starts with custom_slice = 0)."""
    try:
        with open(BASE_SLICE_PATH) as f:
            return int(f.read())
    except (OSError, ValueError):
        pass
    global _default_slice
    if _default_slice is None:
        import subprocess

        # A fresh child of ours has the base slice; reading our own would be wrong if someone
        # retuned schedtop itself.
        child = subprocess.Popen(["sleep", "5"])
        try:
            _default_slice = read_slice_ns(child.pid, child.pid)
        finally:
            child.kill()
            child.wait()
    return _default_slice


_default_slice: int | None = None


# --- syscalls ------------------------------------------------------------------------------


def _sched_getattr(tid: int) -> SchedAttr:
    attr = SchedAttr()
    if _libc.syscall(SYS_sched_getattr, tid, ctypes.byref(attr), ctypes.sizeof(attr), 0) != 0:
        e = ctypes.get_errno()
        raise _gone_or(e, f"failed to get pid {tid}'s policy: {os.strerror(e)}")
    return attr


def _sched_setattr(tid: int, attr: SchedAttr) -> None:
    attr.size = ctypes.sizeof(attr)
    if _libc.syscall(SYS_sched_setattr, tid, ctypes.byref(attr), 0) != 0:
        e = ctypes.get_errno()
        raise _gone_or(e, f"failed to set pid {tid}'s policy: {os.strerror(e)}{_why(e, tid, attr)}")


def _gone_or(e: int, msg: str) -> SteerError:
    return TaskGone(msg, e) if e == errno.ESRCH else SteerError(msg, e)


def _rlimit(tid: int, which: int) -> int | None:
    try:
        return resource.prlimit(tid, which)[0]
    except (OSError, ValueError):
        return None


def _why(e: int, tid: int, attr: SchedAttr) -> str:
    """Say which limit stood in the way, so EPERM is not a mystery."""
    if e == errno.EINVAL and attr.sched_policy == SCHED_EXT and sched_ext_available() is not True:
        return f" ({NO_SCHED_EXT})"  # the kernel's valid_policy() knows 7 only with the class built in
    if e != errno.EPERM:
        return ""
    other = _not_owner(tid)
    if other:
        return f" ({other})"
    if attr.sched_policy in RT_POLICIES:
        lim = _rlimit(tid, resource.RLIMIT_RTPRIO)
        return (f" (RT priority {attr.sched_priority} needs root/CAP_SYS_NICE or "
                f"RLIMIT_RTPRIO >= {attr.sched_priority}; the task's RLIMIT_RTPRIO is {lim})")
    lim = _rlimit(tid, resource.RLIMIT_NICE)
    floor = 20 - lim if lim is not None and lim != resource.RLIM_INFINITY else None
    return (" (raising priority needs root or CAP_SYS_NICE"
            + (f"; RLIMIT_NICE allows nice >= {floor}" if floor is not None else "") + ")")


def read_params(ref: TaskRef) -> TaskParams:
    """The thread's current scheduling parameters, checked against its start time."""
    if not is_alive(ref):
        raise TaskGone(f"pid {ref.tid} is gone (exited, or its pid was reused)", errno.ESRCH)
    attr = _sched_getattr(ref.tid)
    try:
        affinity = tuple(sorted(os.sched_getaffinity(ref.tid)))
        nice = os.getpriority(os.PRIO_PROCESS, ref.tid)
        slice_ns = read_slice_ns(ref.pid, ref.tid)
    except ProcessLookupError:
        raise TaskGone(f"pid {ref.tid} is gone", errno.ESRCH) from None
    except FileNotFoundError:
        raise TaskGone(f"pid {ref.tid} is gone", errno.ESRCH) from None
    return TaskParams(
        policy=attr.sched_policy,
        rt_priority=attr.sched_priority,
        nice=nice,
        affinity=affinity,
        slice_ns=slice_ns,
        reset_on_fork=bool(attr.sched_flags & SCHED_FLAG_RESET_ON_FORK),
    )


def _slice_arg(slice_ns: int) -> int:
    """sched_runtime for a slice: 0 (= not custom) when it is the base slice or unknown."""
    return 0 if slice_ns in (0, default_slice_ns()) else slice_ns


def set_params(ref: TaskRef, want: TaskParams, have: TaskParams | None = None) -> None:
    """Make the thread's parameters equal `want`, touching only what differs."""
    if not is_alive(ref):
        raise TaskGone(f"pid {ref.tid} is gone (exited, or its pid was reused)", errno.ESRCH)
    have = have or read_params(ref)
    sched_changed = (want.policy, want.rt_priority, want.reset_on_fork) != (
        have.policy, have.rt_priority, have.reset_on_fork)
    if want.policy in NICE_POLICIES:
        sched_changed = (sched_changed or want.nice != have.nice
                         or _slice_arg(want.slice_ns) != _slice_arg(have.slice_ns))
    if sched_changed:
        attr = SchedAttr()
        attr.sched_policy = want.policy
        attr.sched_flags = SCHED_FLAG_RESET_ON_FORK if want.reset_on_fork else 0
        attr.sched_nice = want.nice
        attr.sched_priority = want.rt_priority if want.policy in RT_POLICIES else 0
        if want.policy in NICE_POLICIES:
            attr.sched_runtime = _slice_arg(want.slice_ns)
        _sched_setattr(ref.tid, attr)
    if want.policy not in NICE_POLICIES and want.nice != have.nice:
        # An RT task keeps a nice value for when it goes back to the fair class.
        _setpriority(ref.tid, want.nice)
    if want.affinity != have.affinity:
        _setaffinity(ref, want.affinity)


def _setpriority(tid: int, nice: int) -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, tid, nice)
    except ProcessLookupError:
        raise TaskGone(f"pid {tid} is gone", errno.ESRCH) from None
    except OSError as exc:
        why = ""
        other = _not_owner(tid) if exc.errno == errno.EPERM else None
        if other:
            why = f" ({other})"
        elif exc.errno in (errno.EPERM, errno.EACCES):
            lim = _rlimit(tid, resource.RLIMIT_NICE)
            floor = 20 - lim if lim is not None and lim != resource.RLIM_INFINITY else None
            why = (" (lowering nice needs root or CAP_SYS_NICE"
                   + (f"; RLIMIT_NICE allows nice >= {floor}" if floor is not None else "") + ")")
        raise SteerError(f"failed to set pid {tid}'s nice to {nice}: {os.strerror(exc.errno)}{why}",
                         exc.errno) from None


def cgroups_of(pid: int) -> list[tuple[str, list[str], str]]:
    """/proc/PID/cgroup as (hierarchy id, controllers, path); [] when the task is gone."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        hid, ctrls, path = line.split(":", 2)
        out.append((hid, ctrls.split(","), path))
    return out


def _cpuset_of(pid: int) -> str | None:
    """The cpuset's effective CPUs (cgroup v2 or v1), to explain an EINVAL."""
    for hid, ctrls, path in cgroups_of(pid):
        if "cpuset" in ctrls:
            candidates = [f"/sys/fs/cgroup/cpuset{path}/cpuset.effective_cpus"]
        elif hid == "0":
            candidates = [f"/sys/fs/cgroup{path}/cpuset.cpus.effective",
                          f"/sys/fs/cgroup/unified{path}/cpuset.cpus.effective"]
        else:
            continue
        for c in candidates:
            try:
                with open(c) as f:
                    text = f.read().strip()
                if text:
                    return text
            except OSError:
                continue
    return None


def _bound_kthread(ref: TaskRef) -> str:
    try:
        cpus = format_cpulist(sorted(os.sched_getaffinity(ref.tid)))
    except OSError:
        cpus = "?"
    return (f"pid {ref.tid} ({ref.comm or comm_of(ref.pid, ref.tid)}) is a kernel thread bound to CPU {cpus}: "
            "the kernel does not let it be moved")


def _setaffinity(ref: TaskRef, cpus: tuple[int, ...]) -> None:
    if task_flags(ref.pid, ref.tid) & PF_NO_SETAFFINITY:
        raise SteerError(f"failed to set pid {ref.tid}'s affinity: {_bound_kthread(ref)}", errno.EINVAL)
    try:
        os.sched_setaffinity(ref.tid, cpus)
    except ProcessLookupError:
        raise TaskGone(f"pid {ref.tid} is gone", errno.ESRCH) from None
    except OSError as exc:
        why = ""
        if exc.errno == errno.EINVAL:
            cs = _cpuset_of(ref.pid)
            why = (f" (CPUs {format_cpulist(cpus)} not allowed: online {format_cpulist(online_cpus())}"
                   + (f", the task's cpuset allows {cs}" if cs else "") + ")")
        elif exc.errno == errno.EPERM:
            why = f" ({_not_owner(ref.tid) or 'changing another user task needs root or CAP_SYS_NICE'})"
        raise SteerError(f"failed to set pid {ref.tid}'s affinity: {os.strerror(exc.errno)}{why}",
                         exc.errno) from None


def target_params(have: TaskParams, tuning: Tuning) -> TaskParams:
    """What the thread's parameters become under `tuning`."""
    want = have
    if tuning.policy is not None:
        prio = tuning.rt_priority if tuning.policy in RT_POLICIES else 0
        want = replace(want, policy=tuning.policy, rt_priority=prio or 0)
    if tuning.nice is not None:
        want = replace(want, nice=tuning.nice)
    if tuning.slice_ns is not None:
        want = replace(want, slice_ns=tuning.slice_ns or default_slice_ns())
    if tuning.affinity is not None:
        want = replace(want, affinity=tuple(sorted(tuning.affinity)))
    return want


def sched_ext_available() -> bool | None:
    """Whether the kernel has the sched_ext class: its sysfs directory exists exactly when
    CONFIG_SCHED_CLASS_EXT is built in. None when sysfs is not mounted (let the kernel say)."""
    if os.path.isdir(SCHED_EXT_SYSFS):
        return True
    return False if os.path.isdir("/sys/kernel") else None


def check_tuning(tuning: Tuning) -> None:
    # Before anything is journaled: without the class the kernel refuses policy 7 (EINVAL).
    if tuning.policy == SCHED_EXT and sched_ext_available() is False:
        raise SteerError(NO_SCHED_EXT, errno.EINVAL)
    if tuning.policy in RT_POLICIES and not tuning.rt_priority:
        raise SteerError("FIFO/RR needs a priority 1..99", errno.EINVAL)
    if tuning.group_nice is not None and not -20 <= tuning.group_nice <= 19:
        raise SteerError(f"session group nice {tuning.group_nice} is out of range: -20..19", errno.EINVAL)
    if tuning.slice_ns and tuning.policy in RT_POLICIES:
        raise SteerError("a slice applies to the fair class (OTHER/BATCH/IDLE), not to FIFO/RR",
                         errno.EINVAL)


def apply_tuning(ref: TaskRef, tuning: Tuning, have: TaskParams | None = None) -> TaskParams:
    """Apply and read back. A slice on an RT task is refused: EEVDF ignores it there."""
    have = have or read_params(ref)
    want = target_params(have, tuning)
    if tuning.slice_ns is not None and want.policy in RT_POLICIES:
        raise SteerError(f"pid {ref.tid} is {POLICY_NAME[want.policy]}: a slice only applies to "
                         "OTHER/BATCH/IDLE tasks", errno.EINVAL)
    set_params(ref, want, have)
    return read_params(ref)


def special_task(ref: TaskRef) -> str | None:
    """Why changing this task needs a confirmation: pid 1 and kernel threads (None: an ordinary task)."""
    if ref.pid == 1:
        return f"pid 1 ({ref.comm or 'init'}) is the init process: every service it starts inherits the change"
    if task_flags(ref.pid, ref.tid) & PF_KTHREAD:
        return (f"pid {ref.tid} ({ref.comm or comm_of(ref.pid, ref.tid)}) is a kernel thread: the kernel's own "
                "work (interrupts, writeback, RCU) runs there")
    return None


def cannot_undo(ref: TaskRef, have: TaskParams, want: TaskParams) -> str | None:
    """Why this user could not put the task back after this change (None: it could): without
    CAP_SYS_NICE, going back to a lower nice or out of SCHED_IDLE needs RLIMIT_NICE."""
    if has_cap_sys_nice():
        return None
    if want.nice > have.nice and not can_set_nice(ref.tid, have.nice):
        return (f"nice {have.nice} -> {want.nice} on pid {ref.tid} cannot be undone by you: going back to "
                f"nice {have.nice} needs root or CAP_SYS_NICE (RLIMIT_NICE allows nice >= {nice_floor(ref.tid)})")
    if (want.policy == SCHED_IDLE and have.policy != SCHED_IDLE and want.policy != have.policy
            and not can_set_nice(ref.tid, want.nice)):
        return (f"SCHED_IDLE on pid {ref.tid} cannot be undone by you: leaving IDLE needs root or CAP_SYS_NICE "
                f"(RLIMIT_NICE allows nice >= {nice_floor(ref.tid)})")
    return None


# --- the global knob -------------------------------------------------------------------------


_LOCKED_HINT = " (kernel lockdown or a debugfs restriction blocks it; per-task slices via sched_setattr still work)"


def base_slice_mounted() -> bool:
    """Whether debugfs' sched directory is there (else reading or writing it mounts debugfs)."""
    return os.path.isdir(kernel_paths.DEBUGFS_SCHED)


def read_base_slice() -> int:
    """The global EEVDF base slice now (ns), mounting debugfs if needed; SteerError if it cannot."""
    _debugfs_ready()
    try:
        with open(BASE_SLICE_PATH) as f:
            return int(f.read())
    except (OSError, ValueError) as exc:
        code = getattr(exc, "errno", None) or errno.EIO
        raise SteerError(f"cannot read {BASE_SLICE_PATH}: {getattr(exc, 'strerror', None) or exc}"
                         f"{_LOCKED_HINT if code == errno.EPERM else ''}", code) from None


def _debugfs_ready() -> None:
    if not os.path.isdir(kernel_paths.DEBUGFS_SCHED):
        if os.geteuid() != 0:
            raise SteerError("the global base slice needs root (debugfs)", errno.EPERM)
        rc = os.system(f"mount -t debugfs none {kernel_paths.DEBUGFS} >/dev/null 2>&1")
        if rc != 0 or not os.path.isdir(kernel_paths.DEBUGFS_SCHED):
            raise SteerError("debugfs is not mounted and mounting it failed; "
                             "per-task slices (sched_setattr) still work", errno.ENOENT)


def set_base_slice(ns: int) -> str:
    """Write the global EEVDF base slice; returns a message, raises SteerError with a clear reason.
    Not journaled: callers that change it for the user go through change.change_base_slice."""
    _debugfs_ready()
    try:
        with open(BASE_SLICE_PATH, "w") as f:
            f.write(str(ns))
    except OSError as exc:
        hint = _LOCKED_HINT if exc.errno == errno.EPERM else ""
        raise SteerError(f"cannot write {BASE_SLICE_PATH}: {os.strerror(exc.errno)}{hint}",
                         exc.errno) from None
    return f"base slice set to {format_ns(ns)}"


def autogroup_note(pid: int) -> str | None:
    """With autogroup on, nice only ranks tasks inside their session's group: say so when a user
    boosts with nice (measured in bench/audio.py: against hogs of other sessions it buys nothing)."""
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as f:
            if f.read().strip() != "1":
                return None
        with open(f"/proc/{pid}/autogroup", encoding="utf-8", errors="replace") as f:
            group = f.read().split()[0].lstrip("/")
    except (OSError, IndexError):
        return None
    return (f"note: autogroup is on: nice ranks pid {pid} only against tasks of its own session ({group}); "
            "against other sessions' load add --group (sets the session's nice) or use FIFO/RR")
