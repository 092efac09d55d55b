"""Downloads that never poison the cache: temp file, size + SHA-256 check, rename."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from schedtop.lab.apt import Remote
from schedtop.lab.cache import LabError, ensure_dir, os_error_line
from schedtop.lab.progress import download_bar

CHUNK = 1 << 16


def _opener(proxy: str | None) -> urllib.request.OpenerDirector:
    handlers = []
    if proxy:
        handlers.append(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
    return urllib.request.build_opener(*handlers)


def verify(path: Path, remote: Remote) -> bool:
    if not path.is_file() or path.stat().st_size != remote.size:
        return False
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest() == remote.sha256


def fetch_all(remotes: list[Remote], dest: Path, proxy: str | None = None) -> list[Path]:
    """Download each file into dest (skipping ones already there and intact), with a progress bar."""
    ensure_dir(dest)
    paths = [dest / r.name for r in remotes]
    todo = [(r, p) for r, p in zip(remotes, paths) if not verify(p, r)]
    if not todo:
        return paths
    opener = _opener(proxy)
    with download_bar() as bar:
        for remote, path in todo:
            task = bar.add_task(remote.name.split("_")[0] if remote.name.endswith(".deb") else remote.name,
                                total=remote.size)
            _fetch_one(opener, remote, path, lambda n, t=task: bar.advance(t, n))
    return paths


def _fetch_one(opener: urllib.request.OpenerDirector, remote: Remote, path: Path, advance) -> None:
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    digest = hashlib.sha256()
    size = 0
    try:
        with opener.open(remote.uri, timeout=60) as resp, part.open("wb") as out:
            for chunk in iter(lambda: resp.read(CHUNK), b""):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                advance(len(chunk))
        if size != remote.size or digest.hexdigest() != remote.sha256:
            raise LabError(f"bad download: {remote.name} is {size} bytes with SHA-256 {digest.hexdigest()[:16]}…, "
                           f"the signed index says {remote.size} bytes {remote.sha256[:16]}…; "
                           "retry, or run `schedtop lab fetch --refresh` if the mirror changed")
        os.replace(part, path)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise LabError(f"missing package: the mirror no longer has {remote.name} (HTTP 404); "
                           "run `schedtop lab fetch --refresh` to update the index") from None
        raise LabError(f"download failed: {remote.name}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LabError(f"no network: cannot download {remote.name} ({reason}); check the network and retry") from None
    except OSError as exc:
        raise os_error_line(exc, f"writing {path}") from None
    finally:
        part.unlink(missing_ok=True)
