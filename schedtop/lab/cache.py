"""Where the lab keeps its files, and the one error type its commands report.

Everything lives under $SCHEDTOP_CACHE (default ~/.cache/schedtop). Files are
written to a temporary name in the same directory and renamed into place, so an
interrupted run never leaves a half-written file under its final name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


class LabError(Exception):
    """A failure with one line that says what failed and what to do."""


def cache_dir() -> Path:
    env = os.environ.get("SCHEDTOP_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "schedtop"


def ensure_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabError(f"cannot create {path}: {exc.strerror}; set SCHEDTOP_CACHE to a writable directory") from None
    return path


def require_space(path: Path, need_bytes: int, what: str) -> None:
    """Refuse early, with a clear line, rather than die half-way with ENOSPC."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need_bytes:
        raise LabError(
            f"not enough disk space in {probe} for {what}: need {need_bytes >> 20} MiB, "
            f"have {free >> 20} MiB; free some space or set SCHEDTOP_CACHE to another disk"
        )


def atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def os_error_line(exc: OSError, doing: str) -> LabError:
    """ENOSPC and friends become one actionable line."""
    import errno

    if exc.errno == errno.ENOSPC:
        return LabError(f"{doing}: no space left on device; free some space or set SCHEDTOP_CACHE to another disk")
    return LabError(f"{doing}: {exc.strerror or exc}")
