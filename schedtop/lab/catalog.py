"""Which Debian kernels can be had: read from each suite's signed index, and a SPEC resolved to one.

A SPEC is a suite (`sid`, `trixie` = 6.12, `bookworm` = 6.1, `trixie-backports`, ...), an upstream
version or its prefix (`7.3`, `7.3.4`, `6.18`) or a full release (`7.2.13+deb14-amd64`).
Debian ships a kernel two ways: 7.x (and the 6.19-7.1 backports) split into linux-binary-X
(vmlinuz) + linux-base-X (config) + linux-modules-X, 6.x as one linux-image-X. The guest mounts
the host's root over 9p, a module in Debian's kernels: without linux-modules-X it cannot boot.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from schedtop.lab.apt import PrivateApt
from schedtop.lab.cache import LabError, atomic_write_text, cache_dir

# Newest first where it matters: a version found in two suites is taken from the earlier one.
SUITES = ("sid", "experimental", "forky", "trixie-backports", "trixie", "bookworm-backports", "bookworm")
DEFAULT_SUITE = "sid"
META_PACKAGE = "linux-image-amd64"
# The generic amd64 flavour only: not cloud/rt/dbg/unsigned. 6.1.0-50-amd64, 7.2.13+deb14-amd64, 7.3-amd64.
RELEASE_RE = re.compile(r"^\d+\.\d+(?:\.\d+)?(?:-\d+|\+deb\d+)?-amd64$")
PARTS = ("image", "binary", "base", "modules")
# Debian turned CONFIG_SCHED_CLASS_EXT on in 6.14; `fetch` checks the real config.
SCHED_EXT_SINCE = (6, 14)


@dataclass(frozen=True)
class Offer:
    """One kernel one suite's index offers."""

    suite: str
    release: str              # the ABI name in package names and `uname -r`
    version: str              # upstream: 7.3.4, 7.3~rc7, 6.1.176
    layout: str               # "split" (binary + base + modules) or "image" (one linux-image)
    packages: tuple[str, ...]  # what to download
    size: int                 # bytes to download
    missing: tuple[str, ...] = ()  # packages the layout needs that the index lacks

    @property
    def sched_ext(self) -> bool:
        return version_key(self.version)[0][:2] >= SCHED_EXT_SINCE

    @property
    def bootable(self) -> bool:
        return not any(p.startswith("linux-modules-") for p in self.missing)

    def why_not_bootable(self) -> str:
        return (f"the {self.suite} index has no {', '.join(self.missing)}; the guest's root filesystem "
                f"(9p) is a module, so kernel {self.version} cannot boot in the lab")


def version_key(version: str) -> tuple[tuple[int, int, int], int, int]:
    """Orders upstream versions: 7.3~rc7 < 7.3 < 7.3.4; 6.9 < 6.18."""
    main, _, pre = version.partition("~")
    nums = [int(n) for n in re.findall(r"\d+", main)[:3]]
    nums += [0] * (3 - len(nums))
    rc = re.search(r"\d+", pre)
    return (nums[0], nums[1], nums[2]), 0 if pre else 1, int(rc.group()) if rc else 0


def upstream(debian_version: str) -> str:
    """6.1.176-1 -> 6.1.176; 7.3.4-1~bpo13+1 -> 7.3.4; 7.3~rc7-1~exp1 -> 7.3~rc7."""
    return debian_version.rsplit("-", 1)[0]


def suite_apt(suite: str) -> PrivateApt:
    """sid's directory is the lab's first one ($SCHEDTOP_CACHE/apt, with deb-src for libbpf)."""
    if suite == DEFAULT_SUITE:
        return PrivateApt(cache_dir() / "apt", suite)
    return PrivateApt(cache_dir() / "apt-suites" / suite, suite, source=False)


def ready_apt(suite: str, refresh: bool = False) -> PrivateApt:
    apt = suite_apt(suite)
    apt.configure()
    if refresh or not apt.has_lists():
        apt.update()
    return apt


def suite_offers(apt: PrivateApt) -> list[Offer]:
    """Every generic amd64 kernel in the suite's (already read) index.

    apt-cache takes seconds per suite on the big indexes, so the answer is kept beside the
    lists, keyed by their names, sizes and mtimes: a new `apt-get update` invalidates it."""
    key = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(apt.lists.glob("*_Packages*"))]
    memo = apt.root / "offers.json"
    try:
        saved = json.loads(memo.read_text())
        if saved["key"] == key:
            return [Offer(**{**o, "packages": tuple(o["packages"]), "missing": tuple(o["missing"])})
                    for o in saved["offers"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    offers = _read_offers(apt)
    atomic_write_text(memo, json.dumps({"key": key, "offers": [asdict(o) for o in offers]}) + "\n")
    return offers


def _read_offers(apt: PrivateApt) -> list[Offer]:
    names = [n for part in PARTS for n in apt.names(f"linux-{part}-")
             if RELEASE_RE.match(n.split("-", 2)[2])]
    fields = {f["Package"]: f for f in apt.show_all(names)}
    releases = sorted({n.split("-", 2)[2] for n in fields if n.startswith(("linux-image-", "linux-binary-"))})
    offers = []
    for x in releases:
        image = fields.get(f"linux-image-{x}")
        if image and f"linux-binary-{x}" not in image.get("Depends", "") and f"linux-binary-{x}" not in fields:
            offers.append(Offer(apt.suite, x, upstream(image["Version"]), "image", (image["Package"],),
                                int(image.get("Size", 0))))
            continue
        want = [f"linux-binary-{x}", f"linux-base-{x}", f"linux-modules-{x}"]
        have = [p for p in want if p in fields]
        if f"linux-binary-{x}" not in fields:
            continue
        offers.append(Offer(apt.suite, x, upstream(fields[f"linux-binary-{x}"]["Version"]), "split", tuple(have),
                            sum(int(fields[p].get("Size", 0)) for p in have),
                            tuple(p for p in want if p not in fields)))
    return offers


def suite_current(apt: PrivateApt) -> str:
    """linux-image-amd64 -> linux-image-X: the suite's current kernel release X."""
    depends = apt.show(META_PACKAGE).get("Depends", "")
    m = re.search(r"linux-image-(\d[^\s,(]*)", depends)
    if not m:
        raise LabError(f"bad kernel package: cannot find the kernel release in {META_PACKAGE}'s Depends: {depends!r}")
    return m.group(1)


def all_offers(refresh: bool = False, suites: tuple[str, ...] = SUITES) -> list[Offer]:
    offers: list[Offer] = []
    for suite in suites:
        offers += suite_offers(ready_apt(suite, refresh))
    return offers


def is_suite(spec: str) -> bool:
    return spec in SUITES


def matches(spec: str, version: str, release: str) -> bool:
    """7.3 matches 7.3.4 and 7.3~rc7, not 7.30; 6.1 matches 6.1.176, not 6.18.15; a release matches itself."""
    return spec == release or version == spec or version.startswith((spec + ".", spec + "~"))


def pick(spec: str, candidates: list[Offer]) -> Offer:
    """The newest bootable match; an unbootable match only names why it cannot boot."""
    found = [o for o in candidates if matches(spec, o.version, o.release)]
    if not found:
        raise LabError(f"no kernel matches {spec!r}: give a suite ({', '.join(SUITES)}), a version such as "
                       "7.3, 7.3.4 or 6.18, or a release from `schedtop lab kernels`")
    order = {s: i for i, s in enumerate(SUITES)}
    found.sort(key=lambda o: (version_key(o.version), -order.get(o.suite, 99)), reverse=True)
    bootable = [o for o in found if o.bootable]
    if not bootable:
        raise LabError(f"kernel {found[0].version}: {found[0].why_not_bootable()}")
    return bootable[0]


def resolve(spec: str | None, refresh: bool = False) -> Offer:
    """SPEC -> one offer, from the signed indexes (read once; --refresh reads them again)."""
    suite = spec if spec and is_suite(spec) else (DEFAULT_SUITE if spec is None else None)
    if suite:
        apt = ready_apt(suite, refresh)
        release = suite_current(apt)
        offers = [o for o in suite_offers(apt) if o.release == release]
        if not offers:
            raise LabError(f"missing package: Debian {suite} names kernel {release} but its index has "
                           f"neither linux-image-{release} nor linux-binary-{release}")
        if not offers[0].bootable:
            raise LabError(f"kernel {offers[0].version}: {offers[0].why_not_bootable()}")
        return offers[0]
    assert spec is not None
    return pick(spec, all_offers(refresh))
