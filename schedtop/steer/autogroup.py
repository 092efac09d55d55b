"""The session autogroup: the nice that ranks a whole session against the other sessions.

With kernel.sched_autogroup_enabled=1 every session (setsid) is its own CFS/EEVDF group, and a
task's nice (and slice) only rank it inside that group: a nice -10 task in one session still
gets half the CPU against a hog in another session (measured in bench/audio.py). The group's
own weight is set by writing a nice value to /proc/PID/autogroup; it applies to every task of
that session. The kernel bypasses the autogroup for tasks in a non-root cpu cgroup, and
/proc/PID/autogroup is empty for tasks outside any session group (the root group).

The kernel's rules for the write (kernel/sched/autogroup.c): nice < 0 needs CAP_SYS_NICE or
RLIMIT_NICE (EPERM), another user's task needs root (EACCES on open), and without
CAP_SYS_ADMIN writes are rate-limited to one per 100 ms (EAGAIN: we retry).
"""

from __future__ import annotations

import errno
import os
import re
import time
from dataclasses import dataclass
from typing import Any

from schedtop import kernel_paths
from schedtop.steer.actions import SteerError, TaskGone, TaskRef, cgroups_of, is_alive
from schedtop.textsafe import visible

ENABLED_PATH = kernel_paths.AUTOGROUP_ENABLED
_LINE = re.compile(r"^/autogroup-(\d+) nice (-?\d+)$")


@dataclass(frozen=True, slots=True)
class Group:
    id: int
    nice: int

    def name(self) -> str:
        return f"autogroup-{self.id}"


@dataclass(frozen=True, slots=True)
class GroupEntry:
    """A session group's nice before schedtop changed it, and a member to reach it through."""

    group: int
    nice: int
    member: TaskRef

    def to_json(self) -> dict[str, Any]:
        m = self.member
        return {"group": self.group, "nice": self.nice,
                "member": {"pid": m.pid, "tid": m.tid, "starttime": m.starttime, "comm": m.comm}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "GroupEntry":
        m = d["member"]
        return cls(group=int(d["group"]), nice=int(d["nice"]),
                   member=TaskRef(pid=int(m["pid"]), tid=int(m["tid"]), starttime=int(m["starttime"]),
                                  comm=str(m.get("comm", ""))))

    def label(self) -> str:
        return f"autogroup-{self.group} (session of {visible(self.member.comm) or self.member.pid}[{self.member.pid}])"


def enabled() -> bool:
    try:
        with open(ENABLED_PATH) as f:
            return f.read().strip() == "1"
    except OSError:
        return False  # kernel built without CONFIG_SCHED_AUTOGROUP


def read(pid: int) -> Group | None:
    """The task's session group, or None when it is in the root group (or gone)."""
    try:
        with open(f"/proc/{pid}/autogroup", encoding="utf-8", errors="replace") as f:
            m = _LINE.match(f.read().strip())
    except OSError:
        return None
    return Group(int(m.group(1)), int(m.group(2))) if m else None


def cpu_cgroup(pid: int) -> str | None:
    """The non-root cpu cgroup that schedules this task instead of its autogroup, if any.

    v1: the cpu controller's path. v2: the deepest ancestor (or the cgroup itself) with the
    cpu controller enabled, which is where cpu.weight exists."""
    groups = cgroups_of(pid)
    for hid, ctrls, path in groups:
        if "cpu" in ctrls:
            return None if path == "/" else path
    for hid, _, path in groups:
        if hid != "0":
            continue
        parts = [p for p in path.split("/") if p]
        for depth in range(len(parts), 0, -1):
            sub = "/" + "/".join(parts[:depth])
            for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
                if os.path.exists(f"{root}{sub}/cpu.weight"):
                    return sub
    return None


def why_not(pid: int) -> str | None:
    """Why a group nice would not help this task; None when its session group is in effect."""
    if not enabled():
        return "autogroup is off (kernel.sched_autogroup_enabled=0): task nice alone ranks it"
    cg = cpu_cgroup(pid)
    if cg is not None:
        return (f"pid {pid} is scheduled by cpu cgroup {cg}, which bypasses the autogroup "
                "(use that cgroup's cpu.weight)")
    if read(pid) is None:
        return f"pid {pid} is in no session autogroup (root group): task nice alone ranks it"
    return None


def set_nice(pid: int, nice: int, retries: int = 20) -> None:
    """Write the session group's nice. Clear errors for EPERM/EACCES; EAGAIN is retried
    (non-CAP_SYS_ADMIN writers may only write every 100 ms)."""
    for attempt in range(retries + 1):
        try:
            with open(f"/proc/{pid}/autogroup", "w") as f:
                f.write(str(nice))
            return
        except FileNotFoundError:
            raise TaskGone(f"pid {pid} is gone", errno.ESRCH) from None
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                raise TaskGone(f"pid {pid} is gone", errno.ESRCH) from None
            if exc.errno == errno.EAGAIN and attempt < retries:
                time.sleep(0.11)
                continue
            why = ""
            if exc.errno == errno.EPERM:
                why = " (lowering a session group's nice needs root or CAP_SYS_NICE)"
            elif exc.errno == errno.EACCES:
                why = " (another user's session group: needs root)"
            raise SteerError(f"failed to set pid {pid}'s autogroup nice to {nice}: "
                             f"{os.strerror(exc.errno)}{why}", exc.errno) from None


def _members(group: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            g = read(int(name))
            if g is not None and g.id == group:
                out.append(int(name))
    return out


def reach(entry: GroupEntry) -> int | None:
    """A live pid inside the journaled group: the recorded member if it is the same task and
    still in that group, else any surviving member of that group id; None when it is empty."""
    m = entry.member
    if is_alive(m):
        g = read(m.pid)
        if g is not None and g.id == entry.group:
            return m.pid
    found = _members(entry.group)
    return found[0] if found else None


def restore(entry: GroupEntry) -> tuple[str, str]:
    """Put the group's nice back: (status, message) with status restored/gone/failed."""
    pid = reach(entry)
    if pid is None:
        return "gone", ""
    try:
        set_nice(pid, entry.nice)
    except TaskGone:
        pid = reach(entry)  # the member exited between the scan and the write: try once more
        if pid is None:
            return "gone", ""
        try:
            set_nice(pid, entry.nice)
        except SteerError as exc:
            return ("gone", "") if isinstance(exc, TaskGone) else ("failed", str(exc))
    except SteerError as exc:
        return "failed", str(exc)
    return "restored", ""
