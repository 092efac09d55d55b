"""Which threads an action applies to: one tid, all threads of a process, a process tree,
or every task whose name matches a glob (`pipewire*`)."""

from __future__ import annotations

import errno
import fnmatch
import os
from typing import Iterator

from schedtop.collect.procfs import stat_at
from schedtop.steer.actions import SteerError, TaskGone, TaskRef, comm_of, ref_for, starttime_of, tgid_of


def _ints(path: str) -> list[int]:
    try:
        return [int(n) for n in os.listdir(path) if n.isdigit()]
    except OSError:
        return []


def thread_refs(pid: int) -> list[TaskRef]:
    """Every live thread of process `pid`."""
    out = []
    for tid in sorted(_ints(f"/proc/{pid}/task")):
        st = starttime_of(pid, tid)
        if st is not None:
            out.append(TaskRef(pid=pid, tid=tid, starttime=st, comm=comm_of(pid, tid)))
    return out


def all_threads() -> Iterator[TaskRef]:
    for pid in sorted(_ints("/proc")):
        yield from thread_refs(pid)


def _ppid(pid: int) -> int | None:
    st = stat_at(f"/proc/{pid}/stat")
    return st.ppid if st is not None else None


def tree_pids(root: int) -> list[int]:
    """root and all its descendant processes (parent links read once from /proc)."""
    children: dict[int, list[int]] = {}
    for pid in _ints("/proc"):
        pp = _ppid(pid)
        if pp is not None:
            children.setdefault(pp, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return sorted(out)


def resolve(pid: int | None = None, *, threads: bool = False, tree: bool = False,
            name: str | None = None) -> list[TaskRef]:
    """The threads to act on. Like chrt/taskset, a bare pid means that one thread;
    --threads widens to all threads of its process (chrt -a); --tree adds descendants."""
    if pid is None and name is None:
        raise SteerError("give a pid or --name GLOB", errno.EINVAL)
    refs: list[TaskRef] = []
    if pid is not None:
        tgid = tgid_of(pid)
        if tgid is None:
            raise TaskGone(f"failed to get pid {pid}'s policy: No such process", errno.ESRCH)
        if tree:
            # A tree is whole processes: every thread of every descendant.
            for p in tree_pids(tgid):
                refs.extend(thread_refs(p))
        elif threads:
            refs.extend(thread_refs(tgid))
        else:
            refs.append(ref_for(pid, tgid))
    if name is not None:
        matched = match_name(name, threads=threads)
        if not matched and pid is None:
            raise TaskGone(f"no task matches {name!r}", errno.ESRCH)
        refs.extend(matched)
    seen, out = set(), []
    for r in refs:
        if (r.tid, r.starttime) not in seen:
            seen.add((r.tid, r.starttime))
            out.append(r)
    return out


def match_name(glob: str, *, threads: bool = False) -> list[TaskRef]:
    """Threads whose own name matches, plus whole processes whose main name matches.
    Without --threads a matching process contributes only its main thread."""
    me = os.getpid()
    out = []
    for pid in sorted(_ints("/proc")):
        if pid == me:
            continue  # never retune the tool by accident: "schedtop*" would match us
        trefs = thread_refs(pid)
        main = next((r for r in trefs if r.tid == pid), None)
        proc_match = main is not None and fnmatch.fnmatchcase(main.comm, glob)
        for r in trefs:
            if fnmatch.fnmatchcase(r.comm, glob) or (proc_match and (threads or r.tid == pid)):
                out.append(r)
    return out
