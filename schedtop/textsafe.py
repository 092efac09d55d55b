"""Strings from the kernel or from other users, made safe to put on a terminal.

Any user can name a thread (prctl PR_SET_NAME), and comm, exe, cgroup paths, kmsg
reasons and scx_stats names reach schedtop's screens. A raw ESC, BEL or C1 CSI/OSC
in one of them would be obeyed by root's terminal (retitle it, clear it, recolour
it), and a `[red]` in one would be obeyed by Rich/Textual markup.

`visible()` is the one place that turns such a string into terminal text. Every
control character is written as a Python-style escape that shows what it was:

- C0 (U+0000..U+001F), DEL (U+007F) and C1 (U+0080..U+009F): `\\xNN`, so ESC is
  `\\x1b`, BEL `\\x07`, the one-byte CSI `\\x9b`, OSC `\\x9d`;
- the bidirectional overrides and isolates (U+202A..U+202E, U+2066..U+2069), which
  reorder what follows on the line: `\\uNNNN`;
- undecodable bytes kept as lone surrogates (surrogateescape): `\\xNN` of the byte.

Backslashes are left as they are: a name that spells `\\x1b` in printable
characters is harmless text, and systemd's `\\x2d` in cgroup names stays readable.

Markup is never parsed from these strings: `rich_text()` wraps one in a rich Text
(for Rich consoles and tables), and the TUI substitutes them into its templates as
variables (ui/widgets/text.py), never into the markup itself.
"""

from __future__ import annotations

import re
from functools import lru_cache

from rich.text import Text

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\udc80-\udcff]")


def _escape(m: re.Match[str]) -> str:
    o = ord(m.group())
    if 0xDC80 <= o <= 0xDCFF:
        return f"\\x{o - 0xDC00:02x}"
    return f"\\x{o:02x}" if o <= 0xFF else f"\\u{o:04x}"


@lru_cache(maxsize=8192)
def _visible(s: str) -> str:
    return _UNSAFE.sub(_escape, s)


def visible(s: object, keep_newlines: bool = False) -> str:
    """`s` as text with every control character shown as an escape (see the module doc).

    keep_newlines: for multi-line messages (notifications), where a line break is layout."""
    if not isinstance(s, str):
        s = "" if s is None else str(s)
    if _UNSAFE.search(s) is None:  # the common case: nothing to do, nothing cached
        return s
    if keep_newlines:
        return "\n".join(visible(line) for line in s.split("\n"))
    return _visible(s) if len(s) <= 4096 else _UNSAFE.sub(_escape, s)


def rich_text(s: object, style: str = "") -> Text:
    """A rich Text of visible(s): printed as it is, never read as markup."""
    return Text(visible(s), style=style)


def has_control(s: str) -> bool:
    """True when `s` holds a character that visible() would escape."""
    return _UNSAFE.search(s) is not None
