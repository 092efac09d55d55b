"""KVM or TCG: the decision, with the real probe boot of this machine.

Here /dev/kvm exists but nested KVM fails (QEMU: `failed to set MSR 0x10a`), so only the
fallback path can be shown end to end; on a machine where KVM works the same test checks
that the probe chose it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from schedtop.lab import accel, kernel
from schedtop.lab.guest import vng_command


REAL_KERNEL = kernel.cached()  # read before a fixture points SCHEDTOP_CACHE elsewhere


def _no_boot(_k: object) -> tuple[bool, str]:
    raise AssertionError("a probe boot ran where the decision needed none")


@pytest.fixture
def verdicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SCHEDTOP_LAB_ACCEL", raising=False)
    monkeypatch.setenv("SCHEDTOP_CACHE", str(tmp_path / "cache"))  # a fresh verdict store; kernels by path
    return tmp_path / "cache" / "accel.json"


def test_the_real_probe_decides_and_its_verdict_is_kept(verdicts: Path) -> None:
    k = REAL_KERNEL
    if k is None or not accel.KVM_DEVICE.exists():
        pytest.skip("needs a cached lab kernel and /dev/kvm")
    first = accel.decide(k)
    if first.kvm:
        assert "under KVM worked" in first.reason and "kvm-clock" in first.reason
    else:  # this machine: nested KVM dies in QEMU before the guest starts
        assert first.reason.startswith(f"a probe boot of {k.version} under KVM failed: ")
        assert "qemu-system-x86_64" in first.reason or "kvm-clock" in first.reason or "no answer" in first.reason
        assert first.line().startswith("guest accelerator: single-threaded TCG")
    assert verdicts.is_file()
    again = accel.decide(k, probe=_no_boot)  # cached: no second boot
    assert again.kind == first.kind and "verdict cached in" in again.reason
    argv = vng_command(k, verdicts.parent, Path.cwd(), "true", again)
    assert ("--disable-kvm" in argv) is (not again.kvm)
    assert ("--qemu-opts=-accel tcg,thread=single" in argv) is (not again.kvm)


def test_no_usable_device_means_tcg_without_a_probe(verdicts: Path, tmp_path: Path) -> None:
    k = kernel.Kernel("9.9.9-amd64", tmp_path)
    missing = accel.decide(k, probe=_no_boot, device=tmp_path / "kvm")
    assert missing.kind == "tcg" and "no " in missing.reason and "kvm" in missing.reason
    unreadable = tmp_path / "kvm-locked"
    unreadable.write_text("")
    unreadable.chmod(0)
    if os.geteuid() != 0:  # root reads a mode-0 file anyway
        assert "not read-writable" in accel.decide(k, probe=_no_boot, device=unreadable).reason
    assert not verdicts.exists()  # nothing probed, nothing cached


def test_forced_accelerator_and_a_verdict_per_kernel(verdicts: Path, tmp_path: Path) -> None:
    k1, k2 = kernel.Kernel("9.9.1-amd64", tmp_path), kernel.Kernel("9.9.2-amd64", tmp_path)
    assert accel.decide(k1, probe=_no_boot, env={"SCHEDTOP_LAB_ACCEL": "tcg"}).kind == "tcg"
    device = tmp_path / "kvm"
    device.write_text("")  # a readable stand-in: the probe below is the part under test
    assert accel.decide(k1, probe=lambda _k: (True, "guest up"), device=device, env={}).kvm
    assert not accel.decide(k2, probe=lambda _k: (False, "qemu: error"), device=device, env={}).kvm
    assert accel.decide(k1, probe=_no_boot, device=device, env={}).kvm  # each kernel keeps its own verdict
    assert not accel.decide(k2, probe=_no_boot, device=device, env={}).kvm
