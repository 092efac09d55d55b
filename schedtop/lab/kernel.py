"""The sched_ext guest kernel: Debian sid's, fetched through the private apt.

Layout under $SCHEDTOP_CACHE/kernels/<X>/ (X = kernel release, e.g. 7.2.13+deb14-amd64):
  root/usr/lib/modules/X/{vmlinuz,config,kernel/...,modules.dep}   the unpacked packages
  vmlinux      the ELF inside vmlinuz (keeps .BTF)
  vmlinux.h    bpftool's C dump of that BTF (has struct sched_ext_ops)
  kernel.json  what was fetched; written last, so its presence means "complete"
$SCHEDTOP_CACHE/kernels/current names X. virtme-ng takes the modules from root/usr
(it links them into the guest's /lib/modules), so the host's /lib/modules is untouched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from schedtop.lab.apt import PrivateApt
from schedtop.lab.cache import LabError, atomic_write_text, cache_dir, ensure_dir, os_error_line, require_space
from schedtop.lab.download import fetch_all
from schedtop.lab.progress import info, step

META_PACKAGE = "linux-image-amd64"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# Download ~125 MB, unpacked modules ~140 MB, vmlinux + vmlinux.h ~80 MB, with headroom.
SPACE_NEEDED = 700 << 20
REQUIRED_CONFIG = "CONFIG_SCHED_CLASS_EXT"


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


@dataclass(frozen=True)
class KernelRecord:
    """kernel.json: what the cache holds and where it came from."""

    version: str
    packages: dict[str, str]  # deb file name -> SHA-256
    config_sched_ext: str


def kernels_dir() -> Path:
    return cache_dir() / "kernels"


def cached() -> Kernel | None:
    """The complete cached kernel, or None. Reads files only: no network."""
    try:
        version = (kernels_dir() / "current").read_text().strip()
    except OSError:
        return None
    k = Kernel(version, kernels_dir() / version)
    if (k.dir / "kernel.json").is_file() and k.vmlinuz.is_file():
        return k
    return None


def require_cached() -> Kernel:
    k = cached()
    if k is None:
        raise LabError("no sched_ext kernel in the cache: run `schedtop lab fetch` (or `make kernel`) first")
    return k


def resolve_version(apt: PrivateApt) -> str:
    """linux-image-amd64 -> linux-image-X: sid's current kernel release X."""
    depends = apt.show(META_PACKAGE).get("Depends", "")
    m = re.search(r"linux-image-(\d[^\s,(]*)", depends)
    if not m:
        raise LabError(f"bad kernel package: cannot find the kernel release in {META_PACKAGE}'s Depends: {depends!r}")
    return m.group(1)


def check_config(config: Path) -> str:
    """The CONFIG_SCHED_CLASS_EXT line; refuse a kernel that lacks it."""
    try:
        text = config.read_text()
    except OSError:
        raise LabError(f"bad kernel package: no kernel config at {config}") from None
    m = re.search(rf"^{REQUIRED_CONFIG}=(\S+)$", text, re.M)
    if not m or m.group(1) != "y":
        found = m.group(0) if m else f"{REQUIRED_CONFIG} is not set"
        raise LabError(f"bad kernel package: this kernel has no sched_ext ({found}); "
                       f"the lab needs {REQUIRED_CONFIG}=y")
    return m.group(0)


def extract_vmlinux(vmlinuz: Path, out: Path) -> None:
    """The ELF vmlinux is the zstd payload of vmlinuz.

    zstd writes the whole ELF and then complains about the bytes that follow the
    frame ("unsupported format"), so its exit code is not the test: the output is.
    """
    data = vmlinuz.read_bytes()
    offset = data.find(ZSTD_MAGIC)
    if offset < 0:
        raise LabError(f"bad kernel package: {vmlinuz.name} has no zstd payload (magic 28 b5 2f fd)")
    part = out.with_name(out.name + ".part")
    try:
        with part.open("wb") as f:
            subprocess.run(["zstd", "-dc"], input=data[offset:], stdout=f, stderr=subprocess.DEVNULL)
        with part.open("rb") as f:
            if f.read(4) != b"\x7fELF":
                raise LabError(f"bad kernel package: the zstd payload of {vmlinuz.name} is not an ELF vmlinux")
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


def generate_vmlinux_h(vmlinux: Path, out: Path) -> None:
    part = out.with_name(out.name + ".part")
    try:
        with part.open("w") as f:
            proc = subprocess.run(["bpftool", "btf", "dump", "file", str(vmlinux), "format", "c"],
                                  stdout=f, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise LabError(f"bpftool could not dump BTF from {vmlinux}: {proc.stderr.strip()[:200]}")
        if "struct sched_ext_ops {" not in part.read_text():
            raise LabError(f"bad kernel package: {vmlinux}'s BTF has no struct sched_ext_ops")
        os.replace(part, out)
    except FileNotFoundError:
        raise LabError("bpftool is missing: install Debian's bpftool (make deps)") from None
    finally:
        part.unlink(missing_ok=True)


def fetch(refresh: bool = False) -> Kernel:
    """Make sure a complete sched_ext kernel is cached; with a warm cache, touch no network."""
    current = cached()
    if current is not None and not refresh:
        info(f"kernel {current.version}: cached in {current.dir}")
        return current
    base = ensure_dir(cache_dir())
    require_space(base, SPACE_NEEDED, "the sched_ext kernel")
    apt = PrivateApt(base / "apt")
    apt.configure()
    if refresh or not apt.has_lists():
        apt.update()
    version = resolve_version(apt)
    if current is not None and current.version == version:
        info(f"kernel {version}: already the newest in Debian sid")
        return current
    packages = [f"linux-binary-{version}", f"linux-base-{version}", f"linux-modules-{version}"]
    remotes = apt.uris(packages)
    total = sum(r.size for r in remotes)
    info(f"kernel {version}: downloading {len(remotes)} packages, {total / 1e6:.0f} MB")
    debs = fetch_all(remotes, base / "downloads", proxy=apt.proxy())
    kernel = install(version, debs, {r.name: r.sha256 for r in remotes})
    for deb in debs:  # the unpacked tree is the cache; the .debs are only transport
        deb.unlink(missing_ok=True)
    return kernel


def install(version: str, debs: list[Path], hashes: dict[str, str]) -> Kernel:
    """Unpack, check, extract and generate into a staging dir, then rename it into place."""
    top = ensure_dir(kernels_dir())
    staging = Path(tempfile.mkdtemp(dir=top, prefix=f".{version}."))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide the kernel from a guest user other than us
    try:
        k = Kernel(version, staging)
        with step(f"unpacking {len(debs)} packages"):
            for deb in debs:
                proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(k.root)], capture_output=True, text=True)
                if proc.returncode != 0:
                    if "No space left" in proc.stderr:
                        raise LabError(f"unpacking {deb.name}: no space left on device; free some space "
                                       "or set SCHEDTOP_CACHE to another disk")
                    raise LabError(f"bad kernel package: dpkg-deb cannot unpack {deb.name}: "
                                   f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
        config_line = check_config(k.config)
        if not k.vmlinuz.is_file():
            raise LabError(f"bad kernel package: no vmlinuz at usr/lib/modules/{version}/ in {', '.join(d.name for d in debs)}")
        if (k.moddir / "kernel").is_dir():
            with step("depmod"):
                subprocess.run(["depmod", "-b", str(k.root / "usr"), version], check=False,
                               capture_output=True)
        with step("extracting vmlinux (BTF)"):
            extract_vmlinux(k.vmlinuz, k.vmlinux)
        with step("generating vmlinux.h"):
            generate_vmlinux_h(k.vmlinux, k.vmlinux_h)
        record = KernelRecord(version, hashes, config_line)
        atomic_write_text(staging / "kernel.json", json.dumps(asdict(record), indent=1) + "\n")
        final = top / version
        old = None
        if final.exists():
            old = final.rename(top / f".{version}.old.{os.getpid()}")
        staging.rename(final)
        atomic_write_text(top / "current", version + "\n")
        for stale in top.iterdir():  # keep one kernel: older ones are only disk space
            if stale.name not in (version, "current") and not stale.name.startswith("."):
                shutil.rmtree(stale, ignore_errors=True)
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
