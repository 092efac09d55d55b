"""Pure formatting helpers shared by the widgets (no Textual, no I/O: unit-testable)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from schedtop.model import Task


def fmt_ns(ns: float | int | None) -> str:
    """A duration in ns, short: 850ns, 12.3µs, 1.40ms, 2.50s, 1.2h."""
    if ns is None:
        return "-"
    ns = float(ns)
    a = abs(ns)
    if a < 1_000:
        return f"{ns:.0f}ns"
    if a < 1_000_000:
        return f"{ns / 1e3:.1f}µs"
    if a < 1_000_000_000:
        return f"{ns / 1e6:.2f}ms" if a < 10_000_000 else f"{ns / 1e6:.1f}ms"
    if a < 3600e9:
        return f"{ns / 1e9:.2f}s"
    return f"{ns / 3600e9:.1f}h"


def fmt_us(us: float | None) -> str:
    return "-" if us is None else fmt_ns(us * 1000.0)


def fmt_vruntime(ns: int | None, width: int = 10, decimals: int = 3) -> str:
    """vruntime is absolute and large: seconds with ms precision, the unit shown ("1234.567s").

    The task table and the queue view (with µs, decimals=6) both use this, so they agree."""
    if ns is None:
        return "-"
    return fit_number(ns / 1e9, width, decimals, SECONDS)


# A number never loses its leading digits: fit_number drops decimals, then moves to
# the next unit, and only when even that fails shows OVERFLOW (never a cut number).
SECONDS = (("s", 1.0), ("ks", 1e3), ("Ms", 1e6), ("Gs", 1e9), ("Ts", 1e12))
COUNT = (("", 1.0), ("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12))
OVERFLOW = "#"


def fit_number(value: float, width: int, decimals: int = 1, units=COUNT) -> str:
    """`value` (in units[0]) in at most `width` cells: fewer decimals first, then a bigger unit."""
    if value != value:  # NaN from a corrupt recording
        return "nan"[:width]
    for unit, scale in units:
        v = value / scale
        for d in range(decimals, -1, -1):
            text = f"{v:.{d}f}{unit}"
            if len(text) <= width:
                return text
    return OVERFLOW * width


def fit_text(text: str, width: int, value: float | None, decimals: int = 1, units=COUNT) -> str:
    """`text` when it fits, else the same `value` refitted: the cut is never taken off the front."""
    if len(text) <= width:
        return text
    if value is None:
        return OVERFLOW * width
    return fit_number(value, width, decimals, units)


def fmt_pct(v: float) -> str:
    """CPU% of a process may pass 100 per busy CPU: 1234.5, never a cut one."""
    return f"{v:.1f}"


def fmt_rate(v: float) -> str:
    """Events per second: 0, 12, 1.2k, 34k, 1.2M."""
    if v < 0.05:
        return "0"
    if v < 10:
        return f"{v:.1f}"
    if v < 1000:
        return f"{v:.0f}"
    if v < 1e6:
        return f"{v / 1e3:.1f}k" if v < 1e4 else f"{v / 1e3:.0f}k"
    return f"{v / 1e6:.1f}M"


def fmt_uptime(s: float) -> str:
    s = int(s)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{d}d {h:02d}:{m:02d}:{s:02d}" if d else f"{h:02d}:{m:02d}:{s:02d}"


def compact_cpus(cpus: Iterable[int]) -> str:
    """(0, 1, 2, 5, 7, 8) -> '0-2,5,7-8', like taskset -c."""
    items = sorted(set(cpus))
    if not items:
        return "-"
    parts: list[str] = []
    start = prev = items[0]
    for c in items[1:]:
        if c == prev + 1:
            prev = c
            continue
        parts.append(f"{start}-{prev}" if prev > start else str(start))
        start = prev = c
    parts.append(f"{start}-{prev}" if prev > start else str(start))
    return ",".join(parts)


def bar(frac: float, width: int) -> str:
    """A horizontal bar with eighth-cell resolution."""
    frac = min(max(frac, 0.0), 1.0)
    eighths = round(frac * width * 8)
    full, part = divmod(eighths, 8)
    s = "█" * full + ("" if part == 0 else "▏▎▍▌▋▊▉"[part - 1])
    return s.ljust(width)


def matches(task: Task, query: str) -> bool:
    """The filter: a number matches pid or tid by prefix, text matches comm (case-insensitive)."""
    q = query.strip()
    if not q:
        return True
    if q.isdigit():
        return str(task.pid).startswith(q) or str(task.tid).startswith(q)
    return q.lower() in task.comm.lower()


SPARK = "▁▂▃▄▅▆▇█"


def spark(values: Sequence[float], width: int) -> str:
    """The last `width` samples as one block character each, scaled min..max.

    Drawn as text so a growing history never changes a widget's size (no layout pass)."""
    if width <= 0:
        return ""
    vals = list(values)[-width:]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    span = hi - lo
    if span <= 0:
        return SPARK[0 if hi == 0 else 3] * len(vals)
    return "".join(SPARK[min(7, int((v - lo) / span * 7.999))] for v in vals)
