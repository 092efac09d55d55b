"""Does schedtop's policy loop wait on the TUI? Enqueue -> dispatch with the real TUI vs headless.

Run in the sched_ext guest (root), interleaved rounds in ONE boot:

  headless  the scheduler exactly as the TUI's supervisor starts it (ScxOptions().argv():
            `schedtop scx --json --control stdin ...`), stdout drained, no TUI anywhere;
  tui       the real `schedtop` binary in a tmux pane at the fastest refresh it has
            (`-d 0.05`: the poller never waits less than 50 ms between collections), the
            scheduler loaded by its own L key + y (its supervised child), the task table on
            screen and re-sorted by CPU% every refresh while the workload churns tasks.

The same workload runs the whole time: `perf bench sched messaging` back to back (new
tasks every run: the table never settles) and a waker that sleeps 1 ms in a loop.

Per round, after a warm-up, over one window:
  - the BPF side's enqueue -> user dispatch histogram (log2 µs buckets, `lat_hist` in the
    scheduler's .bss, read with bpftool at both ends of the window, so load and warm-up are out),
    p50/p99 with the loop's own interpolation (schedtop.scx.loop.hist_percentile);
  - the loop's own stats from its scx_stats socket (dispatch_p50_us/dispatch_p99_us, cumulative
    since its load, and cpu_pct), the same socket for both arms;
  - the loop process's CPU (from /proc over the window), its decisions per second, and the
    TUI's CPU, the bytes it wrote to its terminal and its refreshes (status-bar repaints).
The workload is stopped (SIGSTOP) while an arm starts or stops; it runs through warm-up and window.

    .venv/bin/schedtop lab run --timeout 1500 -- .venv/bin/python bench/scx_tui_latency.py [--pairs 3] [--window 20]

Prints each round and the ratios TUI/headless of the medians. Timings are TCG-emulated:
compare within one boot only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schedtop.scx.loop import hist_percentile  # noqa: E402
from schedtop.scx.protocol import LAT_BUCKETS, ScxCounters  # noqa: E402
from schedtop.scx.supervisor import ScxOptions  # noqa: E402

SCHEDTOP = ROOT / ".venv" / "bin" / "schedtop"
SCX = Path("/sys/kernel/sched_ext")
TMUX_SOCKET = f"scxtui{os.getpid()}"  # a private tmux server: killing it touches nobody else's
TUI_DELAY = "0.05"  # schedtop.ui.poller: wait = max(0.05, delay - collect time); less changes nothing
LOAD_TIMEOUT_S = 240.0  # TCG under a saturated guest: Python start, re-exec, BPF load
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The status bar ends in "collect Nms" and is repainted for every snapshot the app shows (tmux
# does not answer Textual's synchronized-output query, so frames are not bracketed): a refresh count.
REFRESH_MARK = b"collect "


def _bss_layout() -> tuple[int, int]:
    """Offsets of lat_hist and counters in the scheduler's .bss, from the object's own BTF."""
    from schedtop.bpf.btf import Btf
    from schedtop.bpf.libbpf import BpfObject
    from schedtop.scx.loader import OBJ_PATH

    obj = BpfObject.open(OBJ_PATH)
    try:
        offs = Btf.of_object(obj).datasec_offsets(".bss")
    finally:
        obj.close()
    return offs["lat_hist"], offs["counters"]


HIST_OFF, COUNTERS_OFF = _bss_layout()


# --- small readers ---------------------------------------------------------------------------


def state() -> str:
    return (SCX / "state").read_text().strip()


def ops() -> str:
    p = SCX / "root" / "ops"
    return p.read_text().strip() if p.exists() else ""


def enable_seq() -> int:
    return int((SCX / "enable_seq").read_text())


def cpu_s(pid: int | None) -> float:
    """utime + stime of a whole process (all its threads), seconds."""
    if pid is None:
        return 0.0
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return 0.0
    f = data[data.rfind(b")") + 2:].split()
    return (int(f[11]) + int(f[12])) / CLK_TCK


def scx_loop_pid() -> int | None:
    """The running `schedtop scx` process (one at a time here)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"schedtop" in argv and b"scx" in argv and int(proc.name) != os.getpid():
            return int(proc.name)
    return None


def read_bss() -> tuple[list[int], dict[str, int]]:
    """lat_hist and the counters, straight from the kernel's copy of the scheduler's .bss."""
    maps = json.loads(subprocess.run(["bpftool", "-j", "map", "show"], capture_output=True, text=True,
                                     check=True).stdout)
    ids = [m["id"] for m in maps if m.get("name") == "scx.bss"]
    if not ids:
        raise RuntimeError("no scx.bss map: is the scheduler loaded?")
    out = json.loads(subprocess.run(["bpftool", "-j", "map", "lookup", "id", str(max(ids)), "key", "0", "0", "0", "0"],
                                    capture_output=True, text=True, check=True).stdout)
    raw = bytes(int(b, 16) for b in out["value"])
    hist = list(struct.unpack_from(f"<{LAT_BUCKETS}Q", raw, HIST_OFF))
    names = [n for n, _ in ScxCounters._fields_]
    counters = dict(zip(names, struct.unpack_from(f"<{len(names)}Q", raw, COUNTERS_OFF)))
    return hist, counters


def loop_stats() -> dict[str, Any]:
    """The loop's own stats through its scx_stats socket ({} if it does not answer)."""
    from schedtop.export.scx_stats import StatsClient, StatsError

    try:
        with StatsClient(timeout=2.0) as c:
            v = c.stats()
        return v if isinstance(v, dict) else {}
    except (StatsError, OSError):
        return {}


def wait_for(cond, timeout: float, what: str, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(step)


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-L", TMUX_SOCKET, *args], capture_output=True, text=True, check=False).stdout


# --- the workload ----------------------------------------------------------------------------


class Workload:
    """perf bench sched messaging back to back, and a 1 ms waker; each in its own process group."""

    def __init__(self, groups: int, loops: int) -> None:
        self.procs: list[subprocess.Popen] = []
        self.groups, self.loops = groups, loops

    def start(self) -> None:
        msg = f"while :; do perf bench sched messaging -g {self.groups} -l {self.loops} >/dev/null 2>&1; done"
        self.procs.append(subprocess.Popen(["sh", "-c", msg], start_new_session=True))
        self.procs.append(subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(0.001)\n"],
                                           start_new_session=True))

    def send(self, sig: int) -> None:
        for p in self.procs:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGCONT)
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        self.procs.clear()


# --- the two ways to run the scheduler -------------------------------------------------------


class Headless:
    name = "headless"

    def __init__(self, tmp: Path) -> None:
        self.proc: subprocess.Popen | None = None
        self.err = tmp / "headless.err"

    def start(self) -> None:
        # The supervisor's own command line: the only difference left is the TUI.
        self.proc = subprocess.Popen(ScxOptions().argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err.open("w"), text=True, cwd=ROOT, start_new_session=True)
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()

    @staticmethod
    def _drain(proc: subprocess.Popen) -> None:
        # As the supervisor's reader does: a full pipe would block the child's printer thread.
        for _ in proc.stdout:
            pass

    def ui_pid(self) -> int | None:
        return None

    def ui_bytes(self) -> tuple[int, int]:
        return 0, 0

    def stop(self) -> None:
        p = self.proc
        if p is None:
            return
        try:
            p.stdin.close()  # what the supervisor does: stdin closing unloads
        except OSError:
            pass
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Tui:
    name = "tui"

    def __init__(self, tmp: Path, cols: int, rows: int) -> None:
        self.tmp, self.cols, self.rows = tmp, cols, rows
        self.session = "tui"
        self.pid: int | None = None
        self.pty_log = tmp / "pty.log"

    def screen(self) -> str:
        return tmux("capture-pane", "-p", "-t", self.session)

    def start(self) -> None:
        # As a user starts it (bytecode caching on, as in an installed schedtop).
        cmd = f"exec env -u PYTHONDONTWRITEBYTECODE {SCHEDTOP} -d {TUI_DELAY}"
        self.pty_log.unlink(missing_ok=True)
        tmux("new-session", "-d", "-s", self.session, "-x", str(self.cols), "-y", str(self.rows), cmd)
        tmux("pipe-pane", "-o", "-t", self.session, f"cat >> {self.pty_log}")
        self.pid = int(tmux("display", "-p", "-t", self.session, "#{pane_pid}").strip())
        wait_for(lambda: "COMMAND" in self.screen() and "tasks" in self.screen(), 180, "the TUI's first frame", 0.5)
        tmux("send-keys", "-t", self.session, "L")
        wait_for(lambda: "Load scheduler" in self.screen(), 60, "the load confirmation", 0.3)
        tmux("send-keys", "-t", self.session, "y")

    def ui_pid(self) -> int | None:
        return self.pid

    def ui_bytes(self) -> tuple[int, int]:
        try:
            data = self.pty_log.read_bytes()
        except OSError:
            return 0, 0
        return len(data), data.count(REFRESH_MARK)

    def stop(self) -> None:
        if self.pid is None:
            return
        # Unload with the app's own key, then quit.
        tmux("send-keys", "-t", self.session, "L")
        try:
            wait_for(lambda: "Unload scheduler" in self.screen(), 60, "the unload confirmation", 0.3)
            tmux("send-keys", "-t", self.session, "y")
            wait_for(lambda: state() == "disabled", 60, "unload from the TUI")
        finally:
            tmux("send-keys", "-t", self.session, "q")
            try:
                wait_for(lambda: not Path(f"/proc/{self.pid}").exists(), 30, "the TUI to quit")
            except RuntimeError:
                pass
            self.kill()

    def kill(self) -> None:
        tmux("kill-server")
        self.pid = None


# --- one round -------------------------------------------------------------------------------


@dataclass
class Round:
    arm: str
    load_s: float
    window_s: float
    p50_us: float | None
    p99_us: float | None
    n: int
    decisions_per_s: float
    loop_cpu_pct: float
    loop_stats_p50_us: float | None
    loop_stats_p99_us: float | None
    loop_stats_cpu_pct: float | None
    ui_cpu_pct: float
    ui_kb_per_s: float
    ui_refresh_per_s: float
    congested: int
    extra: dict[str, Any] = field(default_factory=dict)


def run_round(arm, work: Workload, warm: float, window: float) -> Round:
    wait_for(lambda: state() == "disabled", 30, "sched_ext disabled before the round")
    seq = enable_seq()
    # The workload holds still while an arm starts and stops (a TUI starting on a saturated TCG
    # guest takes minutes); it runs through the warm-up and the window.
    work.send(signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        arm.start()
        wait_for(lambda: state() == "enabled" and ops() == "schedtop", LOAD_TIMEOUT_S, f"{arm.name}: scheduler enabled")
        load_s = time.monotonic() - t0
        work.send(signal.SIGCONT)
        loop = scx_loop_pid()
        time.sleep(warm)
        ui = arm.ui_pid()
        h0, c0 = read_bss()
        l0, u0, b0, t_a = cpu_s(loop), cpu_s(ui), arm.ui_bytes(), time.monotonic()
        cpu_samples = []
        end = t_a + window
        last: dict[str, Any] = {}
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            s = loop_stats()
            if s:
                last = s
                if isinstance(s.get("cpu_pct"), (int, float)):
                    cpu_samples.append(float(s["cpu_pct"]))
        h1, c1 = read_bss()
        l1, u1, b1, t_b = cpu_s(loop), cpu_s(ui), arm.ui_bytes(), time.monotonic()
        if state() != "enabled" or enable_seq() != seq + 1:
            raise RuntimeError(f"{arm.name}: the scheduler did not stay loaded through the window")
    finally:
        work.send(signal.SIGSTOP)
        try:
            arm.stop()
        finally:
            work.send(signal.SIGCONT)
    wait_for(lambda: state() == "disabled", 60, f"{arm.name}: unloaded")
    dt = t_b - t_a
    dh = [b - a for a, b in zip(h0, h1)]
    return Round(
        arm=arm.name, load_s=load_s, window_s=dt,
        p50_us=hist_percentile(dh, 0.50), p99_us=hist_percentile(dh, 0.99), n=sum(dh),
        decisions_per_s=(c1["nr_user_dispatches"] - c0["nr_user_dispatches"]) / dt,
        loop_cpu_pct=100 * (l1 - l0) / dt,
        loop_stats_p50_us=last.get("dispatch_p50_us"), loop_stats_p99_us=last.get("dispatch_p99_us"),
        loop_stats_cpu_pct=statistics.fmean(cpu_samples) if cpu_samples else None,
        ui_cpu_pct=100 * (u1 - u0) / dt, ui_kb_per_s=(b1[0] - b0[0]) / 1024 / dt, ui_refresh_per_s=(b1[1] - b0[1]) / dt,
        congested=c1["nr_congested"] - c0["nr_congested"],
        extra={"rss_kb": last.get("rss_kb"), "user_queue": last.get("user_queue"),
               "kernel_dispatches_per_s": (c1["nr_kernel_dispatches"] - c0["nr_kernel_dispatches"]) / dt},
    )


def fmt(v: float | None, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def show(r: Round) -> None:
    print(f"  {r.arm:<8} load {r.load_s:5.1f}s  window {r.window_s:4.1f}s  enqueue->dispatch (BPF) "
          f"p50 {fmt(r.p50_us):>6} us  p99 {fmt(r.p99_us):>6} us  n={r.n:6d}  "
          f"decisions {r.decisions_per_s:6.0f}/s  loop CPU {r.loop_cpu_pct:5.1f}%  | loop stats: "
          f"p50 {fmt(r.loop_stats_p50_us)} p99 {fmt(r.loop_stats_p99_us)} us cpu {fmt(r.loop_stats_cpu_pct, '.1f')}%  | "
          f"TUI CPU {r.ui_cpu_pct:5.1f}%  {r.ui_kb_per_s:6.1f} KB/s  {r.ui_refresh_per_s:4.1f} refreshes/s  "
          f"congested {r.congested}", flush=True)


def median(rounds: list[Round], attr: str) -> float | None:
    vals = [getattr(r, attr) for r in rounds if getattr(r, attr) is not None]
    return statistics.median(vals) if vals else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=3, help="interleaved headless/TUI pairs (default 3)")
    ap.add_argument("--warm", type=float, default=5.0, help="seconds after the load before the window (default 5)")
    ap.add_argument("--window", type=float, default=20.0, help="measured seconds per round (default 20)")
    ap.add_argument("--groups", type=int, default=1, help="perf bench sched messaging -g (default 1)")
    ap.add_argument("--loops", type=int, default=20, help="perf bench sched messaging -l (default 20)")
    ap.add_argument("--size", default="160x50", help="the TUI's terminal, COLSxROWS (default 160x50)")
    ap.add_argument("--json", metavar="FILE", help="also write every round as JSON here")
    args = ap.parse_args()
    if os.geteuid() != 0 or not (SCX / "state").exists():
        print("scx_tui_latency: needs root on a sched_ext kernel: run it through `schedtop lab run`", file=sys.stderr)
        return 2
    for tool in ("tmux", "bpftool", "perf"):
        if shutil.which(tool) is None:
            print(f"scx_tui_latency: {tool} is not installed", file=sys.stderr)
            return 2
    cols, rows = (int(x) for x in args.size.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="scx-tui-latency-"))
    work = Workload(args.groups, args.loops)
    arms = [Headless(tmp), Tui(tmp, cols, rows)]
    rounds: list[Round] = []
    print(f"workload: perf bench sched messaging -g {args.groups} -l {args.loops} back to back + a 1 ms waker; "
          f"TUI: {SCHEDTOP.name} -d {TUI_DELAY} in tmux {cols}x{rows}; warm-up {args.warm:g} s, window {args.window:g} s",
          flush=True)
    work.start()
    try:
        for i in range(args.pairs):
            # Alternate which arm goes first, so a drift in the host's load hits both alike.
            for arm in (arms if i % 2 == 0 else arms[::-1]):
                try:
                    r = run_round(arm, work, args.warm, args.window)
                except RuntimeError as exc:
                    print(f"  {arm.name:<8} round failed: {exc}", flush=True)
                    continue
                rounds.append(r)
                show(r)
    finally:
        for arm in arms:
            arm.kill()
        work.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in rounds], indent=1))
    by = {a.name: [r for r in rounds if r.arm == a.name] for a in arms}
    if not by["tui"] or not by["headless"]:
        print("not enough rounds for a ratio")
        return 1
    # Adjacent rounds (one pair) saw nearly the same host load: their ratio is the steadier one.
    pairs = [(rounds[i], rounds[i + 1]) for i in range(0, len(rounds) - 1, 2) if rounds[i].arm != rounds[i + 1].arm]
    for q in ("p50_us", "p99_us"):
        ratios = []
        for a, b in pairs:
            t, h = (a, b) if a.arm == "tui" else (b, a)
            if getattr(t, q) is not None and getattr(h, q):
                ratios.append(getattr(t, q) / getattr(h, q))
        if ratios:
            print(f"per-pair TUI/headless {q[:3]}: {', '.join(f'{x:.2f}x' for x in ratios)}  "
                  f"(median {statistics.median(ratios):.2f}x)")
    print(f"medians over {len(by['headless'])} headless / {len(by['tui'])} TUI rounds:")
    rows_out = [("enqueue->dispatch p50 (BPF, window)", "p50_us", "us"),
                ("enqueue->dispatch p99 (BPF, window)", "p99_us", "us"),
                ("loop stats dispatch_p50_us", "loop_stats_p50_us", "us"),
                ("loop stats dispatch_p99_us", "loop_stats_p99_us", "us"),
                ("loop CPU (/proc, window)", "loop_cpu_pct", "%"),
                ("loop stats cpu_pct", "loop_stats_cpu_pct", "%"),
                ("decisions per second", "decisions_per_s", "/s"),
                ("TUI CPU", "ui_cpu_pct", "%"),
                ("TUI output", "ui_kb_per_s", "KB/s"),
                ("TUI refreshes (status-bar repaints)", "ui_refresh_per_s", "/s")]
    for label, attr, unit in rows_out:
        h, t = median(by["headless"], attr), median(by["tui"], attr)
        ratio = f"{t / h:5.2f}x" if h and t is not None else "  -"
        print(f"  {label:<38} headless {fmt(h, '.1f'):>8} {unit:<4}  TUI {fmt(t, '.1f'):>8} {unit:<4}  TUI/headless {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
