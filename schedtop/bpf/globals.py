"""A BPF object's global variables by name, each where its section's BTF (DATASEC) puts it.

The compiler picks the order and the padding of a section's variables, so neither a ctypes
mirror of a whole section nor a hand-counted offset stays right when the C changes. The
object's own BTF gives each variable's offset and size; ``var`` checks the ctypes type
against that size, so a mirror that drifts from the C fails when the tier opens, not with a
wrong number later.

    with BpfObject.open(path) as obj:
        Globals(obj, ".rodata").var("targ_tgid", ctypes.c_uint32).value = 42   # before load
        obj.load()
        g = Globals(obj, ".bss").var("g", TraceBss)   # memory shared with the kernel

Lifetimes: before ``load`` a view is the initial image libbpf copies into the map (every
section is writable then). After it, views of .bss and .data are the map's mmap, live both
ways until the object is closed; .rodata is frozen, so ``var`` returns a copy. A view taken
before load does not follow its section into the mmap: take it again after ``load``.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any, TypeVar, cast

from schedtop.bpf.btf import Btf, Field

if TYPE_CHECKING:
    from schedtop.bpf.libbpf.bpfobject import BpfObject

CData = TypeVar("CData", bound="ctypes._SimpleCData[Any] | ctypes.Structure | ctypes.Union | ctypes.Array[Any]")


class Globals:
    """The variables of one global section (.bss, .data, .rodata, or .data.NAME) of ``obj``."""

    def __init__(self, obj: BpfObject, section: str) -> None:
        self._obj = obj
        self.section = section
        self.vars: dict[str, Field] = Btf.of_object(obj).datasec(section)

    def var(self, name: str, ctype: type[CData]) -> CData:
        """The variable ``name`` as a ``ctype`` (whose size must be the variable's)."""
        f = self.vars.get(name)
        if f is None:
            raise KeyError(f"{self._obj.path}: no variable {name!r} in {self.section} (has {', '.join(self.vars)})")
        if ctypes.sizeof(ctype) != f.size:
            raise TypeError(f"{self._obj.path}: {self.section} {name} is {f.size} bytes, "
                            f"{ctype.__name__} is {ctypes.sizeof(ctype)}")
        addr, size = self._obj.map(self.section).initial_value()
        if f.offset + f.size > size:
            raise ValueError(f"{self._obj.path}: {self.section} is {size} bytes, {name} ends at {f.offset + f.size}")
        if self.section.startswith(".rodata") and self._obj.loaded:
            return cast(CData, ctype.from_buffer_copy(ctypes.string_at(addr + f.offset, f.size)))
        return cast(CData, ctype.from_address(addr + f.offset))
