"""`schedtop demo`: watch (and drive) a real sched_ext scheduler without rebooting.

On a kernel without sched_ext it boots the lab guest *interactively* in this
terminal: vng without --exec, with our script as the guest user's shell
(virtme_shell), so the TUI gets a real console with the host's TERM and window
size (--exec would leave it no terminal). The script starts a demo workload —
CPU hogs plus a periodic interactive task — optionally a scheduler, then
schedtop; quitting schedtop powers the guest off. Where the host kernel has
sched_ext already, the same runs locally.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from schedtop.lab.cache import LabError
from schedtop.lab.minimal import sched_ext_state

# Hogs: one more than the guest's CPUs so something always waits in a queue.
HOGS = ["stress-ng", "--cpu", "3", "--quiet"]
# Interactive: wakes every 50 ms, computes briefly, sleeps; the task whose latency a scheduler should protect.
INTERACTIVE = ["sh", "-c", "while :; do i=0; while [ $i -lt 300 ]; do i=$((i+1)); done; sleep 0.05; done"]
SCHEDULERS = ("minimal", "scx", "none")
WORKLOAD_DELAY_S = 20


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Boot the lab guest (a Debian sid kernel with sched_ext) in this terminal and run "
                          "schedtop on a demo workload: CPU hogs plus a periodic interactive task. "
                          "Quit schedtop (q) to power the guest off.")
    parser.add_argument("--scheduler", choices=SCHEDULERS, default=None,
                        help="sched_ext scheduler to run under the workload: minimal (schedtop_min, the default "
                             "in the guest), scx (schedtop's embedded Python scheduler) or none "
                             "(the default when running locally)")
    parser.add_argument("--local", action="store_true", help="run here even if this kernel has no sched_ext")
    from schedtop.lab.cli import add_kernel_option

    add_kernel_option(parser)
    parser.add_argument("--shell", action="store_true", help="after schedtop exits, stay in a root shell in the guest")
    parser.add_argument("schedtop_args", nargs=argparse.REMAINDER, metavar="-- ARGS",
                        help="extra arguments for schedtop (e.g. -- -d 0.5)")


def run(args: argparse.Namespace) -> int:
    extra = args.schedtop_args[1:] if args.schedtop_args[:1] == ["--"] else args.schedtop_args
    try:
        if args.kernel is None and (sched_ext_state() is not None or args.local):
            return run_local(args.scheduler or "none", extra)
        return run_guest(args.scheduler, extra, args.shell, args.kernel)
    except LabError as exc:
        print(f"schedtop demo: {exc}", file=sys.stderr)
        return 1


def scheduler_command(name: str, python: str) -> list[str] | None:
    if name == "minimal":
        return [python, "-m", "schedtop.lab.minimal"]
    if name == "scx":
        return [python, "-m", "schedtop", "scx"]
    return None


def demo_script(scheduler: str, schedtop_args: list[str], stay_in_shell: bool, log: Path) -> str:
    """The guest user's shell: workload, scheduler, schedtop in the foreground, then cleanup."""
    from schedtop.lab.guest import checkout_root, guest_environment, venv_bin

    python = str(venv_bin() / "python")
    # TERM and the window size come from vng (the console it set up), not from our environment.
    env = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(guest_environment().items()) if k != "TERM")
    sched = scheduler_command(scheduler, python)
    if sched and scheduler == "scx":
        # The kernel's longest watchdog (30 s), not the default 5 s: the guest is emulated
        # (TCG) and a busy host stalls it for seconds, and the kernel then ejected the demo's
        # scheduler ("runnable task stall ... 6.356s" in a host test run on a loaded machine).
        sched += ["--timeout-ms", "30000"]
    # The scheduler loads while schedtop starts (both take ~20 s of TCG); schedtop's
    # header shows the switch to sched_ext when it happens.
    # Its stdout (schedtop scx prints a stats line a second) would draw over the TUI: only errors are kept.
    sched_line = f"{shlex.join(sched)} >/dev/null 2>{shlex.quote(str(log))} &\nSCHED=$!\n" if sched else "SCHED=\n"
    end = "exec /bin/bash -i" if stay_in_shell else "poweroff -f >/dev/null 2>&1"
    # Python starts slowly under TCG (~20 s for Textual over 9p); the workload starts
    # once schedtop is drawing, so the TUI is not starved on the way up.
    return f"""#!/bin/sh
# schedtop demo: runs as the guest's login shell (virtme_shell).
{env}
cd {shlex.quote(str(checkout_root()))}
echo "schedtop demo: sched_ext kernel $(uname -r); loading the scheduler ({scheduler})…"
{sched_line}echo "starting schedtop; the workload (CPU hogs + a periodic interactive task) follows in {WORKLOAD_DELAY_S} s…"
(sleep {WORKLOAD_DELAY_S}; exec {shlex.join(HOGS)}) &
HOGS=$!
(sleep {WORKLOAD_DELAY_S}; exec {shlex.join(INTERACTIVE)}) &
INTERACTIVE=$!
{shlex.join([str(venv_bin() / 'schedtop'), *schedtop_args])}
kill $HOGS $INTERACTIVE $SCHED 2>/dev/null
wait 2>/dev/null
{end}
"""


def run_guest(scheduler: str | None, schedtop_args: list[str], stay_in_shell: bool, spec: str | None = None) -> int:
    from schedtop.lab import kernel
    from schedtop.lab.accel import decide
    from schedtop.lab.guest import check_host_tools, vng_command, vng_env

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise LabError("the demo needs a terminal (it runs schedtop's TUI inside the guest)")
    k = kernel.fetch(spec=spec)
    if scheduler in ("minimal", "scx") and not k.sched_ext:
        raise LabError(f"kernel {k.label()} has no sched_ext: no --scheduler {scheduler} there "
                       "(use --scheduler none, or a kernel from 6.14 on)")
    scheduler = scheduler or ("minimal" if k.sched_ext else "none")
    check_host_tools()
    accel = decide(k)
    why = (f"this kernel ({os.uname().release}) has no sched_ext" if spec is None
           else f"--kernel {spec}")
    print(f"schedtop demo: {why}; booting the lab guest ({k.label()}, {'KVM' if accel.kvm else 'TCG'}, "
          f"{'~5' if accel.kvm else '~15'} s)…\nschedtop demo: {accel.line()}", file=sys.stderr)
    rwdir = Path(tempfile.mkdtemp(prefix="schedtop-demo-"))
    try:
        script = rwdir / "demo.sh"
        log = rwdir / "scheduler.log"  # in the --rwdir: what the guest writes here reaches us
        script.write_text(demo_script(scheduler, schedtop_args, stay_in_shell, log))
        script.chmod(0o755)
        argv = vng_command(k, rwdir, Path.cwd(), exec_cmd=None, accel=accel) + ["--shell", str(script)]
        # Interactive: vng owns this terminal until the guest powers off.
        code = subprocess.call(argv, env=vng_env())
        errors = log.read_text(errors="replace").strip() if log.exists() else ""
        if errors:
            print(f"schedtop demo: the {scheduler} scheduler said:\n{errors[-2000:]}", file=sys.stderr)
        return code
    finally:
        shutil.rmtree(rwdir, ignore_errors=True)


def run_local(scheduler: str, schedtop_args: list[str]) -> int:
    from schedtop.lab.guest import venv_bin

    state = sched_ext_state()
    if state is not None:
        print(f"schedtop demo: this kernel has sched_ext (state: {state}); running the demo here, no guest needed",
              file=sys.stderr)
    else:
        print("schedtop demo: running locally (--local) on a kernel without sched_ext", file=sys.stderr)
    procs = [subprocess.Popen(HOGS, start_new_session=True), subprocess.Popen(INTERACTIVE, start_new_session=True)]
    sched = scheduler_command(scheduler, str(venv_bin() / "python"))
    if sched:
        procs.append(subprocess.Popen(sched, stdout=subprocess.DEVNULL, start_new_session=True))  # not over the TUI
    try:
        return subprocess.call([str(venv_bin() / "schedtop"), *schedtop_args])
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            p.wait()
