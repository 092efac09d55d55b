"""A private apt configuration per Debian suite: never touches /etc/apt.

Installing from sid on a Debian 12 host would pull sid's libc into the system,
so other suites are only ever *read* through apt options pointing at our own
directory: its own sources.list, lists and archive cache, and an empty dpkg
status. One directory per suite, so an index answer always names its suite.
The mirror is the one the system already uses (read at run time).
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from schedtop.lab.cache import LabError, ensure_dir
from schedtop.lab.progress import step

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
SYSTEM_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
SUITE = "sid"

_NETWORK_HINTS = ("Temporary failure resolving", "Could not resolve", "Could not connect",
                  "Failed to fetch", "Connection failed", "Network is unreachable", "timed out")


@dataclass(frozen=True)
class Remote:
    """One file apt would download: where from, its name, size and SHA-256."""

    uri: str
    name: str
    size: int
    sha256: str


def system_mirror(sources: tuple[Path, ...] = SYSTEM_SOURCES) -> str:
    """The Debian archive URI the system's own apt configuration uses ($SCHEDTOP_DEBIAN_MIRROR overrides)."""
    override = os.environ.get("SCHEDTOP_DEBIAN_MIRROR")
    if override:
        return override.rstrip("/")
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
                suites = fields.get("Suites", "")
                if "deb" in fields.get("Types", "").split() and "-security" not in suites:
                    uris = fields.get("URIs", "").split()
                    if uris:
                        return uris[0].rstrip("/")
        else:
            for line in text.splitlines():
                m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line.strip())
                if m and "-security" not in m.group(2):
                    return m.group(1).rstrip("/")
    raise LabError("no Debian mirror found in /etc/apt (debian.sources or sources.list); configure apt first")


def parse_stanza(text: str) -> dict[str, str]:
    """The first deb822 stanza of text as a dict (continuation lines joined with newlines)."""
    fields: dict[str, str] = {}
    key = ""
    for line in text.lstrip("\n").splitlines():
        if not line.strip():
            break
        if line[0].isspace() and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


class PrivateApt:
    def __init__(self, root: Path, suite: str = SUITE, source: bool = True) -> None:
        self.root = root
        self.suite = suite
        self.source = source  # deb-src too (libbpf's source package comes from sid)
        self.sources = root / "sources.list"
        self.lists = root / "lists"
        self.cache = root / "cache"

    def options(self) -> list[str]:
        return [
            "-o", f"Dir::Etc::SourceList={self.sources}",
            "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={self.lists}",
            "-o", f"Dir::Cache={self.cache}",
            "-o", "Dir::State::Status=/dev/null",
            "-o", "Debug::NoLocking=1",
        ]

    def configure(self, mirror: str | None = None) -> None:
        for d in (self.lists / "partial", self.cache / "archives" / "partial"):
            ensure_dir(d)
        mirror = mirror or system_mirror()
        opts = f"[signed-by={KEYRING}]"
        text = f"deb {opts} {mirror} {self.suite} main\n"
        if self.source:
            text += f"deb-src {opts} {mirror} {self.suite} main\n"
        if not self.sources.exists() or self.sources.read_text() != text:
            self.sources.write_text(text)

    def has_lists(self) -> bool:
        binary = any(self.lists.glob(f"*_dists_{self.suite}_main_binary-*_Packages*"))
        return binary and (not self.source or any(self.lists.glob(f"*_dists_{self.suite}_main_source_Sources*")))

    def update(self) -> None:
        """Refresh the suite's indexes: the one step of a fetch that needs the network."""
        with step(f"apt-get update (Debian {self.suite}, private lists)"):
            proc = subprocess.run(["apt-get", *self.options(), "-q", "update"],
                                  capture_output=True, text=True)
        out = proc.stdout + proc.stderr
        errors = [l for l in out.splitlines() if l.startswith(("E:", "W:", "Err:"))]
        if proc.returncode != 0 or not self.has_lists() or any(l.startswith("Err:") for l in out.splitlines()):
            first = next((l for l in errors if any(h in l for h in _NETWORK_HINTS)), None)
            if first or not self.has_lists():
                detail = (first or (errors[0] if errors else out.strip()[-200:])).strip()
                raise LabError(f"no network: apt-get update could not read Debian {self.suite}'s index ({detail}); "
                               "check the network or apt proxy and retry")
            raise LabError(f"apt-get update failed: {errors[0] if errors else out.strip()[-200:]}")

    def show(self, package: str) -> dict[str, str]:
        """The candidate version's control fields, or a clear error if the suite has no such package."""
        proc = subprocess.run(["apt-cache", *self.options(), "show", "--no-all-versions", package],
                              capture_output=True, text=True)
        if proc.returncode != 0 or not proc.stdout.strip():
            raise LabError(f"missing package: Debian {self.suite} has no package {package!r} "
                           "(run `schedtop lab fetch --refresh` to update the index, or check the name)")
        return parse_stanza(proc.stdout)

    def names(self, prefix: str) -> list[str]:
        """Real package names in the suite's index that start with prefix."""
        proc = subprocess.run(["apt-cache", *self.options(), "pkgnames", prefix],
                              capture_output=True, text=True)
        return sorted(proc.stdout.split()) if proc.returncode == 0 else []

    def show_all(self, packages: list[str]) -> list[dict[str, str]]:
        """Control fields of each package's candidate (one apt-cache call; unknown names are left out)."""
        if not packages:
            return []
        proc = subprocess.run(["apt-cache", *self.options(), "show", "--no-all-versions", *packages],
                              capture_output=True, text=True)
        return [f for f in map(parse_stanza, proc.stdout.split("\n\n")) if "Package" in f]

    def uris(self, packages: list[str], source: bool = False) -> list[Remote]:
        """What apt would download for these packages, with sizes and hashes from the signed index."""
        cmd = ["apt-get", *self.options(), "-q", "source" if source else "download", "--print-uris", *packages]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root)
        if proc.returncode != 0:
            err = next((l for l in proc.stderr.splitlines() if l.startswith("E:")), proc.stderr.strip())
            raise LabError(f"missing package: apt cannot resolve {' '.join(packages)}: {err}")
        remotes = []
        for line in proc.stdout.splitlines():
            m = re.match(r"^'([^']+)'\s+(\S+)\s+(\d+)\s+SHA256:([0-9a-f]{64})", line)
            if m:
                remotes.append(Remote(m.group(1), m.group(2), int(m.group(3)), m.group(4)))
        if not remotes:
            raise LabError(f"apt gave no SHA-256 download list for {' '.join(packages)}")
        return remotes

    def proxy(self) -> str | None:
        """apt's own HTTP proxy setting, so downloads go where apt's would."""
        proc = subprocess.run(["apt-config", "dump"], capture_output=True, text=True)
        m = re.search(r'^Acquire::http::Proxy "([^"]+)";', proc.stdout, re.M)
        return m.group(1) if m and m.group(1) not in ("DIRECT", "false") else None
