"""Build compiled sched_ext anchors: the kernel's own example schedulers (tools/sched_ext).

    .venv/bin/python bench/anchor_build.py            # or: make anchors
    .venv/bin/python bench/anchor_build.py --rebuild

Debian has no scx package (sid's Packages index has no scx*), and scx_rustland's crates are
out of reach here, so the compiled peer for the guest benchmarks is the kernel's example
schedulers, built from the SAME kernel release the lab guest boots: Debian sid's
linux-source-X.Y, fetched through the lab's private apt (never /etc/apt), checked against the
signed index's SHA-256. Only tools/ (plus the few kernel files bpftool needs) is unpacked;
tools/sched_ext's own Makefile builds its libbpf and bpftool from that tree and links the
schedulers statically, so nothing here depends on the host's libbpf or bpftool.

  scx_simple    weighted vtime, all in BPF (a compiled in-kernel policy)
  scx_userland  vruntime ordering in a user-space C loop (the same design as schedtop's)
  scx_qmap      built too, but not benched: the verifier refuses clang 19's object at load
                (qmap_dequeue, scx_qmap.bpf.c:324: "R7 invalid mem access 'scalar'", an arena
                pointer stored through without an addr_space_cast; EACCES)

Output: $SCHEDTOP_CACHE/anchors/<kernel release>/bin/<name> and anchors.json (what was built
from what). A bench-time step only: schedtop itself never compiles anything at run time.
Needs clang >= 16 for BPF: Debian 12's clang 14 leaves no BTF for the weak kfunc
__scx_bpf_dsq_insert_vtime, so bpftool cannot link the object (`make anchors` installs clang-19).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from schedtop.lab.apt import PrivateApt
from schedtop.lab.cache import LabError, atomic_write_text, cache_dir, ensure_dir, require_space
from schedtop.lab.download import fetch_all
from schedtop.lab.kernel import Kernel, require_cached
from schedtop.lab.progress import info, step

TARGETS = ("scx_simple", "scx_userland", "scx_qmap")
# What tools/sched_ext's Makefile reads: its libbpf and bpftool sources, tools headers and
# build glue, the uapi headers, and kernel/bpf/disasm.[ch] that bpftool compiles in.
MEMBERS = ("tools/sched_ext", "tools/bpf", "tools/lib", "tools/include", "tools/build", "tools/scripts",
           "tools/arch/x86", "include/uapi", "kernel/bpf/disasm.c", "kernel/bpf/disasm.h", "scripts",
           "Makefile")
CLANG_CANDIDATES = ("clang-19", "clang-18", "clang-17", "clang-16", "clang")
MIN_CLANG = 16


def anchors_dir(kernel: Kernel) -> Path:
    return cache_dir() / "anchors" / kernel.version


def built(kernel: Kernel | None = None) -> dict[str, Path]:
    """name -> binary for the anchors already built for the cached guest kernel (reads files only)."""
    kernel = kernel or require_cached()
    d = anchors_dir(kernel)
    if not (d / "anchors.json").is_file():
        return {}
    meta = json.loads((d / "anchors.json").read_text())
    return {name: d / "bin" / name for name in meta["targets"] if (d / "bin" / name).is_file()}


def find_clang() -> tuple[str, str]:
    """($CLANG or the newest clang >= 16 on PATH, its version line)."""
    names = [os.environ["CLANG"]] if os.environ.get("CLANG") else list(CLANG_CANDIDATES)
    seen = []
    for name in names:
        path = shutil.which(name)
        if not path:
            continue
        line = subprocess.run([path, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        m = re.search(r"version (\d+)\.", line)
        seen.append(line)
        if m and int(m.group(1)) >= MIN_CLANG:
            return path, line
    raise LabError(f"the kernel's sched_ext examples need clang >= {MIN_CLANG} for BPF (found: "
                   f"{'; '.join(seen) or 'none'}); on Debian 12: apt-get install clang-19 (make anchors does)")


def source_package(kernel: Kernel, apt: PrivateApt) -> tuple[str, str]:
    """(linux-source-X.Y, its version), refusing a source that is not the guest's release."""
    upstream = kernel.version.split("+")[0].split("-")[0]  # 7.2.13+deb14-amd64 -> 7.2.13
    package = "linux-source-" + ".".join(upstream.split(".")[:2])
    version = apt.show(package).get("Version", "")
    if not version.startswith(upstream + "-"):
        raise LabError(f"version mismatch: Debian sid's {package} is {version}, the guest kernel is "
                       f"{kernel.version}; run `schedtop lab fetch --refresh` so both are sid's current")
    return package, version


def unpack(deb: Path, dest: Path) -> Path:
    """The members we need from the linux-source tarball inside the .deb; returns the tree's top."""
    with step(f"unpacking tools/ from {deb.name}"):
        subprocess.run(f"dpkg-deb --fsys-tarfile {deb} | tar -x -C {dest} --wildcards './usr/src/*.tar.xz'",
                       shell=True, check=True)
        tarball = next((dest / "usr" / "src").glob("linux-source-*.tar.xz"))
        top = tarball.name.removesuffix(".tar.xz")
        proc = subprocess.run(["tar", "-xJf", str(tarball), "-C", str(dest), "--wildcards",
                               *(f"{top}/{m}" for m in MEMBERS)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise LabError(f"tar could not unpack {tarball.name}: {proc.stderr.strip()[-300:]}")
        tarball.unlink()
    return dest / top


def build(kernel: Kernel, rebuild: bool = False) -> dict[str, Path]:
    if not rebuild and built(kernel):
        info(f"anchors for {kernel.version}: cached in {anchors_dir(kernel)}")
        return built(kernel)
    clang, clang_line = find_clang()
    base = ensure_dir(cache_dir())
    require_space(base, 1 << 30, "the sched_ext example schedulers")
    apt = PrivateApt(base / "apt")
    apt.configure()
    if not apt.has_lists():
        apt.update()
    package, version = source_package(kernel, apt)
    remotes = apt.uris([package])
    info(f"{package} {version}: {sum(r.size for r in remotes) / 1e6:.0f} MB")
    debs = fetch_all(remotes, base / "anchors" / "downloads", proxy=apt.proxy())
    work = Path(tempfile.mkdtemp(dir=ensure_dir(base / "anchors"), prefix=".build."))
    try:
        tree = unpack(debs[0], work)
        log = work / "make.log"
        with step(f"make -C tools/sched_ext {' '.join(TARGETS)} (CLANG={Path(clang).name})"):
            with log.open("w") as out:
                # -k: scx_qmap's failure (if any) must not stop the others.
                subprocess.run(["make", "-k", "-C", str(tree / "tools" / "sched_ext"), f"-j{os.cpu_count() or 1}",
                                f"CLANG={clang}", f"VMLINUX_BTF={kernel.vmlinux}", *TARGETS],
                               stdout=out, stderr=subprocess.STDOUT)
        bindir = tree / "tools" / "sched_ext" / "build" / "bin"
        made = [t for t in TARGETS if (bindir / t).is_file()]
        if not made:
            errors = [l for l in log.read_text().splitlines() if "error" in l.lower()]
            raise LabError(f"no anchor built; first error: {(errors or ['see make output'])[0].strip()}")
        final = anchors_dir(kernel)
        stage = work / "out"
        ensure_dir(stage / "bin")
        for t in made:
            shutil.copy2(bindir / t, stage / "bin" / t)
        meta = {"kernel": kernel.version, "source": f"{package} {version}",
                "source_sha256": {r.name: r.sha256 for r in remotes}, "clang": clang_line, "targets": made}
        atomic_write_text(stage / "anchors.json", json.dumps(meta, indent=1) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        ensure_dir(final.parent)
        stage.rename(final)
        for deb in debs:  # the built binaries are the cache; the .deb is only transport
            deb.unlink(missing_ok=True)
        info(f"anchors: {', '.join(made)} in {final / 'bin'}")
        return built(kernel)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rebuild", action="store_true", help="fetch and build again even if cached")
    args = ap.parse_args()
    try:
        for name, path in build(require_cached(), args.rebuild).items():
            print(f"{name} {path}")
    except LabError as exc:
        print(f"anchor_build: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"anchor_build: {' '.join(map(str, exc.cmd)) if isinstance(exc.cmd, list) else exc.cmd} "
              f"failed with exit {exc.returncode}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
