"""Running schedtop on hostile input in a child with bounded memory and time.

A fix for an unbounded read or allocation is proven by the child staying under its address
space limit (a MemoryError traceback, or a kill, without the fix) and its deadline."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MEM_LIMIT = 1 << 30  # address space: Python + rich + schedtop need ~300 MB of mappings


def _limit(mem: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))


def run_bounded(argv: list[str], timeout: float = 60, mem: int = MEM_LIMIT, code: str | None = None,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m schedtop ARGV` (or `python -c CODE`) under RLIMIT_AS, stdin closed."""
    cmd = [sys.executable, "-c", code] if code is not None else [sys.executable, "-m", "schedtop", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False,
                          stdin=subprocess.DEVNULL, preexec_fn=lambda: _limit(mem),
                          env={**os.environ, **(env or {})})


def assert_one_line_error(r: subprocess.CompletedProcess, *needles: str) -> str:
    """Refused: rc != 0, no traceback, the reason on one line (argparse's usage lines aside)
    that names each needle (the input, or what is wrong with it)."""
    err = r.stderr.strip()
    assert r.returncode != 0, (r.returncode, r.stdout[-500:], err[-500:])
    assert "Traceback" not in err and "Error:" not in err.replace("error:", ""), err[-2000:]
    lines = [ln for ln in err.splitlines() if not ln.startswith(("usage:", " "))]
    assert len(lines) == 1, err[-2000:]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]
