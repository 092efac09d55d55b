"""Render schedtop's screenshots (SVG) from the recorded session: `make screenshots`.

    .venv/bin/python screenshots/make_screenshots.py [--out DIR]

The app runs headless on a ReplaySource (no live machine needed), is stepped
to a fixed frame and saved with App.save_screenshot, so the pictures are the
same on every machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

os.environ["TZ"] = "UTC"  # the header shows the recording's wall time
time.tzset()

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schedtop.collect.replay import ReplayError, ReplaySource, load_replay  # noqa: E402
from schedtop.ui.app import SchedtopApp  # noqa: E402

SESSION = ROOT / "tests" / "fixtures" / "session.jsonl"  # procfs + debugfs, as root
BPF_SESSION = ROOT / "tests" / "tui" / "session-bpf.jsonl"  # with the BPF tier (record_session.py)

# name, recording, size, frame to show, keys pressed after that
SHOTS: list[tuple[str, Path, tuple[int, int], int, tuple[str, ...]]] = [
    ("bpf-200x60", BPF_SESSION, (200, 60), 6, ("down",)),
    ("bpf-120x40", BPF_SESSION, (120, 40), 6, ()),
    ("bpf-detail-120x40", BPF_SESSION, (120, 40), 6, ("slash", *"hog-other", "enter", "enter")),
    ("main-80x24", SESSION, (80, 24), 3, ()),
    ("main-200x60", SESSION, (200, 60), 3, ()),
    ("main-120x40", SESSION, (120, 40), 3, ("down",)),
    ("processes-filtered-120x40", SESSION, (120, 40), 3, ("t", "slash", "h", "o", "g", "enter", "w")),
    ("queue-120x40", SESSION, (120, 40), 3, ("down", "down", "e")),
    ("detail-120x40", SESSION, (120, 40), 5, ("down", "enter")),
    ("help-120x40", SESSION, (120, 40), 1, ("question_mark",)),
]


async def shoot(replay_path: Path, out: Path, name: str, size: tuple[int, int], frame: int,
                keys: tuple[str, ...]) -> Path:
    app = SchedtopApp(ReplaySource(load_replay(replay_path)), delay=1.0, paused=True)
    async with app.run_test(size=size) as pilot:
        deadline = time.monotonic() + 10
        while app.snapshot is None:
            if time.monotonic() > deadline:
                raise RuntimeError("no first frame")
            await pilot.pause(0.02)
        for _ in range(frame):
            await pilot.press("full_stop")
        for k in keys:
            await pilot.press(k)
        await pilot.pause(0.2)
        path = app.save_screenshot(f"{name}.svg", str(out))
    return Path(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "screenshots")
    args = ap.parse_args()
    for rec in {r for _, r, *_ in SHOTS}:
        try:
            load_replay(rec)
        except ReplayError as exc:
            print(f"make_screenshots: {exc}", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rec, size, frame, keys in SHOTS:
        path = asyncio.run(shoot(rec, args.out, name, size, frame, keys))
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}  {size[0]}x{size[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
