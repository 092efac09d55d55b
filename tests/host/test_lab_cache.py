"""The lab's cache against real parts: apt on real (warm) lists, HTTP on a real local
server, dpkg-deb on a real package, a real tmpfs that is too small, and the CLI's
one-line errors for missing package / no network / no disk space / bad kernel package."""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from schedtop.lab import kernel
from schedtop.lab.apt import PrivateApt, Remote
from schedtop.lab.cache import LabError, cache_dir
from schedtop.lab.download import fetch_all

ROOT = Path(__file__).resolve().parents[2]
SCHEDTOP = [sys.executable, "-m", "schedtop"]
CLOSED_PORT_MIRROR = "http://127.0.0.1:9/debian"  # discard port: nothing listens, connect is refused


def schedtop(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*SCHEDTOP, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=ROOT)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.startswith("schedtop lab")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """A real HTTP server on localhost serving one file."""
    root = tmp_path_factory.mktemp("www")
    (root / "pkg_1.0_amd64.deb").write_bytes(os.urandom(300_000))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}", root
    httpd.shutdown()


def test_download_checks_then_renames(server, tmp_path: Path) -> None:
    url, root = server
    data = (root / "pkg_1.0_amd64.deb").read_bytes()
    good = Remote(f"{url}/pkg_1.0_amd64.deb", "pkg_1.0_amd64.deb", len(data), hashlib.sha256(data).hexdigest())
    [path] = fetch_all([good], tmp_path / "dl")
    assert path.read_bytes() == data
    # Already there and intact: no second download (the server could be gone).
    assert fetch_all([Remote("http://127.0.0.1:9/x", good.name, good.size, good.sha256)], tmp_path / "dl") == [path]


def test_a_corrupt_download_never_reaches_the_cache(server, tmp_path: Path) -> None:
    url, root = server
    data = (root / "pkg_1.0_amd64.deb").read_bytes()
    bad = Remote(f"{url}/pkg_1.0_amd64.deb", "pkg_1.0_amd64.deb", len(data), "0" * 64)
    with pytest.raises(LabError, match="bad download"):
        fetch_all([bad], tmp_path / "dl")
    assert list((tmp_path / "dl").iterdir()) == []  # no final file, no .part


def test_download_errors_are_one_clear_line(server, tmp_path: Path) -> None:
    url, _ = server
    with pytest.raises(LabError, match="missing package: the mirror no longer has"):
        fetch_all([Remote(f"{url}/gone.deb", "gone.deb", 1, "0" * 64)], tmp_path)
    with pytest.raises(LabError, match="no network"):
        fetch_all([Remote(f"{CLOSED_PORT_MIRROR}/x.deb", "x.deb", 1, "0" * 64)], tmp_path)


def test_missing_package_in_the_real_sid_index() -> None:
    apt = PrivateApt(cache_dir() / "apt")
    if not apt.has_lists():
        pytest.skip("no warm sid index (schedtop lab fetch)")
    with pytest.raises(LabError, match="missing package: Debian sid has no package 'schedtop-no-such-kernel'"):
        apt.show("schedtop-no-such-kernel")
    assert apt.show("linux-image-amd64")["Package"] == "linux-image-amd64"
    assert kernel.resolve_version(apt).endswith("-amd64")


def test_fetch_without_network_is_one_line(tmp_path: Path) -> None:
    proc = schedtop("lab", "fetch", env={"SCHEDTOP_CACHE": str(tmp_path), "SCHEDTOP_DEBIAN_MIRROR": CLOSED_PORT_MIRROR})
    assert one_error_line(proc).startswith("schedtop lab fetch: no network:")
    assert not (tmp_path / "kernels" / "current").exists()


def test_warm_cache_needs_no_network() -> None:
    """With the mirror unreachable, a warm cache still answers, and apt's lists are not touched."""
    k = kernel.cached()
    if k is None:
        pytest.skip("no cached lab kernel (schedtop lab fetch)")
    lists = sorted((cache_dir() / "apt" / "lists").glob("*"))
    before = [p.stat().st_mtime_ns for p in lists]
    env = {"SCHEDTOP_DEBIAN_MIRROR": CLOSED_PORT_MIRROR}
    proc = schedtop("lab", "fetch", env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"kernel {k.version}: cached" in proc.stderr
    assert schedtop("lab", "libbpf", env=env).returncode == 0
    assert [p.stat().st_mtime_ns for p in lists] == before


@pytest.mark.root
def test_no_disk_space_is_one_line(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], check=True)
    try:
        proc = schedtop("lab", "fetch", env={"SCHEDTOP_CACHE": str(mnt / "cache")})
        line = one_error_line(proc)
        assert line.startswith("schedtop lab fetch: not enough disk space in") and "MiB" in line
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def _deb(tmp_path: Path, version: str, config: str) -> Path:
    """A real .deb laid out like linux-binary/linux-base, with the given kernel config."""
    pkg = tmp_path / "pkg"
    mod = pkg / "usr" / "lib" / "modules" / version
    mod.mkdir(parents=True)
    (mod / "config").write_text(config)
    (mod / "vmlinuz").write_bytes(b"MZ" + b"\0" * 1024)
    (pkg / "DEBIAN").mkdir()
    (pkg / "DEBIAN" / "control").write_text(
        f"Package: linux-binary-{version}\nVersion: 1\nArchitecture: amd64\nMaintainer: t <t@t>\nDescription: test\n")
    out = tmp_path / f"linux-binary-{version}_1_amd64.deb"
    subprocess.run(["dpkg-deb", "-Zgzip", "-b", str(pkg), str(out)], check=True, capture_output=True)
    return out


def test_bad_kernel_packages_are_refused_and_leave_no_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDTOP_CACHE", str(tmp_path / "cache"))
    version = "9.9.9-test-amd64"
    no_scx = _deb(tmp_path / "a", version, "CONFIG_BPF=y\n# CONFIG_SCHED_CLASS_EXT is not set\n")
    with pytest.raises(LabError, match=r"bad kernel package: this kernel has no sched_ext \(CONFIG_SCHED_CLASS_EXT is not set\)"):
        kernel.install(version, [no_scx], {})
    not_zstd = _deb(tmp_path / "b", version, "CONFIG_SCHED_CLASS_EXT=y\n")
    with pytest.raises(LabError, match="bad kernel package: vmlinuz has no zstd or xz payload"):
        kernel.install(version, [not_zstd], {})
    garbage = tmp_path / "linux-modules_1_amd64.deb"
    garbage.write_bytes(b"!<arch>\nnot really")
    with pytest.raises(LabError, match="bad kernel package: dpkg-deb cannot unpack"):
        kernel.install(version, [garbage], {})
    assert list((tmp_path / "cache" / "kernels").iterdir()) == []  # no staging dirs, no `current`
    assert kernel.cached() is None


def test_libbpf_provider_and_the_binding_agree() -> None:
    """What `schedtop lab libbpf` provides is what schedtop's one binding loads."""
    from schedtop.lab import libbpf_build

    if not libbpf_build.has_headers():
        pytest.skip("no libbpf in the cache (schedtop lab libbpf)")
    probe = ("from schedtop.bpf.libbpf import find_libbpf; loc = find_libbpf(); "
             "print(loc.source, '%d.%d' % loc.version)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "SCHEDTOP_LIBBPF"})
    source, version = proc.stdout.split()
    assert tuple(map(int, version.split("."))) >= libbpf_build.MIN_VERSION
    if libbpf_build.system_is_new_enough():
        assert source == "system"
    else:
        assert source == "cache" and libbpf_build.so_version(libbpf_build.cached_lib())[:2] == tuple(
            map(int, version.split(".")))
    assert f"cache {version}" in libbpf_build.describe() or source == "system"


def test_status_and_vmlinux_h_commands() -> None:
    k = kernel.cached()
    if k is None:
        pytest.skip("no cached lab kernel (schedtop lab fetch)")
    status = schedtop("lab", "status")
    assert status.returncode == 0 and f"kernel:  {k.version}" in status.stdout
    path = schedtop("lab", "vmlinux-h")
    assert Path(path.stdout.strip()) == k.vmlinux_h
    assert "struct sched_ext_ops {" in k.vmlinux_h.read_text()
