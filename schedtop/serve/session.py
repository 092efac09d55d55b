"""What each browser session runs: `python -m schedtop.serve.session SERVER_PID [schedtop options]`.

textual's web driver only stops reading its input when the server goes (SIGKILL, a crash), and
the app would run on, orphaned, collecting every second and, with --allow-steer, keeping its
changes. So the session asks the kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG; the
server runs it with `exec`, so the parent is the server itself), and the TUI's SIGTERM handler
restores what it changed and exits. A server already gone by then: the session does not start.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> int:
    if not argv or not argv[0].isdigit():
        print("usage: python -m schedtop.serve.session SERVER_PID [schedtop options]", file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        print(f"schedtop serve: prctl(PR_SET_PDEATHSIG): {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 1
    if os.getppid() != int(argv[0]):  # the server died before the prctl
        return 1
    from schedtop.cli import main as cli_main

    return cli_main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
