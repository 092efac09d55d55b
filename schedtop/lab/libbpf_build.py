"""libbpf >= 1.4 for schedtop: the system's if new enough, else built from Debian's source.

The runtime library is found by schedtop.bpf.libbpf (search order: $SCHEDTOP_LIBBPF,
system libbpf.so.1 >= 1.4, $SCHEDTOP_CACHE/libbpf/lib/libbpf.so.1). The *headers*
always go into $SCHEDTOP_CACHE/libbpf/include, because every BPF compile uses
-I$SCHEDTOP_CACHE/libbpf/include (one include path whatever the system has).
The source is Debian sid's libbpf package, read through the lab's private apt.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from schedtop.lab.apt import PrivateApt
from schedtop.lab.cache import LabError, cache_dir, ensure_dir, os_error_line, require_space
from schedtop.lab.download import fetch_all
from schedtop.lab.progress import info, step

MIN_VERSION = (1, 4)
SOURCE_PACKAGE = "libbpf"
HEADERS = ("bpf/libbpf.h", "bpf/bpf_helpers.h", "bpf/bpf_tracing.h", "bpf/bpf_core_read.h")
BUILD_TOOLS = {"make": "make", "gcc": "gcc", "pkg-config": "pkg-config"}


def libbpf_dir() -> Path:
    return cache_dir() / "libbpf"


def so_version(path: Path) -> tuple[int, ...] | None:
    """libbpf.so.1 -> libbpf.so.1.7.0 -> (1, 7, 0): the real file's name carries the version."""
    m = re.search(r"libbpf\.so\.(\d+(?:\.\d+)+)$", path.resolve().name) if path.exists() else None
    return tuple(int(x) for x in m.group(1).split(".")) if m else None


def system_libbpf() -> Path | None:
    """The libbpf.so.1 the dynamic loader would pick, from ldconfig's cache."""
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    except FileNotFoundError:
        out = ""
    for line in out.splitlines():
        m = re.match(r"\s*libbpf\.so\.1 \(([^)]*)\) => (\S+)", line)
        if m and "x86-64" in m.group(1):
            return Path(m.group(2))
    return None


def system_is_new_enough() -> bool:
    path = system_libbpf()
    version = so_version(path) if path else None
    return version is not None and version[:2] >= MIN_VERSION


def cached_lib() -> Path:
    return libbpf_dir() / "lib" / "libbpf.so.1"


def has_headers(include: Path | None = None) -> bool:
    include = include or libbpf_dir() / "include"
    return all((include / h).is_file() for h in HEADERS)


def describe() -> str:
    sys_path = system_libbpf()
    sys_ver = so_version(sys_path) if sys_path else None
    parts = [f"system {'.'.join(map(str, sys_ver))}{'' if sys_ver[:2] >= MIN_VERSION else ' (too old)'}"
             if sys_ver else "no system libbpf.so.1"]
    cver = so_version(cached_lib())
    parts.append(f"cache {'.'.join(map(str, cver))} at {cached_lib()}" if cver else "no cached build")
    parts.append("headers in cache" if has_headers() else "no headers in cache")
    return "; ".join(parts)


def provide(rebuild: bool = False) -> Path:
    """Make sure the cache has libbpf headers, and a built library unless the system's is new enough."""
    need_lib = rebuild or (not system_is_new_enough() and (so_version(cached_lib()) or (0,))[:2] < MIN_VERSION)
    need_headers = rebuild or not has_headers()
    if not need_lib and not need_headers:
        info(f"libbpf: {describe()}")
        return libbpf_dir()
    base = ensure_dir(cache_dir())
    require_space(base, 150 << 20, "building libbpf")
    missing = [pkg for tool, pkg in BUILD_TOOLS.items() if shutil.which(tool) is None]
    if need_lib and missing:
        raise LabError(f"cannot build libbpf: missing {' '.join(missing)} (install them, plus libelf-dev "
                       "zlib1g-dev; make deps does)")
    apt = PrivateApt(base / "apt")
    apt.configure()
    if not apt.has_lists():
        apt.update()
    remotes = apt.uris([SOURCE_PACKAGE], source=True)
    info(f"libbpf: downloading Debian's source package, {sum(r.size for r in remotes) / 1e6:.1f} MB")
    work = Path(tempfile.mkdtemp(dir=base, prefix=".libbpf-build."))
    try:
        files = fetch_all(remotes, work / "dl", proxy=apt.proxy())
        dsc = next(f for f in files if f.name.endswith(".dsc"))
        src = work / "src"
        with step("unpacking libbpf source (dpkg-source)"):
            _run(["dpkg-source", "--no-check", "-x", str(dsc), str(src)], "dpkg-source")
        stage = work / "stage"
        if need_lib:
            with step(f"building libbpf ({os.cpu_count()} jobs)"):
                _run(["make", "-C", str(src / "src"), f"-j{os.cpu_count() or 1}", f"OBJDIR={work / 'obj'}",
                      f"DESTDIR={stage}", "PREFIX=/", "LIBDIR=/lib", "install"], "make (libbpf)")
            version = so_version(stage / "lib" / "libbpf.so.1")
            if version is None or version[:2] < MIN_VERSION:
                raise LabError(f"the libbpf built from Debian's source is {version}, older than "
                               f"{'.'.join(map(str, MIN_VERSION))}")
        else:
            with step("installing libbpf headers"):
                _run(["make", "-C", str(src / "src"), f"DESTDIR={stage}", "PREFIX=/", "install_headers"],
                     "make install_headers (libbpf)")
        if not has_headers(stage / "include"):
            raise LabError(f"libbpf's install left no headers in {stage / 'include'}")
        target = libbpf_dir()
        ensure_dir(target)
        for part in (("lib", "include") if need_lib else ("include",)):
            _swap_in(stage / part, target / part)
        info(f"libbpf: {describe()}")
        return target
    except OSError as exc:
        raise os_error_line(exc, "building libbpf") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _swap_in(new: Path, dest: Path) -> None:
    """Replace dest by new with two renames, so readers never see a half-installed tree."""
    old = dest.with_name(f".{dest.name}.old.{os.getpid()}")
    if dest.exists():
        dest.rename(old)
    new.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [l for l in (proc.stderr + proc.stdout).splitlines() if l.strip()]
        err = next((l for l in lines if "error" in l.lower()), lines[-1] if lines else f"exit {proc.returncode}")
        if "No space left" in proc.stderr:
            raise LabError(f"{what}: no space left on device; free some space or set SCHEDTOP_CACHE to another disk")
        raise LabError(f"{what} failed: {err.strip()}")
