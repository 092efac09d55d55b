"""Reading the small TOML files people write (profiles, the config): bounded, one-line errors.

Every fault is the caller's error class with one line, FILE[:LINE]: reason: a FIFO, a device,
a huge file, bytes that are not UTF-8, nesting deep enough to overflow tomllib's recursion.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib

MAX_NESTING = 100  # real files nest 2-3 deep; Python 3.11's tomllib recurses per level

# Strings and comments (whose brackets do not nest), or one bracket.
_TOKENS = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"""|\'\'\'.*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*|[\[\]{}]',
                     re.DOTALL)


def _too_deep(text: str) -> int | None:
    """The line where arrays/inline tables nest over MAX_NESTING deep, else None."""
    if text.count("[") + text.count("{") <= MAX_NESTING:
        return None
    depth = 0
    for m in _TOKENS.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > MAX_NESTING:
                return text.count("\n", 0, m.start()) + 1
        elif c in "]}":
            depth = max(0, depth - 1)
    return None


def read_text_file(path: str | os.PathLike, limit: int, error: type[Exception]) -> str:
    """The UTF-8 text of a small regular file, or `error` with one line (FILE[:LINE]: reason).

    Opened without blocking and refused unless regular, so a FIFO or /dev/zero is an error,
    not a hang or an unbounded read; at most `limit` bytes are ever read."""
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise error(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error(f"{name}: not a regular file")
        raw = os.read(fd, limit + 1)  # a regular file gives all asked for (up to 2 GiB)
    except OSError as exc:
        raise error(f"{name}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(raw) > limit:
        raise error(f"{name}: too large (over {limit // 1024} KiB)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise error(f"{name}:{line}: not UTF-8 text (byte {exc.start + 1})") from None


def toml_loads(text: str, name: str, error: type[Exception], syntax: str = "TOML syntax") -> dict:
    """tomllib.loads with its faults as one line: FILE:LINE: reason.

    Nesting is refused before tomllib recurses into it (Python 3.11's parser overflows the
    stack around 1000 levels)."""
    deep = _too_deep(text)
    if deep is not None:
        raise error(f"{name}:{deep}: arrays or inline tables nested over {MAX_NESTING} deep")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        where = f"{name}:{m.group(1)}" if m else name
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise error(f"{where}: {syntax}: {reason}") from None
    except RecursionError:  # a shape _nesting does not count; never a traceback
        raise error(f"{name}: nested too deep") from None


