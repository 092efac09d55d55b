"""BTF lookups through libbpf: struct layouts (to check ctypes mirrors against a compiled
object) and kernel probes (does this tracepoint / field / kfunc / struct_ops type exist?)."""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from schedtop.bpf.libbpf.lib import BpfError, check_ptr, load_libbpf

if TYPE_CHECKING:
    from schedtop.bpf.libbpf.bpfobject import BpfObject

KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_FWD = 1, 2, 3, 4, 5, 6, 7
KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_FUNC, KIND_FUNC_PROTO = 8, 9, 10, 11, 12, 13
KIND_VAR, KIND_DATASEC, KIND_FLOAT, KIND_DECL_TAG, KIND_TYPE_TAG, KIND_ENUM64 = 14, 15, 16, 17, 18, 19
_MODIFIERS = (KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG)


class _BtfType(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("info", ctypes.c_uint32), ("size_or_type", ctypes.c_uint32)]


class _BtfParam(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("type", ctypes.c_uint32)]


class _BtfMember(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("type", ctypes.c_uint32), ("offset", ctypes.c_uint32)]


class _BtfVarSecinfo(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("offset", ctypes.c_uint32), ("size", ctypes.c_uint32)]


@dataclass(frozen=True, slots=True)
class FuncProto:
    """A function's prototype as libbpf compares a kfunc extern with the kernel's
    (bpf_core_types_are_compat): typedefs and const/volatile dropped, integers alike,
    pointers compared by what they point to, structs by kind only."""

    ret: str
    params: tuple[str, ...]

    @classmethod
    def parse(cls, sig: str) -> tuple[str, FuncProto]:
        """(name, proto) from a C declaration such as
        ``void scx_bpf_kick_cpu(s32 cpu, u64 flags, const struct bpf_prog_aux * aux)``."""
        head, _, rest = sig.partition("(")
        args = rest.rsplit(")", 1)[0].strip()
        ret, name = _split_decl(head)
        params = [] if args in ("", "void") else [_split_decl(a)[0] for a in args.split(",")]
        return name, cls(_c_shape(ret), tuple(_c_shape(p) for p in params))

    def compatible(self, other: FuncProto) -> bool:
        return self == other


def _split_decl(decl: str) -> tuple[str, str]:
    """'const struct bpf_prog_aux * aux' -> ('const struct bpf_prog_aux *', 'aux')."""
    decl = decl.strip()
    i = len(decl)
    while i and (decl[i - 1].isalnum() or decl[i - 1] == "_"):
        i -= 1
    typ, name = decl[:i].strip(), decl[i:]
    if not typ or typ in ("struct", "union", "enum", "const", "unsigned", "signed") or name in ("int", "long", "char"):
        return decl, ""  # an unnamed parameter: the whole of it is the type
    return typ, name


def _c_shape(ctype: str) -> str:
    words = [w for w in ctype.replace("*", " * ").split() if w not in ("const", "volatile", "restrict")]
    if words and words[-1] == "*":
        return "*" + _c_shape(" ".join(words[:-1]))
    if not words or words == ["void"]:
        return "void"
    if words[0] in ("struct", "union"):
        return "struct"
    if words[0] == "enum":
        return "enum"
    return "float" if words[0] in ("float", "double") else "int"


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
        ptr = check_ptr(load_libbpf().btf__load_vmlinux_btf(), "btf__load_vmlinux_btf", "/sys/kernel/btf/vmlinux")
        return cls(ptr, True)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Btf:
        """BTF of an ELF file (a .bpf.o or a vmlinux) or a raw BTF blob."""
        spath = os.fspath(path)
        return cls(check_ptr(load_libbpf().btf__parse(spath.encode(), None), "btf__parse", spath), True)

    @classmethod
    def of_object(cls, obj: BpfObject) -> Btf:
        return cls(obj.btf_ptr, False, obj)

    def _type(self, type_id: int) -> _BtfType:
        addr = check_ptr(load_libbpf().btf__type_by_id(self._ptr, type_id), "btf__type_by_id", str(type_id))
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

    def func_proto(self, name: str) -> FuncProto | None:
        """Prototype of the function ``name`` (a kernel function, or an object's extern), or None."""
        tid = self.find(name, KIND_FUNC)
        if tid is None:
            return None
        proto = self._type(self._type(tid).size_or_type)
        params = (_BtfParam * (proto.info & 0xFFFF)).from_address(ctypes.addressof(proto) + ctypes.sizeof(_BtfType))
        shapes = tuple(self._shape(p.type) for p in params)
        if shapes and shapes[-1] == "void":  # a trailing (void) entry marks varargs
            shapes = shapes[:-1]
        return FuncProto(self._shape(proto.size_or_type), shapes)

    def _shape(self, tid: int, depth: int = 8) -> str:
        if tid == 0:
            return "void"
        t = self._type(tid)
        kind = (t.info >> 24) & 0x1F
        if kind in _MODIFIERS and depth:
            return self._shape(t.size_or_type, depth - 1)
        if kind == KIND_PTR and depth:
            return "*" + self._shape(t.size_or_type, depth - 1)
        return {KIND_INT: "int", KIND_STRUCT: "struct", KIND_UNION: "struct", KIND_FWD: "struct",
                KIND_ENUM: "enum", KIND_ENUM64: "enum", KIND_FLOAT: "float"}.get(kind, f"kind{kind}")

    def extern_funcs(self) -> list[str]:
        """Names of the functions an object declares extern (its kfuncs)."""
        out = []
        for tid in range(1, load_libbpf().btf__type_cnt(self._ptr)):
            t = self._type(tid)
            if (t.info >> 24) & 0x1F == KIND_FUNC and t.info & 0xFFFF == 2:  # vlen holds the linkage: 2 = extern
                out.append(self._name(t.name_off))
        return out

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

    def datasec(self, section: str) -> dict[str, Field]:
        """The variables of a global section of an object (.bss, .data, .rodata): name ->
        Field(offset, size) in bytes. The compiler picks the order and the padding, so read
        them rather than assume them."""
        tid = self.find(section, KIND_DATASEC)
        if tid is None:
            raise KeyError(f"no section {section} in BTF")
        t = self._type(tid)
        infos = (_BtfVarSecinfo * (t.info & 0xFFFF)).from_address(ctypes.addressof(t) + ctypes.sizeof(_BtfType))
        out = {}
        for v in infos:
            name = self._name(self._type(v.type).name_off)
            out[name] = Field(name, int(v.offset), int(v.size))
        return out

    def datasec_offsets(self, section: str) -> dict[str, int]:
        """Variable name -> byte offset inside a global section (see ``datasec``)."""
        return {name: f.offset for name, f in self.datasec(section).items()}

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
