"""Finding and loading libbpf (>= 1.4), the C prototypes, errors, and libbpf's log.

Library search order (``find_libbpf``):
  1. ``$SCHEDTOP_LIBBPF`` (a path to libbpf.so.1; used as given, must be >= 1.4);
  2. the system ``libbpf.so.1`` if its version is >= 1.4;
  3. ``$SCHEDTOP_CACHE/libbpf/lib/libbpf.so.1`` (``SCHEDTOP_CACHE`` defaults to
     ~/.cache/schedtop), which ``schedtop lab libbpf`` / ``make libbpf`` builds.

Errors: libbpf (1.0 mode) returns ``-errno`` or NULL with errno set; ``check`` and
``check_ptr`` turn both into ``BpfError`` (an ``OSError``) whose message names the call,
the object and the reason. libbpf's own log goes to the ``schedtop.libbpf`` logger
(warnings at INFO, so ``-v`` shows them; libbpf debug at DEBUG, ``-vv``); the last
warnings are kept so that a failed load can quote the verifier's verdict (``recent_log``).
"""

from __future__ import annotations

import collections
import ctypes
import errno as errno_mod
import logging
import os
import platform
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("schedtop.libbpf")

MIN_VERSION = (1, 4)

c_void_p = ctypes.c_void_p
c_char_p = ctypes.c_char_p
c_int = ctypes.c_int
c_uint = ctypes.c_uint32
c_size_t = ctypes.c_size_t
c_bool = ctypes.c_bool
c_u64 = ctypes.c_uint64


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


def error(call: str, err: int, what: str = "") -> BpfError:
    err = abs(err) or errno_mod.EIO
    reason = _HINTS.get(err) or os.strerror(err)
    where = f" {what}" if what else ""
    return BpfError(err, f"{call}{where}: {reason} [{errno_mod.errorcode.get(err, err)}]")


def check(ret: int, call: str, what: str = "") -> int:
    if ret < 0:
        raise error(call, ret, what)
    return ret


def check_ptr(ptr: int | None, call: str, what: str = "") -> int:
    if not ptr:
        raise error(call, ctypes.get_errno() or errno_mod.EIO, what)
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
        "bpf_map__attach_struct_ops": (P, [P]),
        "bpf_map_lookup_batch": (I, [I, P, P, P, P, ctypes.POINTER(U), P]),
        "bpf_prog_test_run_opts": (I, [I, P]),
        "ring_buffer__new": (P, [I, P, P, P]),
        "ring_buffer__poll": (I, [P, I]),
        "ring_buffer__consume": (I, [P]),
        "ring_buffer__free": (None, [P]),
        "user_ring_buffer__new": (P, [I, P]),
        "user_ring_buffer__reserve": (P, [P, U]),
        "user_ring_buffer__submit": (None, [P, P]),
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


def clear_log() -> None:
    """Forget the kept warnings (before a load, so that its verdict is what remains)."""
    _recent.clear()


def recent_log(lines: int = 20) -> list[str]:
    """The last libbpf warnings (a failed load's verifier log ends up here)."""
    return list(_recent)[-lines:]


def num_possible_cpus() -> int:
    return check(load_libbpf().libbpf_num_possible_cpus(), "libbpf_num_possible_cpus")
