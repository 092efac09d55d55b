"""Where schedtop's compiled BPF objects are, and what to do when one is missing.

Both an installed wheel (built by hatch_build.py) and a checkout (`make bpf`) keep them in
schedtop/bpf/obj/<machine>/NAME.bpf.o, machine as `uname -m` spells it: one lookup for both.
"""

from __future__ import annotations

import platform
from pathlib import Path

ARCH = platform.machine()
OBJ_ROOT = Path(__file__).resolve().parent / "obj"
OBJ_DIR = OBJ_ROOT / ARCH
# A checkout has the BPF sources beside the package; an installed package does not.
_SOURCES = Path(__file__).resolve().parents[2] / "bpf"


def path(name: str) -> Path:
    """schedtop/bpf/obj/<machine>/NAME.bpf.o (it may not exist: see ``missing``)."""
    return OBJ_DIR / f"{name}.bpf.o"


def from_checkout() -> bool:
    return (_SOURCES / "trace.bpf.c").is_file() and (_SOURCES.parent / "Makefile").is_file()


def missing(obj: Path) -> str:
    """One line: which object is missing and, for this kind of install, how to get it."""
    if from_checkout():
        from shutil import which

        fix = "run `make bpf`" if which("clang") else "install clang (apt-get install clang llvm) and run `make bpf`"
        return f"BPF object {obj} not built: {fix}"
    arches = sorted(p.name for p in OBJ_ROOT.iterdir() if p.is_dir()) if OBJ_ROOT.is_dir() else []
    has = (f"it has objects for {', '.join(arches)} only" if arches and ARCH not in arches
           else "it has no BPF objects for this machine" if not arches else "it lacks this one")
    return (f"BPF object {obj} missing from this install ({has}): reinstall schedtop from a wheel built "
            f"for {ARCH} (pipx install schedtop-*-linux_{ARCH}.whl; building one needs clang and libbpf "
            "headers, see the README)")
