"""What arrives from outside as bytes: replay files, scx_stats replies, kernel log records.

Replays: a Replay whose frames decode (or each bad frame's ReplayError, one line), or a
ReplayError naming the file. scx_stats: the reply's value, or StatsError (the poller turns
it into a warning). kmsg: a KmsgLine or None, and the event tracker never raises on it."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from fuzzing import fuzz, one_line
from hypothesis import example, given
from hypothesis import strategies as st

from schedtop.collect.replay import ReplayError, last_good_frame, load_replay
from schedtop.collect.scx_events import KmsgLine, ScxEventTracker, parse_kmsg_record
from schedtop.export.scx_stats import StatsError, flatten, parse_meta, parse_reply
from schedtop.model import SchedulerInfo

SESSION = Path(__file__).resolve().parents[1] / "fixtures" / "session.jsonl"
JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-(10**25), 10**25), st.floats(),
                              st.text(max_size=10)),
                    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                    max_leaves=12)


def _load(path: Path) -> None:
    try:
        rep = load_replay(path)
    except ReplayError as exc:
        one_line(str(exc), str(path))
        return
    try:
        last_good_frame(rep)
    except ReplayError as exc:  # no frame decodes at all
        one_line(str(exc))


@fuzz(150)
@given(st.binary(max_size=300), st.booleans())
@example(b"", False)
@example(b"\x1f\x8b", False)
@example(b'{"schedtop_replay": 1}\n', True)
def test_replay_bytes(tmp_path_factory, raw, gz):
    f = tmp_path_factory.mktemp("rep") / ("r.jsonl.gz" if gz else "r.jsonl")
    f.write_bytes(gzip.compress(raw) if gz else raw)
    _load(f)


@fuzz(150)
@given(st.sampled_from(["schedtop_replay", "schema", "created", "host", "kernel"]), JSON,
       st.integers(0, 3), st.sampled_from(["snapshot", "action", "other", None]), JSON)
def test_replay_headers_and_records(tmp_path_factory, hkey, hval, line, t, data):
    lines = SESSION.read_text().splitlines()
    header = json.loads(lines[0])
    header[hkey] = hval
    lines[0] = json.dumps(header)
    rec = {"data": data} if t is None else {"t": t, "data": data}
    lines.insert(min(1 + line, len(lines)), json.dumps(rec))
    f = tmp_path_factory.mktemp("rep") / "r.jsonl"
    f.write_text("\n".join(lines) + "\n")
    _load(f)


@fuzz(300)
@given(st.one_of(st.binary(max_size=200), JSON.map(lambda v: json.dumps(v).encode()),
                 st.fixed_dictionaries({"errno": JSON, "args": JSON}).map(lambda v: json.dumps(v).encode())))
@example(b"[" * 100_000)
@example(b'{"errno": 99999999999999999999, "args": {"resp": "x"}}')
@example(b'{"errno": -5, "args": []}')
@example(b'{"errno": true}')
@example(b'{"errno": 22, "args": {"resp": "bad\\nline \\u001b[2J"}}')
def test_scx_stats_replies(reply):
    try:
        parse_reply(reply, "/run/stats", "stats")
    except StatsError as exc:
        one_line(str(exc), "/run/stats")


@fuzz(300)
@given(JSON, JSON)
@example({"M": {"top": "true", "fields": {"a": {"datum": {"struct": "M"}}}}}, {"a": {"a": {"a": 1}}})
@example({"\n": None}, None)  # found by SCHEDTOP_FUZZ=deep: a struct name broke the error's line
@example({"M": {"fields": {"\x1b]2;x\x07": {"datum": "?"}}}}, None)
@example({"M": {"top": 1, "fields": {"d": {"dict": {"key": "u64", "datum": "u64"}}}, "user": [1]}},
         {"d": {"--1": 1, "²": 2, "9" * 5000: 3}})
def test_scx_stats_meta_and_values(meta, value):
    try:
        structs = parse_meta(meta)
    except StatsError as exc:
        one_line(str(exc))
        structs = {}
    for m in flatten(structs, value):
        assert m.value is None or isinstance(m.value, (int, float, str))


LEVELS = st.integers(-(10**20), 10**20).map(str)


@fuzz(300)
@given(st.one_of(st.binary(max_size=200),
                 st.tuples(LEVELS, LEVELS, LEVELS, st.text(max_size=80)).map(
                     lambda t: f"{t[0]},{t[1]},{t[2]},-;{t[3]}\n".encode())))
@example(b"3,1,2,-;sched_ext: BPF scheduler \"x\" disabled (runtime error)\n")
@example(b"6,1,2,-;sched_ext: x: \x1b]2;PWNED\x07\n")
@example(b";")
def test_kmsg_records(rec):
    line = parse_kmsg_record(rec)
    assert line is None or (isinstance(line, KmsgLine) and 0 <= line.level <= 7 and "\n" not in line.text)


class _Lines:
    def __init__(self, lines):
        self.lines, self.available = lines, True

    def read(self):
        out, self.lines = self.lines, []
        return out


NAMES = st.sampled_from(["x", "schedtop_min", "", "a b", "\x1b[2J"])
KTEXT = st.one_of(
    st.builds(lambda n, r: f'sched_ext: BPF scheduler "{n}" disabled ({r})', NAMES, st.text(max_size=20)),
    st.builds(lambda n, m: f"sched_ext: {n}: {m}", NAMES, st.text(max_size=30)),
    st.builds(lambda n: f'sched_ext: BPF scheduler "{n}" enabled', NAMES),
    st.text(max_size=40),
)


@fuzz(150)
@given(st.lists(st.tuples(st.integers(0, 7), KTEXT), max_size=6),
       st.lists(st.tuples(st.sampled_from(["enabled", "disabled", "absent", "enabling"]), NAMES,
                          st.one_of(st.none(), st.integers(0, 10))), min_size=1, max_size=5))
def test_kmsg_lines_through_the_event_tracker(klines, states):
    tracker = ScxEventTracker(kmsg=_Lines([KmsgLine(lv, 0, t) for lv, t in klines]))
    for i, (state, name, seq) in enumerate(states):
        info = SchedulerInfo(kind="sched_ext" if state == "enabled" else "eevdf", ext_state=state,
                             ops_name=name if state == "enabled" else None, enable_seq=seq)
        for ev in tracker.update(info, ts=float(i), wall=float(i)):
            assert ev.kind in ("load", "unload", "eject") and isinstance(ev.label, str)
