"""On the booted sched_ext kernel, whichever it is (`schedtop lab run --kernel K`): the
pre-load probe (schedtop/scx/compat.py) chooses the same kfunc forms that libbpf resolves
when it loads scx.bpf.o, and agrees with the dump of this release if we have one."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from schedtop.scx import compat
from schedtop.scx.loader import LoadConfig, Scheduler

pytestmark = pytest.mark.kernel

DUMPS = Path(__file__).resolve().parents[1] / "fixtures" / "sched_ext-btf"
RESOLVED = re.compile(r"extern \(func ksym\) '([^']+)': resolved to")


@pytest.fixture
def loaded(caplog):
    caplog.set_level(1, logger="schedtop.libbpf")  # libbpf debug lines are logged below DEBUG
    sched = Scheduler(LoadConfig(partial=True, timeout_ms=30000))
    try:
        yield sched, set(RESOLVED.findall(caplog.text))
    finally:
        sched.close()


def test_the_probe_predicts_exactly_the_externs_libbpf_resolved(loaded) -> None:
    sched, resolved = loaded
    assert resolved, "no libbpf debug lines about externs: is the log callback on?"
    predicted = sched.compat.resolves
    assert resolved == predicted, (f"libbpf only {sorted(resolved - predicted)}, "
                                   f"probe only {sorted(predicted - resolved)}")
    for need in compat.NEEDS:  # and the form it names is the newest one resolved
        got = [f for f in need.forms if f in resolved]
        assert (compat.kernel_name(got[0]) if got else None) == sched.compat.chosen.get(need.api), need.api


def test_the_probe_agrees_with_the_dump_of_this_release(loaded) -> None:
    sched, _ = loaded
    release = os.uname().release
    kf, ops = DUMPS / f"kf-{release}.json", DUMPS / f"ops-{release}.txt"
    if not kf.exists():
        pytest.skip(f"no BTF dump of {release} in {DUMPS}")
    from schedtop.scx.loader import OBJ_PATH, object_externs

    externs = object_externs(OBJ_PATH)
    dumped = compat.KernelView.from_dumps(kf, ops, release)
    from_dump = compat.plan(externs, ["select_cpu", "enqueue", "dispatch"], dumped)
    assert (from_dump.chosen, from_dump.off) == (sched.compat.chosen, sched.compat.off)
