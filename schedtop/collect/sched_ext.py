"""Which scheduler is in charge, from the sched_ext sysfs (/sys/kernel/sched_ext).

Files (kernel 6.12+): state, switch_all, nr_rejected, hotplug_seq, enable_seq;
root/ops only while a BPF scheduler is loaded; root/events since 6.15 as
'NAME VALUE' lines whose names vary by kernel. A missing directory means the
kernel has no CONFIG_SCHED_CLASS_EXT: EEVDF is in charge.
"""

from __future__ import annotations

import os

from schedtop import kernel_paths
from schedtop.model import SchedulerInfo

SCHED_EXT_SYSFS = kernel_paths.SCHED_EXT_SYSFS  # the class's directory; the policy is kernel_paths.SCHED_EXT
SCHEDTOP_OPS = "schedtop"  # the ops name of schedtop's own scheduler (schedtop.scx)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def parse_events(text: str | None) -> dict[str, int]:
    """root/events: one 'SCX_EV_NAME value' (or 'name: value') pair per line."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.replace(":", " ").split()
        if len(parts) == 2:
            v = _int(parts[1])
            if v is not None:
                out[parts[0]] = v
    return out


def read_scheduler_info(root: str = SCHED_EXT_SYSFS) -> SchedulerInfo:
    if not os.path.isdir(root):
        return SchedulerInfo(kind="eevdf", ext_state="absent")
    state = _read(f"{root}/state") or "disabled"
    ops = _read(f"{root}/root/ops") or None
    switch_all = _int(_read(f"{root}/switch_all"))
    if state == "enabled" and ops:
        kind = "schedtop" if ops == SCHEDTOP_OPS else "sched_ext"
    else:
        kind = "eevdf"
    return SchedulerInfo(
        kind=kind,
        ext_state=state,
        ops_name=ops,
        switch_all=None if switch_all is None else bool(switch_all),
        enable_seq=_int(_read(f"{root}/enable_seq")),
        nr_rejected=_int(_read(f"{root}/nr_rejected")),
        hotplug_seq=_int(_read(f"{root}/hotplug_seq")),
        events=parse_events(_read(f"{root}/root/events")),
    )
