"""BTF lookups through libbpf: struct layouts (to check ctypes mirrors against a compiled
object) and kernel probes (does this tracepoint / field / kfunc / struct_ops type exist?)."""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

from schedtop.bpf.libbpf import BpfError, BpfObject, _check_ptr, load_libbpf

KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 2, 3, 4, 5, 6
KIND_TYPEDEF, KIND_FUNC, KIND_VAR, KIND_DATASEC = 8, 12, 14, 15


class _BtfType(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("info", ctypes.c_uint32), ("size_or_type", ctypes.c_uint32)]


class _BtfMember(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("type", ctypes.c_uint32), ("offset", ctypes.c_uint32)]


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    offset: int  # bytes
    size: int  # bytes
    bitfield: int = 0  # bit size when a bitfield, else 0


class Btf:
    """A parsed BTF (the kernel's, a file's, or a loaded object's). Owned ones are freed
    on close(); an object's BTF lives as long as the object."""

    def __init__(self, ptr: int, owned: bool, keep: object = None) -> None:
        self._ptr = ptr
        self._owned = owned
        self._keep = keep  # the BpfObject whose BTF this is

    @classmethod
    def vmlinux(cls) -> Btf:
        return cls(_check_ptr(load_libbpf().btf__load_vmlinux_btf(), "btf__load_vmlinux_btf", "/sys/kernel/btf/vmlinux"), True)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Btf:
        """BTF of an ELF file (a .bpf.o or a vmlinux) or a raw BTF blob."""
        spath = os.fspath(path)
        return cls(_check_ptr(load_libbpf().btf__parse(spath.encode(), None), "btf__parse", spath), True)

    @classmethod
    def of_object(cls, obj: BpfObject) -> Btf:
        return cls(obj.btf_ptr, False, obj)

    def _type(self, type_id: int) -> _BtfType:
        addr = _check_ptr(load_libbpf().btf__type_by_id(self._ptr, type_id), "btf__type_by_id", str(type_id))
        return _BtfType.from_address(addr)

    def _name(self, off: int) -> str:
        raw = load_libbpf().btf__name_by_offset(self._ptr, off)
        return raw.decode() if raw else ""

    def find(self, name: str, kind: int) -> int | None:
        """Type id of a named type of this kind, or None."""
        tid = load_libbpf().btf__find_by_name_kind(self._ptr, name.encode(), kind)
        return tid if tid > 0 else None

    def has_tracepoint(self, name: str) -> bool:
        """tp_btf/<name> is attachable when the kernel has the btf_trace_<name> typedef."""
        return self.find(f"btf_trace_{name}", KIND_TYPEDEF) is not None

    def has_func(self, name: str) -> bool:
        """A kernel function (e.g. a kfunc such as scx_bpf_dsq_insert) is in BTF."""
        return self.find(name, KIND_FUNC) is not None

    def struct_fields(self, name: str) -> dict[str, Field]:
        """Members of struct/union ``name`` (anonymous members are flattened)."""
        tid = self.find(name, KIND_STRUCT) or self.find(name, KIND_UNION)
        if tid is None:
            raise KeyError(f"no struct {name} in BTF")
        return self._fields(tid, 0)

    def struct_has_field(self, name: str, field: str) -> bool:
        try:
            return field in self.struct_fields(name)
        except KeyError:
            return False

    def type_size(self, name: str, kind: int = KIND_STRUCT) -> int:
        tid = self.find(name, kind)
        if tid is None:
            raise KeyError(f"no type {name} (kind {kind}) in BTF")
        return self._size(tid)

    def _size(self, tid: int) -> int:
        size = load_libbpf().btf__resolve_size(self._ptr, tid)
        if size < 0:
            raise BpfError(-size, f"btf__resolve_size {tid}")
        return int(size)

    def _fields(self, tid: int, base: int) -> dict[str, Field]:
        t = self._type(tid)
        vlen, kflag = t.info & 0xFFFF, t.info >> 31
        members = (_BtfMember * vlen).from_address(ctypes.addressof(t) + ctypes.sizeof(_BtfType))
        out: dict[str, Field] = {}
        for m in members:
            bits = m.offset & 0xFFFFFF if kflag else m.offset
            bitsize = m.offset >> 24 if kflag else 0
            name = self._name(m.name_off)
            if not name:  # anonymous struct/union: its members live at this offset
                rid = load_libbpf().btf__resolve_type(self._ptr, m.type)
                out.update(self._fields(rid, base + bits // 8))
                continue
            out[name] = Field(name, base + bits // 8, self._size(m.type), bitsize)
        return out

    def datasec_offsets(self, section: str) -> dict[str, int]:
        """Variable name -> byte offset inside a global section of an object (.bss, .data,
        .rodata). The compiler picks the order, so read it rather than assume it."""
        tid = self.find(section, KIND_DATASEC)
        if tid is None:
            raise KeyError(f"no section {section} in BTF")
        t = self._type(tid)
        infos = (_BtfMember * (t.info & 0xFFFF)).from_address(ctypes.addressof(t) + ctypes.sizeof(_BtfType))
        # struct btf_var_secinfo {type, offset, size}: same shape as _BtfMember, other names
        return {self._name(self._type(v.name_off).name_off): v.type for v in infos}

    def close(self) -> None:
        if self._owned and self._ptr:
            load_libbpf().btf__free(self._ptr)
        self._ptr = 0

    def __enter__(self) -> Btf:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ctypes_layout(ctype: type[ctypes.Structure]) -> dict[str, Field]:
    """The same view of a ctypes struct, to compare with ``Btf.struct_fields``."""
    out = {}
    for name, *_ in ctype._fields_:
        desc = getattr(ctype, name)
        out[name] = Field(name, desc.offset, desc.size)
    return out
