"""trace.h and schedtop/bpf/trace_events.py cannot drift: every ctypes mirror has the sizes
and offsets that the compiled object's BTF records (no root needed: BTF is read from the file)."""

from __future__ import annotations

import ctypes

import pytest

from schedtop.bpf import trace_events as te
from schedtop.bpf.btf import Btf, ctypes_layout
from schedtop.collect.bpf import OBJECT

pytestmark = pytest.mark.skipif(not OBJECT.exists(), reason="trace.bpf.o not built (make bpf)")


@pytest.fixture(scope="module")
def btf():
    with Btf.from_file(OBJECT) as b:
        yield b


@pytest.mark.parametrize("name", sorted(te.MIRRORS))
def test_struct_matches_btf(btf: Btf, name: str) -> None:
    cls = te.MIRRORS[name]
    assert btf.type_size(name) == ctypes.sizeof(cls)
    assert btf.struct_fields(name) == ctypes_layout(cls)


def test_event_struct_format_matches(btf: Btf) -> None:
    assert te.EVENT_STRUCT.size == btf.type_size("event")


def test_globals_the_loader_writes_exist(btf: Btf) -> None:
    assert set(btf.datasec_offsets(".rodata")) >= {"targ_tgid", "targ_events"}
    assert "sample_rate" in btf.datasec_offsets(".data")
    assert "g" in btf.datasec_offsets(".bss")
