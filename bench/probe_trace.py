"""Split one probe thread's wake-up latency into its timer part and its scheduling part (tracefs).

For every cycle of a thread that sleeps on an hrtimer (cyclictest's measuring thread):

    softexpires ----timer----> sched_waking ----scheduling----> sched_switch to the thread
    (hrtimer_start)           (the timer fired, ttwu began)    (it has the CPU)

The timer part is how late the guest delivered the timer interrupt (TCG timer emulation, timer
slack, interrupts off); the scheduling part is what a CPU scheduler can change. For a thread
woken by another thread (bench/wakeprobe.c) there is no timer: the scheduling part is all.

Uses the kernel's own trace events, not schedtop's BPF tier, so the recorder is the same on
EEVDF and under schedtop. trace_clock is "mono", the clock of the hrtimer's expiry values.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

TRACEFS = Path("/sys/kernel/tracing")
EVENTS = ("sched/sched_waking", "sched/sched_wakeup", "sched/sched_switch",
          "timer/hrtimer_start", "timer/hrtimer_expire_entry")
LINE = re.compile(r"^\s*(?P<comm>.+?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+\S+\s+(?P<ts>\d+\.\d+):\s+"
                  r"(?P<event>\w+):\s+(?P<rest>.*)$")
FIELD = re.compile(r"(\w+)=(\S+)")


@dataclass(frozen=True)
class Cycle:
    timer_ns: int | None  # softexpires -> sched_waking; None when woken by another thread
    sched_ns: int         # sched_waking -> switched in
    remote: bool          # the waking CPU is not the CPU the thread ran on next
    prev_comm: str        # what the CPU ran until the thread got it
    gap_timers: int = 0   # hrtimers the run CPU served between waking and switch-in
    after_tick: bool = False  # the switch-in came right after a scheduler tick on that CPU


def _write(name: str, value: str) -> None:
    (TRACEFS / name).write_text(value)


def start(tid: int, timers: bool = True) -> None:
    """Record the events of thread `tid` (and all hrtimer expiries, matched later by pointer)."""
    _write("tracing_on", "0")
    _write("current_tracer", "nop")
    _write("trace_clock", "mono")
    _write("buffer_size_kb", "8192")
    _write("set_event", "")
    _write("trace", "")
    filters = {"sched/sched_waking": f"pid == {tid}", "sched/sched_wakeup": f"pid == {tid}",
               "sched/sched_switch": f"prev_pid == {tid} || next_pid == {tid}"}
    if timers:
        filters |= {"timer/hrtimer_start": f"common_pid == {tid}", "timer/hrtimer_expire_entry": "0"}
    for ev, flt in filters.items():
        (TRACEFS / "events" / ev / "filter").write_text(flt)  # "0" clears a filter
        (TRACEFS / "events" / ev / "enable").write_text("1")
    _write("tracing_on", "1")


def stop() -> str:
    _write("tracing_on", "0")
    text = (TRACEFS / "trace").read_text()
    for ev in EVENTS:
        (TRACEFS / "events" / ev / "enable").write_text("0")
        (TRACEFS / "events" / ev / "filter").write_text("0")
    _write("trace", "")
    return text


def _us_to_ns(ts: str) -> int:
    sec, _, frac = ts.partition(".")
    return int(sec) * 1_000_000_000 + int(frac.ljust(9, "0")[:9])


TICK_FUNCS = ("tick_nohz_handler", "tick_sched_timer")
TICK_NEAR_NS = 300_000  # a switch this soon after a tick was (most likely) made by the tick


def cycles(text: str, tid: int) -> list[Cycle]:
    """One Cycle per wake-up of `tid` that ended with it switched in.

    Besides the two parts, each cycle says whether the CPU that ran the thread served any
    hrtimer interrupt between the wake-up and the switch (if it did, the guest CPU was
    executing and chose not to switch yet; if it did not, the vCPU itself was not running
    guest code, e.g. descheduled by the host) and whether the switch followed a tick.
    """
    out: list[Cycle] = []
    since: dict[int, list[tuple[int, bool]]] = {}  # cpu -> hrtimer expiries since the wake-up
    timer_ptr, soft = None, None
    waking_ns, waking_cpu, fired = None, None, False
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        ev, cpu, ts = m["event"], int(m["cpu"]), _us_to_ns(m["ts"])
        f = dict(FIELD.findall(m["rest"]))
        if ev == "hrtimer_start" and int(m["pid"]) == tid:
            timer_ptr, soft, fired = f.get("hrtimer"), int(f["softexpires"]), False
        elif ev == "hrtimer_expire_entry":
            if f.get("hrtimer") == timer_ptr and timer_ptr:
                fired = True
            elif waking_ns is not None:
                since.setdefault(cpu, []).append((ts, f.get("function", "").split("/")[0] in TICK_FUNCS))
        elif ev == "sched_waking" and int(f["pid"]) == tid:
            waking_ns, waking_cpu = ts, cpu
            since = {}
        elif ev == "sched_switch" and int(f["next_pid"]) == tid and waking_ns is not None:
            timer = waking_ns - soft if (fired and soft is not None) else None
            mine = since.get(cpu, [])
            after_tick = any(tick and ts - t <= TICK_NEAR_NS for t, tick in mine)
            out.append(Cycle(timer, ts - waking_ns, waking_cpu != cpu, f["prev_comm"], len(mine), after_tick))
            waking_ns, soft, timer_ptr, fired = None, None, None, False
    return out


def pct(values: list[int], q: float) -> float:
    s = sorted(values)
    return float(s[min(len(s) - 1, int(q / 100 * len(s)))]) if s else float("nan")


def summary(cs: list[Cycle]) -> dict[str, object]:
    """Percentiles (µs) of each part and what the slowest 1% of scheduling parts had in common."""
    sched = [c.sched_ns for c in cs]
    timer = [c.timer_ns for c in cs if c.timer_ns is not None]
    res: dict[str, object] = {"cycles": len(cs)}
    for name, vals in (("sched", sched), ("timer", timer)):
        if vals:
            res[name] = {f"p{q}": round(pct(vals, q) / 1000, 1) for q in (50, 90, 99)}
            res[name]["max"] = round(max(vals) / 1000, 1)
    if sched:
        cut = pct(sched, 99)
        tail = [c for c in cs if c.sched_ns >= cut]
        res["sched_tail"] = {
            "n": len(tail), "from_us": round(cut / 1000, 1),
            "remote": sum(c.remote for c in tail),
            "cpu_served_timers": sum(c.gap_timers > 0 for c in tail),
            "after_tick": sum(c.after_tick for c in tail),
            "prev": dict(Counter(_kind(c.prev_comm) for c in tail).most_common(5)),
        }
        res["sched_over_1ms"] = sum(c.sched_ns > 1_000_000 for c in cs)
    if timer:
        res["timer_over_1ms"] = sum(t > 1_000_000 for t in timer)
    return res


def _kind(comm: str) -> str:
    """Group comms: stress-ng-cpu workers, python (the policy loop), the rest by name."""
    if comm.startswith("stress-ng"):
        return "stress-ng"
    if comm.startswith("python"):
        return "python"
    return re.sub(r"[/:].*$", "", comm)
