"""`schedtop lab kernels`: what the signed indexes offer, joined with what the cache holds."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from schedtop.lab import catalog, kernel


@dataclass(frozen=True)
class KernelRow:
    suite: str
    version: str
    release: str
    layout: str
    sched_ext: bool      # from the cached config where cached, else Debian's rule (on since 6.14)
    bootable: bool
    cached: bool
    download_bytes: int  # 0 when cached
    note: str            # why it cannot boot, or that sched_ext was read from the config


def kernel_rows(refresh: bool = False, every: bool = False) -> list[KernelRow]:
    offers = catalog.all_offers(refresh)
    if not every:  # each suite's newest of each line (6.18, 7.2, ...)
        newest: dict[tuple[str, tuple[int, int]], catalog.Offer] = {}
        for o in offers:
            key = (o.suite, catalog.version_key(o.version)[0][:2])
            if key not in newest or catalog.version_key(o.version) > catalog.version_key(newest[key].version):
                newest[key] = o
        offers = list(newest.values())
    have = {k.version: k for k in kernel.all_cached()}
    rows = []
    for o in offers:
        k = have.get(o.release)
        sched_ext = k.sched_ext if k else o.sched_ext
        note = "" if o.bootable else f"no {', '.join(o.missing)} in the index (9p is a module)"
        if k:
            note = note or "sched_ext read from its config"
        rows.append(KernelRow(o.suite, o.version, o.release, o.layout, sched_ext, o.bootable, k is not None,
                              0 if k else o.size, note))
    order = {s: i for i, s in enumerate(catalog.SUITES)}
    rows.sort(key=lambda r: (catalog.version_key(r.version), -order.get(r.suite, 99)), reverse=True)
    return rows


def as_json(rows: list[KernelRow]) -> str:
    return "\n".join(json.dumps(asdict(r)) for r in rows)


def as_table(rows: list[KernelRow]) -> str:
    head = ("SUITE", "VERSION", "RELEASE", "SCHED_EXT", "BOOTS", "CACHED", "DOWNLOAD", "NOTE")
    body = [(r.suite, r.version, r.release, "yes" if r.sched_ext else "no", "yes" if r.bootable else "no",
             "yes" if r.cached else "no", f"{r.download_bytes / 1e6:.0f} MB" if r.download_bytes else "-", r.note)
            for r in rows]
    widths = [max(len(str(c[i])) for c in (head, *body)) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in (head, *body)]
    default = next((r for r in rows if r.suite == catalog.DEFAULT_SUITE), None)
    if default:
        lines.append(f"default (no --kernel): {default.version} from {default.suite}; "
                     "pick one with --kernel SUITE|VERSION|RELEASE")
    return "\n".join(lines)
