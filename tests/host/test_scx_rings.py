"""schedtop/scx/rings.py against the kernel's own ring buffers: records a BPF program
produced, read in batches from the mmap; decisions written into the user ring's memory,
drained by a BPF program that checks every field (bpf/scx_rings_test.bpf.c next to this file)."""

from __future__ import annotations

import collections
import ctypes
import struct
from pathlib import Path

import pytest

from schedtop.bpf.globals import Globals
from schedtop.bpf.libbpf import BpfObject
from schedtop.scx.policy import CPU_ANY, Decision, TaskIn
from schedtop.scx.rings import DecisionRing, QueuedReader

from bpf_build import compile_bpf

pytestmark = [pytest.mark.root, pytest.mark.bpf]
SRC = Path(__file__).parent / "bpf" / "scx_rings_test.bpf.c"
ARGS = struct.Struct("<II")


@pytest.fixture(scope="module")
def obj_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_bpf(SRC, tmp_path_factory.mktemp("bpf") / "rings.bpf.o")


@pytest.fixture
def obj(obj_path: Path):
    with BpfObject.open(obj_path) as o:
        o.load()
        yield o


def bss(o: BpfObject, name: str) -> int:
    return Globals(o, ".bss").var(name, ctypes.c_uint64).value


def reader_of(o: BpfObject) -> QueuedReader:
    m = o.map("queued")
    return QueuedReader(m.fd, m.max_entries)


def emit(o: BpfObject, n: int, discard_every: int = 0) -> None:
    o.program("emit").test_run(ctx=ARGS.pack(n, discard_every))


def test_reader_batches_whole_records_in_order_across_wraps(obj: BpfObject) -> None:
    r = reader_of(obj)
    try:
        assert r.read(512) == [] and not r.wait(0)
        emit(obj, 700)  # 700 x 88 bytes: most of the 64 KiB ring
        assert r.wait(100)
        first = r.read(200)
        rest = r.read(10_000)
        assert [t[0] for t in first + rest] == list(range(1, 701))
        task = TaskIn(*first[0])
        assert (task.pid, task.cpu, task.weight, task.gen, task.enq_ns, task.run_ns, task.comm) == \
            (1, 1, 100, 3, 1000, 1_050_000, "h")
        assert r.pending() == 0
        got = []
        for _ in range(20):  # ~2 MB through a 64 KiB ring: it wraps many times
            emit(obj, 600)
            got += [t[0] for t in r.read(10_000)]
        assert got == list(range(701, 701 + 20 * 600))
    finally:
        r.close()


def test_reader_skips_discarded_records_and_keeps_order(obj: BpfObject) -> None:
    r = reader_of(obj)
    try:
        emit(obj, 300, discard_every=7)
        got = [t[0] for t in r.read(10_000)]
        assert got == [p for p in range(1, 301) if p % 7]
        emit(obj, 50)
        assert [t[0] for t in r.read(10_000)] == list(range(301, 351))  # back on the fast path
        emit(obj, 40, discard_every=4)  # one record per read, as a loop woken per event reads
        one_by_one = []
        while recs := r.read(1):
            assert len(recs) == 1
            one_by_one.append(recs[0][0])
        assert one_by_one == [p for p in range(351, 391) if p % 4]
    finally:
        r.close()


def decisions(first: int, n: int) -> collections.deque:
    return collections.deque(Decision(p, CPU_ANY if p % 2 else p % 4, p * 10, p * 100, p * 3, p & 1)
                             for p in range(first, first + n))


def test_decisions_reach_bpf_field_by_field_and_wait_when_full(obj: BpfObject) -> None:
    m = obj.map("dispatched")
    ring = DecisionRing(m.fd, m.max_entries)
    try:
        pending = decisions(1, 3000)  # 48 bytes each: a 64 KiB ring takes 1365
        room = ring.room()
        assert 1000 < room < 3000
        assert ring.push(pending) == room and len(pending) == 3000 - room
        assert pending[0].pid == room + 1  # the rest waits, in order
        assert ring.push(pending) == 0
        assert obj.program("drain").test_run() == room
        while pending:
            assert ring.push(pending) > 0
            obj.program("drain").test_run()
    finally:
        ring.close()
    assert bss(obj, "drained_bad") == 0
    assert bss(obj, "drained_n") == 3000
    assert bss(obj, "drained_pid_sum") == 3000 * 3001 // 2
    assert bss(obj, "drained_any_cpu") == 1500


def test_decision_ring_and_libbpf_share_one_ring(obj: BpfObject) -> None:
    """Positions are the kernel's own: libbpf's writer, used after ours, continues where it stopped."""
    from schedtop.bpf.libbpf import UserRingBuffer
    from schedtop.scx.protocol import pack_decision

    m = obj.map("dispatched")
    ring = DecisionRing(m.fd, m.max_entries)
    try:
        assert ring.push(decisions(1, 10)) == 10
        with UserRingBuffer(m) as urb:
            for p in range(11, 21):
                urb.send(pack_decision(p, CPU_ANY if p % 2 else p % 4, p * 10, p * 100, p * 3, p & 1))
        assert ring.push(decisions(21, 10)) == 10
        assert obj.program("drain").test_run() == 30
    finally:
        ring.close()
    assert bss(obj, "drained_bad") == 0 and bss(obj, "drained_n") == 30
