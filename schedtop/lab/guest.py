"""Boot a lab kernel under QEMU (virtme-ng) and run one command in it.

KVM where a probe boot shows it works, else single-threaded TCG (schedtop/lab/accel.py).

The guest sees the host's root filesystem read-only through 9p, with virtme's
tmpfs/overlay mounts on top. The command's output and exit code travel through
files in a private --rwdir directory: with this kernel under TCG, vng's own
script I/O ports are not found by virtme-ng-init ("cannot find script I/O
ports"), so vng returns 255 and no output; the files always work. The command
runs as root, stdin /dev/null, with debugfs and tracefs already mounted.

Writable inside the guest (measured, see tests/guest/test_lab.py):
  /                                           read-only (host root over 9p)
  /tmp, /etc, /usr, /var, /home, /opt, /srv   overlays over the host dirs, kept in guest RAM
  /run, /dev/shm, /var/tmp, /var/log, /var/cache, /var/lib/apt   fresh tmpfs (host content hidden)
  $HOME and the checkout                      overlays we add (--overlay-rwdir): writes stay in the guest
  the --rwdir directory, and cwd/venv/cache   9p read-write: writes reach the host
    when they sit under one of the tmpfs dirs above (exported so the guest can see them)
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from schedtop.lab.accel import Accel
from schedtop.lab.cache import LabError, cache_dir
from schedtop.lab.kernel import Kernel, require_cached
from schedtop.lab.progress import console

CPUS = 2
MEMORY = "2G"
# See vng_command. SCHEDTOP_LAB_TCG=multi brings back QEMU's multi-threaded TCG (faster, but
# it panics on sched_ext load/unload now and then): for experiments, never for the test suite.
QEMU_ACCEL = f"-accel tcg,thread={'multi' if os.environ.get('SCHEDTOP_LAB_TCG') == 'multi' else 'single'}"
# tmpfs mounts virtme puts over host dirs: host paths under them are invisible unless exported.
HIDDEN_IN_GUEST = ("/run", "/dev/shm", "/var/tmp", "/var/log", "/var/cache", "/var/lib/apt", "/var/lib/private")
# Environment carried into the guest command (besides PATH/HOME/cwd, which are set explicitly).
# Never COLUMNS/LINES: Textual would prefer them to the guest console's real size.
PASS_ENV_PREFIXES = ("SCHEDTOP_", "PYTEST_", "PYTHON", "LANG", "LC_", "TERM", "NO_COLOR")
EXIT_TIMEOUT = 124
EXIT_NO_RESULT = 125


@dataclass(frozen=True)
class GuestResult:
    exit_code: int
    boot_seconds: float | None  # from starting vng to the command starting in the guest
    total_seconds: float
    timed_out: bool = False
    log_tail: list[str] = field(default_factory=list)


def venv_bin() -> Path:
    """The bin dir of the Python running schedtop (not resolved: a venv's python is a symlink)."""
    return Path(sys.executable).parent


def checkout_root() -> Path:
    import schedtop

    return Path(schedtop.__file__).resolve().parents[1]


def find_vng() -> Path:
    vng = venv_bin() / "vng"
    if vng.is_file():
        return vng
    found = shutil.which("vng")
    if found:
        return Path(found)
    raise LabError("virtme-ng (vng) is not installed in this venv: pip install 'schedtop[lab]' (make venv)")


def check_host_tools() -> None:
    missing = [t for t in ("qemu-system-x86_64", "busybox") if shutil.which(t) is None]
    if missing:
        pkgs = {"qemu-system-x86_64": "qemu-system-x86", "busybox": "busybox-static"}
        raise LabError(f"missing {', '.join(missing)}: install Debian's {' '.join(pkgs[m] for m in missing)} (make deps)")


def _under(path: Path, prefixes: tuple[str, ...]) -> bool:
    return any(str(path) == p or str(path).startswith(p + "/") for p in prefixes)


def guest_environment() -> dict[str, str]:
    """The environment guest commands run with: ours, minus what does not belong in the guest."""
    env = {k: v for k, v in os.environ.items() if k.startswith(PASS_ENV_PREFIXES)}
    env.update({
        "HOME": str(Path.home()),
        "SCHEDTOP_CACHE": str(cache_dir()),
        "SCHEDTOP_GUEST": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        # The venv's python, schedtop and pytest must win over the system's.
        "PATH": f"{venv_bin()}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    })
    return env


def guest_script(cmd: list[str], rwdir: Path, cwd: Path) -> str:
    env = guest_environment()
    exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items()))
    out, rc = shlex.quote(str(rwdir / "out")), shlex.quote(str(rwdir / "rc"))
    return f"""#!/bin/sh
# Written by schedtop lab run; executed by the guest's init as root.
{exports}
date +%s.%N > {shlex.quote(str(rwdir / 'started'))}
cd {shlex.quote(str(cwd))} || {{ echo "schedtop lab: cannot cd to {cwd} in the guest" > {out}; echo 125 > {rc}; exit 125; }}
{shlex.join(cmd)} > {out} 2>&1 < /dev/null
echo $? > {rc}.part && mv {rc}.part {rc}
sync
"""


def vng_command(kernel: Kernel, rwdir: Path, cwd: Path, exec_cmd: str | None, accel: Accel | None = None) -> list[str]:
    kvm = accel is not None and accel.kvm
    cmd = [str(find_vng()), "--run", str(kernel.vmlinuz), *([] if kvm else ["--disable-kvm"]), "--cpus", str(CPUS),
           "--memory", MEMORY, "--rwdir", str(rwdir), "--cwd", str(cwd),
           "--user", "root"]  # root in the guest whoever runs us: loading a scheduler needs it
    exported: list[Path] = []
    for path in (cwd, checkout_root(), venv_bin().parent, cache_dir()):
        if _under(path, HIDDEN_IN_GUEST) and not any(_under(path, (str(e),)) for e in exported):
            cmd += ["--rwdir", str(path)]  # behind a guest tmpfs: export it explicitly
            exported.append(path)
    # Read-only host dirs made writable in the guest (writes stay in guest RAM).
    for path in {Path.home(), checkout_root()}:
        if not _under(path, ("/tmp", "/home", "/usr", "/var", "/etc", "/opt", "/srv", *HIDDEN_IN_GUEST)):
            cmd += ["--overlay-rwdir", str(path)]
    # One host thread for both vCPUs. With multi-threaded TCG (QEMU's default) the guest
    # panics with "Oops: int3" in update_rq_clock after 17-55 sched_ext load/unload cycles:
    # each load flips static keys (text_poke_bp's int3), and the other vCPU still runs a
    # stale translation with the int3 in it. Single-threaded TCG: 0 panics in 150 cycles,
    # about 1.6x slower per cycle (tests/guest/test_lab.py, BENCHMARKS.md "Kernel lab").
    # Under KVM, vng adds `-machine accel=kvm:tcg -cpu host` itself (real vCPU threads).
    if not kvm:
        cmd += [f"--qemu-opts={QEMU_ACCEL}"]
    if exec_cmd is not None:
        cmd += ["--verbose", "--exec", exec_cmd]  # the console goes to vng.log: panics are shown
    return cmd


def vng_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{venv_bin()}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    return env


def run(cmd: list[str], timeout: float = 900.0, cwd: Path | None = None, kernel: Kernel | None = None,
        out: BinaryIO | None = None, quiet: bool = False, accel: Accel | None = None) -> GuestResult:
    """Boot, run cmd as root in the guest, stream its output to `out`, return its exit code.

    accel: None decides (probe boot once per machine and kernel) and says which in one line."""
    if not cmd:
        raise LabError("no command given: schedtop lab run -- CMD...")
    kernel = kernel or require_cached()
    check_host_tools()
    if accel is None:
        from schedtop.lab.accel import decide

        accel = decide(kernel)
        if not quiet:
            console.print(f"[dim]{accel.line()}[/]", markup=True)
    cwd = (cwd or Path.cwd()).resolve()
    out = out or sys.stdout.buffer
    rwdir = Path(tempfile.mkdtemp(prefix="schedtop-lab-"))
    try:
        script = rwdir / "run.sh"
        script.write_text(guest_script(cmd, rwdir, cwd))
        argv = vng_command(kernel, rwdir, cwd, f"sh {shlex.quote(str(script))}", accel)
        what = f"{kernel.version}, {CPUS} vCPUs, {MEMORY}, {'KVM' if accel.kvm else 'TCG'}"
        return _boot_and_stream(argv, rwdir, timeout, out, quiet, what)
    finally:
        shutil.rmtree(rwdir, ignore_errors=True)


def _boot_and_stream(argv: list[str], rwdir: Path, timeout: float, out: BinaryIO, quiet: bool,
                     what: str) -> GuestResult:
    log_path = rwdir / "vng.log"
    start = time.monotonic()
    with log_path.open("wb") as log:
        # Own session: on timeout the whole group (vng and its qemu child) is killed by our pid.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=vng_env(), start_new_session=True)
    boot_seconds: float | None = None
    offset = 0
    timed_out = False
    status = None
    spinner = None if quiet else console.status(f"booting the guest ({what})…")
    try:
        if spinner:
            spinner.start()
        while True:
            status = proc.poll()
            if boot_seconds is None and (rwdir / "started").exists():
                boot_seconds = time.monotonic() - start
                if spinner:
                    spinner.stop()
                    spinner = None
                    console.print(f"[dim]guest booted: command started after {boot_seconds:.1f} s[/]")
            offset = _pump(rwdir / "out", offset, out)
            if status is not None:
                break
            if time.monotonic() - start > timeout:
                timed_out = True
                _kill_group(proc)
                break
            time.sleep(0.1)
    except KeyboardInterrupt:
        _kill_group(proc)
        raise
    finally:
        if spinner:
            spinner.stop()
    _pump(rwdir / "out", offset, out)
    total = time.monotonic() - start
    tail = log_path.read_text(errors="replace").splitlines()[-15:]
    if timed_out and not quiet:
        console.print(f"[red]schedtop lab: the guest command did not finish within {timeout:.0f} s; "
                      f"qemu was killed[/]")
    if timed_out:
        return GuestResult(EXIT_TIMEOUT, boot_seconds, total, True, tail)
    try:
        code = int((rwdir / "rc").read_text().strip())
    except (OSError, ValueError):
        how = f"vng killed by signal {-status}" if status is not None and status < 0 else f"vng exit {status}"
        if quiet:
            return GuestResult(EXIT_NO_RESULT, boot_seconds, total, False, tail)
        console.print("[red]schedtop lab: the guest stopped before the command finished "
                      f"(boot failure or kernel panic; {how}); last lines of its log:[/]")
        for line in _crash_lines(log_path):
            console.print(f"  {line}", markup=False)
        return GuestResult(EXIT_NO_RESULT, boot_seconds, total, False, tail)
    return GuestResult(code, boot_seconds, total, False, tail)


def _crash_lines(log_path: Path, most: int = 40) -> list[str]:
    """The kernel's own account of a dead guest: from the first Oops/BUG/panic line on, else the tail."""
    lines = log_path.read_text(errors="replace").splitlines()
    for i, line in enumerate(lines):
        if any(k in line for k in ("Oops:", "BUG:", "Kernel panic", "general protection fault")):
            return lines[i:i + most]
    return lines[-15:]


def _pump(path: Path, offset: int, out: BinaryIO) -> int:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return offset
    if data:
        out.write(data)
        out.flush()
    return offset + len(data)


def _kill_group(proc: subprocess.Popen) -> None:
    """TERM the group (vng, virtme-run, qemu), give it a moment, then KILL whatever is left of it.

    Returns only when no live member is left: vng itself dies at once on TERM, while its
    children (virtme-run, qemu) may still be running or handling a pending KILL; a caller
    that returned then would leave them behind for a moment (a test saw two of them alive)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    _wait_group_gone(proc.pid, 5.0)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    _wait_group_gone(proc.pid, 10.0)


def _live_group_members(pgid: int) -> list[int]:
    """Pids in process group pgid that are not zombies (a zombie runs nothing and is its parent's to reap)."""
    live = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_bytes()
        except OSError:
            continue
        # After the command name (which may hold spaces or parens): state ppid pgrp ...
        state, _ppid, pgrp = stat[stat.rfind(b")") + 2:].split()[:3]
        if int(pgrp) == pgid and state not in (b"Z", b"X"):
            live.append(int(entry.name))
    return live


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _live_group_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
