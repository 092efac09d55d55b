"""The browser screenshot (PNG): `schedtop serve` on the recorded session, in headless Chromium.

    .venv/bin/python screenshots/make_browser_screenshot.py [--out FILE]

The same recording as make_screenshots.py (tests/fixtures/session.jsonl, through `--replay`),
served read-only on a free loopback port; the replay is paused and stepped to a fixed frame,
so the picture is the same on every machine. Needs Debian's chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schedtop.serve.browser import Browser, CdpError, chromium_path  # noqa: E402

SESSION = ROOT / "tests" / "fixtures" / "session.jsonl"
SIZE = (1400, 860)
FRAME = 4  # of the recording's 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def shoot(url: str, out: Path) -> float:
    async with Browser(*SIZE) as b:
        t0 = time.monotonic()
        await b.goto(url)
        text = await b.wait_text("REPLAY", "hog-pinned0")
        shown = time.monotonic() - t0
        await b.type(" ")  # pause where it is, then step to the fixed frame
        text = await b.wait_text("paused")
        at = int(re.search(r"REPLAY (\d+)/", text)[1])  # type: ignore[index]
        await b.type("," * (at - FRAME) if at > FRAME else "." * (FRAME - at))
        await b.wait_text(f"REPLAY {FRAME}/")
        await asyncio.sleep(0.5)  # the frame's last paint
        await b.screenshot(out)
        return shown


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "screenshots" / "browser.png")
    args = ap.parse_args()
    if chromium_path() is None:
        print("make_browser_screenshot: chromium not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    port = free_port()
    env = dict(os.environ, TZ="UTC")  # the header shows the recording's wall time
    serve = subprocess.Popen([sys.executable, "-m", "schedtop", "serve", "--listen", f"127.0.0.1:{port}",
                              "--replay", str(SESSION)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert serve.stderr is not None
        line = serve.stderr.readline()
        if "serving" not in line:
            print(f"make_browser_screenshot: schedtop serve did not start: {line.strip()}", file=sys.stderr)
            return 1
        shown = asyncio.run(shoot(f"http://127.0.0.1:{port}/", args.out))
    except CdpError as exc:
        print(f"make_browser_screenshot: {exc}", file=sys.stderr)
        return 1
    finally:
        serve.terminate()
        serve.wait(30)
    print(f"{args.out}  {SIZE[0]}x{SIZE[1]} px, {args.out.stat().st_size} bytes (the page showed the table "
          f"{shown:.2f} s after loading)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
