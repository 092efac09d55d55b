"""What the running kernel's sched_ext offers the scheduler object, decided before load.

bpf/compat.bpf.h declares each kfunc that moved between kernels in all its forms, each
weak; libbpf keeps a form when the kernel's BTF has a function of that name (minus a
``___tag``) and a compatible prototype. This module makes the same decision from the
same BTF before loading, so that a kernel is described in one line (what it lacks and
what that turns off) and a kernel that cannot run the scheduler is refused with the
reason, instead of a libbpf or verifier error.

The kernel side is a ``KernelView``: the live kernel's BTF (``KernelView.of_btf``) or
the text dumps in the lab's data (``KernelView.from_dumps``), so the decision can be
checked against every kernel we have a dump of without booting it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from schedtop.bpf.btf import FuncProto

# A kfunc that takes the kernel's implicit argument; resolve_btfids normally hides it
# from the BPF-visible prototype and keeps the full one as NAME_impl.
IMPLICIT_ARG = "*struct"


def kernel_name(extern: str) -> str:
    """What libbpf looks up for an extern: the name without its last ``___tag``."""
    for i in range(len(extern) - 5, -1, -1):  # as libbpf's bpf_core_essential_name_len
        if extern[i] != "_" and extern[i + 1:i + 4] == "___" and extern[i + 4] != "_":
            return extern[:i + 1]
    return extern


@dataclass(frozen=True, slots=True)
class KfuncNeed:
    api: str  # the call as scx.bpf.c makes it
    forms: tuple[str, ...]  # extern names in the object, newest first
    without: str  # what runs when no form resolves; "" = the scheduler cannot run


# Keep in step with bpf/compat.bpf.h. Every other extern of the object is required as declared.
NEEDS: tuple[KfuncNeed, ...] = (
    KfuncNeed("scx_bpf_dsq_insert", ("scx_bpf_dsq_insert___v2___st", "scx_bpf_dsq_insert___st",
                                     "scx_bpf_dispatch___st"), ""),
    KfuncNeed("scx_bpf_dsq_insert_vtime", ("__scx_bpf_dsq_insert_vtime___st", "scx_bpf_dsq_insert_vtime___st",
                                           "scx_bpf_dispatch_vtime___st"), ""),
    KfuncNeed("scx_bpf_dsq_move_to_local", ("scx_bpf_dsq_move_to_local___v2___st", "scx_bpf_dsq_move_to_local___st",
                                            "scx_bpf_consume___st"), ""),
    KfuncNeed("scx_bpf_task_set_slice", ("scx_bpf_task_set_slice___st",),
              "slices are set by writing p->scx.slice (what the kfunc does there)"),
    KfuncNeed("scx_bpf_kick_cpu", ("scx_bpf_kick_cpu___st",),
              "CPU kicks off, a decision for an idle CPU wakes it through its local DSQ"),
)

# Ops schedtop's scheduler can run without, and what is lost. Any other op it sets is required.
OPTIONAL_OPS: dict[str, str] = {}


@dataclass(frozen=True)
class KernelView:
    """The sched_ext part of a kernel's BTF: function prototypes and struct sched_ext_ops members."""

    release: str
    funcs: dict[str, FuncProto]
    ops_members: frozenset[str] | None  # None: no struct sched_ext_ops (no sched_ext at all)
    prefixes: tuple[str, ...] = ()  # only names with these prefixes are known (a dump); () = all

    def knows(self, name: str) -> bool:
        return not self.prefixes or name.startswith(self.prefixes) or name in self.funcs

    @classmethod
    def of_btf(cls, btf, release: str, names: Iterable[str]) -> KernelView:  # noqa: ANN001 (schedtop.bpf.btf.Btf)
        funcs = {}
        for name in names:
            for n in (name, f"{name}_impl"):
                proto = btf.func_proto(n)
                if proto is not None:
                    funcs[n] = proto
        try:
            members = frozenset(btf.struct_fields("sched_ext_ops"))
        except KeyError:
            members = None
        return cls(release, funcs, members)

    @classmethod
    def from_dumps(cls, kf_json: Path, ops_txt: Path, release: str) -> KernelView:
        """The lab's dumps: kf-VERSION.json ({name: {"sig": C declaration, "kfunc": bool}})
        and ops-VERSION.txt (one "name: type @bitoffset" line per sched_ext_ops member).
        Functions of the kernel that are not scx kfuncs (bpf_iter_*) are not in the dumps."""
        funcs = {}
        for entry in json.loads(kf_json.read_text()).values():
            name, proto = FuncProto.parse(entry["sig"])
            funcs[name] = proto
        members = frozenset(line.split(":", 1)[0].strip() for line in ops_txt.read_text().splitlines()[1:]
                            if ":" in line)
        return cls(release, funcs, members, prefixes=("scx_bpf_", "__scx_bpf_"))


@dataclass(frozen=True)
class CompatPlan:
    release: str
    chosen: dict[str, str] = field(default_factory=dict)  # api -> kernel name of the form used
    older: tuple[str, ...] = ()  # apis served by an older form (same behaviour)
    off: tuple[tuple[str, str], ...] = ()  # (what is lacking, what that turns off)
    null_ops: tuple[str, ...] = ()  # ops the object sets that this kernel lacks: cleared before load
    resolves: frozenset[str] = frozenset()  # the object's externs libbpf will resolve here
    refused: str = ""  # non-empty: the scheduler cannot run on this kernel, and why

    def line(self) -> str:
        """One line for the user: what this kernel lacks and what that changes ("" if nothing)."""
        if self.refused:
            return self.refused
        parts = [f"lacks {what}: {effect}" for what, effect in self.off]
        if self.older:
            parts.append("older forms of " + ", ".join(self.older))
        return f"kernel {self.release}: " + "; ".join(parts) if parts else ""


def _lacking(name: str, local: FuncProto, kernel: KernelView) -> str:
    """Why the kernel's function of this name will not do ("" if it will)."""
    if not kernel.knows(name):
        return ""
    theirs = kernel.funcs.get(name)
    if theirs is None:
        return f"no {name}"
    if theirs.compatible(local):
        return ""
    if (theirs.params[-1:] == (IMPLICIT_ARG,) and FuncProto(theirs.ret, theirs.params[:-1]).compatible(local)
            and f"{name}_impl" not in kernel.funcs):
        # resolve_btfids left it unprocessed: the verifier needs NAME_impl for such a kfunc
        return f"a callable {name} (BTF has it with the implicit aux argument and no _impl twin)"
    return f"{name} as declared (the kernel's prototype differs)"


def plan(externs: dict[str, FuncProto], ops_set: Iterable[str], kernel: KernelView) -> CompatPlan:
    """Decide, as libbpf and the verifier will, which form of each kfunc the object gets here.

    externs: the object's extern functions and their prototypes (its BTF);
    ops_set: the sched_ext_ops members the object gives a value (ops and settings)."""
    if kernel.ops_members is None:
        return CompatPlan(kernel.release, refused=f"kernel {kernel.release} has no sched_ext "
                          "(no struct sched_ext_ops in its BTF): the scheduler cannot run")
    chosen: dict[str, str] = {}
    older: list[str] = []
    off: list[tuple[str, str]] = []
    fatal: list[str] = []
    grouped = set()
    for need in NEEDS:
        forms = [f for f in need.forms if f in externs]
        grouped.update(need.forms)
        if not forms:
            continue
        reasons = []
        for i, form in enumerate(forms):
            why = _lacking(kernel_name(form), externs[form], kernel)
            if not why:
                chosen[need.api] = kernel_name(form)
                if i:
                    older.append(kernel_name(form))
                break
            reasons.append(why)
        else:
            if need.without:
                off.append((reasons[0].removeprefix("no "), need.without))
            else:
                fatal.append(" or ".join(reasons))
    for name, proto in externs.items():
        if name not in grouped:
            why = _lacking(kernel_name(name), proto, kernel)
            if why:
                fatal.append(why)
    resolves = frozenset(n for n, proto in externs.items()
                         if kernel.knows(kernel_name(n)) and not _lacking(kernel_name(n), proto, kernel))
    null_ops = []
    for op in ops_set:
        if op in kernel.ops_members:
            continue
        if op in OPTIONAL_OPS:
            null_ops.append(op)
            off.append((f"ops.{op}", OPTIONAL_OPS[op]))
        else:
            fatal.append(f"no ops.{op}")
    if fatal:
        return CompatPlan(kernel.release, chosen, tuple(older), tuple(off), tuple(null_ops), resolves,
                          refused=f"kernel {kernel.release} cannot run schedtop's scheduler: " + "; ".join(fatal))
    return CompatPlan(kernel.release, chosen, tuple(older), tuple(off), tuple(null_ops), resolves)
