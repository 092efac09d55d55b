"""schedtop in a browser (schedtop serve + headless Chromium) vs in a terminal (tmux): time to the
table and CPU per second of watching.

Both watch the live machine (procfs, --no-bpf, -d 1) at the same terminal size: the browser's
page is sized to 120x40 cells' worth and its terminal's real size is read back and used for tmux.
CPU is utime+stime (/proc/PID/stat) over --seconds: for the browser, the session's schedtop
process, the server (textual-serve, aiohttp: forwarding the output) and Chromium with its
children (what drawing the page costs, on the viewer's machine in a real demo). They run one
after the other, not at once, so they do not share the 2 cores.

    .venv/bin/python bench/serve.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schedtop.serve.browser import Browser  # noqa: E402

SCHEDTOP = Path(sys.executable).with_name("schedtop")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    data = Path(f"/proc/{pid}/stat").read_bytes()
    rest = data[data.rfind(b")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for t in Path(f"/proc/{p}/task").iterdir():
            kids = Path(f"/proc/{p}/task/{t.name}/children")
            todo.extend(int(k) for k in kids.read_text().split()) if kids.exists() else None
    return out


def tree_cpu(pid: int) -> float:
    total = 0.0
    for p in tree(pid):
        try:
            total += cpu_seconds(p)
        except OSError:
            pass
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def browser_run(seconds: float) -> dict[str, float]:
    port = free_port()
    t0 = time.monotonic()
    srv = subprocess.Popen([str(SCHEDTOP), "serve", "--listen", f"127.0.0.1:{port}", "--no-bpf", "-d", "1"],
                           stderr=subprocess.PIPE, text=True)
    assert srv.stderr is not None
    srv.stderr.readline()
    listening = time.monotonic() - t0
    try:
        async with Browser(1220, 860) as b:
            await b.goto(f"http://127.0.0.1:{port}/")
            await b.wait_text("PID", "COMMAND", "runnable")
            table = time.monotonic() - t0
            cols, rows = await b.evaluate("[window.__schedtopTerminal.cols, window.__schedtopTerminal.rows]")
            (app,) = [int(c) for c in Path(f"/proc/{srv.pid}/task/{srv.pid}/children").read_text().split()]
            await asyncio.sleep(3)  # past the start-up
            assert b.proc is not None
            before = (tree_cpu(app), cpu_seconds(srv.pid), tree_cpu(b.proc.pid))
            await asyncio.sleep(seconds)
            after = (tree_cpu(app), cpu_seconds(srv.pid), tree_cpu(b.proc.pid))
    finally:
        srv.terminate()
        srv.wait(30)
    app_s, server_s, chromium_s = (a - b_ for a, b_ in zip(after, before, strict=True))
    return {"listening_s": listening, "table_s": table, "cols": cols, "rows": rows,
            "app": app_s / seconds, "server": server_s / seconds, "chromium": chromium_s / seconds}


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=False).stdout


def terminal_run(seconds: float, cols: int, rows: int) -> dict[str, float]:
    session = f"serve-bench-{os.getpid()}"
    t0 = time.monotonic()
    tmux("new-session", "-d", "-s", session, "-x", str(cols), "-y", str(rows), f"{SCHEDTOP} --no-bpf -d 1")
    try:
        pane = int(tmux("display", "-p", "-t", session, "#{pane_pid}").strip())
        while "runnable" not in tmux("capture-pane", "-p", "-t", session):
            assert time.monotonic() - t0 < 60
            time.sleep(0.05)
        table = time.monotonic() - t0
        time.sleep(3)
        before = tree_cpu(pane)
        time.sleep(seconds)
        return {"table_s": table, "app": (tree_cpu(pane) - before) / seconds}
    finally:
        tmux("kill-session", "-t", session)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    web = asyncio.run(browser_run(args.seconds))
    term = terminal_run(args.seconds, int(web["cols"]), int(web["rows"]))
    print(f"terminal size {web['cols']:.0f}x{web['rows']:.0f}, {os.cpu_count()} CPUs, {args.seconds:g} s each")
    print(f"browser : listening {web['listening_s']:.2f} s, table on the page {web['table_s']:.2f} s after start; "
          f"CPU per second: app {web['app'] * 1000:.0f} ms, server {web['server'] * 1000:.0f} ms, "
          f"chromium {web['chromium'] * 1000:.0f} ms")
    print(f"terminal: table in tmux {term['table_s']:.2f} s after start; CPU per second: app {term['app'] * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
