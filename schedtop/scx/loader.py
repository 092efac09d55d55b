"""Open, configure, load and attach schedtop's struct_ops scheduler; read its state.

Everything the BPF side shares with Python is reached here:
  - load-time settings (.rodata: own tgid, default slice, heartbeat) and the
    ops fields (flags for full/partial mode, timeout_ms), written before load;
  - live knobs and counters (.bss, mmap'ed: plain memory reads and writes);
  - the per-task knob map, the two rings;
  - the exit record ops.exit fills when the kernel lets the scheduler go.
The struct_ops map is attached as a LINK: when this process dies, for any
reason, the kernel unregisters the scheduler and falls back to the fair class.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from schedtop import kernel_paths
from schedtop.bpf import objects
from schedtop.bpf.globals import Globals
from schedtop.scx import compat, protocol

if TYPE_CHECKING:
    from schedtop.bpf.libbpf import Link

OBJ_PATH = objects.path("scx")
SCHED_EXT_DIR = Path(kernel_paths.SCHED_EXT_SYSFS)  # the class's sysfs directory
SCX_OPS_SWITCH_PARTIAL = 8
MAX_TIMEOUT_MS = 30_000  # the kernel's ceiling for ops.timeout_ms


class LoadError(RuntimeError):
    """The scheduler cannot be loaded here; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class LoadConfig:
    partial: bool = False
    slice_ns: int = 5_000_000
    timeout_ms: int = 5_000
    heartbeat_ms: int = 100
    loop_preempt: bool = False


@dataclass(frozen=True, slots=True)
class ExitInfo:
    kind: int
    code: int
    reason: str
    msg: str

    @property
    def text(self) -> str:
        kind = protocol.EXIT_KINDS.get(self.kind, str(self.kind))
        parts = [p for p in (self.reason, self.msg) if p]
        return f"{kind}: {' - '.join(parts)}" if parts else kind


def preflight() -> None:
    """One clear line instead of a libbpf error when loading cannot work."""
    if os.geteuid() != 0:
        raise LoadError("loading a sched_ext scheduler needs root")
    state = SCHED_EXT_DIR / "state"
    if not state.exists():
        raise LoadError("this kernel has no sched_ext (CONFIG_SCHED_CLASS_EXT); try `schedtop lab run`")
    current = state.read_text().strip()
    if current != "disabled":
        ops = SCHED_EXT_DIR / "root" / "ops"
        who = ops.read_text().strip() if ops.exists() else "another scheduler"
        raise LoadError(f"sched_ext is {current} ({who}); unload it first")
    if not OBJ_PATH.exists():
        raise LoadError(objects.missing(OBJ_PATH))


def object_externs(path: Path) -> dict:
    """The object's kfunc externs and their prototypes, read from the file: once libbpf has
    opened it, its in-memory BTF no longer marks them extern."""
    from schedtop.bpf.btf import Btf

    with Btf.from_file(path) as btf:
        return {name: btf.func_proto(name) for name in btf.extern_funcs()}


def _write(view: memoryview, offset: int, ctype: type, value: int) -> None:
    ctype.from_buffer(view, offset).value = value  # type: ignore[attr-defined]


class Scheduler:
    """The loaded BPF half. ``attach()`` hands the CPUs to it; ``close()`` gives them back."""

    def __init__(self, cfg: LoadConfig, own_tgid: int | None = None, obj_path: Path = OBJ_PATH) -> None:
        from schedtop.bpf.btf import Btf
        from schedtop.bpf.libbpf import BpfError, BpfObject

        if not 1 <= cfg.timeout_ms <= MAX_TIMEOUT_MS:
            raise LoadError(f"timeout_ms must be 1..{MAX_TIMEOUT_MS}, got {cfg.timeout_ms}")
        self.cfg = cfg
        self.link: Link | None = None
        try:
            self.obj = BpfObject.open(obj_path)
        except BpfError as exc:
            raise LoadError(str(exc)) from None
        try:
            btf = Btf.of_object(self.obj)
            self.compat = self._check_kernel(btf, obj_path)
            self._configure(btf, cfg, own_tgid or os.getpid())
            self.obj.load()
            self._bind()
        except BpfError as exc:
            self.obj.close()
            raise LoadError(f"loading the scheduler failed: {exc}") from None

    def _ops_view(self, btf) -> tuple[memoryview, dict]:
        """The object's struct sched_ext_ops as libbpf will hand it to the kernel, and its fields."""
        addr, size = self.obj.map("schedtop_ops").initial_value()
        return memoryview((ctypes.c_char * size).from_address(addr)).cast("B"), btf.struct_fields("sched_ext_ops")

    def _check_kernel(self, btf, obj_path: Path) -> compat.CompatPlan:
        """Probe the running kernel's BTF for what the object uses, before libbpf does.
        Refuses a kernel that cannot run it; clears the ops it lacks (LoadError otherwise)."""
        from schedtop.bpf.btf import Btf
        from schedtop.bpf.libbpf import BpfError

        externs = object_externs(obj_path)
        ops, fields = self._ops_view(btf)
        used = [f.name for f in fields.values() if any(ops[f.offset:f.offset + f.size])]
        try:
            with Btf.vmlinux() as kbtf:
                view = compat.KernelView.of_btf(kbtf, os.uname().release, map(compat.kernel_name, externs))
        except BpfError as exc:
            raise LoadError(f"cannot read the kernel's BTF to check sched_ext: {exc}") from None
        plan = compat.plan(externs, used, view)
        if plan.refused:
            raise LoadError(plan.refused)
        for op in plan.null_ops:  # as compat.h's __COMPAT_struct_has_field: libbpf skips a zeroed member
            f = fields[op]
            ops[f.offset:f.offset + f.size] = bytes(f.size)
        return plan

    def _configure(self, btf, cfg: LoadConfig, tgid: int) -> None:
        ro = Globals(self.obj, ".rodata")  # before load: the image libbpf copies into the map
        ro.var("own_tgid", ctypes.c_uint32).value = tgid
        ro.var("default_slice_ns", ctypes.c_uint64).value = cfg.slice_ns
        ro.var("heartbeat_ns", ctypes.c_uint64).value = cfg.heartbeat_ms * 1_000_000
        ro.var("loop_preempt", ctypes.c_bool).value = cfg.loop_preempt
        # The struct_ops map's initial value is the object's own struct sched_ext_ops.
        ops, fields = self._ops_view(btf)
        _write(ops, fields["flags"].offset, ctypes.c_uint64, SCX_OPS_SWITCH_PARTIAL if cfg.partial else 0)
        _write(ops, fields["timeout_ms"].offset, ctypes.c_uint32, cfg.timeout_ms)

    def _bind(self) -> None:
        bss = Globals(self.obj, ".bss")  # after load: the map's mmap, shared with the kernel
        self.live = bss.var("live", protocol.Live)
        self.counters = bss.var("counters", protocol.ScxCounters)
        self.exit_rec = bss.var("exit_rec", protocol.ScxExitRec)
        self.lat_hist = bss.var("lat_hist", ctypes.c_uint64 * protocol.LAT_BUCKETS)
        self.live.slice_ns = self.cfg.slice_ns
        self.queued_map = self.obj.map("queued")
        self.dispatched_map = self.obj.map("dispatched")
        self.knob_map = self.obj.map("task_knobs")
        self.plan_map = self.obj.map("task_plans")

    # --- life cycle --------------------------------------------------------------------

    def attach(self, loop_tid: int) -> None:
        from schedtop.bpf.libbpf import BpfError

        self.live.loop_tid = loop_tid
        try:
            self.link = self.obj.map("schedtop_ops").attach_struct_ops()
        except BpfError as exc:
            raise LoadError(f"attaching the scheduler failed: {exc}") from None

    def close(self) -> None:
        """Detach (back to EEVDF) and free everything. Safe to call twice."""
        if self.link is not None:
            try:
                self.link.destroy()
            except OSError:
                pass
            self.link = None
        self.obj.close()

    # --- state -------------------------------------------------------------------------

    def exit_info(self) -> ExitInfo | None:
        """Set once the kernel has let the scheduler go (ops.exit ran)."""
        kind = self.exit_rec.kind
        if not kind:
            return None
        return ExitInfo(kind, self.exit_rec.exit_code, self.exit_rec.reason.decode("utf-8", "replace"),
                        self.exit_rec.msg.decode("utf-8", "replace"))

    def counters_dict(self) -> dict[str, int]:
        c = self.counters
        return {name: int(getattr(c, name)) for name, *_ in protocol.ScxCounters._fields_}

    def latency_hist(self) -> list[int]:
        return list(self.lat_hist)

    # --- knobs -------------------------------------------------------------------------

    def set_slice(self, slice_ns: int) -> None:
        self.live.slice_ns = slice_ns

    def set_pending(self, n: int) -> None:
        self.live.user_pending = n

    def put_knob(self, pid: int, slice_ns: int | None, cpu: int | None, latcrit: bool) -> None:
        flags = (protocol.KF_PINNED if cpu is not None else 0) | (protocol.KF_LATCRIT if latcrit else 0)
        if not flags and slice_ns is None:
            self.knob_map.delete(pid)
            return
        self.knob_map.update(pid, protocol.ScxTaskKnob(slice_ns or 0, cpu or 0, flags))

    def put_plan(self, pid: int, slice_ns: int, lag_ns: int, expires_ns: int, flags: int) -> None:
        """Publish one task's plan (OSError E2BIG when the map is full: it stays per event)."""
        self.plan_map.update(pid, protocol.ScxPlan(slice_ns, lag_ns, expires_ns, flags, 0))

    def drop_plan(self, pid: int) -> None:
        self.plan_map.delete(pid)


def sysfs_state() -> tuple[str, str | None]:
    """(state, ops name) of sched_ext right now."""
    try:
        state = (SCHED_EXT_DIR / "state").read_text().strip()
    except OSError:
        return "absent", None
    try:
        ops = (SCHED_EXT_DIR / "root" / "ops").read_text().strip()
    except OSError:
        ops = None
    return state, ops
