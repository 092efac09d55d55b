"""The shipped policies as pure functions: thousands of cases, no kernel."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from schedtop.scx.knobs import Knobs, KnobError, BOOST_WEIGHT
from schedtop.scx.policies import SHIPPED, load_policy, next_shipped
from schedtop.scx.policy import (
    CPU_ANY, DF_PREEMPT, ENQ_WAKEUP, MAX_SLICE_NS, MIN_SLICE_NS, Decision, Plan, Policy, PolicyError, TaskIn,
)

SLICE = 5_000_000


def task(pid=1, cpu=0, weight=100, flags=0, exec_runtime=0, run_ns=0, gen=1, enq_ns=0, comm="t"):
    return TaskIn(pid, cpu, 2, weight, flags, exec_runtime, run_ns, 0, gen, enq_ns, comm)


tasks_st = st.builds(
    task,
    pid=st.integers(1, 50),
    cpu=st.integers(0, 3),
    weight=st.integers(1, 10000),
    flags=st.sampled_from([0, ENQ_WAKEUP]),
    exec_runtime=st.integers(0, 10**10),
    run_ns=st.integers(0, 10**9),
    gen=st.integers(0, 2**40),
    enq_ns=st.integers(0, 10**12),
)


@pytest.mark.parametrize("name", SHIPPED)
@settings(max_examples=300, deadline=None)
@given(batch=st.lists(tasks_st, min_size=1, max_size=40))
def test_every_decision_is_well_formed(name, batch):
    policy = load_policy(name, slice_ns=SLICE, nr_cpus=4)
    now = 0
    for t in batch:
        now += 1000
        d = policy.decide(t, now)
        assert isinstance(d, Decision)
        assert d.pid == t.pid and d.gen == t.gen
        assert d.cpu == CPU_ANY or d.cpu == t.cpu
        assert MIN_SLICE_NS <= d.slice_ns <= MAX_SLICE_NS
        assert 0 <= d.deadline < 2**64
    policy.tick(now + 10**11)
    assert all(isinstance(v, (int, float)) for v in policy.stats().values())


def run_mix(policy, rounds=200):
    """A hog (runs whole slices, never sleeps) and a chatty task (wakes often, runs 50 µs).

    Returns how often the chatty task's deadline sorted before the hog's."""
    now, wins = 0, 0
    for i in range(rounds):
        now += 1_000_000
        hog = policy.decide(task(pid=1, run_ns=SLICE, exec_runtime=SLICE * (i + 1), gen=i, enq_ns=now), now)
        chat = policy.decide(task(pid=2, flags=ENQ_WAKEUP, run_ns=50_000, exec_runtime=0, gen=i, enq_ns=now), now)
        wins += chat.deadline < hog.deadline
    return wins


def test_deadline_favours_the_short_sleeper_over_the_hog():
    assert run_mix(load_policy("deadline")) >= 190


def test_interactive_favours_and_preempts_for_the_chatty_task():
    policy = load_policy("interactive")
    assert run_mix(policy) >= 190
    now = 10**10
    d = policy.decide(task(pid=2, flags=ENQ_WAKEUP, run_ns=50_000, cpu=1, gen=9, enq_ns=now), now)
    assert d.flags & DF_PREEMPT and d.cpu == 1
    assert d.slice_ns < SLICE  # latency-critical tasks get short slices
    hog = policy.decide(task(pid=1, run_ns=SLICE, exec_runtime=SLICE, gen=9, enq_ns=now), now)
    assert not hog.flags & DF_PREEMPT


def test_fifo_orders_by_arrival_only():
    policy = load_policy("fifo")
    order = list(range(1000))
    random.Random(1).shuffle(order)
    ds = [policy.decide(task(pid=p + 1, enq_ns=p * 10, run_ns=p * 999), p) for p in order]
    assert [d.pid for d in sorted(ds, key=lambda d: d.deadline)] == list(range(1, 1001))
    assert {d.slice_ns for d in ds} == {SLICE}


def test_deadline_weight_scales_slice_and_keys_by_the_vruntime_bpf_keeps():
    policy = load_policy("deadline")
    heavy = policy.decide(task(pid=1, weight=200), 0)
    light = policy.decide(task(pid=2, weight=50), 0)
    assert heavy.slice_ns == 2 * SLICE and light.slice_ns == SLICE // 2
    # The vruntime (charged x 100/weight, clamped to a slice behind the clock) is BPF's:
    # the deadline is that vruntime plus the exec runtime since the last sleep, capped.
    t = TaskIn(3, 0, 2, 100, 0, 7_000, 0, 123_456_789, 1, 0, "t")
    assert policy.decide(t, 0).deadline == 123_456_789 + 7_000
    t = TaskIn(3, 0, 2, 100, 0, 10**12, 0, 5, 2, 0, "t")
    assert policy.decide(t, 0).deadline == 5 + 100 * SLICE


def test_deadline_plans_what_it_decided_once_with_its_slice():
    policy = load_policy("deadline")
    policy.decide(task(pid=1, weight=200), 0)
    policy.decide(task(pid=2), 0)
    policy.decide(task(pid=2, gen=2), 0)
    plans, drops = policy.plan(1)
    assert plans == {1: Plan(2 * SLICE), 2: Plan(SLICE)} and not drops
    assert policy.plan(2) == ({}, ())  # nothing new: nothing to publish
    assert policy.stats()["plans_published"] == 2


def test_fifo_plans_by_enqueue_time_and_the_base_policy_plans_nothing():
    policy = load_policy("fifo")
    policy.decide(task(pid=4), 0)
    assert policy.plan(1) == ({4: Plan(SLICE, 0, True)}, ())
    assert Policy().plan(0) is None
    assert load_policy("interactive").plan(0) is None  # its classifier needs every wake-up


def test_interactive_forgets_tasks_on_tick():
    policy = load_policy("interactive")
    policy.decide(task(pid=7), 0)
    policy.tick(5 * 10**9)
    assert 7 in policy.tasks
    policy.tick(20 * 10**9)
    assert 7 not in policy.tasks


def test_live_slice_knob_and_switch_keep_the_slice_and_the_clock():
    policy = load_policy("deadline")
    policy.set_slice(1_000_000)
    assert policy.decide(task(), 0).slice_ns == 1_000_000
    policy.set_slice(10)  # clamped, not rejected
    assert policy.slice_ns == MIN_SLICE_NS
    new = load_policy("interactive")
    new.adopt(policy)
    assert new.slice_ns == MIN_SLICE_NS
    for i in range(10):
        new.decide(task(pid=3, run_ns=SLICE, gen=i), i)
    again = load_policy("interactive")
    again.adopt(new)
    assert again.clock == new.clock > 0
    assert next_shipped("deadline") == "fifo" and next_shipped("interactive") == "deadline"
    assert next_shipped("my.py") == "deadline"


def test_knobs_override_decisions():
    knobs = Knobs(nr_cpus=2)
    policy = load_policy("deadline")
    knobs.set(5, slice_ns=2_000_000, cpu=1)
    d = knobs.decision_out(policy.decide(knobs.task_in(task(pid=5)), 0))
    assert (d.slice_ns, d.cpu) == (2_000_000, 1)
    knobs.boost(5)
    t = knobs.task_in(task(pid=5))
    assert t.weight == BOOST_WEIGHT
    d = knobs.decision_out(policy.decide(t, 1))
    assert d.flags & DF_PREEMPT and d.deadline == 0
    knobs.demote(5)
    d = knobs.decision_out(load_policy("interactive").decide(knobs.task_in(task(pid=5)), 2))
    assert not d.flags & DF_PREEMPT
    untouched = policy.decide(task(pid=6), 3)
    assert knobs.decision_out(untouched) is untouched
    with pytest.raises(KnobError):
        knobs.set(5, cpu=2)
    with pytest.raises(KnobError):
        knobs.set(0, slice_ns=1)
    knobs.set(5, slice_ns=None, cpu=None, weight=None, latcrit=False)
    assert knobs.get(5) is None


def test_user_policy_file(tmp_path):
    f = tmp_path / "lifo.py"
    f.write_text(
        "from schedtop.scx.policy import Policy as Base, Decision, CPU_ANY\n"
        "class Policy(Base):\n"
        "    name = 'lifo'\n"
        "    def decide(self, task, now_ns):\n"
        "        return Decision(task.pid, CPU_ANY, self.slice_ns, 2**40 - task.enq_ns, task.gen)\n"
    )
    policy = load_policy(str(f), slice_ns=3_000_000)
    assert policy.name == "lifo" and policy.slice_ns == 3_000_000
    a, b = policy.decide(task(pid=1, enq_ns=1), 0), policy.decide(task(pid=2, enq_ns=2), 0)
    assert b.deadline < a.deadline


@pytest.mark.parametrize("body,words", [
    ("raise RuntimeError('boom')\n", "RuntimeError: boom"),
    ("x = 1\n", "defines no POLICY"),
    ("from schedtop.scx.policy import Policy as B\nclass Policy(B):\n    def __init__(self, **k): 1/0\n",
     "ZeroDivisionError"),
])
def test_broken_user_policy_files_say_why(tmp_path, body, words):
    f = tmp_path / "bad.py"
    f.write_text(body)
    with pytest.raises(PolicyError, match=words):
        load_policy(str(f))


def test_unknown_policy_names():
    with pytest.raises(PolicyError, match="unknown policy"):
        load_policy("cfs")
    with pytest.raises(PolicyError, match="not found"):
        load_policy("/nonexistent/p.py")


def test_interactive_score_falls_when_a_chatty_task_turns_hog():
    policy = load_policy("interactive")
    now = 0
    for i in range(100):  # chatty: wakes every ms, runs 50 µs
        now += 1_000_000
        d = policy.decide(task(pid=9, flags=ENQ_WAKEUP, run_ns=50_000, gen=i, enq_ns=now), now)
    assert d.slice_ns < SLICE
    for i in range(100, 120):  # then spins: whole slices, never sleeps
        now += SLICE
        d = policy.decide(task(pid=9, run_ns=SLICE, exec_runtime=SLICE * (i - 99), gen=i, enq_ns=now), now)
    assert d.slice_ns == SLICE and not d.flags & DF_PREEMPT
