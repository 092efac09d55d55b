"""The kernel matrix against real parts: the real signed indexes (warm private lists), real
.deb packages in Debian's one-package linux-image layout, the real xz vmlinuz of 6.1."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from schedtop.lab import catalog, kernel
from schedtop.lab.cache import LabError

from test_lab_cache import one_error_line, schedtop


def _warm(suites: tuple[str, ...] = catalog.SUITES) -> None:
    if not all(catalog.suite_apt(s).has_lists() for s in suites):
        pytest.skip("no warm private indexes (schedtop lab kernels --refresh)")


def test_lab_kernels_lists_suites_versions_sched_ext_boot_and_size() -> None:
    _warm()
    proc = schedtop("lab", "kernels", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(l) for l in proc.stdout.splitlines()]
    by_suite = {}
    for r in rows:
        by_suite.setdefault(r["suite"], []).append(r)
    assert {"sid", "trixie", "bookworm", "trixie-backports"} <= set(by_suite)
    assert all(not r["sched_ext"] and r["layout"] == "image" for r in by_suite["bookworm"])
    assert all(r["version"].startswith("6.12.") and not r["sched_ext"] for r in by_suite["trixie"])
    assert any(r["sched_ext"] and r["bootable"] for r in by_suite["sid"])
    for r in rows:
        assert r["download_bytes"] == 0 if r["cached"] else r["download_bytes"] > 1_000_000
        if not r["bootable"]:  # the 6.19-7.1 leftovers: a binary without modules
            assert f"linux-modules-{r['release']}" in r["note"]
    table = schedtop("lab", "kernels")
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:5] == [
        "SUITE", "VERSION", "RELEASE", "SCHED_EXT", "BOOTS"]
    assert "default (no --kernel):" in table.stdout


def test_specs_resolve_through_the_real_indexes() -> None:
    _warm()
    assert catalog.resolve("bookworm").version.startswith("6.1.")
    assert catalog.resolve("trixie").version.startswith("6.12.")
    assert catalog.resolve("6.18").version.startswith("6.18.")
    sid = catalog.resolve(None)
    assert sid.suite == "sid" and sid.sched_ext and sid.bootable
    assert catalog.resolve(sid.release) == sid


def test_a_kernel_without_modules_is_refused_before_any_download(tmp_path: Path) -> None:
    _warm(("trixie-backports",))
    leftovers = [o for o in catalog.suite_offers(catalog.suite_apt("trixie-backports")) if not o.bootable]
    if not leftovers:
        pytest.skip("every trixie-backports kernel has its modules in the index now")
    o = leftovers[0]
    proc = schedtop("lab", "fetch", "--kernel", o.release)
    line = one_error_line(proc)
    assert f"linux-modules-{o.release}" in line and "cannot boot" in line
    assert kernel.cached(o.release) is None


def _image_deb(tmp_path: Path, version: str, vmlinuz: Path, modules: bool, usr: bool) -> Path:
    """A real .deb laid out like Debian's one-package linux-image (boot/ + [usr/]lib/modules/)."""
    pkg = tmp_path / "pkg"
    (pkg / "boot").mkdir(parents=True)
    shutil.copyfile(vmlinuz, pkg / "boot" / f"vmlinuz-{version}")
    (pkg / "boot" / f"config-{version}").write_text("CONFIG_BPF=y\n# CONFIG_SCHED_CLASS_EXT is not set\n")
    mod = pkg / ("usr/lib" if usr else "lib") / "modules" / version / "kernel"
    mod.mkdir(parents=True)
    if modules:
        for m in kernel.BOOT_MODULES:
            (mod / m).parent.mkdir(parents=True, exist_ok=True)
            (mod / m).write_bytes(b"\x7fELF")
    (pkg / "DEBIAN").mkdir()
    (pkg / "DEBIAN" / "control").write_text(
        f"Package: linux-image-{version}\nVersion: 1\nArchitecture: amd64\nMaintainer: t <t@t>\nDescription: t\n")
    out = tmp_path / f"linux-image-{version}_1_amd64.deb"
    subprocess.run(["dpkg-deb", "-Zgzip", "-b", str(pkg), str(out)], check=True, capture_output=True)
    return out


def test_a_one_package_image_is_laid_out_like_the_split_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Debian 12's 6.1: boot/vmlinuz (xz), boot/config, lib/modules: installed as usr/lib/modules/X/*."""
    real = kernel.cached("bookworm") or kernel.cached("6.1")
    if real is None:
        pytest.skip("no cached 6.1 kernel (schedtop lab fetch --kernel bookworm)")
    monkeypatch.setenv("SCHEDTOP_CACHE", str(tmp_path / "cache"))
    version = "6.1.0-99-amd64"
    deb = _image_deb(tmp_path / "a", version, real.vmlinuz, modules=True, usr=False)
    k = kernel.install(version, [deb], {deb.name: "x"}, suite="bookworm", upstream="6.1.999", layout="image",
                       default=False)
    assert k.vmlinuz.is_file() and k.config.is_file() and (k.moddir / "kernel" / kernel.BOOT_MODULES[0]).is_file()
    assert not (k.root / "boot" / f"vmlinuz-{version}").exists() and not (k.root / "lib").exists()
    assert k.vmlinux.read_bytes()[:4] == b"\x7fELF" and ".BTF" in kernel.elf_section_names(k.vmlinux)
    assert not k.sched_ext and k.label() == "6.1.999 (bookworm, no sched_ext)"
    assert kernel.cached("6.1") == k and kernel.cached("bookworm") == k
    assert kernel.cached() is None  # not the default kernel: `current` is untouched


def test_a_kernel_without_its_9p_module_is_refused_naming_the_package(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    real = kernel.cached("bookworm") or kernel.cached("6.1")
    if real is None:
        pytest.skip("no cached 6.1 kernel (schedtop lab fetch --kernel bookworm)")
    monkeypatch.setenv("SCHEDTOP_CACHE", str(tmp_path / "cache"))
    version = "6.1.0-98-amd64"
    deb = _image_deb(tmp_path / "b", version, real.vmlinuz, modules=False, usr=True)
    with pytest.raises(LabError, match=rf"bad kernel package: no fs/9p/9p.ko module in {deb.name}"):
        kernel.install(version, [deb], {}, default=False)
    assert kernel.all_cached() == [] and [p.name for p in (tmp_path / "cache" / "kernels").iterdir()] == []
