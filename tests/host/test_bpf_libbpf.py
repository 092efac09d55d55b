"""The libbpf binding against real BPF on this kernel: a small test object (bpf/libbpf_test.bpf.c
next to this file) driven through BPF_PROG_TEST_RUN and a real tracepoint."""

from __future__ import annotations

import collections
import ctypes
import errno
import logging
import os
import struct
import time
from pathlib import Path

import pytest

from schedtop.bpf.btf import Btf, ctypes_layout
from schedtop.bpf.globals import Globals
from schedtop.bpf.libbpf import (
    BpfError,
    BpfObject,
    RingBuffer,
    RingReader,
    UserRingBuffer,
    find_libbpf,
    num_possible_cpus,
)

from bpf_build import compile_bpf

pytestmark = [pytest.mark.root, pytest.mark.bpf]
SRC = Path(__file__).parent / "bpf" / "libbpf_test.bpf.c"
REC = struct.Struct("<QII")  # struct rec: seq, magic, cpu
BPF_MAP_TYPE_RINGBUF = 27  # include/uapi/linux/bpf.h


class Rec(ctypes.Structure):
    _fields_ = [("seq", ctypes.c_uint64), ("magic", ctypes.c_uint32), ("cpu", ctypes.c_uint32)]


@pytest.fixture(scope="module")
def obj_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_bpf(SRC, tmp_path_factory.mktemp("bpf") / "lt.bpf.o")


@pytest.fixture
def obj(obj_path: Path):
    with BpfObject.open(obj_path) as o:
        o.program("on_switch_raw").autoload = False
        Globals(o, ".rodata").var("magic", ctypes.c_uint32).value = 40
        o.load()
        yield o


def bss_u64(o: BpfObject, name: str) -> int:
    """A .bss counter by name, at the offset the object's BTF gives (DATASEC order is the compiler's)."""
    return Globals(o, ".bss").var(name, ctypes.c_uint64).value


def test_uses_libbpf_at_least_1_4() -> None:
    assert find_libbpf().version >= (1, 4)


def test_rodata_set_before_load_reaches_bpf(obj: BpfObject) -> None:
    assert obj.program("emit").test_run(ctx=struct.pack("<I", 1)) == 40
    # after load .rodata is frozen: the binding hands back a copy with the loaded value
    copy = Globals(obj, ".rodata").var("magic", ctypes.c_uint32)
    assert copy.value == 40
    copy.value = 41  # a copy: BPF still sees 40
    assert obj.program("emit").test_run(ctx=struct.pack("<I", 1)) == 40


def test_globals_by_name_check_the_size_and_follow_the_btf(obj: BpfObject) -> None:
    bss = Globals(obj, ".bss")
    assert set(bss.vars) == {"emitted", "drained_sum", "drained_n", "switches", "unused_rec"}  # a pointer
    offsets = {name: f.offset for name, f in bss.vars.items()}
    assert offsets == Btf.of_object(obj).datasec_offsets(".bss")
    assert len(set(offsets.values())) == 5 and all(f.size == 8 for f in bss.vars.values())
    with pytest.raises(TypeError, match="emitted is 8 bytes, c_uint is 4"):
        bss.var("emitted", ctypes.c_uint32)
    with pytest.raises(KeyError, match="no variable 'nope' in .bss"):
        bss.var("nope", ctypes.c_uint64)
    # two views of one variable are the same memory: the kernel's writes show in both
    a, b = bss.var("emitted", ctypes.c_uint64), bss.var("emitted", ctypes.c_uint64)
    obj.program("emit").test_run(ctx=struct.pack("<I", 3))
    assert a.value == b.value == 3


def test_ring_buffer_callback_and_live_data_knob(obj: BpfObject) -> None:
    Globals(obj, ".data").var("live_knob", ctypes.c_uint32).value = 2  # .data is shared with the kernel after load
    assert obj.program("emit").test_run(ctx=struct.pack("<I", 5)) == 40
    got: list[bytes] = []
    with RingBuffer(obj.map("rb"), got.append) as rb:
        assert rb.poll(100) == 5
        assert rb.consume() == 0
    recs = [Rec.from_buffer_copy(b) for b in got]
    assert [r.seq for r in recs] == [0, 1, 2, 3, 4]
    assert {r.magic for r in recs} == {42}
    assert bss_u64(obj, "emitted") == 5


def test_ring_buffer_callback_exception_surfaces(obj: BpfObject) -> None:
    obj.program("emit").test_run(ctx=struct.pack("<I", 2))

    def boom(_: bytes) -> None:
        raise ValueError("from callback")

    with RingBuffer(obj.map("rb"), boom) as rb, pytest.raises(ValueError, match="from callback"):
        rb.consume()


def test_ring_reader_batches_in_order(obj: BpfObject) -> None:
    assert obj.map("rb").map_type == BPF_MAP_TYPE_RINGBUF
    with RingReader(obj.map("rb")) as rr:
        assert rr.read_fixed(REC) == [] and not rr.wait(0)
        obj.program("emit").test_run(ctx=struct.pack("<I", 700))
        assert rr.wait(100)
        first = rr.read_fixed(REC, limit=200)
        rest = rr.read_fixed(REC)
        seqs = [r[0] for r in first + rest]
        assert seqs == list(range(700))
        assert rr.read_fixed(REC) == [] and not rr.wait(0)  # nothing left behind
        # wraps around the 64 KiB ring several times without losing order
        total = []
        for _ in range(10):
            obj.program("emit").test_run(ctx=struct.pack("<I", 1000))
            total += [r[0] for r in rr.read_fixed(REC)]
        assert total == list(range(700, 10700))


def test_user_ring_buffer_to_bpf(obj: BpfObject) -> None:
    with UserRingBuffer(obj.map("urb")) as urb:
        for i in range(1, 11):
            urb.send(struct.pack("<Q", i))
        urb.send(struct.pack("<Q", 100))
        assert obj.program("drain").test_run() == 11
    assert bss_u64(obj, "drained_n") == 11
    assert bss_u64(obj, "drained_sum") == 155


def test_user_ring_buffer_push_from_stops_when_full_and_keeps_order(obj: BpfObject) -> None:
    # 64 KiB ring, 8-byte records with an 8-byte header each: at most 4096 fit before a drain.
    records = collections.deque(struct.pack("<Q", i) for i in range(1, 6001))
    with UserRingBuffer(obj.map("urb")) as urb:
        first = urb.push_from(records, 8)
        assert 0 < first < 6000 and len(records) == 6000 - first
        assert records[0] == struct.pack("<Q", first + 1)  # the rest waits, in order
        assert urb.push_from(records, 8) == 0  # still full: nothing lost, nothing reordered
        assert obj.program("drain").test_run() == first
        assert bss_u64(obj, "drained_sum") == first * (first + 1) // 2
        while records:
            assert urb.push_from(records, 8) > 0
            obj.program("drain").test_run()
    assert bss_u64(obj, "drained_n") == 6000
    assert bss_u64(obj, "drained_sum") == 6000 * 6001 // 2


def test_maps_lookup_update_delete_iterate(obj: BpfObject) -> None:
    kv = obj.map("kv")
    assert kv.lookup(1) is None
    for k in range(1, 6):
        kv.update(k, k * 10)
    assert kv.lookup(3) == (30).to_bytes(8, "little")
    batch = {int.from_bytes(k, "little"): int.from_bytes(v, "little") for k, v in kv.lookup_batch(chunk=2)}
    assert batch == {1: 10, 2: 20, 3: 30, 4: 40, 5: 50}
    assert kv.delete(3) and not kv.delete(3)
    assert sorted(int.from_bytes(k, "little") for k, _ in kv.lookup_batch()) == [1, 2, 4, 5]
    with pytest.raises(BpfError) as exc:
        kv.update(9, 1, flags=2)  # BPF_EXIST on a missing key
    assert exc.value.errno == errno.ENOENT and "bpf_map__update_elem kv" in str(exc.value)
    with pytest.raises(ValueError, match="map wants 4"):
        kv.lookup(b"\x01\x02")


def test_percpu_values(obj: BpfObject) -> None:
    os.sched_setaffinity(0, {0})
    try:
        for _ in range(3):
            obj.program("emit").test_run(ctx=struct.pack("<I", 1))
    finally:
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    slots = obj.map("pc").lookup_percpu(0)
    assert slots is not None and len(slots) == num_possible_cpus()
    assert sum(int.from_bytes(s, "little") for s in slots) == 3


def test_tp_btf_attach_counts_real_switches(obj: BpfObject) -> None:
    links, errors = obj.attach_all()
    assert set(links) == {"on_switch"} and errors == {}  # raw_tp had autoload off; syscall progs skipped
    before = bss_u64(obj, "switches")
    for _ in range(20):
        time.sleep(0.001)  # each sleep is at least two switches on this CPU
    after = bss_u64(obj, "switches")
    assert after - before >= 20
    assert after < 1_000_000  # the raw_tp twin (adds 1e6) was not loaded
    links["on_switch"].destroy()
    links["on_switch"].destroy()  # idempotent
    frozen = bss_u64(obj, "switches")
    time.sleep(0.02)
    assert bss_u64(obj, "switches") == frozen


def test_btf_layout_matches_ctypes(obj: BpfObject) -> None:
    fields = Btf.of_object(obj).struct_fields("rec")
    assert fields == ctypes_layout(Rec)


def test_vmlinux_btf_probes() -> None:
    with Btf.vmlinux() as v:
        assert v.has_tracepoint("sched_switch") and v.has_tracepoint("sched_wakeup")
        assert not v.has_tracepoint("no_such_tracepoint")
        assert v.struct_has_field("task_struct", "__state") or v.struct_has_field("task_struct", "state")
        assert v.has_func("schedule")


def test_verifier_rejection_is_a_clear_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = compile_bpf(SRC, tmp_path / "bad.bpf.o", "BAD_PROGRAM")
    caplog.set_level(logging.INFO, logger="schedtop.libbpf")
    with BpfObject.open(bad) as o:
        with pytest.raises(BpfError) as exc:
            o.load()
    msg = str(exc.value)
    assert "bpf_object__load" in msg and "bad" in msg
    assert "invalid access to map value" in msg  # the verifier's own verdict, from libbpf's log
    assert any("BEGIN PROG LOAD LOG" in r.getMessage() for r in caplog.records)  # routed to logging


def test_missing_object_names_make_bpf(tmp_path: Path) -> None:
    with pytest.raises(BpfError, match="make bpf"):
        BpfObject.open(tmp_path / "nope.bpf.o")


def test_struct_ops_attach_and_destroy(tmp_path: Path) -> None:
    """struct_ops through bpf_map__attach_struct_ops, with a TCP congestion control (this kernel
    has no sched_ext; the scheduler takes the same path in the guest)."""
    path = compile_bpf(Path(__file__).parent / "bpf" / "struct_ops_test.bpf.c", tmp_path / "st.bpf.o")
    avail = Path("/proc/sys/net/ipv4/tcp_available_congestion_control")
    with BpfObject.open(path) as o:
        ops = o.map("schedtop_test_ca")
        # the struct_ops image is writable before load, like .rodata
        addr, size = ops.initial_value()
        assert size >= 16
        o.load()
        assert o.attach_all() == ({}, {})  # struct_ops programs attach through their map
        link = ops.attach_struct_ops()
        assert "schedtop_test" in avail.read_text().split()
        with pytest.raises(BpfError) as exc:
            ops.attach_struct_ops()  # the same name twice
        assert exc.value.errno in (errno.EEXIST, errno.EBUSY)
        link.destroy()
        assert "schedtop_test" not in avail.read_text().split()
