"""Host-test fixtures: the checkout built as a wheel and installed where any user can read it."""

from __future__ import annotations

import shutil
from pathlib import Path

import install
import pytest


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The checkout's wheel, built once per session by its hatch hook (clang + libbpf headers)."""
    if shutil.which("clang") is None:
        pytest.skip("clang not installed: the wheel's BPF objects cannot be built")
    out = tmp_path_factory.mktemp("wheel")
    r = install.build_wheel(out)
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = out.glob("schedtop-*.whl")
    return whl


@pytest.fixture(scope="session")
def nobody_install(wheel):
    """The wheel in a venv under a 0755 temp dir: what a test runs as uid 65534 (nobody).
    The checkout itself may be under a 0700 directory, such as /root."""
    inst = install.install(wheel)
    yield inst
    inst.remove()
