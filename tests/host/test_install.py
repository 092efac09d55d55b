"""The wheel is a complete install: its hook compiles the CO-RE objects into it (or the build
fails and says why), and an install of it, outside the checkout and with no clang on PATH,
has the BPF tier and the exec hook. The guest half (the scheduler from the install) is
`make wheel-smoke`."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import zipfile
from pathlib import Path

import install
import pytest

from schedtop.bpf import objects

ROOT = install.ROOT
EM_BPF = 247
BPF_READY = os.geteuid() == 0 and Path("/sys/kernel/btf/vmlinux").exists()


def _path_without_clang(d: Path) -> str:
    """PATH as the system's, minus the compiler: /usr/bin holds python and clang alike."""
    d.mkdir(exist_ok=True)
    for bindir in ("/usr/local/bin", "/usr/bin", "/bin"):
        for exe in Path(bindir).iterdir():
            if not exe.name.startswith(("clang", "llc", "llvm")) and not (d / exe.name).exists():
                (d / exe.name).symlink_to(exe)
    return f"{d}:/usr/local/sbin:/usr/sbin:/sbin"


def test_wheel_has_each_object_for_this_machine_and_says_so_in_its_tag(wheel):
    want = {f"schedtop/bpf/obj/{objects.ARCH}/{s.name.removesuffix('.c')}.o" for s in (ROOT / "bpf").glob("*.bpf.c")}
    assert wheel.name.endswith(f"-py3-none-linux_{objects.ARCH}.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert {n for n in names if n.endswith(".bpf.o")} == want
        tag = z.read(next(n for n in names if n.endswith(".dist-info/WHEEL"))).decode()
        assert f"Tag: py3-none-linux_{objects.ARCH}" in tag and "Root-Is-Purelib: false" in tag
        for n in want:
            elf = z.read(n)
            assert elf[:4] == b"\x7fELF" and int.from_bytes(elf[18:20], "little") == EM_BPF, n
            assert b".BTF.ext" in elf, f"{n}: no CO-RE relocations section"


def test_build_without_clang_fails_with_the_reason(tmp_path):
    out = tmp_path / "dist"
    r = install.build_wheel(out, env={"PATH": str(tmp_path)})  # an empty dir: no clang anywhere
    assert r.returncode != 0
    assert "cannot build the BPF objects: clang not found on PATH" in r.stdout + r.stderr
    assert not list(out.glob("*.whl"))


def test_build_without_libbpf_headers_fails_with_the_reason(tmp_path):
    out = tmp_path / "dist"
    r = install.build_wheel(out, env={"SCHEDTOP_LIBBPF_INCLUDE": str(tmp_path)})
    assert r.returncode != 0 and not list(out.glob("*.whl"))
    assert f"SCHEDTOP_LIBBPF_INCLUDE={tmp_path}: no libbpf >= 1.4 headers there" in r.stdout + r.stderr
    if (Path("/usr/include/bpf/bpf_helpers.h")).exists():
        return  # a libbpf-dev here would serve the search below
    env = {"SCHEDTOP_LIBBPF_INCLUDE": "", "SCHEDTOP_CACHE": str(tmp_path / "empty-cache")}
    r = install.build_wheel(out, env=env)
    assert r.returncode != 0 and not list(out.glob("*.whl"))
    assert "libbpf >= 1.4 headers not found" in r.stdout + r.stderr and "schedtop lab libbpf" in r.stdout + r.stderr


def _system_libbpf() -> tuple[int, int]:
    try:
        lib = ctypes.CDLL("libbpf.so.1")
    except OSError:
        return (0, 0)
    return (lib.libbpf_major_version(), lib.libbpf_minor_version())


def _run(inst: install.Install, *args: str, tmp_path: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """A command of the install, from its own directory (not the checkout), without clang on PATH."""
    path = _path_without_clang(tmp_path / "bin")
    return subprocess.run([*args], capture_output=True, text=True, timeout=120, cwd=inst.root,
                          env={**os.environ, "PATH": path, **(env or {})})


def test_install_takes_its_objects_from_the_wheel_not_the_checkout(nobody_install, tmp_path):
    r = _run(nobody_install, str(nobody_install.python), "-c",
             "import schedtop, shutil; from schedtop.bpf import objects; "
             "print(schedtop.__file__, objects.path('trace'), objects.from_checkout(), shutil.which('clang'), "
             "objects.missing(objects.path('nope')))", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    mod, obj, checkout, clang, msg = r.stdout.split(" ", 4)
    assert Path(mod).is_relative_to(nobody_install.site) and Path(obj).is_relative_to(nobody_install.site)
    assert Path(obj).is_file() and checkout == "False" and clang == "None"
    assert "make bpf" not in msg and f"a wheel built for {objects.ARCH}" in msg
    assert "make bpf" in objects.missing(objects.path("nope"))  # this checkout's own advice


@pytest.mark.skipif(not BPF_READY, reason="needs root and kernel BTF")
def test_install_has_the_bpf_tier_and_the_exec_hook(nobody_install, tmp_path):
    r = _run(nobody_install, str(nobody_install.schedtop), "--once", "--json", "-d", "0.3", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    snap = json.loads(r.stdout)
    assert snap["source"] == "bpf", snap["warnings"]
    # The monitor opens the tier without the sampled event stream (nothing in --once reads it):
    # BPF data is its attached programs and the run-queue latency they counted.
    bpf = snap["extras"]["bpf"]
    assert bpf["programs"] and any(c["lat_count"] for c in bpf["cpus"]), bpf
    prof = tmp_path / "p.toml"
    prof.write_text('name = "t"\npoll = 30\n[[rule]]\ncomm = "nothing-matches-this"\nnice = 6\n')
    r = _run(nobody_install, str(nobody_install.schedtop), "profile", "apply", str(prof), "--watch",
             "--duration", "0.5", tmp_path=tmp_path, env={"SCHEDTOP_STATE_DIR": str(tmp_path / "state")})
    assert r.returncode == 0, r.stderr
    assert "new programs and renamed threads tuned at once (BPF" in r.stdout, r.stdout


@pytest.mark.skipif(not BPF_READY, reason="needs root and kernel BTF")
def test_install_without_libbpf_says_where_to_get_it(nobody_install, tmp_path):
    if _system_libbpf() >= (1, 4):
        pytest.skip("the system's libbpf is new enough: nothing to say")
    r = _run(nobody_install, str(nobody_install.schedtop), "--once", "--json", "-d", "0.1", tmp_path=tmp_path,
             env={"SCHEDTOP_CACHE": str(tmp_path / "empty-cache"), "SCHEDTOP_LIBBPF": ""})
    assert r.returncode == 0, r.stderr
    snap = json.loads(r.stdout)
    assert snap["source"] != "bpf"
    (w,) = [w for w in snap["warnings"] if "libbpf" in w]
    assert "libbpf1 >= 1.4" in w and "schedtop lab libbpf" in w
