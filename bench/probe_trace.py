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

import bisect
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
    tick_late_ns: int | None = None  # the switch came right after a tick: how late that tick was
    armed_late: bool = False  # the thread armed its timer after the expiry (it was still running
    #                           or preempted then): that "timer part" is the thread's own delay


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
TICK_NS = 4_000_000  # HZ=250 in the lab kernel's config
TICK_NEAR_NS = 300_000  # a switch this soon after a tick was (most likely) made by the tick
SAME_IRQ_NS = 50_000  # timers expiring in the very interrupt that woke the thread don't count
LATE_NS = 1_000_000


def _events(text: str):
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            yield m, int(m["cpu"]), _us_to_ns(m["ts"]), dict(FIELD.findall(m["rest"]))


def _is_tick(f: dict[str, str]) -> bool:
    return f.get("function", "").split("/")[0] in TICK_FUNCS


def tick_phases(text: str) -> dict[int, int]:
    """Per CPU, the phase (ns mod TICK_NS) at which its tick is due: the densest 100 µs of
    observed tick times, since most ticks are on time (they are aligned to jiffies)."""
    nows: dict[int, list[int]] = {}
    for m, cpu, _, f in _events(text):
        if m["event"] == "hrtimer_expire_entry" and _is_tick(f):
            nows.setdefault(cpu, []).append(int(f["now"]) % TICK_NS)
    phases = {}
    for cpu, vals in nows.items():
        vals.sort()
        ring = vals + [v + TICK_NS for v in vals]
        best = max(range(len(vals)), key=lambda i: bisect.bisect_right(ring, ring[i] + 100_000) - i)
        phases[cpu] = vals[best]
    return phases


def tick_lateness(text: str) -> list[int]:
    """How late (ns) each tick was delivered: a measure of the vCPUs not running guest code
    (host preemption of a TCG vCPU thread), whichever scheduler the guest runs."""
    ph = tick_phases(text)
    return [(int(f["now"]) - ph[cpu]) % TICK_NS for m, cpu, _, f in _events(text)
            if m["event"] == "hrtimer_expire_entry" and _is_tick(f) and cpu in ph]


def cycles(text: str, tid: int) -> list[Cycle]:
    """One Cycle per wake-up of `tid` that ended with it switched in.

    Besides the two parts, each cycle says how many hrtimer interrupts the CPU that ran the
    thread served between the wake-up and the switch, and, when the switch came right after
    a tick, how late that tick itself was. A switch right after an on-time tick is a
    preemption deferred to the tick (lazy preemption); a switch right after a tick that was
    itself late by a millisecond or more means that CPU ran no guest code meanwhile (its
    vCPU thread was not running on the host): no guest scheduler can act during that time.
    """
    ph = tick_phases(text)
    out: list[Cycle] = []
    since: dict[int, list[tuple[int, int | None]]] = {}  # cpu -> (ts, tick lateness) since the wake-up
    timer_ptr, soft, armed_late = None, None, False
    waking_ns, waking_cpu, fired = None, None, False
    for m, cpu, ts, f in _events(text):
        ev = m["event"]
        if ev == "hrtimer_start" and int(m["pid"]) == tid and f.get("function") == "hrtimer_wakeup":
            # (only its sleep timer: a tick re-armed in an interrupt over the thread also
            # shows up as an hrtimer_start with its pid)
            timer_ptr, soft, fired = f.get("hrtimer"), int(f["softexpires"]), False
            armed_late = soft <= ts
        elif ev == "hrtimer_expire_entry":
            if f.get("hrtimer") == timer_ptr and timer_ptr:
                fired = True
            elif waking_ns is not None and ts - waking_ns > SAME_IRQ_NS:
                late = (int(f["now"]) - ph[cpu]) % TICK_NS if _is_tick(f) and cpu in ph else None
                since.setdefault(cpu, []).append((ts, late))
        elif ev == "sched_waking" and int(f["pid"]) == tid:
            waking_ns, waking_cpu = ts, cpu
            since = {}
        elif ev == "sched_switch" and int(f["next_pid"]) == tid and waking_ns is not None:
            timer = waking_ns - soft if (fired and soft is not None) else None
            mine = since.get(cpu, [])
            near = [late for t, late in mine if late is not None and ts - t <= TICK_NEAR_NS]
            out.append(Cycle(timer, ts - waking_ns, waking_cpu != cpu, f["prev_comm"], len(mine),
                             near[-1] if near else None, timer is not None and armed_late))
            waking_ns, soft, timer_ptr, fired = None, None, None, False
    return out


def pct(values: list[int], q: float) -> float:
    s = sorted(values)
    return float(s[min(len(s) - 1, int(q / 100 * len(s)))]) if s else float("nan")


def summary(cs: list[Cycle], ticks: list[int] | None = None) -> dict[str, object]:
    """Percentiles (µs) of each part and what the slowest 1% of scheduling parts had in common;
    with `ticks` (tick_lateness()), how late the guest's own ticks were."""
    sched = [c.sched_ns for c in cs]
    # Timer delivery only: a timer armed after its expiry fires at once, and what it "measures"
    # is how late the thread itself was (counted apart as armed_late).
    timer = [c.timer_ns for c in cs if c.timer_ns is not None and not c.armed_late]
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
            "after_ontime_tick": sum(c.tick_late_ns is not None and c.tick_late_ns < LATE_NS for c in tail),
            "after_late_tick": sum(c.tick_late_ns is not None and c.tick_late_ns >= LATE_NS for c in tail),
            "prev": dict(Counter(_kind(c.prev_comm) for c in tail).most_common(5)),
        }
        res["sched_over_1ms"] = sum(c.sched_ns > 1_000_000 for c in cs)
    if timer:
        res["timer_over_1ms"] = sum(t > 1_000_000 for t in timer)
        res["armed_late"] = sum(c.armed_late for c in cs)
    if ticks:
        res["tick_late"] = {"n": len(ticks), "p50": round(pct(ticks, 50) / 1000, 1),
                            "p99": round(pct(ticks, 99) / 1000, 1),
                            "over_1ms": sum(t >= LATE_NS for t in ticks)}
    return res


def analyse(text: str, tid: int) -> dict[str, object]:
    return summary(cycles(text, tid), tick_lateness(text))


def _kind(comm: str) -> str:
    """Group comms: stress-ng-cpu workers, python (the policy loop), the rest by name."""
    if comm.startswith("stress-ng"):
        return "stress-ng"
    if comm.startswith("python"):
        return "python"
    return re.sub(r"[/:].*$", "", comm)
