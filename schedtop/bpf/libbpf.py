"""The one ctypes binding to libbpf (>= 1.4): objects, programs, maps, ring buffers, struct_ops.

Used by the tracing tier (schedtop.collect.bpf), the embedded scheduler (schedtop.scx) and
the lab. Nothing else in schedtop calls libbpf directly.

Library search order (``find_libbpf``):
  1. ``$SCHEDTOP_LIBBPF`` (a path to libbpf.so.1; used as given, must be >= 1.4);
  2. the system ``libbpf.so.1`` if its version is >= 1.4;
  3. ``$SCHEDTOP_CACHE/libbpf/lib/libbpf.so.1`` (``SCHEDTOP_CACHE`` defaults to
     ~/.cache/schedtop), which ``schedtop lab libbpf`` / ``make libbpf`` builds.

Errors: libbpf (1.0 mode) returns ``-errno`` or NULL with errno set; both become
``BpfError`` (an ``OSError``) whose message names the call, the object and the reason.
libbpf's own log goes to the ``schedtop.libbpf`` logger (warnings at INFO, so ``-v``
shows them; libbpf debug at DEBUG, ``-vv``); the last warnings are kept so that a failed
load can quote the verifier's verdict (``recent_log()``).

Typical use::

    with BpfObject.open(path) as obj:
        Globals(obj, ".rodata").var("targ_tgid", ctypes.c_uint32).value = 42   # before load
        obj.program("handle_raw_switch").autoload = False
        obj.load()
        links, errors = obj.attach_all()
        g = Globals(obj, ".bss").var("g", TraceBss)   # shared with the kernel from now on
        with RingBuffer(obj.map("events"), on_event) as rb:
            rb.poll(100)

Global variables are reached by name through ``schedtop.bpf.globals.Globals``.
"""

from __future__ import annotations

import collections
import ctypes
import errno as errno_mod
import logging
import mmap
import os
import platform
import select
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

log = logging.getLogger("schedtop.libbpf")

MIN_VERSION = (1, 4)

c_void_p = ctypes.c_void_p
c_char_p = ctypes.c_char_p
c_int = ctypes.c_int
c_uint = ctypes.c_uint32
c_size_t = ctypes.c_size_t
c_bool = ctypes.c_bool
c_u64 = ctypes.c_uint64

CT = TypeVar("CT", bound=ctypes.Structure)

# enum bpf_map_type values used by callers (include/uapi/linux/bpf.h).
BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_LRU_PERCPU_HASH = 10
BPF_MAP_TYPE_STRUCT_OPS = 26
BPF_MAP_TYPE_RINGBUF = 27
BPF_MAP_TYPE_USER_RINGBUF = 31

# Program types that bpf_program__attach cannot attach (run on demand / via their map).
BPF_PROG_TYPE_STRUCT_OPS = 27
BPF_PROG_TYPE_SYSCALL = 31
_NO_AUTOATTACH = {BPF_PROG_TYPE_STRUCT_OPS, BPF_PROG_TYPE_SYSCALL}

# bpf_map_update_elem flags.
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2


# --- errors ----------------------------------------------------------------------------------


class LibbpfNotFound(RuntimeError):
    """No libbpf >= 1.4 on this machine; the message says how to get one."""


class BpfError(OSError):
    """A libbpf call failed; ``errno`` is set and the message says which call and why."""


_HINTS = {
    errno_mod.EPERM: "needs root (CAP_BPF with CAP_PERFMON, or CAP_SYS_ADMIN)",
    errno_mod.EACCES: "permission denied (not root, or the verifier rejected the program)",
    errno_mod.ENOENT: "not found",
    errno_mod.ESRCH: "no such target in the kernel (missing tracepoint, function or BTF type)",
    errno_mod.EOPNOTSUPP: "not supported by this kernel",
    errno_mod.EINVAL: "invalid argument (kernel too old for this program, or a bad layout)",
    errno_mod.E2BIG: "too big for this kernel",
    errno_mod.EBUSY: "busy (another instance already attached?)",
    errno_mod.EEXIST: "already exists",
}


def _error(call: str, err: int, what: str = "") -> BpfError:
    err = abs(err) or errno_mod.EIO
    reason = _HINTS.get(err) or os.strerror(err)
    where = f" {what}" if what else ""
    return BpfError(err, f"{call}{where}: {reason} [{errno_mod.errorcode.get(err, err)}]")


def _check(ret: int, call: str, what: str = "") -> int:
    if ret < 0:
        raise _error(call, ret, what)
    return ret


def _check_ptr(ptr: int | None, call: str, what: str = "") -> int:
    if not ptr:
        raise _error(call, ctypes.get_errno() or errno_mod.EIO, what)
    return ptr


# --- finding and loading libbpf ----------------------------------------------------------------


def cache_dir() -> Path:
    """$SCHEDTOP_CACHE, default ~/.cache/schedtop (where the lab builds libbpf and kernels)."""
    env = os.environ.get("SCHEDTOP_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "schedtop"


def cached_libbpf_path() -> Path:
    return cache_dir() / "libbpf" / "lib" / "libbpf.so.1"


@dataclass(frozen=True, slots=True)
class LibbpfLocation:
    path: str  # what was dlopen'ed
    version: tuple[int, int]
    source: str  # "env", "system" or "cache"


def _version_of(lib: ctypes.CDLL) -> tuple[int, int]:
    try:
        lib.libbpf_major_version.restype = c_uint
        lib.libbpf_minor_version.restype = c_uint
        return (int(lib.libbpf_major_version()), int(lib.libbpf_minor_version()))
    except AttributeError:  # < 0.6 has no version functions
        return (0, 0)


def _try_open(path: str) -> tuple[ctypes.CDLL | None, str]:
    try:
        return ctypes.CDLL(path, use_errno=True), ""
    except OSError as exc:
        return None, str(exc)


_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_location: LibbpfLocation | None = None


def _locate() -> tuple[ctypes.CDLL, LibbpfLocation]:
    tried: list[str] = []
    want = ".".join(map(str, MIN_VERSION))
    env = os.environ.get("SCHEDTOP_LIBBPF")
    if env:
        lib, why = _try_open(env)
        if lib is None:
            raise LibbpfNotFound(f"SCHEDTOP_LIBBPF={env}: cannot load it ({why})")
        ver = _version_of(lib)
        if ver < MIN_VERSION:
            raise LibbpfNotFound(f"SCHEDTOP_LIBBPF={env} is libbpf {ver[0]}.{ver[1]}; schedtop needs >= {want}")
        return lib, LibbpfLocation(env, ver, "env")
    lib, why = _try_open("libbpf.so.1")
    if lib is not None:
        ver = _version_of(lib)
        if ver >= MIN_VERSION:
            return lib, LibbpfLocation("libbpf.so.1", ver, "system")
        tried.append(f"system libbpf.so.1 is {ver[0]}.{ver[1]} (too old)")
    else:
        tried.append("no system libbpf.so.1")
    cached = cached_libbpf_path()
    if cached.exists():
        lib, why = _try_open(str(cached))
        if lib is not None:
            ver = _version_of(lib)
            if ver >= MIN_VERSION:
                return lib, LibbpfLocation(str(cached), ver, "cache")
            tried.append(f"{cached} is {ver[0]}.{ver[1]} (too old)")
        else:
            tried.append(f"{cached}: {why}")
    else:
        tried.append(f"no {cached}")
    raise LibbpfNotFound(
        f"libbpf >= {want} not found ({'; '.join(tried)}). "
        "Install your distribution's libbpf1 >= 1.4 (Debian 13 has 1.5), or run `schedtop lab libbpf` "
        "(`make libbpf` in a checkout) to build one into the cache (needs gcc, make, libelf-dev, zlib1g-dev), "
        "or set SCHEDTOP_LIBBPF=/path/to/libbpf.so.1"
    )


def find_libbpf() -> LibbpfLocation:
    """Which libbpf schedtop uses (loads it on first call); raises LibbpfNotFound."""
    load_libbpf()
    assert _location is not None
    return _location


def libbpf_version() -> tuple[int, int]:
    return find_libbpf().version


def load_libbpf() -> ctypes.CDLL:
    """The libbpf CDLL with prototypes declared and the print callback installed."""
    global _lib, _location
    with _lock:
        if _lib is None:
            lib, loc = _locate()
            _declare(lib)
            lib.libbpf_set_print(_PRINT_CB)
            _lib, _location = lib, loc
            log.debug("using libbpf %d.%d from %s (%s)", *loc.version, loc.path, loc.source)
        return _lib


def _declare(lib: ctypes.CDLL) -> None:
    P, I, U, S, B = c_void_p, c_int, c_uint, c_size_t, c_bool
    protos: dict[str, tuple[Any, list[Any]]] = {
        "libbpf_set_print": (P, [P]),
        "libbpf_num_possible_cpus": (I, []),
        "libbpf_strerror": (I, [I, c_char_p, S]),
        "libbpf_version_string": (c_char_p, []),
        "bpf_object__open_file": (P, [c_char_p, P]),
        "bpf_object__load": (I, [P]),
        "bpf_object__close": (None, [P]),
        "bpf_object__name": (c_char_p, [P]),
        "bpf_object__btf": (P, [P]),
        "bpf_object__next_program": (P, [P, P]),
        "bpf_object__next_map": (P, [P, P]),
        "bpf_program__name": (c_char_p, [P]),
        "bpf_program__section_name": (c_char_p, [P]),
        "bpf_program__autoload": (B, [P]),
        "bpf_program__set_autoload": (I, [P, B]),
        "bpf_program__fd": (I, [P]),
        "bpf_program__type": (I, [P]),
        "bpf_program__attach": (P, [P]),
        "bpf_program__attach_iter": (P, [P, P]),
        "bpf_iter_create": (I, [I]),
        "bpf_link__destroy": (I, [P]),
        "bpf_link__fd": (I, [P]),
        "bpf_map__name": (c_char_p, [P]),
        "bpf_map__fd": (I, [P]),
        "bpf_map__type": (I, [P]),
        "bpf_map__key_size": (U, [P]),
        "bpf_map__value_size": (U, [P]),
        "bpf_map__max_entries": (U, [P]),
        "bpf_map__set_max_entries": (I, [P, U]),
        "bpf_map__set_autocreate": (I, [P, B]),
        "bpf_map__initial_value": (P, [P, ctypes.POINTER(S)]),
        "bpf_map__lookup_elem": (I, [P, P, S, P, S, c_u64]),
        "bpf_map__update_elem": (I, [P, P, S, P, S, c_u64]),
        "bpf_map__delete_elem": (I, [P, P, S, c_u64]),
        "bpf_map__get_next_key": (I, [P, P, P, S]),
        "bpf_map__attach_struct_ops": (P, [P]),
        "bpf_map_lookup_batch": (I, [I, P, P, P, P, ctypes.POINTER(U), P]),
        "bpf_prog_test_run_opts": (I, [I, P]),
        "ring_buffer__new": (P, [I, P, P, P]),
        "ring_buffer__add": (I, [P, I, P, P]),
        "ring_buffer__poll": (I, [P, I]),
        "ring_buffer__consume": (I, [P]),
        "ring_buffer__epoll_fd": (I, [P]),
        "ring_buffer__free": (None, [P]),
        "user_ring_buffer__new": (P, [I, P]),
        "user_ring_buffer__reserve": (P, [P, U]),
        "user_ring_buffer__reserve_blocking": (P, [P, U, I]),
        "user_ring_buffer__submit": (None, [P, P]),
        "user_ring_buffer__discard": (None, [P, P]),
        "user_ring_buffer__free": (None, [P]),
        "btf__load_vmlinux_btf": (P, []),
        "btf__parse": (P, [c_char_p, P]),
        "btf__free": (None, [P]),
        "btf__type_cnt": (U, [P]),
        "btf__find_by_name_kind": (I, [P, c_char_p, U]),
        "btf__type_by_id": (P, [P, U]),
        "btf__name_by_offset": (c_char_p, [P, U]),
        "btf__resolve_size": (ctypes.c_long, [P, U]),
        "btf__resolve_type": (I, [P, U]),
    }
    for name, (restype, argtypes) in protos.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


# --- libbpf's log -> logging ---------------------------------------------------------------

_PRINT_FN = ctypes.CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
_libc = ctypes.CDLL(None, use_errno=True)
_vasprintf = _libc.vasprintf
_vasprintf.restype = c_int
_vasprintf.argtypes = [ctypes.POINTER(c_void_p), c_char_p, c_void_p]
_free = _libc.free
_free.restype = None
_free.argtypes = [c_void_p]
_recent: collections.deque[str] = collections.deque(maxlen=400)
_LEVELS = {0: logging.INFO, 1: logging.DEBUG, 2: logging.DEBUG - 5}
# x86-64 passes va_list as a pointer to __va_list_tag, so it can be handed on to vasprintf
# (which sizes the buffer: a verifier log is one message of any length, its verdict at the
# end); elsewhere the format string alone is logged (it still says which call failed).
_VA_LIST_IS_POINTER = platform.machine() in ("x86_64", "AMD64")


def _format(fmt: bytes, args: int) -> str:
    if not _VA_LIST_IS_POINTER:
        return fmt.decode("utf-8", "replace")
    out = c_void_p()
    n = _vasprintf(ctypes.byref(out), fmt, args)
    if n < 0 or not out.value:
        return fmt.decode("utf-8", "replace")
    try:
        return ctypes.string_at(out.value, n).decode("utf-8", "replace")
    finally:
        _free(out)


def _print_cb(level: int, fmt: bytes, args: int) -> int:
    try:
        text = _format(fmt, args).rstrip("\n")
        if level == 0:
            _recent.extend(ln for ln in text.splitlines() if ln.strip() and "END PROG LOAD LOG" not in ln)
        log.log(_LEVELS.get(level, logging.DEBUG), "%s", text)
    except Exception:  # a callback must never raise into C
        pass
    return 0


_PRINT_CB = _PRINT_FN(_print_cb)


def recent_log(lines: int = 20) -> list[str]:
    """The last libbpf warnings (a failed load's verifier log ends up here)."""
    return list(_recent)[-lines:]


def num_possible_cpus() -> int:
    return _check(load_libbpf().libbpf_num_possible_cpus(), "libbpf_num_possible_cpus")


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


class _OpenOpts(ctypes.Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("object_name", c_char_p),
        ("relaxed_maps", c_bool),
        ("pin_root_path", c_char_p),
        ("_attach_prog_fd", c_uint),
        ("kconfig", c_char_p),
        ("btf_custom_path", c_char_p),
        ("kernel_log_buf", c_void_p),
        ("kernel_log_size", c_size_t),
        ("kernel_log_level", c_uint),
        ("bpf_token_path", c_char_p),
    ]


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
        fd = _check(load_libbpf().bpf_iter_create(self.fd), "bpf_iter_create", self.what)
        try:
            parts = []
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
            _check(load_libbpf().bpf_link__destroy(ptr), "bpf_link__destroy", self.what)

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
        self.set_autoload(on)

    def set_autoload(self, on: bool) -> None:
        _check(load_libbpf().bpf_program__set_autoload(self._ptr, bool(on)), "bpf_program__set_autoload", self.name)

    @property
    def fd(self) -> int:
        return load_libbpf().bpf_program__fd(self._ptr)

    @property
    def prog_type(self) -> int:
        return load_libbpf().bpf_program__type(self._ptr)

    def attach(self) -> Link:
        """Attach as the section name says (tp_btf/..., raw_tp/..., ...)."""
        ptr = _check_ptr(load_libbpf().bpf_program__attach(self._ptr), "bpf_program__attach", f"{self.name} ({self.section})")
        link = Link(ptr, self.name)
        self._obj._links.append(link)
        return link

    def attach_iter(self) -> Link:
        """Attach an iterator program (SEC("iter/...")); read it with ``Link.read_iter()``."""
        ptr = _check_ptr(load_libbpf().bpf_program__attach_iter(self._ptr, None), "bpf_program__attach_iter", self.name)
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
        _check(load_libbpf().bpf_prog_test_run_opts(self.fd, ctypes.byref(opts)), "bpf_prog_test_run", self.name)
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
        _check(load_libbpf().bpf_map__set_max_entries(self._ptr, n), "bpf_map__set_max_entries", self.name)

    def set_autocreate(self, on: bool) -> None:
        _check(load_libbpf().bpf_map__set_autocreate(self._ptr, bool(on)), "bpf_map__set_autocreate", self.name)

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
        addr = _check_ptr(load_libbpf().bpf_map__initial_value(self._ptr, ctypes.byref(size)), "bpf_map__initial_value", self.name)
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
        _check(ret, "bpf_map__lookup_elem", self.name)
        return vbuf.raw

    def lookup_as(self, key: Buffer, ctype: type[CT]) -> CT | None:
        raw = self.lookup(key)
        return None if raw is None else ctype.from_buffer_copy(raw)

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
        _check(
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
        _check(ret, "bpf_map__delete_elem", self.name)
        return True

    def get_next_key(self, key: Buffer | None) -> bytes | None:
        ksz = self.key_size
        nbuf = ctypes.create_string_buffer(ksz)
        kref = None if key is None else ctypes.byref(_as_buffer(key, ksz, f"{self.name} key")[0])
        ret = load_libbpf().bpf_map__get_next_key(self._ptr, kref, nbuf, ksz)
        if ret == -errno_mod.ENOENT:
            return None
        _check(ret, "bpf_map__get_next_key", self.name)
        return nbuf.raw

    def keys(self) -> Iterator[bytes]:
        key = self.get_next_key(None)
        while key is not None:
            yield key
            key = self.get_next_key(key)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs; entries deleted meanwhile are skipped."""
        for key in self.keys():
            value = self.lookup(key)
            if value is not None:
                yield key, value

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
            _check(ret, "bpf_map_lookup_batch", self.name)
            ctypes.memmove(cursor_in, cursor_out, len(cursor_out))
            first = False

    # struct_ops
    def attach_struct_ops(self) -> Link:
        """Register a struct_ops map (e.g. a sched_ext_ops scheduler). Destroying the link
        unregisters it; for SEC(".struct_ops.link") maps so does this process exiting."""
        ptr = _check_ptr(load_libbpf().bpf_map__attach_struct_ops(self._ptr), "bpf_map__attach_struct_ops", self.name)
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
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        object_name: str | None = None,
        btf_custom_path: str | None = None,
        kconfig: str | None = None,
        pin_root_path: str | None = None,
        kernel_log_level: int = 0,
    ) -> BpfObject:
        lib = load_libbpf()
        spath = os.fspath(path)
        if not os.path.exists(spath):
            from schedtop.bpf import objects

            raise BpfError(errno_mod.ENOENT, objects.missing(Path(spath)))
        enc = lambda s: None if s is None else s.encode()  # noqa: E731
        opts = _OpenOpts(
            sz=ctypes.sizeof(_OpenOpts),
            object_name=enc(object_name),
            btf_custom_path=enc(btf_custom_path),
            kconfig=enc(kconfig),
            pin_root_path=enc(pin_root_path),
            kernel_log_level=kernel_log_level,
        )
        ptr = _check_ptr(lib.bpf_object__open_file(spath.encode(), ctypes.byref(opts)), "bpf_object__open_file", spath)
        return cls(ptr, spath)

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
        _recent.clear()
        ret = load_libbpf().bpf_object__load(self._require())
        if ret < 0:
            err = _error("bpf_object__load", ret, self.path)
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
        return _check_ptr(load_libbpf().bpf_object__btf(self._require()), "bpf_object__btf", self.path)

    @property
    def links(self) -> list[Link]:
        return [ln for ln in self._links if ln.alive]

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


# --- ring buffers ----------------------------------------------------------------------------

_SAMPLE_FN = ctypes.CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)


def _map_fd(m: Map | int) -> int:
    fd = m.fd if isinstance(m, Map) else int(m)
    if fd < 0:
        raise BpfError(errno_mod.EBADF, f"ring buffer map {getattr(m, 'name', m)} has no fd (object not loaded?)")
    return fd


class RingBuffer:
    """libbpf's ring_buffer manager: ``callback(data: bytes)`` for each record on poll/consume.
    A callback returning a non-zero int stops the current poll early. Exceptions in the
    callback are kept and re-raised from poll()/consume().

    Costs ~1 µs per record (C->Python callback + copy); ``RingReader`` reads in batches
    without callbacks and is the faster choice for high event rates (see bench)."""

    def __init__(self, m: Map | int, callback: Callable[[bytes], int | None]) -> None:
        self._callbacks: list[Any] = []  # keep the CFUNCTYPE objects alive
        self._error: BaseException | None = None
        cb = self._wrap(callback)
        self._ptr: int | None = _check_ptr(
            load_libbpf().ring_buffer__new(_map_fd(m), cb, None, None), "ring_buffer__new", getattr(m, "name", str(m))
        )

    def _wrap(self, callback: Callable[[bytes], int | None]) -> Any:
        string_at = ctypes.string_at

        def trampoline(_ctx: int, data: int, size: int) -> int:
            try:
                return int(callback(string_at(data, size)) or 0)
            except BaseException as exc:  # noqa: BLE001  # re-raised from poll()
                self._error = exc
                return -errno_mod.ECANCELED

        cb = _SAMPLE_FN(trampoline)
        self._callbacks.append(cb)
        return cb

    def add(self, m: Map | int, callback: Callable[[bytes], int | None]) -> None:
        cb = self._wrap(callback)
        _check(load_libbpf().ring_buffer__add(self._require(), _map_fd(m), cb, None), "ring_buffer__add")

    def _require(self) -> int:
        if self._ptr is None:
            raise BpfError(errno_mod.EBADF, "ring buffer already freed")
        return self._ptr

    def _done(self, ret: int, call: str) -> int:
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc
        if ret == -errno_mod.EINTR:
            return 0
        return _check(ret, call)

    def poll(self, timeout_ms: int) -> int:
        """Wait up to timeout_ms for data, then consume; returns the records handled."""
        return self._done(load_libbpf().ring_buffer__poll(self._require(), timeout_ms), "ring_buffer__poll")

    def consume(self) -> int:
        """Handle whatever is there now without waiting."""
        return self._done(load_libbpf().ring_buffer__consume(self._require()), "ring_buffer__consume")

    def fileno(self) -> int:
        """An epoll fd that is readable when records are waiting (for select/asyncio)."""
        return load_libbpf().ring_buffer__epoll_fd(self._require())

    def free(self) -> None:
        if self._ptr is not None:
            ptr, self._ptr = self._ptr, None
            load_libbpf().ring_buffer__free(ptr)

    def __enter__(self) -> RingBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.free()


_RINGBUF_BUSY = 1 << 31
_RINGBUF_DISCARD = 1 << 30
_RINGBUF_HDR = 8
_RINGBUF_LEN_MASK = ~(_RINGBUF_BUSY | _RINGBUF_DISCARD) & 0xFFFFFFFF
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


class RingReader:
    """A BPF_MAP_TYPE_RINGBUF read by mmap in Python, in batches, with no per-record
    callback: the consumer position page (read-write) and the producer page plus the
    double-mapped data area (read-only), exactly as libbpf maps them.

    ``read()`` returns the committed records since the last call (bytes each);
    ``read_fixed(fmt)`` unpacks fixed-size records straight from the mapping.
    Only one consumer per ring (this or a RingBuffer), as with libbpf."""

    def __init__(self, m: Map | int) -> None:
        fd = _map_fd(m)
        self._fd = os.dup(fd)  # our own fd: valid for as long as this reader lives
        size = m.max_entries if isinstance(m, Map) else None
        if size is None:
            raise TypeError("RingReader needs a Map (it reads max_entries)")
        self.size = size
        self.mask = size - 1
        page = mmap.PAGESIZE
        self._cons = mmap.mmap(self._fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._prod = mmap.mmap(self._fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._data = memoryview(self._prod)[page:]
        self._page = page
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)

    def fileno(self) -> int:
        return self._fd

    def wait(self, timeout_ms: int) -> bool:
        """Block until records are available (or timeout); True if readable."""
        return bool(self._poll.poll(timeout_ms))

    def pending(self) -> int:
        """Bytes between consumer and producer (records plus headers)."""
        return _U64.unpack_from(self._prod, 0)[0] - _U64.unpack_from(self._cons, 0)[0]

    def _walk(self, limit: int | None) -> Iterator[tuple[int, int]]:
        """Yield (data offset, length) of committed records; advances the consumer after."""
        cons = _U64.unpack_from(self._cons, 0)[0]
        prod = _U64.unpack_from(self._prod, 0)[0]
        data, mask, n = self._data, self.mask, 0
        try:
            while cons < prod and (limit is None or n < limit):
                off = cons & mask
                hdr = _U32.unpack_from(data, off)[0]
                if hdr & _RINGBUF_BUSY:
                    break  # reserved, not yet committed: stop, keep order
                length = hdr & ~(_RINGBUF_BUSY | _RINGBUF_DISCARD)
                if not hdr & _RINGBUF_DISCARD:
                    yield off + _RINGBUF_HDR, length
                    n += 1
                cons += (length + _RINGBUF_HDR + 7) & ~7
        finally:
            _U64.pack_into(self._cons, 0, cons)  # x86 TSO: a plain store is a release store

    def read(self, limit: int | None = None) -> list[bytes]:
        data = self._data
        return [bytes(data[off : off + length]) for off, length in self._walk(limit)]

    def read_fixed(self, fmt: struct.Struct, limit: int | None = None) -> list[tuple[Any, ...]]:
        """Unpack each record's first fmt.size bytes (records shorter than that are skipped).
        The hot path of high-rate readers: one loop, no generator, two unpacks per record."""
        cons = _U64.unpack_from(self._cons, 0)[0]
        prod = _U64.unpack_from(self._prod, 0)[0]
        data, mask, size = self._data, self.mask, fmt.size
        unpack, header = fmt.unpack_from, _U32.unpack_from
        out: list[tuple[Any, ...]] = []
        append = out.append
        left = (1 << 62) if limit is None else limit
        while cons < prod and left > 0:
            off = cons & mask
            hdr = header(data, off)[0]
            if hdr & _RINGBUF_BUSY:
                break  # reserved, not yet committed: stop, keep order
            length = hdr & _RINGBUF_LEN_MASK
            if not hdr & _RINGBUF_DISCARD and length >= size:
                append(unpack(data, off + _RINGBUF_HDR))
                left -= 1
            cons += (length + _RINGBUF_HDR + 7) & ~7
        _U64.pack_into(self._cons, 0, cons)  # x86 TSO: a plain store is a release store
        return out

    def close(self) -> None:
        if self._fd >= 0:
            self._data.release()
            self._prod.close()
            self._cons.close()
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> RingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class UserRingBuffer:
    """BPF_MAP_TYPE_USER_RINGBUF: user space produces, BPF drains (bpf_user_ringbuf_drain).
    ``reserve`` gives a (c_char * size) buffer to fill, then ``submit`` or ``discard`` it;
    ``send`` does all three for ready-made bytes or a ctypes struct."""

    def __init__(self, m: Map | int) -> None:
        self._ptr: int | None = _check_ptr(
            load_libbpf().user_ring_buffer__new(_map_fd(m), None), "user_ring_buffer__new", getattr(m, "name", str(m))
        )

    def _require(self) -> int:
        if self._ptr is None:
            raise BpfError(errno_mod.EBADF, "user ring buffer already freed")
        return self._ptr

    def reserve(self, size: int) -> ctypes.Array:
        """Raises BpfError(ENOSPC) when full (BPF has not drained yet)."""
        addr = _check_ptr(load_libbpf().user_ring_buffer__reserve(self._require(), size), "user_ring_buffer__reserve")
        return (ctypes.c_char * size).from_address(addr)

    def reserve_blocking(self, size: int, timeout_ms: int) -> ctypes.Array:
        addr = _check_ptr(
            load_libbpf().user_ring_buffer__reserve_blocking(self._require(), size, timeout_ms),
            "user_ring_buffer__reserve_blocking",
        )
        return (ctypes.c_char * size).from_address(addr)

    def submit(self, sample: ctypes.Array) -> None:
        load_libbpf().user_ring_buffer__submit(self._require(), ctypes.addressof(sample))

    def discard(self, sample: ctypes.Array) -> None:
        load_libbpf().user_ring_buffer__discard(self._require(), ctypes.addressof(sample))

    def send(self, record: bytes | ctypes.Structure) -> None:
        size = ctypes.sizeof(record) if isinstance(record, ctypes.Structure) else len(record)
        sample = self.reserve(size)
        if isinstance(record, ctypes.Structure):
            ctypes.memmove(sample, ctypes.addressof(record), size)
        else:
            ctypes.memmove(sample, record, size)
        self.submit(sample)

    def push_from(self, records: collections.deque[bytes], size: int) -> int:
        """Move records of exactly ``size`` bytes from the left of ``records`` into the ring until
        it is full (BPF has not drained yet); returns how many went, the rest stay in order.
        The hot path of a user-space scheduler: the libbpf calls themselves, one memmove per
        record, no ctypes array per record as ``reserve`` builds (about 3x cheaper)."""
        lib, ptr = load_libbpf(), self._require()
        reserve, submit, memmove = lib.user_ring_buffer__reserve, lib.user_ring_buffer__submit, ctypes.memmove
        n = 0
        while records:
            addr = reserve(ptr, size)
            if not addr:
                break
            memmove(addr, records.popleft(), size)
            submit(ptr, addr)
            n += 1
        return n

    def free(self) -> None:
        if self._ptr is not None:
            ptr, self._ptr = self._ptr, None
            load_libbpf().user_ring_buffer__free(ptr)

    def __enter__(self) -> UserRingBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.free()
