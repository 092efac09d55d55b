"""KVM or TCG for the guest: KVM where a short probe boot shows it works, else single-threaded TCG.

/dev/kvm existing is not enough: nested under another hypervisor, QEMU can open it and
still die setting up the vCPU (this project's machines: `-cpu host` aborts on MSR 0x10a).
So the first boot of a kernel on a machine is a probe: the guest must come up under KVM
and see kvm-clock. The verdict is kept per machine (machine-id, CPU model, QEMU version)
and kernel in $SCHEDTOP_CACHE/accel.json, so later boots cost nothing to decide.
SCHEDTOP_LAB_ACCEL=tcg|kvm forces one (tcg for runs that must be comparable to TCG ones).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from schedtop.lab.cache import atomic_write_text, cache_dir, ensure_dir

KVM_DEVICE = Path("/dev/kvm")
PROBE_TIMEOUT_S = 90.0
# kvm-clock is offered only when the guest really runs on KVM (TCG has no such clocksource).
PROBE_CMD = ["sh", "-c", "grep -qw kvm-clock /sys/devices/system/clocksource/clocksource0/available_clocksource"]


@dataclass(frozen=True)
class Accel:
    kind: str    # "kvm" or "tcg"
    reason: str

    @property
    def kvm(self) -> bool:
        return self.kind == "kvm"

    def line(self) -> str:
        how = "KVM" if self.kvm else "single-threaded TCG (emulated: slow, timings are not real)"
        return f"guest accelerator: {how}: {self.reason}"


def machine_key() -> str:
    parts = []
    for path in (Path("/etc/machine-id"), Path("/proc/cpuinfo")):
        try:
            text = path.read_text()
        except OSError:
            text = ""
        if path.name == "cpuinfo":
            text = next((l for l in text.splitlines() if l.startswith("model name")), "")
        parts.append(text.strip())
    try:
        qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True,
                              timeout=10).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        qemu = ""
    parts.append(qemu)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def verdicts_path() -> Path:
    return cache_dir() / "accel.json"


def _load() -> dict[str, dict[str, str]]:
    try:
        data = json.loads(verdicts_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save(key: str, accel: Accel) -> None:
    data = _load()
    data[key] = {"kind": accel.kind, "reason": accel.reason}
    ensure_dir(verdicts_path().parent)
    atomic_write_text(verdicts_path(), json.dumps(data, indent=1, sort_keys=True) + "\n")


Probe = Callable[[object], tuple[bool, str]]


def decide(kernel, probe: Probe | None = None, device: Path = KVM_DEVICE,
           env: dict[str, str] | None = None) -> Accel:
    """KVM or TCG for this kernel on this machine, and why (one line)."""
    env = dict(os.environ) if env is None else env
    forced = env.get("SCHEDTOP_LAB_ACCEL", "")
    if forced in ("tcg", "kvm"):
        return Accel(forced, f"forced by SCHEDTOP_LAB_ACCEL={forced}")
    if not device.exists():
        return Accel("tcg", f"no {device} (no hardware virtualisation on this machine)")
    if not os.access(device, os.R_OK | os.W_OK):
        return Accel("tcg", f"{device} is not read-writable by uid {os.geteuid()} (join group kvm)")
    key = f"{machine_key()} {kernel.version}"
    saved = _load().get(key)
    if saved and saved.get("kind") in ("kvm", "tcg"):
        return Accel(saved["kind"], f"{saved.get('reason', '')} (verdict cached in {verdicts_path()})")
    ok, detail = (probe or probe_boot)(kernel)
    verdict = (Accel("kvm", f"a probe boot of {kernel.version} under KVM worked ({detail})") if ok else
               Accel("tcg", f"a probe boot of {kernel.version} under KVM failed: {detail}"))
    _save(key, verdict)
    return verdict


def probe_boot(kernel) -> tuple[bool, str]:
    """Boot the kernel once under KVM and check the guest sees kvm-clock; (worked, what was seen)."""
    from schedtop.lab import guest

    result = guest.run(PROBE_CMD, timeout=PROBE_TIMEOUT_S, kernel=kernel, out=io.BytesIO(), quiet=True,
                       accel=Accel("kvm", "probe"))
    if result.exit_code == 0:
        return True, f"guest up in {result.boot_seconds or result.total_seconds:.1f} s with kvm-clock"
    if result.timed_out:
        return False, f"no answer within {PROBE_TIMEOUT_S:.0f} s"
    if result.exit_code == 1:
        return False, "the guest came up without kvm-clock (QEMU fell back to emulation)"
    return False, qemu_error(result.log_tail) or f"the guest did not come up (exit {result.exit_code})"


def qemu_error(lines: list[str]) -> str:
    """QEMU's own complaint in a dead probe's log, e.g. `... failed to set MSR 0x10a to 0x...`."""
    keys = ("MSR", "qemu-system", "KVM", "kvm", "error", "Error")
    clean = (re.sub(r"[^\x20-\x7e]", "", line).strip() for line in lines)  # the console log has escapes
    hits = [l for l in clean if any(k in l for k in keys)]
    return hits[0][:200] if hits else ""
