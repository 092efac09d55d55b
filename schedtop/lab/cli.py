"""`schedtop lab`: fetch, provide libbpf, boot and run, vmlinux.h, status."""

from __future__ import annotations

import argparse
import shutil
import sys

from schedtop.lab.cache import LabError, cache_dir


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("cache: $SCHEDTOP_CACHE (default ~/.cache/schedtop). "
                     "Example: schedtop lab run -- cat /sys/kernel/sched_ext/state")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("fetch", help="download Debian sid's sched_ext kernel into the cache (no network when cached)")
    p.add_argument("--refresh", action="store_true", help="update sid's index and fetch a newer kernel if there is one")
    p = sub.add_parser("libbpf", help="provide libbpf >= 1.4 (system's, else built from Debian's source package)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the cached libbpf even if present")
    p = sub.add_parser("run", help="boot the guest and run CMD in it as root; exits with CMD's code")
    p.add_argument("--timeout", type=_seconds, default=900.0, metavar="S",
                   help="kill the guest after S seconds (default 900)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD...", help="the command to run")
    p = sub.add_parser("vmlinux-h", help="print the path of the cached kernel's vmlinux.h (or install it)")
    p.add_argument("--install", action="store_true",
                   help="copy it over the checkout's bpf/vmlinux/x86/vmlinux.h")
    sub.add_parser("status", help="what the cache holds")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:  # also refuses nan: a guest must always have a deadline
        raise argparse.ArgumentTypeError(f"must be > 0 seconds: {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    try:
        return ACTIONS[args.action](args)
    except LabError as exc:
        print(f"schedtop lab {args.action}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"schedtop lab {args.action}: interrupted", file=sys.stderr)
        return 130


def _fetch(args: argparse.Namespace) -> int:
    from schedtop.lab import kernel

    kernel.fetch(refresh=args.refresh)
    return 0


def _libbpf(args: argparse.Namespace) -> int:
    from schedtop.lab import libbpf_build

    libbpf_build.provide(rebuild=args.rebuild)
    return 0


def _run(args: argparse.Namespace) -> int:
    from schedtop.lab import guest

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    result = guest.run(cmd, timeout=args.timeout)
    return result.exit_code


def _vmlinux_h(args: argparse.Namespace) -> int:
    from schedtop.lab import kernel

    k = kernel.require_cached()
    if not k.vmlinux_h.is_file():
        kernel.generate_vmlinux_h(k.vmlinux, k.vmlinux_h)
    if args.install:
        dest = kernel.checkout_vmlinux_h()
        if dest is None:
            raise LabError("no source checkout here (bpf/vmlinux/x86/ missing); run from a git checkout")
        shutil.copyfile(k.vmlinux_h, dest)
        print(f"{dest}: from kernel {k.version}")
    else:
        print(k.vmlinux_h)
    return 0


def _status(args: argparse.Namespace) -> int:
    from schedtop.lab import kernel, libbpf_build

    print(f"cache:   {cache_dir()}")
    k = kernel.cached()
    print(f"kernel:  {k.version} ({k.dir})" if k else "kernel:  none (schedtop lab fetch)")
    print(f"libbpf:  {libbpf_build.describe()}")
    return 0


ACTIONS = {"fetch": _fetch, "libbpf": _libbpf, "run": _run, "vmlinux-h": _vmlinux_h, "status": _status}
