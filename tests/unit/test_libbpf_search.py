"""The libbpf search order: $SCHEDTOP_LIBBPF, the system libbpf.so.1 if >= 1.4, the cache.

Each case runs in a fresh interpreter (the binding loads libbpf once per process) against
the real libraries on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from schedtop.bpf.libbpf import MIN_VERSION, cached_libbpf_path

PROBE = """
import json
from schedtop.bpf.libbpf import find_libbpf, LibbpfNotFound
try:
    loc = find_libbpf()
    print(json.dumps({"path": loc.path, "version": list(loc.version), "source": loc.source}))
except LibbpfNotFound as exc:
    print(json.dumps({"error": str(exc)}))
"""


def probe(**env: str) -> dict:
    full = {k: v for k, v in os.environ.items() if k not in ("SCHEDTOP_LIBBPF", "SCHEDTOP_CACHE")}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE], env=full, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def system_libbpf() -> Path | None:
    for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"):
        p = Path(d) / "libbpf.so.1"
        if p.exists():
            return p
    return None


def version_from_name(p: Path) -> tuple[int, int]:
    parts = p.resolve().name.split(".so.")[1].split(".")
    return int(parts[0]), int(parts[1])


CACHED = Path.home() / ".cache" / "schedtop" / "libbpf" / "lib" / "libbpf.so.1"


@pytest.mark.skipif(not CACHED.exists(), reason="no libbpf in the cache (make libbpf)")
def test_env_override_wins(tmp_path: Path) -> None:
    got = probe(SCHEDTOP_LIBBPF=str(CACHED), SCHEDTOP_CACHE=str(tmp_path))
    assert got["source"] == "env" and got["path"] == str(CACHED)
    assert tuple(got["version"]) >= MIN_VERSION


@pytest.mark.skipif(system_libbpf() is None, reason="no system libbpf.so.1")
def test_env_override_too_old_is_refused_by_name() -> None:
    sys_lib = system_libbpf()
    assert sys_lib is not None
    if version_from_name(sys_lib) >= MIN_VERSION:
        pytest.skip("the system libbpf is new enough")
    got = probe(SCHEDTOP_LIBBPF=str(sys_lib))
    assert f"SCHEDTOP_LIBBPF={sys_lib}" in got["error"] and "needs >= 1.4" in got["error"]


def test_cache_follows_schedtop_cache(tmp_path: Path) -> None:
    if not CACHED.exists():
        pytest.skip("no libbpf in the cache (make libbpf)")
    sys_lib = system_libbpf()
    if sys_lib is not None and version_from_name(sys_lib) >= MIN_VERSION:
        pytest.skip("the system libbpf is new enough, the cache is never reached")
    lib_dir = tmp_path / "libbpf" / "lib"
    lib_dir.mkdir(parents=True)
    (lib_dir / "libbpf.so.1").symlink_to(CACHED.resolve())
    got = probe(SCHEDTOP_CACHE=str(tmp_path))
    assert got["source"] == "cache" and got["path"] == str(lib_dir / "libbpf.so.1")


def test_nothing_found_names_the_fix(tmp_path: Path) -> None:
    sys_lib = system_libbpf()
    if sys_lib is not None and version_from_name(sys_lib) >= MIN_VERSION:
        pytest.skip("the system libbpf is new enough")
    got = probe(SCHEDTOP_CACHE=str(tmp_path))
    assert "schedtop lab libbpf" in got["error"] and "make libbpf" in got["error"]
    assert str(tmp_path / "libbpf" / "lib" / "libbpf.so.1") in got["error"]


def test_cache_dir_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCHEDTOP_CACHE", raising=False)
    assert cached_libbpf_path() == Path.home() / ".cache" / "schedtop" / "libbpf" / "lib" / "libbpf.so.1"
    monkeypatch.setenv("SCHEDTOP_CACHE", "/x/y")
    assert cached_libbpf_path() == Path("/x/y/libbpf/lib/libbpf.so.1")
