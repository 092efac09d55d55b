"""The object model of the binding: a BPF object, its programs, maps and links (struct_ops
included).

``BpfObject.open`` reads an ELF object; programs can be switched off and maps resized before
``load`` creates the maps and verifies the programs. ``attach_all`` or ``Program.attach``
attaches; every link made through an object is destroyed with it. Global variables are
reached by name through ``schedtop.bpf.globals.Globals``, map elements through ``Map``.

Typical use::

    with BpfObject.open(path) as obj:
        Globals(obj, ".rodata").var("targ_tgid", ctypes.c_uint32).value = 42   # before load
        obj.program("handle_raw_switch").autoload = False
        obj.load()
        links, errors = obj.attach_all()
        with RingReader(obj.map("events")) as ring:
            ring.read_fixed(RECORD)
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import logging
import os
from pathlib import Path
from typing import Any

from schedtop.bpf.libbpf.lib import (
    BpfError,
    c_int,
    c_size_t,
    c_uint,
    c_void_p,
    check,
    check_ptr,
    clear_log,
    error,
    load_libbpf,
    num_possible_cpus,
    recent_log,
)

log = logging.getLogger("schedtop.libbpf")

# enum bpf_map_type: the per-CPU ones, whose values come one slot per possible CPU
BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_LRU_PERCPU_HASH = 10
# Program types that bpf_program__attach cannot attach (run on demand / via their map).
BPF_PROG_TYPE_STRUCT_OPS = 27
BPF_PROG_TYPE_SYSCALL = 31
_NO_AUTOATTACH = {BPF_PROG_TYPE_STRUCT_OPS, BPF_PROG_TYPE_SYSCALL}
BPF_ANY = 0  # bpf_map_update_elem: create or replace


# --- key/value packing -------------------------------------------------------------------------

Buffer = bytes | bytearray | memoryview | ctypes.Structure | ctypes.Union | ctypes.Array | int


def _as_buffer(value: Buffer, size: int, what: str) -> tuple[Any, int]:
    """A ctypes buffer of exactly ``size`` bytes; ints are packed little-endian unsigned."""
    if isinstance(value, int):
        return ctypes.create_string_buffer(value.to_bytes(size, "little", signed=value < 0), size), size
    if isinstance(value, (ctypes.Structure, ctypes.Array, ctypes.Union)):
        if ctypes.sizeof(value) != size:
            raise ValueError(f"{what}: {type(value).__name__} is {ctypes.sizeof(value)} bytes, map wants {size}")
        return value, size
    raw = bytes(value)
    if len(raw) != size:
        raise ValueError(f"{what}: {len(raw)} bytes given, map wants {size}")
    return ctypes.create_string_buffer(raw, size), size


# --- objects -----------------------------------------------------------------------------------


class _TestRunOpts(ctypes.Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("data_in", c_void_p),
        ("data_out", c_void_p),
        ("data_size_in", c_uint),
        ("data_size_out", c_uint),
        ("ctx_in", c_void_p),
        ("ctx_out", c_void_p),
        ("ctx_size_in", c_uint),
        ("ctx_size_out", c_uint),
        ("retval", c_uint),
        ("repeat", c_int),
        ("duration", c_uint),
        ("flags", c_uint),
        ("cpu", c_uint),
        ("batch_size", c_uint),
    ]


class Link:
    """An attachment (program or struct_ops). ``destroy()`` detaches; idempotent."""

    def __init__(self, ptr: int, what: str) -> None:
        self._ptr: int | None = ptr
        self.what = what

    @property
    def fd(self) -> int:
        return load_libbpf().bpf_link__fd(self._require())

    @property
    def alive(self) -> bool:
        return self._ptr is not None

    def _require(self) -> int:
        if self._ptr is None:
            raise BpfError(errno_mod.EBADF, f"link {self.what} already destroyed")
        return self._ptr

    def read_iter(self, chunk: int = 1 << 16) -> bytes:
        """Run an iterator link once: everything its program bpf_seq_write()s, until EOF."""
        fd = check(load_libbpf().bpf_iter_create(self.fd), "bpf_iter_create", self.what)
        try:
            parts: list[bytes] = []
            while True:
                part = os.read(fd, chunk)
                if not part:
                    return b"".join(parts)
                parts.append(part)
        finally:
            os.close(fd)

    def destroy(self) -> None:
        if self._ptr is not None:
            ptr, self._ptr = self._ptr, None
            check(load_libbpf().bpf_link__destroy(ptr), "bpf_link__destroy", self.what)

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def __repr__(self) -> str:
        return f"<Link {self.what}{'' if self.alive else ' destroyed'}>"


class Program:
    def __init__(self, obj: BpfObject, ptr: int) -> None:
        self._obj = obj
        self._ptr = ptr
        lib = load_libbpf()
        self.name: str = lib.bpf_program__name(ptr).decode()
        self.section: str = (lib.bpf_program__section_name(ptr) or b"").decode()

    @property
    def autoload(self) -> bool:
        return bool(load_libbpf().bpf_program__autoload(self._ptr))

    @autoload.setter
    def autoload(self, on: bool) -> None:
        check(load_libbpf().bpf_program__set_autoload(self._ptr, bool(on)), "bpf_program__set_autoload", self.name)

    @property
    def fd(self) -> int:
        return load_libbpf().bpf_program__fd(self._ptr)

    @property
    def prog_type(self) -> int:
        return load_libbpf().bpf_program__type(self._ptr)

    def attach(self) -> Link:
        """Attach as the section name says (tp_btf/..., raw_tp/..., ...)."""
        ptr = check_ptr(load_libbpf().bpf_program__attach(self._ptr), "bpf_program__attach",
                        f"{self.name} ({self.section})")
        link = Link(ptr, self.name)
        self._obj._links.append(link)
        return link

    def attach_iter(self) -> Link:
        """Attach an iterator program (SEC("iter/...")); read it with ``Link.read_iter()``."""
        ptr = check_ptr(load_libbpf().bpf_program__attach_iter(self._ptr, None), "bpf_program__attach_iter", self.name)
        link = Link(ptr, self.name)
        self._obj._links.append(link)
        return link

    def test_run(self, ctx: bytes | None = None, data: bytes | None = None, repeat: int = 0) -> int:
        """BPF_PROG_TEST_RUN; returns the program's return value. SEC("syscall") programs
        take only ctx (repeat must stay 0); they are a way to run BPF code on demand."""
        opts = _TestRunOpts(sz=ctypes.sizeof(_TestRunOpts), repeat=repeat)
        keep = []
        if ctx is not None:
            cbuf = ctypes.create_string_buffer(ctx, len(ctx))
            keep.append(cbuf)
            opts.ctx_in, opts.ctx_size_in = ctypes.addressof(cbuf), len(ctx)
        if data is not None:
            dbuf = ctypes.create_string_buffer(data, len(data))
            keep.append(dbuf)
            opts.data_in, opts.data_size_in = ctypes.addressof(dbuf), len(data)
        check(load_libbpf().bpf_prog_test_run_opts(self.fd, ctypes.byref(opts)), "bpf_prog_test_run", self.name)
        return int(opts.retval)

    def __repr__(self) -> str:
        return f"<Program {self.name} {self.section}>"


class Map:
    def __init__(self, obj: BpfObject, ptr: int) -> None:
        self._obj = obj
        self._ptr = ptr
        self.name: str = load_libbpf().bpf_map__name(ptr).decode()

    # attributes
    @property
    def fd(self) -> int:
        return load_libbpf().bpf_map__fd(self._ptr)

    @property
    def map_type(self) -> int:
        return load_libbpf().bpf_map__type(self._ptr)

    @property
    def key_size(self) -> int:
        return load_libbpf().bpf_map__key_size(self._ptr)

    @property
    def value_size(self) -> int:
        return load_libbpf().bpf_map__value_size(self._ptr)

    @property
    def max_entries(self) -> int:
        return load_libbpf().bpf_map__max_entries(self._ptr)

    def set_max_entries(self, n: int) -> None:
        """Before load only (ring buffers: a power of two, multiple of the page size)."""
        check(load_libbpf().bpf_map__set_max_entries(self._ptr, n), "bpf_map__set_max_entries", self.name)

    def set_autocreate(self, on: bool) -> None:
        check(load_libbpf().bpf_map__set_autocreate(self._ptr, bool(on)), "bpf_map__set_autocreate", self.name)

    @property
    def percpu(self) -> bool:
        return self.map_type in (BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_LRU_PERCPU_HASH)

    def _value_len(self) -> int:
        if self.percpu:  # the kernel copies one 8-byte-aligned slot per possible CPU
            return ((self.value_size + 7) & ~7) * num_possible_cpus()
        return self.value_size

    def initial_value(self) -> tuple[int, int]:
        """(address, size) of the map's data: a global section (.bss/.data/.rodata) or
        struct_ops. Before load it is the initial image to fill; after load, for
        .bss/.data, it is memory mmap'd from the kernel (live); .rodata becomes read-only."""
        size = c_size_t(0)
        addr = check_ptr(load_libbpf().bpf_map__initial_value(self._ptr, ctypes.byref(size)),
                         "bpf_map__initial_value", self.name)
        return addr, int(size.value)

    # element access
    def lookup(self, key: Buffer, flags: int = 0) -> bytes | None:
        """The value bytes (per-CPU maps: all CPUs' slots concatenated), or None if absent."""
        kbuf, ksz = _as_buffer(key, self.key_size, f"{self.name} key")
        vlen = self._value_len()
        vbuf = ctypes.create_string_buffer(vlen)
        ret = load_libbpf().bpf_map__lookup_elem(self._ptr, ctypes.byref(kbuf), ksz, vbuf, vlen, flags)
        if ret == -errno_mod.ENOENT:
            return None
        check(ret, "bpf_map__lookup_elem", self.name)
        return vbuf.raw

    def lookup_percpu(self, key: Buffer) -> list[bytes] | None:
        """One value per possible CPU (per-CPU maps)."""
        raw = self.lookup(key)
        if raw is None:
            return None
        step = (self.value_size + 7) & ~7
        return [raw[i : i + self.value_size] for i in range(0, len(raw), step)]

    def update(self, key: Buffer, value: Buffer, flags: int = BPF_ANY) -> None:
        kbuf, ksz = _as_buffer(key, self.key_size, f"{self.name} key")
        vbuf, vsz = _as_buffer(value, self._value_len(), f"{self.name} value")
        check(
            load_libbpf().bpf_map__update_elem(self._ptr, ctypes.byref(kbuf), ksz, ctypes.byref(vbuf), vsz, flags),
            "bpf_map__update_elem",
            self.name,
        )

    def delete(self, key: Buffer) -> bool:
        """True if deleted, False if it was not there."""
        kbuf, ksz = _as_buffer(key, self.key_size, f"{self.name} key")
        ret = load_libbpf().bpf_map__delete_elem(self._ptr, ctypes.byref(kbuf), ksz, 0)
        if ret == -errno_mod.ENOENT:
            return False
        check(ret, "bpf_map__delete_elem", self.name)
        return True

    def lookup_batch(self, chunk: int = 4096) -> list[tuple[bytes, bytes]]:
        """Every (key, value) in few syscalls (BPF_MAP_LOOKUP_BATCH; hash and array maps).
        Per-CPU values come concatenated as in ``lookup``."""
        lib = load_libbpf()
        ksz, vlen = self.key_size, self._value_len()
        keys = ctypes.create_string_buffer(ksz * chunk)
        vals = ctypes.create_string_buffer(vlen * chunk)
        # out_batch is an opaque cursor, at least key_size (hash maps use a u32 bucket index)
        cursor_in = ctypes.create_string_buffer(max(ksz, 8))
        cursor_out = ctypes.create_string_buffer(max(ksz, 8))
        out: list[tuple[bytes, bytes]] = []
        first = True
        while True:
            count = c_uint(chunk)
            ret = lib.bpf_map_lookup_batch(
                self.fd, None if first else cursor_in, cursor_out, keys, vals, ctypes.byref(count), None
            )
            n = int(count.value)
            kraw, vraw = keys.raw, vals.raw
            out.extend((kraw[i * ksz : (i + 1) * ksz], vraw[i * vlen : (i + 1) * vlen]) for i in range(n))
            if ret == -errno_mod.ENOENT:
                return out
            check(ret, "bpf_map_lookup_batch", self.name)
            ctypes.memmove(cursor_in, cursor_out, len(cursor_out))
            first = False

    # struct_ops
    def attach_struct_ops(self) -> Link:
        """Register a struct_ops map (e.g. a sched_ext_ops scheduler). Destroying the link
        unregisters it; for SEC(".struct_ops.link") maps so does this process exiting."""
        ptr = check_ptr(load_libbpf().bpf_map__attach_struct_ops(self._ptr), "bpf_map__attach_struct_ops", self.name)
        link = Link(ptr, f"struct_ops {self.name}")
        self._obj._links.append(link)
        return link

    def __repr__(self) -> str:
        return f"<Map {self.name} type={self.map_type}>"


class BpfObject:
    """An opened BPF ELF object. Use as a context manager; ``close()`` destroys every link
    made through it and frees the object (maps and programs go with it)."""

    def __init__(self, ptr: int, path: str) -> None:
        self._ptr: int | None = ptr
        self.path = path
        self.loaded = False
        self._links: list[Link] = []
        lib = load_libbpf()
        self.name: str = lib.bpf_object__name(ptr).decode()
        self.programs: dict[str, Program] = {}
        prog = lib.bpf_object__next_program(ptr, None)
        while prog:
            p = Program(self, prog)
            self.programs[p.name] = p
            prog = lib.bpf_object__next_program(ptr, prog)
        self.maps: dict[str, Map] = {}
        m = lib.bpf_object__next_map(ptr, None)
        while m:
            mp = Map(self, m)
            self.maps[mp.name] = mp
            m = lib.bpf_object__next_map(ptr, m)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> BpfObject:
        lib = load_libbpf()
        spath = os.fspath(path)
        if not os.path.exists(spath):
            from schedtop.bpf import objects

            raise BpfError(errno_mod.ENOENT, objects.missing(Path(spath)))
        return cls(check_ptr(lib.bpf_object__open_file(spath.encode(), None), "bpf_object__open_file", spath), spath)

    def _require(self) -> int:
        if self._ptr is None:
            raise BpfError(errno_mod.EBADF, f"BPF object {self.path} is closed")
        return self._ptr

    def program(self, name: str) -> Program:
        try:
            return self.programs[name]
        except KeyError:
            raise KeyError(f"{self.path}: no program {name!r} (has {', '.join(self.programs)})") from None

    def map(self, name: str) -> Map:
        """A map by name; global sections are '.bss', '.data', '.rodata' (and '.data.x' etc.)."""
        if name in self.maps:
            return self.maps[name]
        for m in self.maps.values():  # internal maps are named "<obj prefix>.bss"
            if name.startswith(".") and m.name.endswith(name):
                return m
        raise KeyError(f"{self.path}: no map {name!r} (has {', '.join(self.maps)})")

    def load(self) -> None:
        """Create maps, relocate (CO-RE) and verify every program with autoload on.
        On failure the message carries the tail of the verifier log."""
        clear_log()
        ret = load_libbpf().bpf_object__load(self._require())
        if ret < 0:
            err = error("bpf_object__load", ret, self.path)
            tail = recent_log(10)
            if tail:
                err = BpfError(err.errno, f"{err.strerror}\n  " + "\n  ".join(tail))
            raise err
        self.loaded = True

    def attach_all(self) -> tuple[dict[str, Link], dict[str, BpfError]]:
        """Attach each autoloaded program on its own; a failure is collected, not raised.
        struct_ops programs (attach the map), syscall programs (test_run) and iterators
        (attach_iter) are skipped."""
        links: dict[str, Link] = {}
        errors: dict[str, BpfError] = {}
        for p in self.programs.values():
            if not p.autoload or p.prog_type in _NO_AUTOATTACH or p.section.startswith("iter"):
                continue
            try:
                links[p.name] = p.attach()
            except BpfError as exc:
                errors[p.name] = exc
        return links, errors

    # global data
    def global_data(self, section: str) -> memoryview:
        """A writable view of a global section (see ``Map.initial_value`` for lifetimes)."""
        addr, size = self.map(section).initial_value()
        if section.startswith(".rodata") and self.loaded:
            return memoryview(ctypes.string_at(addr, size))  # frozen after load: a copy
        return memoryview((ctypes.c_char * size).from_address(addr)).cast("B")

    @property
    def btf_ptr(self) -> int:
        """The object's struct btf* (see schedtop.bpf.btf.Btf.of_object)."""
        return check_ptr(load_libbpf().bpf_object__btf(self._require()), "bpf_object__btf", self.path)

    def close(self) -> None:
        if self._ptr is None:
            return
        for link in self._links:
            try:
                link.destroy()
            except BpfError as exc:
                log.warning("%s", exc)
        self._links.clear()
        ptr, self._ptr = self._ptr, None
        load_libbpf().bpf_object__close(ptr)

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<BpfObject {self.path}{' loaded' if self.loaded else ''}>"
