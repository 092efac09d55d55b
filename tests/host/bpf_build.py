"""Compile a test BPF object the way the Makefile does (clang against the checked-in vmlinux.h)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from schedtop.bpf.libbpf import cache_dir

ROOT = Path(__file__).resolve().parents[2]


def compile_bpf(src: Path, out: Path, *defines: str) -> Path:
    if shutil.which("clang") is None:
        pytest.skip("clang not installed")
    cmd = [
        "clang", "-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86", *(f"-D{d}" for d in defines),
        f"-I{ROOT / 'bpf'}", f"-I{ROOT / 'bpf' / 'vmlinux' / 'x86'}", f"-I{cache_dir() / 'libbpf' / 'include'}",
        "-c", str(src), "-o", str(out),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return out
