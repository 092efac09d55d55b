"""Compile bpf/*.bpf.c into CO-RE objects: for the wheel (a hatch build hook) and for `make bpf`.

One place for the compiler flags and for where the libbpf headers come from. The objects go
to schedtop/bpf/obj/<machine>/ (machine as `uname -m` and the wheel tag spell it), which is
where schedtop.bpf.objects looks at run time. A wheel without objects is a wheel without the
BPF tier, the exec hook and the scheduler, so a build that cannot compile them fails and says
why. Another architecture needs only bpf/vmlinux/<kernel arch>/vmlinux.h and
SCHEDTOP_BPF_ARCH=<machine>.

libbpf headers (bpf/bpf_helpers.h and friends), first found of:
  $SCHEDTOP_LIBBPF_INCLUDE; $SCHEDTOP_CACHE/libbpf/include (default ~/.cache/schedtop: what
  `schedtop lab libbpf` / `make libbpf` installs); /usr/include (a distribution's libbpf-dev).
Each must be libbpf >= 1.4 (bpf/libbpf_version.h), the version schedtop needs at run time.

    python hatch_build.py SRC.bpf.c OUT.bpf.o    # what `make bpf` runs for each object
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MIN_LIBBPF = (1, 4)
# machine (uname -m, wheel tag) -> the kernel's arch name (bpf_tracing.h's __TARGET_ARCH_*, vmlinux dir)
KERNEL_ARCH = {"x86_64": "x86", "aarch64": "arm64", "riscv64": "riscv", "s390x": "s390",
               "ppc64le": "powerpc", "loongarch64": "loongarch"}


class BuildError(RuntimeError):
    """The objects cannot be built here; the message is the reason and the fix."""


def machine() -> str:
    return os.environ.get("SCHEDTOP_BPF_ARCH") or platform.machine()


def _libbpf_version(include: Path) -> tuple[int, int] | None:
    try:
        text = (include / "bpf" / "libbpf_version.h").read_text()
    except OSError:
        return None
    m = re.search(r"LIBBPF_MAJOR_VERSION\s+(\d+).*?LIBBPF_MINOR_VERSION\s+(\d+)", text, re.S)
    return (int(m[1]), int(m[2])) if m else None


def libbpf_include() -> Path:
    """The first libbpf >= 1.4 include dir of the search order above, or BuildError."""
    cache = Path(os.environ.get("SCHEDTOP_CACHE") or Path.home() / ".cache" / "schedtop")
    env = os.environ.get("SCHEDTOP_LIBBPF_INCLUDE")
    candidates = [Path(env)] if env else []
    candidates += [cache / "libbpf" / "include", Path("/usr/include")]
    tried = []
    for inc in candidates:
        ver = _libbpf_version(inc)
        if ver is None or not (inc / "bpf" / "bpf_helpers.h").is_file():
            tried.append(f"none in {inc}")
        elif ver < MIN_LIBBPF:
            tried.append(f"{inc} has libbpf {ver[0]}.{ver[1]}")
        else:
            return inc
        if env and inc == Path(env):
            raise BuildError(f"SCHEDTOP_LIBBPF_INCLUDE={env}: no libbpf >= 1.4 headers there ({tried[-1]})")
    raise BuildError(
        f"libbpf >= {MIN_LIBBPF[0]}.{MIN_LIBBPF[1]} headers not found ({'; '.join(tried)}): "
        "run `make libbpf` (or `schedtop lab libbpf`) to build them into the cache, install libbpf-dev >= 1.4, "
        "or set SCHEDTOP_LIBBPF_INCLUDE to a libbpf include dir"
    )


def clang() -> str:
    path = shutil.which(os.environ.get("CLANG", "clang"))
    if path is None:
        raise BuildError("clang not found on PATH: the BPF objects need it (apt-get install clang llvm), "
                         "or install a wheel built where clang is")
    return path


def cflags(arch: str, include: Path) -> list[str]:
    karch = KERNEL_ARCH.get(arch)
    if karch is None:
        raise BuildError(f"no BPF target known for machine {arch!r} (known: {', '.join(KERNEL_ARCH)})")
    vmlinux = ROOT / "bpf" / "vmlinux" / karch
    if not (vmlinux / "vmlinux.h").is_file():
        raise BuildError(f"no {vmlinux / 'vmlinux.h'} for {arch}: generate it with `bpftool btf dump "
                         "file /sys/kernel/btf/vmlinux format c` on that arch (bpf/vmlinux/README.md)")
    return ["-g", "-O2", "-Wall", "-Wno-compare-distinct-pointer-types", "-Wno-missing-declarations",
            "-target", "bpf", f"-D__TARGET_ARCH_{karch}",
            f"-I{ROOT / 'bpf'}", f"-I{vmlinux}", f"-I{include}"]


def compile_one(src: Path, out: Path, arch: str | None = None, *defines: str) -> Path:
    arch = arch or machine()
    cmd = [clang(), *cflags(arch, libbpf_include()), *(f"-D{d}" for d in defines), "-c", str(src), "-o", str(out)]
    out.parent.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise BuildError(f"clang failed on {src.name}:\n{res.stderr[-3000:]}")
    return out


def compile_all(out_dir: Path, arch: str | None = None) -> list[Path]:
    sources = sorted((ROOT / "bpf").glob("*.bpf.c"))
    if not sources:
        raise BuildError(f"no BPF sources in {ROOT / 'bpf'}")
    return [compile_one(s, out_dir / s.name.replace(".bpf.c", ".bpf.o"), arch) for s in sources]


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # run as `make bpf`'s compiler, without hatchling
    BuildHookInterface = object  # type: ignore[assignment,misc]


class BpfObjectsHook(BuildHookInterface):
    """Puts schedtop/bpf/obj/<machine>/*.bpf.o into the wheel and tags it py3-none-linux_<machine>."""

    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel" or version == "editable":
            return  # an editable install uses the checkout's `make bpf` objects
        arch = machine()
        self._tmp = tempfile.TemporaryDirectory(prefix="schedtop-bpf-")
        try:
            objs = compile_all(Path(self._tmp.name), arch)
        except BuildError as exc:
            raise SystemExit(f"schedtop wheel: cannot build the BPF objects: {exc}") from None
        for obj in objs:
            build_data["force_include"][str(obj)] = f"schedtop/bpf/obj/{arch}/{obj.name}"
        build_data["pure_python"] = False
        build_data["tag"] = f"py3-none-linux_{arch}"

    def finalize(self, version: str, build_data: dict, artifact_path: str) -> None:
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} SRC.bpf.c OUT.bpf.o")
    try:
        compile_one(Path(sys.argv[1]), Path(sys.argv[2]))
    except BuildError as exc:
        sys.exit(f"make bpf: {exc}")
