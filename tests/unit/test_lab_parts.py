"""Lab building blocks on real inputs: apt source files, kernel configs, ELF files,
the guest script run by a real shell, and the vng command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from schedtop.lab import kernel
from schedtop.lab.apt import system_mirror
from schedtop.lab.cache import LabError
from schedtop.lab.guest import guest_script, vng_command


def test_system_mirror_reads_deb822_and_skips_security(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCHEDTOP_DEBIAN_MIRROR", raising=False)
    src = tmp_path / "debian.sources"
    src.write_text("Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n"
                   "Components: main\n\nTypes: deb\nURIs: http://mirror.invalid/debian/\nSuites: bookworm\n")
    assert system_mirror((src,)) == "http://mirror.invalid/debian"


def test_system_mirror_reads_one_line_format_and_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCHEDTOP_DEBIAN_MIRROR", raising=False)
    src = tmp_path / "sources.list"
    src.write_text("# comment\ndeb [arch=amd64] http://m.invalid/debian bookworm main\n")
    assert system_mirror((src,)) == "http://m.invalid/debian"
    with pytest.raises(LabError, match="no Debian mirror"):
        system_mirror((tmp_path / "absent.sources",))
    monkeypatch.setenv("SCHEDTOP_DEBIAN_MIRROR", "http://127.0.0.1:9/debian/")
    assert system_mirror((src,)) == "http://127.0.0.1:9/debian"


def test_this_machine_has_a_debian_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCHEDTOP_DEBIAN_MIRROR", raising=False)
    assert system_mirror().startswith(("http://", "https://", "file:"))


@pytest.mark.parametrize("line", ["# CONFIG_SCHED_CLASS_EXT is not set", "CONFIG_SCHED_CLASS_EXT=m", ""])
def test_check_config_refuses_a_kernel_without_sched_ext(tmp_path: Path, line: str) -> None:
    config = tmp_path / "config"
    config.write_text(f"CONFIG_BPF=y\n{line}\nCONFIG_DEBUG_INFO_BTF=y\n")
    with pytest.raises(LabError, match="bad kernel package: this kernel has no sched_ext"):
        kernel.check_config(config)


def test_check_config_accepts_sched_ext(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("CONFIG_BPF=y\nCONFIG_SCHED_CLASS_EXT=y\n")
    assert kernel.check_config(config) == "CONFIG_SCHED_CLASS_EXT=y"
    with pytest.raises(LabError, match="no kernel config"):
        kernel.check_config(tmp_path / "missing")


def test_elf_section_names_of_real_binaries() -> None:
    names = kernel.elf_section_names(Path(os.path.realpath(sys.executable)))
    assert {".text", ".dynsym"} <= names
    k = kernel.cached()
    if k is not None:
        assert ".BTF" in kernel.elf_section_names(k.vmlinux)


def test_extract_vmlinux_refuses_what_is_not_a_kernel(tmp_path: Path) -> None:
    plain = tmp_path / "vmlinuz"
    plain.write_bytes(b"MZ" + os.urandom(4096))
    with pytest.raises(LabError, match="no zstd or xz payload"):
        kernel.extract_vmlinux(plain, tmp_path / "vmlinux")
    text = tmp_path / "payload"
    text.write_bytes(b"not an elf\n" * 100)
    packed = subprocess.run(["zstd", "-c", str(text)], capture_output=True, check=True).stdout
    (tmp_path / "vmlinuz2").write_bytes(b"MZ header\0" + packed + b"trailing")
    with pytest.raises(LabError, match="not an ELF"):
        kernel.extract_vmlinux(tmp_path / "vmlinuz2", tmp_path / "vmlinux")
    assert not list(tmp_path.glob("vmlinux*"))  # nothing half-written left behind


def test_extract_vmlinux_from_the_cached_kernel(tmp_path: Path) -> None:
    k = kernel.cached()
    if k is None:
        pytest.skip("no cached lab kernel (schedtop lab fetch)")
    out = tmp_path / "vmlinux"
    kernel.extract_vmlinux(k.vmlinuz, out)
    assert out.read_bytes()[:4] == b"\x7fELF" and out.stat().st_size == k.vmlinux.stat().st_size


def test_guest_script_captures_output_and_exit_code(tmp_path: Path) -> None:
    """The script the guest runs, run by a real shell here: same files, same exit code."""
    cmd = [sys.executable, "-c", "import os, sys; print('out', os.getcwd()); print('err', file=sys.stderr); sys.exit(7)"]
    script = tmp_path / "run.sh"
    script.write_text(guest_script(cmd, tmp_path, tmp_path))
    subprocess.run(["sh", str(script)], check=True, timeout=60)
    assert (tmp_path / "rc").read_text().strip() == "7"
    assert (tmp_path / "out").read_text().splitlines() == [f"out {tmp_path}", "err"]
    assert (tmp_path / "started").is_file()


def test_guest_script_reports_a_missing_cwd(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text(guest_script(["true"], tmp_path, tmp_path / "gone"))
    subprocess.run(["sh", str(script)], timeout=60)
    assert (tmp_path / "rc").read_text().strip() == "125"
    assert "cannot cd" in (tmp_path / "out").read_text()


def test_vng_command_line(tmp_path: Path) -> None:
    k = kernel.Kernel("7.2.13+deb14-amd64", tmp_path)
    argv = vng_command(k, tmp_path, Path("/work"), "sh run.sh")
    joined = " ".join(argv)
    assert "--disable-kvm --cpus 2 --memory 2G" in joined
    assert argv[argv.index("--run") + 1] == str(k.vmlinuz)
    assert argv[argv.index("--rwdir") + 1] == str(tmp_path)
    assert argv[-2:] == ["--exec", "sh run.sh"]
    # single-threaded TCG (multi-threaded TCG panics on sched_ext's static-key flips) and the
    # guest console kept for the crash report
    assert "--qemu-opts=-accel tcg,thread=single" in argv and "--verbose" in argv
    assert "--overlay-rwdir" in argv  # HOME / the checkout become writable in the guest
    assert "--exec" not in vng_command(k, tmp_path, Path("/work"), None)


@pytest.mark.parametrize("bad", ["-5", "0", "nan", "abc"])
def test_lab_run_refuses_a_timeout_that_is_no_deadline(bad: str) -> None:
    # Refused by the parser, before any guest boots (a negative one used to boot and then
    # report "did not finish within -5 s").
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "schedtop", "lab", "run", f"--timeout={bad}", "--", "true"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--timeout" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_version_order_and_spec_matching() -> None:
    from schedtop.lab.catalog import matches, upstream, version_key

    ordered = ["6.1.176", "6.9.1", "6.12.117", "6.18.15", "7.3~rc7", "7.3", "7.3.4"]
    assert sorted(ordered, key=version_key) == ordered
    assert upstream("7.3.4-1~bpo13+1") == "7.3.4" and upstream("7.3~rc7-1~exp1") == "7.3~rc7"
    assert upstream("6.1.176-1") == "6.1.176"
    assert matches("7.3", "7.3.4", "7.3.4+deb13-amd64") and matches("7.3", "7.3~rc7", "7.3-amd64")
    assert matches("6.1", "6.1.176", "6.1.0-50-amd64") and not matches("6.1", "6.18.15", "6.18.15+deb13-amd64")
    assert not matches("7.3", "7.30.1", "7.30.1-amd64")
    assert matches("6.1.0-50-amd64", "6.1.176", "6.1.0-50-amd64")


def test_pick_takes_the_newest_bootable_and_names_what_an_unbootable_one_lacks() -> None:
    from schedtop.lab.catalog import Offer, pick

    rc = Offer("experimental", "7.3-amd64", "7.3~rc7", "split", ("linux-binary-7.3-amd64",), 1)
    final = Offer("trixie-backports", "7.3.4+deb13-amd64", "7.3.4", "split", ("linux-binary-7.3.4+deb13-amd64",), 1)
    leftover = Offer("trixie-backports", "7.1.13+deb13-amd64", "7.1.13", "split",
                     ("linux-binary-7.1.13+deb13-amd64",), 1,
                     ("linux-base-7.1.13+deb13-amd64", "linux-modules-7.1.13+deb13-amd64"))
    assert pick("7.3", [rc, final, leftover]) == final
    assert pick("7.3-amd64", [rc, final]) == rc
    assert final.sched_ext and not Offer("trixie", "6.12.1-amd64", "6.12.1", "image", (), 1).sched_ext
    with pytest.raises(LabError, match=r"kernel 7.1.13: the trixie-backports index has no "
                                       r"linux-base-7.1.13\+deb13-amd64, linux-modules-7.1.13\+deb13-amd64"):
        pick("7.1", [leftover, final])
    with pytest.raises(LabError, match="no kernel matches '5.10'"):
        pick("5.10", [rc, final])


def test_matrix_reads_real_pytest_output_and_writes_the_readme_table(tmp_path: Path) -> None:
    from schedtop.lab import matrix

    (tmp_path / "test_t.py").write_text(
        "import pytest, time\n"
        "def test_ok():\n    time.sleep(0.01)\n"
        "def test_bad():\n    assert 1 == 2\n"
        "@pytest.mark.skip(reason='no sched_ext')\ndef test_skipped():\n    pass\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "--durations=0",
                           "--durations-min=0", str(tmp_path / "test_t.py")], capture_output=True, text=True,
                          cwd=tmp_path)
    outcomes, seconds = matrix.parse_pytest(proc.stdout)
    assert outcomes == {"test_ok": "PASSED", "test_bad": "FAILED", "test_skipped": "SKIPPED"}
    assert seconds["test_ok"] >= 0.01
    r = matrix.KernelResult("bookworm", "6.1.0-50-amd64", "6.1.176", "bookworm", False, "tcg", 15.1, 70.3,
                            60.2, 80.4, 140.6, 1, outcomes, seconds)
    doc = {"when": "2026-12-03 16:00 UTC", "cpus": 2, "loadavg": [3.0], "total_s": 140.6,
           "kernels": [matrix.asdict(r)]}
    row = matrix.table(doc).splitlines()[-1]
    assert row == "| 6.1.176 | bookworm | no | 1 | 1 | 1 | 15 | 60 | 80 | test_bad |"
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{matrix.README_BEGIN}\nold\n{matrix.README_END}\n\nafter\n")
    matrix.update_readme(readme, doc)
    text = readme.read_text()
    assert "old" not in text and row in text and text.endswith(f"{matrix.README_END}\n\nafter\n")
    readme.write_text("no markers\n")
    with pytest.raises(LabError, match="has no kernels table markers"):
        matrix.update_readme(readme, doc)
