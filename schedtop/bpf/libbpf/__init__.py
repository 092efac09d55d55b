"""The one ctypes binding to libbpf (>= 1.4), in three layers:

  lib        finding and loading libbpf, the C prototypes, errors, libbpf's log;
  bpfobject  objects, programs, maps, links and struct_ops;
  rings      the ring buffer (kernel -> Python) and the user ring buffer (Python -> kernel).

Used by the tracing tier (schedtop.collect.bpf), the exec hook (schedtop.steer.exec_watch),
the embedded scheduler (schedtop.scx) and the lab; schedtop.bpf.btf (BTF lookups) and
schedtop.bpf.globals (global variables by name) sit on top. Nothing else in schedtop calls
libbpf directly. The public names are imported here: ``from schedtop.bpf.libbpf import X``.
"""

from schedtop.bpf.libbpf.bpfobject import BPF_ANY, BpfObject, Link, Map, Program
from schedtop.bpf.libbpf.lib import (
    MIN_VERSION,
    BpfError,
    LibbpfLocation,
    LibbpfNotFound,
    cache_dir,
    cached_libbpf_path,
    find_libbpf,
    load_libbpf,
    num_possible_cpus,
)
from schedtop.bpf.libbpf.rings import RingBuffer, RingReader, UserRingBuffer

__all__ = [
    "BPF_ANY",
    "MIN_VERSION",
    "BpfError",
    "BpfObject",
    "LibbpfLocation",
    "LibbpfNotFound",
    "Link",
    "Map",
    "Program",
    "RingBuffer",
    "RingReader",
    "UserRingBuffer",
    "cache_dir",
    "cached_libbpf_path",
    "find_libbpf",
    "load_libbpf",
    "num_possible_cpus",
]
