"""The ctypes mirrors of bpf/scx.h match the compiled object's BTF, field by field."""

from __future__ import annotations

import pytest

from schedtop.bpf import objects
from schedtop.scx import protocol
from schedtop.scx.policy import CPU_ANY, TaskIn

OBJ = objects.path("scx")


@pytest.fixture(scope="module")
def btf():
    from schedtop.bpf.btf import Btf

    if not OBJ.exists():
        pytest.skip("scx.bpf.o not built (make bpf)")
    with Btf.from_file(OBJ) as b:
        yield b


@pytest.mark.parametrize("ctype,name", [
    (protocol.ScxQueued, "scx_queued"),
    (protocol.ScxDispatched, "scx_dispatched"),
    (protocol.ScxTaskKnob, "scx_task_knob"),
    (protocol.ScxPlan, "scx_plan"),
    (protocol.ScxCounters, "scx_counters"),
    (protocol.ScxExitRec, "scx_exit_rec"),
])
def test_ctypes_mirror_matches_btf(btf, ctype, name):
    from schedtop.bpf.btf import ctypes_layout

    assert btf.type_size(name) == __import__("ctypes").sizeof(ctype)
    theirs = {k: (f.offset, f.size) for k, f in btf.struct_fields(name).items()}
    ours = {k: (f.offset, f.size) for k, f in ctypes_layout(ctype).items()}
    assert ours == theirs


def test_live_knobs_and_globals_exist(btf):
    from schedtop.bpf.btf import KIND_VAR

    for var in ("live", "counters", "exit_rec", "lat_hist", "own_tgid", "default_slice_ns", "heartbeat_ns"):
        assert btf.find(var, KIND_VAR), var


def test_record_round_trip():
    rec = protocol.ScxQueued(pid=42, cpu=1, nr_cpus_allowed=2, weight=100, flags=1, exec_runtime=5,
                             run_ns=6, vtime=7, gen=8, enq_ns=9, comm=b"stress-ng")
    task = protocol.task_from_record(protocol.QUEUED.unpack(bytes(rec)))
    assert isinstance(task, TaskIn)
    assert task[:10] == (42, 1, 2, 100, 1, 5, 6, 7, 8, 9) and task.comm == "stress-ng"
    assert TaskIn(1, 0, 1, 100, 0, 0, 0, 0, 0, 0, "given as str").comm == "given as str"
    raw = protocol.pack_decision(42, CPU_ANY, 1000, 2**63, 8, 1)
    d = protocol.ScxDispatched.from_buffer_copy(raw)
    assert (d.pid, d.cpu, d.slice_ns, d.deadline, d.gen, d.flags) == (42, 0xFFFFFFFF, 1000, 2**63, 8, 1)
