"""procfs parsers on a fixture tree copied from a real /proc (tests/fixtures/make_fixtures.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schedtop.collect.live import LiveSource
from schedtop.model import ViewRequest
from schedtop.collect.procfs import (
    ProcfsReader,
    parse_cpu_list,
    parse_sched,
    parse_sched_all,
    parse_schedstat,
    parse_stat,
    split_ns,
)

PROC = Path(__file__).resolve().parents[1] / "fixtures" / "proc"
EXPECTED = json.loads((PROC / "EXPECTED.json").read_text())


def test_split_ns_is_exact_and_signed():
    assert split_ns("3017.935986") == 3_017_935_986
    assert split_ns("-1.048576") == -1_048_576
    assert split_ns(b"0.000001") == 1
    assert split_ns("12") == 12_000_000


def test_parse_stat_comm_with_spaces_and_parens():
    # Fields 3..52 by number (proc(5)): state, ppid, ..., utime 14, stime 15, priority 18,
    # nice 19, starttime 22, exit_signal 38, processor 39, rt_priority 40, policy 41.
    f = {n: "0" for n in range(3, 53)}
    f.update({3: "S", 4: "1", 14: "7", 15: "3", 18: "25", 19: "5", 20: "1", 22: "999", 38: "17", 39: "1", 41: "3"})
    line = b"42 (a) b (c)) " + " ".join(f[n] for n in range(3, 53)).encode()
    st = parse_stat(line)
    assert st is not None
    assert st.comm == "a) b (c)"
    assert (st.state, st.ppid, st.utime_ticks, st.stime_ticks) == ("S", 1, 7, 3)
    assert (st.prio, st.nice, st.starttime, st.cpu, st.policy) == (125, 5, 999, 1, 3)


def test_parse_stat_rejects_garbage():
    assert parse_stat(b"") is None
    assert parse_stat(b"1 (x) S 1 2") is None
    assert parse_stat(b"no parens at all") is None


def test_parse_schedstat_and_cpu_list():
    ss = parse_schedstat(b"123 456 7\n")
    assert (ss.runtime_ns, ss.wait_ns, ss.timeslices) == (123, 456, 7)
    assert parse_schedstat(b"1 2") is None
    assert parse_cpu_list("0-3,8,10-11") == (0, 1, 2, 3, 8, 10, 11)
    assert parse_cpu_list("1\n") == (1,)


def test_fixture_process_a_batch_nice_affinity():
    a = EXPECTED["a"]
    reader = ProcfsReader(str(PROC))
    assert sorted(reader.pids()) == sorted([a["pid"], EXPECTED["b"]["pid"]])
    threads = {s.tid: s for s in reader.threads([a["pid"]])}
    assert len(threads) == a["threads"]
    main = threads[a["pid"]]
    assert main.stat.comm == a["comm"]
    assert main.stat.policy == 3  # SCHED_BATCH
    assert main.stat.nice == a["nice"]
    assert main.stat.prio == 120 + a["nice"]
    assert main.affinity == tuple(a["affinity"])
    assert main.sched is not None and main.sched.slice_ns and main.sched.slice_ns > 0
    assert main.sched.vruntime_ns is not None
    other = next(s for tid, s in threads.items() if tid != a["pid"])
    assert other.stat.comm == a["thread2"]["comm"]
    assert other.stat.policy == 5  # SCHED_IDLE
    assert other.schedstat is not None and other.schedstat.runtime_ns > 0


def test_fixture_sched_file_matches_stat():
    # /proc/PID/sched and stat are two views of one task: they must agree.
    a = EXPECTED["a"]
    data = (PROC / str(a["pid"]) / "task" / str(a["pid"]) / "sched").read_bytes()
    fields = parse_sched_all(data)
    assert fields["policy"] == "3"
    assert int(fields["prio"]) == 120 + a["nice"]
    sched = parse_sched(data)
    assert sched.nr_switches == sched.nr_voluntary + sched.nr_involuntary
    assert sched.vruntime_ns == split_ns(fields["se.vruntime"])


def test_fixture_live_source_fifo_and_folding():
    b = EXPECTED["b"]
    src = LiveSource(use_bpf=False, procfs_root=str(PROC))
    snap = src.collect()
    assert snap.source == "procfs"
    assert len(snap.cpus) == EXPECTED["ncpu"]
    assert all(not c.nr_running_exact for c in snap.cpus)
    row = next(t for t in snap.tasks if t.tid == b["pid"])
    assert (row.comm, row.policy, row.rt_priority, row.prio) == (b["comm"], "FIFO", b["rt_priority"], b["prio"])
    folded = {t.pid: t for t in src.collect(ViewRequest(threads=False)).tasks}
    assert folded[EXPECTED["a"]["pid"]].nr_threads == EXPECTED["a"]["threads"]
    assert folded[b["pid"]].nr_threads == 1


def test_fixture_uptime_loadavg_cpu_times():
    reader = ProcfsReader(str(PROC))
    assert reader.uptime() > 0
    assert len(reader.loadavg()) == 3
    times = reader.cpu_times()
    assert len(times) == EXPECTED["ncpu"]
    assert all(0 <= busy <= total for busy, total in times)


@pytest.mark.parametrize("missing", ["stat", "sched", "schedstat"])
def test_missing_files_are_quiet(tmp_path, missing):
    # A task that vanished between listing and reading: a partial tree.
    a = EXPECTED["a"]
    import shutil

    root = tmp_path / "proc"
    shutil.copytree(PROC, root)
    (root / str(a["pid"]) / "task" / str(a["pid"]) / missing).unlink()
    s = ProcfsReader(str(root)).thread(a["pid"], a["pid"])
    if missing == "stat":
        assert s is None
    else:
        assert s is not None and getattr(s, missing) is None
    assert ProcfsReader(str(root)).thread(999999, 999999) is None
