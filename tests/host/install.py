"""A wheel of the checkout, and venvs with it installed, for tests that run outside the checkout.

The checkout and its .venv may lie where other users cannot enter (/root is 0700), so a test
that runs schedtop as another uid installs the wheel into a venv under a 0755 directory of
its own. The runtime dependencies are copied from the running venv (the versions the suite
tests, no network), schedtop itself comes only from the wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def build_wheel(out: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`pip wheel` of the checkout (hatchling from this venv: no network); the hook compiles bpf/."""
    return subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}, cwd="/")


def _closure(names: list[str]) -> list[metadata.Distribution]:
    """The installed distributions ``names`` need at run time, transitively (no extras)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        req = Requirement(todo.pop())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        key = req.name.lower().replace("_", "-")
        if key in seen:
            continue
        seen[key] = dist = metadata.distribution(req.name)
        todo += dist.requires or []
    return list(seen.values())


@dataclass(frozen=True)
class Install:
    root: Path  # 0755, removed by remove()
    python: Path
    schedtop: Path
    site: Path

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _reachable_by_all(path: Path) -> bool:
    """Every directory above ``path`` lets others through and ``path`` lets them run it."""
    path = path.resolve()
    return all(p.stat().st_mode & 0o001 for p in path.parents) and bool(path.stat().st_mode & 0o001)


def interpreter() -> Path:
    """This Python, or the system's of the same version where this one is out of other users'
    reach (e.g. a pyenv build under /root)."""
    mine = Path(getattr(sys, "_base_executable", sys.executable))
    if _reachable_by_all(mine):
        return mine
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for d in ("/usr/local/bin", "/usr/bin"):
        if (Path(d) / name).exists() and _reachable_by_all(Path(d) / name):
            return Path(d) / name
    raise FileNotFoundError(f"no {name} that other users can run ({mine} is out of their reach)")


def install(wheel: Path) -> Install:
    """A venv under a fresh 0755 directory in /tmp with ``wheel`` and its dependencies."""
    root = Path(tempfile.mkdtemp(prefix="schedtop-install-"))
    root.chmod(0o755)
    venv = root / "venv"
    subprocess.run([interpreter(), "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, timeout=300)
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    here = Path(sysconfig.get_paths()["purelib"])
    info = metadata.Distribution.at(next(site.glob("schedtop-*.dist-info")))  # the wheel's own requirements
    for dist in _closure(info.requires or []):
        for f in dist.files or []:
            src = Path(str(dist.locate_file(f)))
            try:
                rel = src.resolve().relative_to(here)
            except ValueError:  # scripts in bin/, data outside site-packages
                continue
            if "__pycache__" in rel.parts or not src.is_file():
                continue
            (site / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, site / rel)
    for d in [root, *root.rglob("*")]:  # whatever the umask: readable by every user
        if not d.is_symlink():  # bin/python points at the system's interpreter
            d.chmod(0o755 if d.is_dir() or os.access(d, os.X_OK) else 0o644)
    return Install(root, py, venv / "bin" / "schedtop", site)
