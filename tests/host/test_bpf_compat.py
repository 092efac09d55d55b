"""The pre-load kernel probe (schedtop/scx/compat.py) against the compiled scheduler object
and the BTF of every Debian sched_ext kernel we have a dump of (tests/fixtures/sched_ext-btf,
pure parsing), and against this machine's real kernel BTF (6.18 without sched_ext).
The guest tests check the same probe against libbpf's own choice on booted kernels."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from schedtop.bpf.btf import Btf, FuncProto
from schedtop.scx import compat
from schedtop.scx.loader import OBJ_PATH, LoadConfig, LoadError, Scheduler, object_externs

DUMPS = Path(__file__).resolve().parents[1] / "fixtures" / "sched_ext-btf"
RELEASES = sorted(p.name[3:-5] for p in DUMPS.glob("kf-*.json"))
# What the object sets in struct sched_ext_ops (checked against its initial value below).
OPS_SET = {"select_cpu", "enqueue", "dispatch", "runnable", "running", "stopping", "enable", "init_task", "exit_task",
           "init", "exit", "dispatch_max_batch", "timeout_ms", "name"}

pytestmark = pytest.mark.skipif(not OBJ_PATH.exists(), reason="scx.bpf.o not built (make bpf)")


@pytest.fixture(scope="module")
def externs() -> dict[str, FuncProto]:
    return object_externs(OBJ_PATH)  # what the loader probes with


def test_the_loader_sees_every_kfunc_of_the_object_even_once_libbpf_opened_it() -> None:
    from schedtop.bpf.libbpf import BpfObject

    obj = BpfObject.open(OBJ_PATH)
    try:
        assert Btf.of_object(obj).extern_funcs() == []  # why the loader reads them from the file
    finally:
        obj.close()
    names = set(object_externs(OBJ_PATH))
    assert {f for need in compat.NEEDS for f in need.forms} <= names
    assert {"scx_bpf_create_dsq", "bpf_task_from_pid", "scx_bpf_select_cpu_dfl"} <= names


def view(release: str) -> compat.KernelView:
    return compat.KernelView.from_dumps(DUMPS / f"kf-{release}.json", DUMPS / f"ops-{release}.txt", release)


def plan_for(release: str, externs: dict[str, FuncProto], ops=OPS_SET) -> compat.CompatPlan:
    return compat.plan(externs, ops, view(release))


def test_the_dumps_are_there() -> None:
    assert {"6.18.15+deb13-amd64", "7.1.13+deb13-amd64", "7.2.13+deb14-amd64", "7.3.4+deb13-amd64"} <= set(RELEASES)


def test_every_weak_form_of_the_object_is_in_the_table_and_back(externs) -> None:
    """compat.bpf.h and compat.NEEDS cannot drift: each ___st form is a known form of one call."""
    forms = {f for need in compat.NEEDS for f in need.forms}
    assert {n for n in externs if n.endswith("___st")} == forms


def test_kernel_names_drop_the_last_tag_as_libbpf_does() -> None:
    assert compat.kernel_name("scx_bpf_dsq_insert___v2___st") == "scx_bpf_dsq_insert___v2"
    assert compat.kernel_name("__scx_bpf_dsq_insert_vtime___st") == "__scx_bpf_dsq_insert_vtime"
    assert compat.kernel_name("scx_bpf_kick_cpu") == "scx_bpf_kick_cpu"


@pytest.mark.parametrize("release", RELEASES)
def test_every_dumped_sched_ext_kernel_can_run_the_scheduler(release: str, externs) -> None:
    p = plan_for(release, externs)
    assert not p.refused, p.refused
    # the three calls with no fallback always get a form
    assert {"scx_bpf_dsq_insert", "scx_bpf_dsq_insert_vtime", "scx_bpf_dsq_move_to_local"} <= set(p.chosen)


def test_6_18_gets_the_pre_6_19_forms_and_the_slice_write(externs) -> None:
    p = plan_for("6.18.15+deb13-amd64", externs)
    assert p.chosen["scx_bpf_dsq_insert"] == "scx_bpf_dsq_insert"
    assert p.chosen["scx_bpf_dsq_insert_vtime"] == "scx_bpf_dsq_insert_vtime"
    assert p.chosen["scx_bpf_dsq_move_to_local"] == "scx_bpf_dsq_move_to_local"
    assert "scx_bpf_task_set_slice" not in p.chosen
    assert p.chosen["scx_bpf_kick_cpu"] == "scx_bpf_kick_cpu"
    line = p.line()
    assert "\n" not in line and line.startswith("kernel 6.18.15+deb13-amd64: lacks scx_bpf_task_set_slice: ")
    assert "p->scx.slice" in line


@pytest.mark.parametrize("release", ["6.19.14+deb13-amd64", "7.0.13+deb13-amd64"])
def test_6_19_and_7_0_get_the_new_insert_forms(release: str, externs) -> None:
    p = plan_for(release, externs)
    assert p.chosen["scx_bpf_dsq_insert"] == "scx_bpf_dsq_insert___v2"
    assert p.chosen["scx_bpf_dsq_insert_vtime"] == "__scx_bpf_dsq_insert_vtime"
    assert p.chosen["scx_bpf_dsq_move_to_local"] == "scx_bpf_dsq_move_to_local"  # ___v2 came in 7.1
    assert p.off == ()


def test_7_1_13_names_the_unusable_kick_and_runs_without_it(externs) -> None:
    p = plan_for("7.1.13+deb13-amd64", externs)
    assert "scx_bpf_kick_cpu" not in p.chosen
    # its move_to_local___v2 has the same defect: the 7.0 form is used
    assert p.chosen["scx_bpf_dsq_move_to_local"] == "scx_bpf_dsq_move_to_local"
    assert p.chosen["scx_bpf_task_set_slice"] == "scx_bpf_task_set_slice"  # processed: has its _impl
    (what, effect), = p.off
    assert what == "a callable scx_bpf_kick_cpu (BTF has it with the implicit aux argument and no _impl twin)"
    assert "idle CPU" in effect
    assert "\n" not in p.line()


@pytest.mark.parametrize("release", [r for r in RELEASES if r.startswith(("7.2", "7.3"))])
def test_7_2_and_later_get_every_newest_form_and_nothing_to_say(release: str, externs) -> None:
    p = plan_for(release, externs)
    assert p.chosen == {"scx_bpf_dsq_insert": "scx_bpf_dsq_insert___v2",
                        "scx_bpf_dsq_insert_vtime": "__scx_bpf_dsq_insert_vtime",
                        "scx_bpf_dsq_move_to_local": "scx_bpf_dsq_move_to_local___v2",
                        "scx_bpf_task_set_slice": "scx_bpf_task_set_slice",
                        "scx_bpf_kick_cpu": "scx_bpf_kick_cpu"}
    assert p.line() == ""


def test_a_kernel_without_a_required_kfunc_is_refused_with_its_name(externs) -> None:
    v = view("7.2.13+deb14-amd64")
    funcs = {n: f for n, f in v.funcs.items() if n != "scx_bpf_create_dsq"}
    p = compat.plan(externs, OPS_SET, compat.KernelView(v.release, funcs, v.ops_members, v.prefixes))
    assert p.refused == "kernel 7.2.13+deb14-amd64 cannot run schedtop's scheduler: no scx_bpf_create_dsq"


def test_an_op_the_kernel_lacks_is_refused_unless_optional_then_cleared(externs, monkeypatch) -> None:
    # ops.sub_attach came in 7.1: 6.18.15 has no such member
    p = plan_for("6.18.15+deb13-amd64", externs, OPS_SET | {"sub_attach"})
    assert p.refused.endswith("no ops.sub_attach")
    monkeypatch.setitem(compat.OPTIONAL_OPS, "sub_attach", "sub-schedulers off")
    p = plan_for("6.18.15+deb13-amd64", externs, OPS_SET | {"sub_attach"})
    assert not p.refused and p.null_ops == ("sub_attach",)
    assert "lacks ops.sub_attach: sub-schedulers off" in p.line()


def test_the_c_and_btf_readings_of_a_prototype_agree_on_this_kernel() -> None:
    with Btf.vmlinux() as k:
        for sig in ("struct task_struct * bpf_task_from_pid(s32 pid)",
                    "bool bpf_cpumask_test_cpu(u32 cpu, const struct cpumask * cpumask)",
                    "void bpf_task_release(struct task_struct * p)"):
            name, proto = FuncProto.parse(sig)
            assert k.func_proto(name) == proto


def test_the_object_sets_the_ops_the_tests_assume() -> None:
    from schedtop.bpf.libbpf import BpfObject

    obj = BpfObject.open(OBJ_PATH)
    try:
        btf = Btf.of_object(obj)
        addr, size = obj.map("schedtop_ops").initial_value()
        import ctypes

        data = (ctypes.c_char * size).from_address(addr).raw
        fields = btf.struct_fields("sched_ext_ops")
        assert {f.name for f in fields.values() if any(data[f.offset:f.offset + f.size])} == OPS_SET
    finally:
        obj.close()


def test_the_loader_writes_and_binds_the_globals_the_object_has_at_their_sizes() -> None:
    """What ``Scheduler`` writes before load and binds after it, on the opened object (no kernel
    needed): a renamed or resized variable in scx.bpf.c fails here, not in a guest."""
    import ctypes

    from schedtop.bpf.globals import Globals
    from schedtop.bpf.libbpf import BpfObject

    obj = BpfObject.open(OBJ_PATH)
    try:
        s = Scheduler.__new__(Scheduler)
        s.obj, s.cfg = obj, LoadConfig(slice_ns=3_000_000, heartbeat_ms=50, loop_preempt=True)
        s._configure(Btf.of_object(obj), s.cfg, 4242)
        ro = Globals(obj, ".rodata")
        assert ro.var("own_tgid", ctypes.c_uint32).value == 4242
        assert ro.var("default_slice_ns", ctypes.c_uint64).value == 3_000_000
        assert ro.var("heartbeat_ns", ctypes.c_uint64).value == 50_000_000
        assert ro.var("loop_preempt", ctypes.c_bool).value is True
        s._bind()  # before load this is the initial image of .bss: same names, same sizes
        assert s.live.slice_ns == 3_000_000 and s.exit_info() is None
        assert s.latency_hist() == [0] * len(s.latency_hist()) and set(s.counters_dict()) >= {"nr_queued"}
    finally:
        obj.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="opening the kernel's BTF for the probe needs no root, loading does")
def test_this_kernel_without_sched_ext_is_refused_by_the_probe_not_by_libbpf() -> None:
    with Btf.vmlinux() as k:
        if k.find("sched_ext_ops", 4) is not None:
            pytest.skip("this kernel has sched_ext")
    with pytest.raises(LoadError) as exc:
        Scheduler(LoadConfig())
    assert str(exc.value) == (f"kernel {os.uname().release} has no sched_ext (no struct sched_ext_ops in its BTF): "
                              "the scheduler cannot run")


# What libbpf 1.7 resolved loading scx.bpf.o on a booted 7.1.13+deb13-amd64 (TCG guest, static
# C loader: Debian has no linux-modules for it, so no 9p root for the Python loop); it then
# scheduled 3 SCHED_EXT hogs to completion in partial mode (560 decisions, no ejection).
# bpf_iter_num_* are resolved too but are not in the dump.
RESOLVED_ON_7_1_13 = {
    "__scx_bpf_dsq_insert_vtime___st", "bpf_cpumask_test_cpu", "bpf_task_from_pid", "bpf_task_release",
    "scx_bpf_create_dsq", "scx_bpf_dispatch_nr_slots", "scx_bpf_dsq_insert___st", "scx_bpf_dsq_insert___v2___st",
    "scx_bpf_dsq_insert_vtime___st", "scx_bpf_dsq_move_to_local___st", "scx_bpf_dsq_nr_queued",
    "scx_bpf_nr_cpu_ids", "scx_bpf_pick_idle_cpu", "scx_bpf_select_cpu_dfl", "scx_bpf_task_cpu",
    "scx_bpf_task_set_slice___st", "scx_bpf_test_and_clear_cpu_idle"}


def test_the_probe_predicts_what_libbpf_resolved_on_a_booted_7_1_13(externs) -> None:
    assert plan_for("7.1.13+deb13-amd64", externs).resolves == RESOLVED_ON_7_1_13
