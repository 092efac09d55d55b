"""The guest kernels: Debian's, fetched through the private apt (schedtop/lab/catalog.py).

Layout under $SCHEDTOP_CACHE/kernels/<X>/ (X = kernel release, e.g. 7.2.13+deb14-amd64):
  root/usr/lib/modules/X/{vmlinuz,config,kernel/...,modules.dep}   the unpacked packages
    (a one-package 6.x linux-image keeps vmlinuz and config in boot/ and, on 6.1, the
    modules in lib/modules: they are moved here, so every kernel has one layout)
  vmlinux      the ELF inside vmlinuz (keeps .BTF)
  vmlinux.h    bpftool's C dump of that BTF (has struct sched_ext_ops where the kernel has sched_ext)
  kernel.json  what was fetched; written last, so its presence means "complete"
$SCHEDTOP_CACHE/kernels/current names the default kernel (sid's, which has sched_ext).
virtme-ng takes the modules from root/usr (it links them into the guest's /lib/modules),
so the host's /lib/modules is untouched.
"""

from __future__ import annotations

import contextlib
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from schedtop.lab import catalog
from schedtop.lab.apt import PrivateApt
from schedtop.lab.cache import LabError, atomic_write_text, cache_dir, ensure_dir, os_error_line, require_space
from schedtop.lab.download import fetch_all
from schedtop.lab.progress import info, step

META_PACKAGE = catalog.META_PACKAGE
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd7zXZ\x00"  # Debian 12's 6.1 (CONFIG_KERNEL_XZ)
# Download ~125 MB, unpacked modules ~140 MB, vmlinux + vmlinux.h ~80 MB, with headroom;
# a one-package 6.1 image unpacks to ~400 MB.
SPACE_NEEDED = 700 << 20
REQUIRED_CONFIG = "CONFIG_SCHED_CLASS_EXT"
# What the guest needs from the modules: the host's root over 9p (virtio transport).
BOOT_MODULES = ("fs/9p/9p.ko", "net/9p/9pnet_virtio.ko")


@dataclass(frozen=True)
class Kernel:
    version: str
    dir: Path

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def moddir(self) -> Path:
        return self.root / "usr" / "lib" / "modules" / self.version

    @property
    def vmlinuz(self) -> Path:
        return self.moddir / "vmlinuz"

    @property
    def config(self) -> Path:
        return self.moddir / "config"

    @property
    def vmlinux(self) -> Path:
        return self.dir / "vmlinux"

    @property
    def vmlinux_h(self) -> Path:
        return self.dir / "vmlinux.h"


    def record(self) -> KernelRecord:
        return read_record(self.dir)

    @property
    def sched_ext(self) -> bool:
        return self.record().sched_ext

    def label(self) -> str:
        """7.2.13 (sid, sched_ext) for one-line messages."""
        r = self.record()
        return f"{r.upstream or self.version} ({r.suite}, {'sched_ext' if r.sched_ext else 'no sched_ext'})"


@dataclass(frozen=True)
class KernelRecord:
    """kernel.json: what the cache holds and where it came from."""

    version: str
    packages: dict[str, str]  # deb file name -> SHA-256
    config_sched_ext: str     # the config line, or "# CONFIG_SCHED_CLASS_EXT is not set"
    suite: str = catalog.DEFAULT_SUITE  # records from before the matrix: all came from sid
    upstream: str = ""
    layout: str = "split"

    @property
    def sched_ext(self) -> bool:
        return self.config_sched_ext == f"{REQUIRED_CONFIG}=y"


def read_record(d: Path) -> KernelRecord:
    data = json.loads((d / "kernel.json").read_text())
    known = KernelRecord.__dataclass_fields__
    if not data.get("upstream"):  # a record from before the matrix: 7.2.13+deb14-amd64 -> 7.2.13
        data["upstream"] = re.match(r"[\d.]*\d", data["version"]).group()  # type: ignore[union-attr]
    return KernelRecord(**{k: v for k, v in data.items() if k in known})


def kernels_dir() -> Path:
    return cache_dir() / "kernels"


def cached(spec: str | None = None) -> Kernel | None:
    """The complete cached kernel for SPEC (None: the default one), or None. Reads files only: no network."""
    if spec is None:
        try:
            version = (kernels_dir() / "current").read_text().strip()
        except OSError:
            return None
        return _complete(kernels_dir() / version)
    found = []
    for k in all_cached():
        r = k.record()
        if spec == r.suite or catalog.matches(spec, r.upstream, r.version):
            found.append((catalog.version_key(r.upstream or "0"), k))
    return max(found, key=lambda f: f[0])[1] if found else None


def all_cached() -> list[Kernel]:
    """Every complete kernel in the cache."""
    if not kernels_dir().is_dir():
        return []
    return [k for k in map(_complete, sorted(kernels_dir().iterdir())) if k is not None]


def _complete(d: Path) -> Kernel | None:
    if d.name.startswith(".") or not d.is_dir():
        return None
    k = Kernel(d.name, d)
    try:
        k.record()
    except (OSError, ValueError, TypeError):
        return None
    return k if k.vmlinuz.is_file() else None


def require_cached(spec: str | None = None) -> Kernel:
    k = cached(spec)
    if k is None:
        what = f"kernel {spec!r}" if spec else "sched_ext kernel"
        opt = f" --kernel {spec}" if spec else ""
        raise LabError(f"no {what} in the cache: run `schedtop lab fetch{opt}` (or `make kernel`) first")
    return k


def resolve_version(apt: PrivateApt) -> str:
    """linux-image-amd64 -> linux-image-X: the suite's current kernel release X."""
    return catalog.suite_current(apt)


def check_config(config: Path, require: bool = True) -> str:
    """The CONFIG_SCHED_CLASS_EXT line; refuse a kernel that lacks it (if required)."""
    try:
        text = config.read_text()
    except OSError:
        raise LabError(f"bad kernel package: no kernel config at {config}") from None
    m = re.search(rf"^{REQUIRED_CONFIG}=(\S+)$", text, re.M)
    if not require:
        return m.group(0) if m and m.group(1) == "y" else f"# {REQUIRED_CONFIG} is not set"
    if not m or m.group(1) != "y":
        found = m.group(0) if m else f"{REQUIRED_CONFIG} is not set"
        raise LabError(f"bad kernel package: this kernel has no sched_ext ({found}); "
                       f"the lab needs {REQUIRED_CONFIG}=y")
    return m.group(0)


def extract_vmlinux(vmlinuz: Path, out: Path) -> None:
    """The ELF vmlinux is the compressed payload of vmlinuz: zstd (6.12 on) or xz (6.1).

    zstd writes the whole ELF and then complains about the bytes that follow the
    frame ("unsupported format"), so its exit code is not the test: the output is.
    """
    data = vmlinuz.read_bytes()
    offsets = {name: data.find(magic) for name, magic in (("zstd", ZSTD_MAGIC), ("xz", XZ_MAGIC))}
    found = sorted((off, name) for name, off in offsets.items() if off >= 0)
    if not found:
        raise LabError(f"bad kernel package: {vmlinuz.name} has no zstd or xz payload (magic 28 b5 2f fd / fd 37 7a 58 5a 00)")
    part = out.with_name(out.name + ".part")
    try:
        offset, kind = found[0]
        with part.open("wb") as f:
            if kind == "zstd":
                subprocess.run(["zstd", "-dc"], input=data[offset:], stdout=f, stderr=subprocess.DEVNULL)
            else:
                try:  # one stream; what follows it in vmlinuz is not ours to read
                    f.write(lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[offset:]))
                except lzma.LZMAError:
                    pass  # the ELF check below names the package
        with part.open("rb") as f:
            if f.read(4) != b"\x7fELF":
                raise LabError(f"bad kernel package: the {kind} payload of {vmlinuz.name} is not an ELF vmlinux")
        if ".BTF" not in elf_section_names(part):
            raise LabError(f"bad kernel package: {vmlinuz.name}'s vmlinux has no .BTF section (needs CONFIG_DEBUG_INFO_BTF)")
        os.replace(part, out)
    except OSError as exc:
        raise os_error_line(exc, f"extracting vmlinux to {out}") from None
    finally:
        part.unlink(missing_ok=True)


def elf_section_names(path: Path) -> set[str]:
    """Section names of a little-endian ELF64 file (enough to find .BTF)."""
    with path.open("rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return set()
        shoff, = struct.unpack_from("<Q", head, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", head, 0x3A)
        f.seek(shoff)
        table = f.read(shentsize * shnum)
        sections = [struct.unpack_from("<IIQQQQ", table, i * shentsize) for i in range(shnum)]
        _, _, _, _, str_off, str_size = sections[shstrndx]
        f.seek(str_off)
        strtab = f.read(str_size)
    return {strtab[s[0]:strtab.index(b"\0", s[0])].decode() for s in sections}


def generate_vmlinux_h(vmlinux: Path, out: Path, sched_ext: bool = True) -> None:
    part = out.with_name(out.name + ".part")
    try:
        with part.open("w") as f:
            proc = subprocess.run(["bpftool", "btf", "dump", "file", str(vmlinux), "format", "c"],
                                  stdout=f, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise LabError(f"bpftool could not dump BTF from {vmlinux}: {proc.stderr.strip()[:200]}")
        if sched_ext and "struct sched_ext_ops {" not in part.read_text():
            raise LabError(f"bad kernel package: {vmlinux}'s BTF has no struct sched_ext_ops")
        os.replace(part, out)
    except FileNotFoundError:
        raise LabError("bpftool is missing: install Debian's bpftool (make deps)") from None
    finally:
        part.unlink(missing_ok=True)


def fetch(refresh: bool = False, spec: str | None = None) -> Kernel:
    """Make sure a complete kernel for SPEC (None: the default, sid's) is cached; with a warm cache,
    touch no network."""
    current = cached(spec)
    if current is not None and not refresh:
        info(f"kernel {current.version}: cached in {current.dir}")
        return current
    base = ensure_dir(cache_dir())
    require_space(base, SPACE_NEEDED, "a lab kernel")  # before the indexes: they take ~50 MB per suite
    offer = catalog.resolve(spec, refresh=refresh)
    if current is not None and current.version == offer.release:
        info(f"kernel {offer.release}: already the newest for {spec or catalog.DEFAULT_SUITE}")
        return current
    done = cached(offer.release)
    if done is not None and not refresh:
        info(f"kernel {done.version}: cached in {done.dir}")
        return done
    require_space(base, max(SPACE_NEEDED, offer.size * 4), f"kernel {offer.release}")
    apt = catalog.suite_apt(offer.suite)
    remotes = apt.uris(list(offer.packages))
    total = sum(r.size for r in remotes)
    info(f"kernel {offer.version} ({offer.suite}, {offer.release}): downloading {len(remotes)} "
         f"package{'s' if len(remotes) > 1 else ''}, {total / 1e6:.0f} MB")
    debs = fetch_all(remotes, base / "downloads", proxy=apt.proxy())
    kernel = install(offer.release, debs, {r.name: r.sha256 for r in remotes}, suite=offer.suite,
                     upstream=offer.version, layout=offer.layout, default=spec is None)
    for deb in debs:  # the unpacked tree is the cache; the .debs are only transport
        deb.unlink(missing_ok=True)
    return kernel


def normalize_layout(root: Path, version: str) -> None:
    """A one-package linux-image keeps vmlinuz/config/System.map in boot/ and (6.1) modules in
    lib/modules: move them to usr/lib/modules/X, the layout of the split packages."""
    moddir = root / "usr" / "lib" / "modules" / version
    legacy = root / "lib" / "modules" / version
    if legacy.is_dir() and not moddir.exists():
        ensure_dir(moddir.parent)
        legacy.rename(moddir)
        for empty in (legacy.parent, legacy.parent.parent):  # lib/modules, lib: nothing else there
            with contextlib.suppress(OSError):
                empty.rmdir()
    for name in ("vmlinuz", "config", "System.map"):
        src = root / "boot" / f"{name}-{version}"
        if src.is_file() and not (moddir / name).exists():
            ensure_dir(moddir)
            src.rename(moddir / name)
    with contextlib.suppress(OSError):
        (root / "boot").rmdir()


def check_boot_modules(moddir: Path, debs: list[Path]) -> None:
    """The guest mounts its root over 9p: a kernel without those modules would never reach the command."""
    for mod in BOOT_MODULES:
        if not any((moddir / "kernel").glob(mod + "*")):
            names = ", ".join(d.name for d in debs)
            raise LabError(f"bad kernel package: no {mod} module in {names}; the guest mounts its root over 9p, "
                           "so this kernel cannot boot (is linux-modules missing?)")


def install(version: str, debs: list[Path], hashes: dict[str, str], suite: str = catalog.DEFAULT_SUITE,
            upstream: str = "", layout: str = "split", default: bool = True) -> Kernel:
    """Unpack, check, extract and generate into a staging dir, then rename it into place.

    default: this is the default kernel (it must have sched_ext, and `current` names it)."""
    top = ensure_dir(kernels_dir())
    staging = Path(tempfile.mkdtemp(dir=top, prefix=f".{version}."))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide the kernel from a guest user other than us
    try:
        k = Kernel(version, staging)
        with step(f"unpacking {len(debs)} package{'s' if len(debs) > 1 else ''}"):
            for deb in debs:
                proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(k.root)], capture_output=True, text=True)
                if proc.returncode != 0:
                    if "No space left" in proc.stderr:
                        raise LabError(f"unpacking {deb.name}: no space left on device; free some space "
                                       "or set SCHEDTOP_CACHE to another disk")
                    raise LabError(f"bad kernel package: dpkg-deb cannot unpack {deb.name}: "
                                   f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
        normalize_layout(k.root, version)
        config_line = check_config(k.config, require=default)
        if not k.vmlinuz.is_file():
            raise LabError(f"bad kernel package: no vmlinuz for {version} in {', '.join(d.name for d in debs)}")
        with step("extracting vmlinux (BTF)"):
            extract_vmlinux(k.vmlinuz, k.vmlinux)
        check_boot_modules(k.moddir, debs)
        with step("depmod"):
            subprocess.run(["depmod", "-b", str(k.root / "usr"), version], check=False, capture_output=True)
        sched_ext = config_line == f"{REQUIRED_CONFIG}=y"
        with step("generating vmlinux.h"):
            generate_vmlinux_h(k.vmlinux, k.vmlinux_h, sched_ext=sched_ext)
        record = KernelRecord(version, hashes, config_line, suite, upstream, layout)
        atomic_write_text(staging / "kernel.json", json.dumps(asdict(record), indent=1) + "\n")
        final = top / version
        old = None
        if final.exists():
            old = final.rename(top / f".{version}.old.{os.getpid()}")
        staging.rename(final)
        if default:
            previous = cached()
            atomic_write_text(top / "current", version + "\n")
            if previous is not None and previous.version != version:  # an older default is only disk space
                shutil.rmtree(previous.dir, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        info(f"kernel {version}: ready ({config_line}) in {final}")
        return Kernel(version, final)
    except OSError as exc:
        raise os_error_line(exc, f"installing kernel {version}") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def checkout_vmlinux_h() -> Path | None:
    """bpf/vmlinux/x86/vmlinux.h of the source checkout this package runs from, if any."""
    import schedtop

    path = Path(schedtop.__file__).resolve().parents[1] / "bpf" / "vmlinux" / "x86" / "vmlinux.h"
    return path if path.parent.is_dir() else None
