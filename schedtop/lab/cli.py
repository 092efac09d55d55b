"""`schedtop lab`: list kernels, fetch, provide libbpf, boot and run, vmlinux.h, status."""

from __future__ import annotations

import argparse
import shutil
import sys

from schedtop.lab.cache import LabError, cache_dir


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("cache: $SCHEDTOP_CACHE (default ~/.cache/schedtop). "
                     "Example: schedtop lab run -- cat /sys/kernel/sched_ext/state")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("kernels", help="list the Debian kernels the lab can fetch and boot (suite, version, "
                                       "sched_ext, cached, download size)")
    p.add_argument("--refresh", action="store_true", help="update every suite's index first")
    p.add_argument("--json", action="store_true", help="one JSON object per kernel")
    p.add_argument("--all", action="store_true", help="every version in the indexes, not only each line's newest")
    p = sub.add_parser("fetch", help="download a Debian kernel into the cache (no network when cached)")
    add_kernel_option(p)
    p.add_argument("--refresh", action="store_true", help="update the suite's index and fetch a newer kernel if there is one")
    p = sub.add_parser("libbpf", help="provide libbpf >= 1.4 (system's, else built from Debian's source package)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the cached libbpf even if present")
    p = sub.add_parser("run", help="boot the guest and run CMD in it as root; exits with CMD's code")
    add_kernel_option(p)
    p.add_argument("--timeout", type=_seconds, default=900.0, metavar="S",
                   help="kill the guest after S seconds (default 900)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD...", help="the command to run")
    p = sub.add_parser("matrix", help="the smoke set (tests/guest/smoke) in one boot per kernel, each part timed; "
                                      "or the README's kernels table from the last run")
    p.add_argument("--kernel", metavar="SPEC", action="append", dest="kernels", default=None,
                   help="a kernel to run (repeat; default: " + " ".join(DEFAULT_MATRIX) + ")")
    p.add_argument("--timeout", type=_seconds, default=1200.0, metavar="S", help="per kernel (default 1200)")
    p.add_argument("--results", metavar="FILE", default=None,
                   help="results file (default $SCHEDTOP_CACHE/matrix/last.json)")
    p.add_argument("--table", action="store_true", help="print the kernels table of the last run; boot nothing")
    p.add_argument("--readme", metavar="FILE", default=None,
                   help="rewrite the kernels table in FILE (README.md) from the last run; boot nothing")
    p = sub.add_parser("vmlinux-h", help="print the path of the cached kernel's vmlinux.h (or install it)")
    p.add_argument("--install", action="store_true",
                   help="copy it over the checkout's bpf/vmlinux/x86/vmlinux.h")
    sub.add_parser("status", help="what the cache holds")


KERNEL_HELP = ("the guest kernel: a suite (sid, experimental, forky, trixie-backports, trixie = 6.12, "
               "bookworm = 6.1), a version (7.3, 7.3.4, 6.18) or a release from `schedtop lab kernels`; "
               "default: sid's current kernel (7.2.13 in Debian's index of 2026-12), the newest sched_ext "
               "kernel the full guest suite runs on")


# The smoke matrix: 6.18 LTS, sid's 7.2, 7.3, trixie's 6.12 and bookworm's 6.1 (the 6.19, 7.0 and
# 7.1 leftovers have no modules in the index: `schedtop lab kernels`).
DEFAULT_MATRIX = ("6.18", "sid", "7.3", "trixie", "bookworm")


def add_kernel_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kernel", metavar="SPEC", default=None, help=KERNEL_HELP)


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

    kernel.fetch(refresh=args.refresh, spec=args.kernel)
    return 0


def _kernels(args: argparse.Namespace) -> int:
    from schedtop.lab import listing

    rows = listing.kernel_rows(refresh=args.refresh, every=args.all)
    print(listing.as_json(rows) if args.json else listing.as_table(rows))
    return 0


def _libbpf(args: argparse.Namespace) -> int:
    from schedtop.lab import libbpf_build

    libbpf_build.provide(rebuild=args.rebuild)
    return 0


def _run(args: argparse.Namespace) -> int:
    from schedtop.lab import guest

    from schedtop.lab import kernel

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise LabError("no command given: schedtop lab run -- CMD...")
    k = kernel.fetch(spec=args.kernel) if args.kernel else kernel.require_cached()
    result = guest.run(cmd, timeout=args.timeout, kernel=k)
    return result.exit_code


def _matrix(args: argparse.Namespace) -> int:
    from pathlib import Path

    from schedtop.lab import matrix

    path = Path(args.results) if args.results else matrix.results_path()
    if args.table or args.readme:
        doc = matrix.load(path)
        if args.readme:
            matrix.update_readme(Path(args.readme), doc)
            print(f"{args.readme}: kernels table from {path} ({doc['when']})")
        else:
            print(matrix.table(doc))
        return 0
    results = matrix.run(list(args.kernels or DEFAULT_MATRIX), args.timeout, path)
    print(matrix.table(matrix.load(path)))
    return 0 if all(r.exit_code == 0 for r in results) else 1


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
    for other in kernel.all_cached():
        if k is None or other.version != k.version:
            print(f"         {other.version}: {other.label()}")
    print(f"libbpf:  {libbpf_build.describe()}")
    return 0


ACTIONS = {"kernels": _kernels, "matrix": _matrix, "fetch": _fetch, "libbpf": _libbpf, "run": _run, "vmlinux-h": _vmlinux_h, "status": _status}
