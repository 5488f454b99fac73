"""Damaged and wrong trace input: a one-line error when nothing is readable, else a repair.

Either the input holds no trace (``TraceFormatError``; on the command line one line on stderr and
exit status 2), or the analyses that can run do, with ``confidence == "reduced"`` and an issue
that says what was repaired or skipped. The tests at the end pinned bugs found in src that
are reported rather than fixed here; each turns into a failure once its bug is fixed.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import tempfile
import zlib
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import run_cli
from pinchpoint.errors import PinchpointError, TraceFormatError
from pinchpoint.traces import TraceAnalysis, load_trace
from pinchpoint.traces._format import rank_row
from pinchpoint.traces._parse import OTHER, parse_trace_bytes, read_trace
from pinchpoint.traces._rank import summarize_rank

TRACES = Path(__file__).parent / "data" / "traces"
TWO_RANKS = TRACES / "two_ranks_a"
V100 = TRACES / "v100_single_rank.json.gz"
CPU_OPS = TRACES / "cpu_ops_only.json.gz"


def _rows(analysis: TraceAnalysis) -> list[dict[str, Any]]:
    """The analysis's ranks as the ``pinchpoint.trace/1`` file writes them."""
    return list(analysis.to_dict()["ranks"])


def assert_one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ")
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert message in result.stderr


def x(name: str, ts: float, dur: float, cat: str = "cpu_op", **fields: Any) -> dict[str, Any]:
    return {"ph": "X", "cat": cat, "name": name, "pid": 1, "tid": 1, "ts": ts, "dur": dur} | fields


def good_events() -> list[dict[str, Any]]:
    """Two whole steps on one host thread: a trace that analyses with full confidence."""
    return [
        {"ph": "M", "name": "thread_name", "pid": 1, "tid": 1, "args": {"name": "main"}},
        x("ProfilerStep#1", 100.0, 100.0, cat="user_annotation"),
        x("aten::mm", 110.0, 30.0),
        x("Optimizer.step#SGD.step", 150.0, 20.0),
        x("ProfilerStep#2", 200.0, 100.0, cat="user_annotation"),
        x("aten::mm", 210.0, 30.0),
        x("Optimizer.step#SGD.step", 250.0, 20.0),
    ]


def trace_bytes(*extra: dict[str, Any], **top: Any) -> bytes:
    doc = {"distributedInfo": {"rank": 0, "world_size": 1}, **top}
    doc["traceEvents"] = good_events() + list(extra)
    return json.dumps(doc).encode()  # json, not orjson: it writes integers beyond 64 bits


def analyse(tmp_path: Path, raw: bytes, name: str = "trace.json") -> Any:
    path = tmp_path / name
    path.write_bytes(raw)
    return load_trace(path, workers=1)


def test_the_good_trace_is_analysed_with_full_confidence(tmp_path: Path) -> None:
    analysis = analyse(tmp_path, trace_bytes())
    assert analysis.confidence == "full"
    (row,) = _rows(analysis)
    assert [s["wall_s"] for s in row["steps"]] == pytest.approx([100e-6, 100e-6])
    assert row["steps"][0]["phases"]["optimizer"] == pytest.approx(20e-6)


# --- nothing readable: one clear error ------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"  \n\t ", "the file is empty"),
        (b"hello", "the file is not JSON"),
        (b'{"traceEvents": [ {"ph": "X", nope', "not valid JSON"),
        (b'{"a": 1}', "no 'traceEvents' array"),
        (b'{"traceEvents": 5}', "not a Kineto trace"),
        (b'{"traceEvents": [{"ph": "X", "ts": 1, "du', "no whole event"),
    ],
)
def test_input_without_a_trace_is_one_clear_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    with pytest.raises(TraceFormatError, match=message):
        parse_trace_bytes(content)
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(TraceFormatError) as caught:
        load_trace(path, workers=1)
    assert str(path) in str(caught.value) and message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, PinchpointError)


def test_a_pinchpoint_profile_is_not_a_trace(tmp_path: Path) -> None:
    profile = load_trace(CPU_OPS, workers=1).profile.save(tmp_path / "run.json")
    assert b'"schema": "pinchpoint.profile/1"' in profile.read_bytes()
    with pytest.raises(TraceFormatError, match="no 'traceEvents' array"):
        load_trace(profile, workers=1)
    assert_one_line_error(run_cli("trace", str(profile)), "no 'traceEvents' array")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b'{"traceEvents": [ {"ph": "X", nope', "not valid JSON"),
        (b'{"a": 1}', "not a trace: the JSON object has no 'traceEvents' array"),
    ],
)
def test_cli_gives_one_line_for_a_file_without_a_trace(
    tmp_path: Path, content: bytes, message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    assert_one_line_error(run_cli("trace", str(bad)), message)


def test_missing_paths_and_empty_folders_are_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no traces here")
    cases = [
        (tmp_path / "nope", "no such file or folder"),
        (tmp_path / "nope.json.gz", "no such file or folder"),
        (empty, "holds no .json or .json.gz trace files"),
    ]
    for path, message in cases:
        with pytest.raises(TraceFormatError, match=message):
            load_trace(path, workers=1)
    assert_one_line_error(run_cli("trace", str(tmp_path / "nope")), "no such file or folder")
    assert_one_line_error(run_cli("trace", str(empty)), "holds no .json or .json.gz")
    assert_one_line_error(run_cli("diagnose", str(empty)), "holds no .json or .json.gz")


def test_a_folder_of_unreadable_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes(b'{"a": 1}')
    (tmp_path / "b.json").write_bytes(b"")
    with pytest.raises(TraceFormatError, match=r"no readable trace: .*a\.json: not a trace"):
        load_trace(tmp_path, workers=1)


# --- truncated gzip -------------------------------------------------------------------------------


def test_a_gzip_cut_in_half_keeps_every_event_before_the_cut(tmp_path: Path) -> None:
    raw = V100.read_bytes()
    cut = raw[: len(raw) // 2]
    path = tmp_path / "cut.json.gz"
    path.write_bytes(cut)
    full, part = read_trace(V100), read_trace(path)
    n = len(part)
    assert 0.3 * len(full) < n < len(full)
    # What arrived is exactly the start of the trace...
    assert (part.ts_ns == full.ts_ns[:n]).all() and (part.dur_ns == full.dur_ns[:n]).all()
    assert [part.names[i] for i in part.name] == [full.names[i] for i in full.name[:n]]
    # ...and every complete event that arrived is kept (only the one cut in two is lost).
    arrived = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(cut)
    assert n == arrived.count(b'"ph": "X"') - 1
    assert part.distributed["rank"] == 0 and part.device_properties  # written before the events
    assert any("gzip stream is truncated" in i for i in part.issues)
    assert any("truncated" in i for i in part.issues)

    analysis = load_trace(path, workers=1)
    assert analysis.confidence == "reduced"
    (row,) = _rows(analysis)
    assert any("truncated" in i for i in row["issues"])
    assert [s["index"] for s in row["steps"]] == [101, 102, 103, 104, 105]
    assert row["gpu"]["compute_share"] > 0.9


def test_cli_reports_reduced_confidence_for_a_truncated_gzip(tmp_path: Path) -> None:
    raw = V100.read_bytes()
    path = tmp_path / "cut.json.gz"
    path.write_bytes(raw[: len(raw) // 2])
    result = run_cli("trace", str(path))
    assert result.returncode == 0, result.stderr
    assert "Reduced confidence" in result.stdout and "truncated" in result.stdout


@pytest.mark.parametrize("keep", [1, 10, 200])
def test_a_gzip_with_nothing_readable_is_an_error(tmp_path: Path, keep: int) -> None:
    path = tmp_path / "cut.json.gz"
    path.write_bytes(V100.read_bytes()[:keep])
    with pytest.raises(TraceFormatError, match=r"gzip|not JSON|no whole event|empty"):
        read_trace(path)


# --- broken JSON after some whole events ----------------------------------------------------------


def test_json_broken_after_whole_events_keeps_them() -> None:
    raw = trace_bytes()
    broken = raw[: raw.rindex(b"}]")] + b'}, {"ph": oops'
    table = parse_trace_bytes(broken)
    assert len(table) == 6 and table.distributed == {"rank": 0, "world_size": 1}
    assert any("broken or truncated" in i for i in table.issues)


def test_json_broken_in_the_middle_keeps_the_events_before_the_break() -> None:
    events = good_events() + [x(f"aten::op{i}", 400.0 + i, 1.0) for i in range(40)]
    raw = json.dumps({"traceEvents": events}).encode()
    middle = raw.index(b'"aten::op20"')
    table = parse_trace_bytes(raw[:middle] + b"@@@" + raw[middle:])
    assert len(table) >= 6 + 19
    assert any("broken" in i for i in table.issues)


# --- events with missing or ill-typed fields ------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"ph": "X", "cat": "cpu_op", "name": "no_times", "pid": 1, "tid": 1},
        x("no_dur", 120.0, 1.0) | {"dur": None},
        x("string_ts", 120.0, 1.0) | {"ts": "abc"},
        x("negative_dur", 120.0, -5.0),
        x("ts_as_list", 120.0, 1.0) | {"ts": [1, 2]},
        x("ts_beyond_int64_ns", 1e16, 1.0),
    ],
    ids=["no ts or dur", "dur null", "ts 'abc'", "negative dur", "ts a list", "ts too large"],
)
def test_an_event_with_a_bad_time_is_skipped_and_counted(tmp_path: Path, bad: Any) -> None:
    table = parse_trace_bytes(trace_bytes(bad))
    assert len(table) == 6 and table.events_read == 8  # 7 good (one metadata) + the bad one
    assert bad["name"] not in table.names
    assert table.issues == ["1 events with missing or malformed fields were skipped"]
    analysis = analyse(tmp_path, trace_bytes(bad))
    assert analysis.confidence == "reduced"
    assert _rows(analysis)[0]["issues"] == table.issues
    assert [s["wall_s"] for s in _rows(analysis)[0]["steps"]] == pytest.approx([100e-6, 100e-6])


def test_a_name_that_is_a_number_is_kept_as_text() -> None:
    table = parse_trace_bytes(trace_bytes(x("aten::mm", 130.0, 1.0) | {"name": 42}))
    assert len(table) == 7 and "42" in table.names


def test_a_name_that_is_a_number_is_a_reported_repair(tmp_path: Path) -> None:
    analysis = analyse(tmp_path, trace_bytes(x("aten::mm", 130.0, 1.0) | {"name": 42}))
    assert analysis.confidence == "reduced"


@pytest.mark.parametrize("field", ["correlation", "stream", "device"])
@pytest.mark.parametrize("value", [2**70, -(2**70), 2**64 - 1])
def test_ids_beyond_64_bits_are_dropped_and_counted(tmp_path: Path, field: str, value: int) -> None:
    args = {"stream": 7, "correlation": 5, "device": 0} | {field: value}
    kernel = x("sm80_gemm", 125.0, 10.0, cat="kernel", pid=0, tid=7, args=args)
    launch = x("cudaLaunchKernel", 120.0, 2.0, cat="cuda_runtime", args={"correlation": 5})
    table = parse_trace_bytes(trace_bytes(launch, kernel))
    assert len(table) == 8
    (kernel_row,) = (table.name == table.names.index("sm80_gemm")).nonzero()[0]
    assert getattr(table, field)[kernel_row] == -1
    if field != "correlation":
        assert table.correlation[kernel_row] == 5
    assert table.issues == ["1 ids beyond 64 bits were ignored"]
    analysis = analyse(tmp_path, trace_bytes(launch, kernel))
    assert analysis.confidence == "reduced"
    assert "1 ids beyond 64 bits were ignored" in _rows(analysis)[0]["issues"]


def utf8_damaged_trace() -> bytes:
    """The good trace with invalid UTF-8 in five strings: a name, a category, an arg the analyses
    ignore, a thread's name and the top-level metadata (one cut sequence, one lone byte each)."""
    raw = trace_bytes(
        x("aten::NAME", 130.0, 1.0, cat="CAT", args={"Call stack": "STACK"}),
        {"ph": "M", "name": "thread_name", "pid": 1, "tid": 2, "args": {"name": "THREAD"}},
        distributedInfo={"rank": 0, "world_size": 1, "backend": "BACKEND"},
    )
    for word, bad in [
        (b"NAME", b"bad\xff\xfe"),  # two invalid bytes, one string
        (b"CAT", b"cpu\xc3op"),  # a two-byte sequence cut short
        (b"STACK", b"\xe2\x82 x.py"),  # a three-byte sequence cut short
        (b"THREAD", b"w\xf0\x9forker"),  # a four-byte sequence cut short
        (b"BACKEND", b"gl\x80oo"),  # a lone continuation byte
    ]:
        assert raw.count(word) == 1
        raw = raw.replace(word, bad)
    return raw


def _read_with(reader: str, raw: bytes, folder: Path) -> Any:
    """The event table of ``raw`` read by one of the parser's readers."""
    if reader == "careful":
        return parse_trace_bytes(raw, chunked=False)
    if reader == "in-memory":
        return parse_trace_bytes(raw)
    path = folder / ("trace.json.gz" if reader == "stream-gzip" else "trace.json")
    path.write_bytes(gzip.compress(raw) if reader == "stream-gzip" else raw)
    return read_trace(path)


@pytest.mark.parametrize("reader", ["stream", "stream-gzip", "in-memory", "careful"])
def test_invalid_utf8_in_any_string_is_replaced_and_every_event_kept(
    tmp_path: Path, reader: str
) -> None:
    table = _read_with(reader, utf8_damaged_trace(), tmp_path)
    assert table.events_read == 9 and len(table) == 7  # every complete event, two metadata
    assert table.issues == ["5 strings held invalid UTF-8, replaced with U+FFFD"]
    assert "aten::bad\ufffd\ufffd" in table.names
    row = table.names.index("aten::bad\ufffd\ufffd")
    assert table.cat[table.name == row].tolist() == [OTHER]  # cpu\ufffdop: not a known category
    assert table.thread_names[("1", "2")] == "w\ufffdorker"  # one U+FFFD per cut sequence
    assert table.distributed["backend"] == "gl\ufffdoo"


def test_a_trace_with_invalid_utf8_is_analysed_with_reduced_confidence(tmp_path: Path) -> None:
    analysis = analyse(tmp_path, utf8_damaged_trace())
    assert analysis.confidence == "reduced"
    assert "5 strings held invalid UTF-8, replaced with U+FFFD" in _rows(analysis)[0]["issues"]
    orjson.dumps(analysis.to_dict())


def test_valid_utf8_cut_between_pieces_is_not_a_repair(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = trace_bytes(x("aten::é€😀", 130.0, 1.0))  # two-, three- and four-byte characters
    expected = _columns_of(raw)
    assert "aten::é€😀" in expected[0] and expected[-1] == []
    for chunk in (1, 2, 3, 5):
        monkeypatch.setattr("pinchpoint.traces._parse._CHUNK_BYTES", chunk)
        assert _columns_of(raw) == expected


def test_an_empty_event_list_is_a_reduced_analysis(tmp_path: Path) -> None:
    for raw in (b'{"traceEvents": []}', b"[]"):
        table = parse_trace_bytes(raw)
        assert len(table) == 0 and table.issues == ["the trace holds no events"]
        analysis = analyse(tmp_path, raw)
        assert analysis.confidence == "reduced"
        (row,) = _rows(analysis)
        assert row["gpu"] is None and row["steps"] == [] and analysis.findings == []


def test_the_json_array_format_is_a_trace(tmp_path: Path) -> None:
    doc = orjson.loads(gzip.decompress(CPU_OPS.read_bytes()))
    as_array = analyse(tmp_path, orjson.dumps(doc["traceEvents"]), "rank-3.json")
    as_object = load_trace(CPU_OPS, workers=1)
    assert as_array.confidence == "full"
    (row,), (reference,) = _rows(as_array), _rows(as_object)
    assert row["rank"] == 3 and row["rank_source"] == "file name"  # no distributedInfo
    assert row["steps"] == reference["steps"]
    assert row["operators"] == reference["operators"]
    assert row["steps"][0]["wall_s"] == pytest.approx(0.075473)


# --- folders that mix jobs or hold files that are not traces --------------------------------------


def test_two_files_claiming_one_rank_get_no_straggler_test(tmp_path: Path) -> None:
    for name in ("a.json.gz", "b.json.gz"):
        shutil.copy(TWO_RANKS / "rank-0.json.gz", tmp_path / name)
    analysis = load_trace(tmp_path, workers=1)
    assert analysis.confidence == "reduced"
    assert analysis.issues == [
        "2 files claim rank 0 (a.json.gz, b.json.gz): mixed jobs or a copied file",
        "no straggler test: the files do not come from one job",
    ]
    assert analysis.stragglers is None and analysis.to_dict()["straggler_test"] is None
    assert [r["rank"] for r in _rows(analysis)] == [0, 0]
    for row in _rows(analysis):  # the per-rank analyses still ran
        assert row["gpu"]["idle_share"] == pytest.approx(0.5356, abs=1e-4)
    assert "communication_bound" in [f.kind for f in analysis.findings]


def test_files_of_different_world_sizes_get_no_straggler_test(tmp_path: Path) -> None:
    shutil.copy(TWO_RANKS / "rank-0.json.gz", tmp_path / "rank-0.json.gz")
    doc = orjson.loads(gzip.decompress((TWO_RANKS / "rank-1.json.gz").read_bytes()))
    assert doc["distributedInfo"]["world_size"] == 128
    doc["distributedInfo"]["world_size"] = 64
    (tmp_path / "rank-1.json.gz").write_bytes(gzip.compress(orjson.dumps(doc), compresslevel=1))
    analysis = load_trace(tmp_path, workers=1)
    assert analysis.issues == [
        "files from different jobs: world sizes [64, 128]",
        "no straggler test: the files do not come from one job",
    ]
    assert analysis.stragglers is None and analysis.confidence == "reduced"
    assert [r["gpu"]["idle_share"] for r in _rows(analysis)] == pytest.approx(
        [0.5356, 0.5472], abs=1e-4
    )


def test_a_non_trace_json_among_traces_is_skipped(tmp_path: Path) -> None:
    shutil.copytree(TWO_RANKS, tmp_path / "job")
    (tmp_path / "job" / "notes.json").write_bytes(b'{"a": 1}')
    analysis = load_trace(tmp_path / "job", workers=1)
    assert analysis.confidence == "reduced"
    (issue,) = analysis.issues
    assert issue.startswith("skipped ") and "notes.json: not a trace" in issue
    assert [r["rank"] for r in _rows(analysis)] == [0, 1]
    assert analysis.stragglers is not None and analysis.stragglers.ranks == 2
    assert _rows(analysis)[1]["gpu"]["idle_share"] == pytest.approx(0.5472, abs=1e-4)


# --- bugs found in src and fixed: each of these crashed or lost data before ---

ILL_TYPED_THEN_TRUNCATED = b'{"traceEvents": [{"ph": "X", "ts": "abc"}, {"ph": "X", "ts": 1'


@pytest.mark.parametrize(
    "raw",
    [ILL_TYPED_THEN_TRUNCATED, b'{"traceEvents": [1, }', b"[1, }"],
    ids=["truncated", "broken object", "broken array"],
)
def test_an_ill_typed_event_before_broken_json_is_not_a_crash(raw: bytes) -> None:
    try:
        table = parse_trace_bytes(raw)
    except TraceFormatError:
        return
    assert table.issues


def test_cli_does_not_crash_on_an_ill_typed_truncated_trace(tmp_path: Path) -> None:
    path = tmp_path / "trace.json"
    path.write_bytes(ILL_TYPED_THEN_TRUNCATED)
    result = run_cli("trace", str(path))
    assert "Traceback" not in result.stderr
    assert result.returncode in (0, 2)


ZERO_KERNEL = [
    x("cudaLaunchKernel", 120.0, 2.0, cat="cuda_runtime", args={"correlation": 1}),
    x("gemm", 125.0, 0.0, cat="kernel", pid=0, tid=7, args={"stream": 7, "correlation": 1}),
]


def test_device_events_of_zero_duration_do_not_crash() -> None:
    doc = {"traceEvents": ZERO_KERNEL}
    summary = rank_row(summarize_rank(parse_trace_bytes(orjson.dumps(doc)), "rank-0.json"))
    assert summary["gpu"] is None or summary["gpu"]["busy_s"] == 0


def test_a_huge_step_number_does_not_break_the_json(tmp_path: Path) -> None:
    raw = json.dumps({"traceEvents": [x("ProfilerStep#" + "9" * 20, 10.0, 5.0)]}).encode()
    analysis = analyse(tmp_path, raw)
    analysis.to_json()


def test_an_event_ending_beyond_int64_nanoseconds_is_not_a_crash() -> None:
    step = x("ProfilerStep#1", 8.9e15, 8.9e15, cat="user_annotation")
    rank_row(
        summarize_rank(parse_trace_bytes(orjson.dumps({"traceEvents": [step]})), "rank-0.json")
    )


# --- fuzzing the parser ---------------------------------------------------------------------------

FUZZ_BASE: dict[str, Any] = {
    "schemaVersion": 1,
    "distributedInfo": {"rank": 1, "world_size": 2, "backend": "nccl"},
    "deviceProperties": [{"id": 0, "name": "GPU", "computeMajor": 8, "computeMinor": 0}],
    "traceEvents": [
        {"ph": "M", "name": "process_name", "pid": 1, "tid": 0, "args": {"name": "python"}},
        x("ProfilerStep#1", 100.0, 50.0, cat="user_annotation"),
        x("aten::mm", 101.0, 10.0),
        x("cudaLaunchKernel", 102.0, 3.0, cat="cuda_runtime", args={"correlation": 11}),
        x("gemm", 106.0, 8.5, cat="kernel", pid=0, tid=7, args={"stream": 7, "correlation": 11}),
        x("Optimizer.step#SGD.step", 120.0, 10.0),
        x("ProfilerStep#2", 150.0, 50.0, cat="user_annotation"),
        x("nccl:all_reduce", 151.0, 10.0),
        x("cudaLaunchKernel", 152.0, 3.0, cat="cuda_runtime", args={"correlation": 12}),
        x("cudaMemcpyAsync", 155.0, 5.0, cat="cuda_runtime", args={"correlation": 13}),
        x("ncclKernel_AllReduce", 156.0, 20.0, cat="kernel", pid=0, tid=20)
        | {"args": {"stream": 20, "correlation": 12, "device": 0}},
        x("Memcpy HtoD", 157.0, 2.0, cat="gpu_memcpy", pid=0, tid=7)
        | {"args": {"stream": 7, "correlation": 13}},
        x("ProfilerStep#3", 200.0, 50.0, cat="user_annotation"),
    ],
}
FUZZ_RAW = orjson.dumps(FUZZ_BASE, option=orjson.OPT_INDENT_2)
EVENT_FIELDS = ("ph", "cat", "name", "ts", "dur", "pid", "tid", "args")
ARG_FIELDS = ("stream", "correlation", "device", "name", "labels")
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=4,
)


@st.composite
def mutated_fields(draw: st.DrawFn) -> bytes:
    """The base trace with a few event fields (or args) replaced by arbitrary JSON values."""
    doc = json.loads(json.dumps(FUZZ_BASE))
    for _ in range(draw(st.integers(1, 4))):
        event = doc["traceEvents"][draw(st.integers(0, len(doc["traceEvents"]) - 1))]
        if draw(st.booleans()):
            if not isinstance(event.get("args"), dict):
                event["args"] = {}
            event["args"][draw(st.sampled_from(ARG_FIELDS))] = draw(json_values)
        elif draw(st.integers(0, 3)) == 0:
            event.pop(draw(st.sampled_from(EVENT_FIELDS)), None)
        else:
            event[draw(st.sampled_from(EVENT_FIELDS))] = draw(json_values)
    return json.dumps(doc).encode()  # NaN and Infinity come out as (invalid) JSON words


@st.composite
def mutated_bytes(draw: st.DrawFn) -> bytes:
    """The base trace's bytes with a few flipped, deleted or inserted, maybe cut short."""
    raw = bytearray(FUZZ_RAW)
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(raw) - 1))
        how = draw(st.sampled_from(("flip", "delete", "insert")))
        if how == "flip":
            raw[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "delete":
            del raw[at : at + draw(st.integers(1, 16))]
        else:
            raw[at:at] = draw(st.binary(min_size=1, max_size=4))
        if not raw:
            break
    if draw(st.booleans()):
        raw = raw[: draw(st.integers(0, len(raw)))]
    return bytes(raw)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutated_fields(), mutated_bytes()))
def test_the_parser_survives_mutations(raw: bytes) -> None:
    try:
        table = parse_trace_bytes(raw)
    except TraceFormatError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert table.events_read >= len(table)
    assert (table.dur_ns >= 0).all()
    summary = rank_row(summarize_rank(table, "rank-1.json"))
    orjson.dumps(summary)  # plain JSON: the map's output crosses processes and machines
    for step in summary["steps"]:
        assert sum(step["phases"].values()) == pytest.approx(step["wall_s"], rel=1e-9, abs=1e-12)


def test_the_fuzz_base_is_a_whole_trace() -> None:
    """The mutations start from a trace that uses every part of the analysis."""
    summary = rank_row(summarize_rank(parse_trace_bytes(FUZZ_RAW), "rank-1.json"))
    assert summary["issues"] == [] and summary["rank"] == 1
    assert [s["index"] for s in summary["steps"]] == [1, 2, 3]
    assert summary["steps"][1]["phases"]["transfer"] == pytest.approx(2e-6)  # the copy's 2 µs
    gpu = summary["gpu"]
    assert gpu["window"] == "all profiler steps but the last"
    assert gpu["kernels"]["count"] == 3
    assert set(gpu["kernels"]["by_kind"]) == {"computation", "communication", "memory"}
    assert gpu["comm_comp_overlap"] == 0.0  # gemm 106-114.5 µs, all-reduce 156-176 µs
    assert gpu["span_s"] == pytest.approx(70e-6)


def _columns_of(raw: bytes) -> tuple[Any, ...]:
    table = parse_trace_bytes(raw)
    return (
        table.names,
        table.threads,
        *(getattr(table, c).tolist() for c in ("cat", "name", "thread", "ts_ns", "dur_ns")),
        *(getattr(table, c).tolist() for c in ("stream", "correlation", "device")),
        table.distributed,
        table.device_properties,
        table.thread_names,
        table.issues,
    )


@pytest.mark.parametrize("chunk", [1, 40, 333, 4096])
@pytest.mark.parametrize("array_form", [False, True])
def test_chunked_reading_gives_the_same_table_for_any_chunk_size(
    monkeypatch: pytest.MonkeyPatch, chunk: int, array_form: bool
) -> None:
    # Nested lists of objects hold the same "}, {" the reader cuts at, so small chunks cut
    # inside events too: those chunks fail and the careful reader must give the same table.
    events = good_events()
    for i, event in enumerate(events):
        event["args"] = {**event.get("args", {}), "Input Dims": [{"a": i}, {"b": [{"c": 1}]}]}
    # Ill-typed events, read the lenient way in whichever chunk they fall: one repaired (a
    # numeric string), one skipped (no usable time).
    events.insert(3, x("aten::fixed", 140.0, 1.0) | {"dur": "1.5"})
    events.insert(5, x("aten::broken", 150.0, 1.0) | {"ts": "soon"})
    doc: Any = (
        events
        if array_form
        else {
            "schemaVersion": 1,
            "deviceProperties": [{"id": 0, "name": "GPU"}],
            "traceEvents": events,
            "distributedInfo": {"rank": 3, "world_size": 4},
            "traceName": "t",
        }
    )
    raw = json.dumps(doc, indent=1).encode()
    expected = _columns_of(raw)
    assert expected[-1] == [
        "1 events with missing or malformed fields were skipped",
        "1 events had ill-typed fields, read as the nearest valid value",
    ]
    assert len(expected[2]) == 7 and (array_form or expected[-4] == {"rank": 3, "world_size": 4})
    monkeypatch.setattr("pinchpoint.traces._parse._CHUNK_BYTES", chunk)
    assert _columns_of(raw) == expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from([b"{", b"}", b",", b" ", b"\n", b"a", b"}, {", b"},\n {", b"aaaaaaaa"]),
        max_size=60,
    ).map(b"".join),
    st.integers(min_value=1, max_value=64),
)
def test_the_last_boundary_is_the_last_match_of_a_full_scan(buf: bytes, window: int) -> None:
    # Backwards one "}" at a time in the window, then a scan of the whole buffer: the same
    # match as the plain left-to-right scan, whatever the window.
    from pinchpoint.traces import _parse

    matches = list(_parse._BETWEEN_EVENTS.finditer(buf))
    expected = matches[-1].span() if matches else None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_parse, "_BOUNDARY_WINDOW", window)
        found = _parse._last_boundary(bytearray(buf))
    assert (found.span() if found else None) == expected


# JSON string values of the fuzz base (not keys, not the phase letters that say what an event is).
_STRING_VALUES = [
    (m.start() + 1, m.end() - 1)
    for m in re.finditer(rb'"[^"]*"', FUZZ_RAW)  # left to right, each string whole (no escapes)
    if not FUZZ_RAW[m.end() :].lstrip().startswith(b":") and m.group() not in (b'"X"', b'"M"')
]
# A byte that can never begin a UTF-8 character: a run starting with one is always invalid.
_NEVER_FIRST = st.one_of(st.integers(0x80, 0xBF), st.integers(0xF8, 0xFF))
# Any byte a JSON string may hold as it is (no control character, quote or backslash).
_STRING_BYTE = st.integers(0x20, 0xFF).filter(lambda b: b not in b'"\\')


@st.composite
def utf8_damage(draw: st.DrawFn) -> tuple[bytes, int]:
    """The fuzz base with invalid byte runs inserted into a few of its string values; how many
    strings were damaged."""
    raw = bytearray(FUZZ_RAW)
    spans = draw(st.lists(st.sampled_from(_STRING_VALUES), min_size=1, max_size=6, unique=True))
    for lo, hi in sorted(spans, reverse=True):  # from the end, so earlier offsets stay put
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(lo, hi))
            run = bytes([draw(_NEVER_FIRST), *draw(st.lists(_STRING_BYTE, max_size=3))])
            raw[at:at] = run
            hi += len(run)
    return bytes(raw), len(spans)


@settings(max_examples=60, deadline=None)
@given(utf8_damage(), st.sampled_from(["stream", "stream-gzip", "in-memory", "careful"]))
def test_random_utf8_damage_in_strings_loses_no_event(
    damage: tuple[bytes, int], reader: str
) -> None:
    raw, strings = damage
    clean = parse_trace_bytes(FUZZ_RAW)
    with (
        tempfile.TemporaryDirectory() as folder,
        mock.patch("pinchpoint.traces._parse._CHUNK_BYTES", 7),
    ):
        table = _read_with(reader, raw, Path(folder))
    held = "string held" if strings == 1 else "strings held"
    assert table.issues == [f"{strings} {held} invalid UTF-8, replaced with U+FFFD"]
    # Every event kept, at its time (a damaged category or name may change what it counts as).
    assert table.events_read == clean.events_read and len(table) == len(clean)
    assert table.ts_ns.tolist() == clean.ts_ns.tolist()
    assert table.dur_ns.tolist() == clean.dur_ns.tolist()
    assert sum("\ufffd" in name for name in table.names) <= strings
