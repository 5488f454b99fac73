"""Read one Kineto (PyTorch profiler) trace file into a columnar event table.

The file is read whole (``.json`` or ``.json.gz``), its ``traceEvents`` array is split into raw
per-event byte slices without decoding them (msgspec's ``Raw``), and the slices are decoded in
batches into small typed records whose fields go straight into numpy columns; each batch's
records are dropped before the next is decoded. So a run never holds a Python object per event
beyond one batch: what stays is the raw text (freed when parsing ends), the slice list and the
columns.

Only what the analyses read is kept: complete (``ph: "X"``) events with their category, name,
thread, start, duration, stream, correlation id and device, plus the process and thread names
(``ph: "M"``) and the file's top-level metadata (``distributedInfo``, ``deviceProperties``).

Damaged input degrades instead of failing: a truncated gzip stream or truncated JSON keeps the
events that arrived whole, invalid UTF-8 is replaced, events with missing or ill-typed fields are
skipped and counted, ids beyond 64 bits are dropped. Each such repair is recorded in
:attr:`EventTable.issues` so the analysis can state its reduced confidence. A file that holds no
trace at all raises :class:`~pinchpoint.errors.TraceFormatError`.
"""

from __future__ import annotations

import gzip
import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import msgspec
import numpy as np
import numpy.typing as npt

from pinchpoint.errors import TraceFormatError

__all__ = [
    "ANNOTATION",
    "CATEGORY_CODES",
    "CPU_OP",
    "GPU_ANNOTATION",
    "GPU_CATEGORIES",
    "GPU_SYNC",
    "KERNEL",
    "MEMCPY",
    "MEMSET",
    "OTHER",
    "PYTHON",
    "RUNTIME",
    "EventTable",
    "parse_trace_bytes",
    "read_trace",
]

# Category codes. Kineto's current names and the older ones (``Kernel``, ``Runtime``,
# ``Operator``, ``Memcpy``) map to the same code; ROCm traces use the same names as CUDA ones
# (with ``hip*`` runtime calls) or ``hip_runtime``.
OTHER, CPU_OP, ANNOTATION, PYTHON, RUNTIME, KERNEL, MEMCPY, MEMSET, GPU_SYNC, GPU_ANNOTATION = (
    range(10)
)
CATEGORY_CODES: dict[str, int] = {
    "cpu_op": CPU_OP,
    "operator": CPU_OP,
    "user_annotation": ANNOTATION,
    "python_function": PYTHON,
    "cuda_runtime": RUNTIME,
    "cuda_driver": RUNTIME,
    "runtime": RUNTIME,
    "driver": RUNTIME,
    "hip_runtime": RUNTIME,
    "kernel": KERNEL,
    "gpu_memcpy": MEMCPY,
    "memcpy": MEMCPY,
    "gpu_memset": MEMSET,
    "memset": MEMSET,
    "cuda_sync": GPU_SYNC,
    "gpu_user_annotation": GPU_ANNOTATION,
}
#: Categories of events that run on the device (kernels, copies, sets, device-side syncs).
GPU_CATEGORIES = (KERNEL, MEMCPY, MEMSET, GPU_SYNC)

_BATCH = 20_000
_INT64_MAX = 2**63 - 1
_US_LIMIT = 9.0e15  # microseconds whose nanoseconds still fit in int64


class _Args(msgspec.Struct, gc=False):
    stream: int | str | None = None
    correlation: int | None = None
    device: int | None = None
    name: str | None = None
    labels: str | None = None


class _Event(msgspec.Struct, gc=False):
    ph: str = ""
    cat: str = ""
    name: str = ""
    ts: float | None = None
    dur: float | None = None
    pid: int | str = 0
    tid: int | str = 0
    args: _Args | None = None


class _Envelope(msgspec.Struct):
    traceEvents: list[msgspec.Raw] | None = None
    distributedInfo: dict[str, Any] | None = None
    deviceProperties: list[Any] | None = None


class _Whole(msgspec.Struct):
    traceEvents: list[_Event] | None = None
    distributedInfo: Any = None
    deviceProperties: Any = None


_EVENTS = msgspec.json.Decoder(list[_Event])
_WHOLE = msgspec.json.Decoder(_Whole)
#: Files up to this size are decoded in one pass; larger ones in batches of raw slices.
_WHOLE_BYTES = 64 * 2**20
_ONE_EVENT = msgspec.json.Decoder(_Event)
_ENVELOPE = msgspec.json.Decoder(_Envelope)
_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])


@dataclass
class EventTable:
    """The complete events of one trace file as numpy columns, with the file's metadata.

    Columns (one row per ``ph: "X"`` event, in file order): ``cat`` (a category code),
    ``name`` (an index into :attr:`names`), ``thread`` (an index into :attr:`threads`, which
    holds ``(pid, tid)`` pairs), ``ts_ns`` and ``dur_ns`` (nanoseconds), ``stream``,
    ``correlation`` and ``device`` (-1 where absent).
    """

    names: list[str]
    threads: list[tuple[str, str]]
    cat: npt.NDArray[np.int8]
    name: npt.NDArray[np.int32]
    thread: npt.NDArray[np.int32]
    ts_ns: npt.NDArray[np.int64]
    dur_ns: npt.NDArray[np.int64]
    stream: npt.NDArray[np.int64]
    correlation: npt.NDArray[np.int64]
    device: npt.NDArray[np.int64]
    distributed: dict[str, Any] = field(default_factory=dict)
    device_properties: list[dict[str, Any]] = field(default_factory=list)
    process_names: dict[str, str] = field(default_factory=dict)
    process_labels: dict[str, str] = field(default_factory=dict)
    thread_names: dict[tuple[str, str], str] = field(default_factory=dict)
    events_read: int = 0
    issues: list[str] = field(default_factory=list)
    #: Derived lookups the analyses compute once per table (name masks, host name ids).
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.cat.shape[0])


def read_trace(path: str | Path) -> EventTable:
    """The event table of the trace file at ``path`` (``.json`` or gzip-compressed)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TraceFormatError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise TraceFormatError(f"{path} is a folder, not a trace file") from None
    except OSError as exc:
        raise TraceFormatError(f"cannot read {path}: {exc.strerror}") from exc
    issues: list[str] = []
    if raw[:2] == b"\x1f\x8b":
        raw = _gunzip(raw, path, issues)
    try:
        table = parse_trace_bytes(raw, issues)
    except TraceFormatError as exc:
        raise TraceFormatError(f"{path}: {exc}") from None
    return table


def _gunzip(raw: bytes, path: Path, issues: list[str]) -> bytes:
    try:
        return _fast_gunzip(raw)
    except (EOFError, OSError, zlib.error) as exc:
        # Keep what decompresses: a truncated stream still holds the events written before it.
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            data = decoder.decompress(raw)
        except zlib.error:
            raise TraceFormatError(f"{path} is not a readable gzip file ({exc})") from None
        if not data:
            raise TraceFormatError(f"{path} is a damaged gzip file with nothing readable") from None
        issues.append(f"the gzip stream is truncated or damaged ({exc}); read what arrived whole")
        return data


def _fast_gunzip(raw: bytes) -> bytes:
    """Decompress gzip with ISA-L when installed (about twice zlib's speed), else zlib."""
    try:
        from isal import igzip
    except ImportError:  # pragma: no cover - isal ships wheels for the usual platforms
        return gzip.decompress(raw)
    data: bytes = igzip.decompress(raw)  # type: ignore[no-untyped-call]
    return data


def parse_trace_bytes(raw: bytes, issues: list[str] | None = None) -> EventTable:
    """The event table of a trace held in memory as JSON bytes (see the module docstring)."""
    issues = [] if issues is None else issues
    envelope, events = _split(raw, issues)
    table = _columns(events, issues)
    del events
    if envelope is not None:
        if isinstance(envelope.distributedInfo, dict):
            table.distributed = envelope.distributedInfo
        if isinstance(envelope.deviceProperties, list):
            table.device_properties = [p for p in envelope.deviceProperties if isinstance(p, dict)]
    table.issues = issues
    return table


def _split(
    raw: bytes, issues: list[str]
) -> tuple[_Envelope | None, list[msgspec.Raw] | list[_Event]]:
    """The top-level metadata and the raw event slices, repairing what can be repaired."""
    start = raw[:64].lstrip()[:1]
    if start not in (b"{", b"["):
        if not raw.strip():
            raise TraceFormatError("the file is empty")
        raise TraceFormatError("not a trace: the file is not JSON")
    is_array = start == b"["
    try:
        return _decode_split(raw, is_array)
    except UnicodeDecodeError:
        fixed = raw.decode("utf-8", errors="replace").encode("utf-8")
        issues.append("invalid UTF-8 in the file was replaced with U+FFFD")
        return _split(fixed, issues)
    except msgspec.ValidationError as exc:
        if len(raw) > _WHOLE_BYTES:
            raise TraceFormatError(f"not a Kineto trace: {exc}") from None
        # An ill-typed event: slice the events and decode them one batch at a time, the
        # lenient way where needed.
        try:
            return _decode_split_raw(raw, is_array)
        except msgspec.ValidationError:
            raise TraceFormatError(f"not a Kineto trace: {exc}") from None
        except msgspec.DecodeError as broken:
            return _salvaged(raw, is_array, broken, issues)
    except msgspec.DecodeError as exc:
        return _salvaged(raw, is_array, exc, issues)


def _salvaged(
    raw: bytes, is_array: bool, exc: msgspec.DecodeError, issues: list[str]
) -> tuple[_Envelope | None, list[msgspec.Raw]]:
    """The events before the point where the JSON breaks, or a one-line error without any."""
    salvaged = _salvage(raw, is_array, _error_offset(exc))
    if salvaged is None:
        raise TraceFormatError(f"not valid JSON, and no whole event before the break ({exc})")
    issues.append(f"the JSON is broken or truncated ({exc}); read the events before it")
    return salvaged


_OFFSET = re.compile(r"byte (\d+)")


def _error_offset(exc: msgspec.DecodeError) -> int | None:
    """Where msgspec says the JSON breaks (``… (byte 1234)``), when it says."""
    match = _OFFSET.search(str(exc))
    return int(match.group(1)) if match else None


def _decode_split(
    raw: bytes, is_array: bool
) -> tuple[_Envelope | None, list[msgspec.Raw] | list[_Event]]:
    if len(raw) <= _WHOLE_BYTES:
        # Small enough to decode in one pass (faster than slicing first); the records go to
        # columns right away, and their memory is a small multiple of the file's.
        if is_array:
            return None, _EVENTS.decode(raw)
        whole = _WHOLE.decode(raw)
        events_whole, whole.traceEvents = whole.traceEvents, None
        if events_whole is None:
            raise TraceFormatError("not a trace: the JSON object has no 'traceEvents' array")
        envelope_small = _Envelope(
            distributedInfo=whole.distributedInfo, deviceProperties=whole.deviceProperties
        )
        return envelope_small, events_whole
    return _decode_split_raw(raw, is_array)


def _decode_split_raw(raw: bytes, is_array: bool) -> tuple[_Envelope | None, list[msgspec.Raw]]:
    if is_array:
        return None, _RAW_LIST.decode(raw)
    envelope = _ENVELOPE.decode(raw)
    if envelope.traceEvents is None:
        raise TraceFormatError("not a trace: the JSON object has no 'traceEvents' array")
    events, envelope.traceEvents = envelope.traceEvents, None
    return envelope, events


_EVENT_END = re.compile(rb"\}\s*,")


def _salvage(
    raw: bytes, is_array: bool, broken_at: int | None = None
) -> tuple[_Envelope | None, list[msgspec.Raw]] | None:
    """The events before the point where the JSON breaks, or None if there are none.

    Cuts the text after the last ``},`` that closes a whole event and closes the array (and the
    object) there; tries a few cut points in case the last one closed a nested object.
    """
    offset = 0
    if is_array:
        head = b""
    else:
        key = raw.find(b'"traceEvents"')
        bracket = raw.find(b"[", key) if key >= 0 else -1
        if bracket < 0:
            return None
        head = raw[:key]
        raw = raw[bracket:]
        offset = bracket
    if broken_at is not None and broken_at - offset > 0:
        raw = raw[: broken_at - offset]  # only cut points before the break can hold
    ends = [m.start() for m in _EVENT_END.finditer(raw)]
    for end in reversed(ends[-8:]):
        try:
            events = _RAW_LIST.decode(raw[: end + 1] + b"]")
        except (msgspec.DecodeError, UnicodeDecodeError):
            continue
        envelope = None
        if not is_array:
            envelope = _metadata_before(head)
        return envelope, events
    return None


def _metadata_before(head: bytes) -> _Envelope:
    """The metadata written before ``traceEvents`` (Kineto writes it first), when it parses."""
    text = head.rstrip().rstrip(b",") + b"}"
    try:
        return _ENVELOPE.decode(text)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return _Envelope()


def _columns(events: list[msgspec.Raw] | list[_Event], issues: list[str]) -> EventTable:
    """Decode the raw events batch by batch into columns."""
    names: dict[str, int] = {}
    threads: dict[tuple[str, str], int] = {}
    cols: dict[str, list[npt.NDArray[Any]]] = {
        k: [] for k in ("cat", "name", "thread", "ts", "dur", "stream", "correlation", "device")
    }
    meta = _Meta()
    skipped = coerced = 0
    for lo in range(0, len(events), _BATCH):
        chunk = events[lo : lo + _BATCH]
        if chunk and isinstance(chunk[0], _Event):
            decoded: list[_Event] = chunk
        else:
            raws = cast("list[msgspec.Raw]", chunk)
            try:
                decoded = _EVENTS.decode(b"[" + b",".join(raws) + b"]")
            except (msgspec.DecodeError, UnicodeDecodeError):
                decoded, bad, fixed = _decode_leniently(raws)
                skipped += bad
                coerced += fixed
        skipped += _append(decoded, names, threads, cols, meta)
    if skipped:
        issues.append(f"{skipped} events with missing or malformed fields were skipped")
    if coerced:
        issues.append(f"{coerced} events had ill-typed fields, read as the nearest valid value")
    if meta.big_ids:
        issues.append(f"{meta.big_ids} ids beyond 64 bits were ignored")
    if not events:
        issues.append("the trace holds no events")

    def cat(key: str, dtype: Any) -> Any:
        parts = cols[key]
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    table = EventTable(
        names=list(names),
        threads=list(threads),
        cat=cat("cat", np.int8),
        name=cat("name", np.int32),
        thread=cat("thread", np.int32),
        ts_ns=cat("ts", np.int64),
        dur_ns=cat("dur", np.int64),
        stream=cat("stream", np.int64),
        correlation=cat("correlation", np.int64),
        device=cat("device", np.int64),
        process_names=meta.process_names,
        process_labels=meta.process_labels,
        thread_names=meta.thread_names,
        events_read=len(events),
    )
    return table


@dataclass
class _Meta:
    process_names: dict[str, str] = field(default_factory=dict)
    process_labels: dict[str, str] = field(default_factory=dict)
    thread_names: dict[tuple[str, str], str] = field(default_factory=dict)
    big_ids: int = 0


def _decode_leniently(chunk: Sequence[msgspec.Raw]) -> tuple[list[_Event], int, int]:
    """Decode events one by one, coercing what can be coerced; count the dropped and coerced."""
    out: list[_Event] = []
    bad = coerced = 0
    for item in chunk:
        try:
            out.append(_ONE_EVENT.decode(item))
            continue
        except (msgspec.DecodeError, UnicodeDecodeError):
            pass
        try:
            value = msgspec.json.decode(item)
        except (msgspec.DecodeError, UnicodeDecodeError):
            bad += 1
            continue
        event = _coerce(value)
        if event is None:
            bad += 1
        else:
            out.append(event)
            # Counted as repaired only when usable: one without its times is counted as
            # skipped once it reaches the columns.
            coerced += event.ts is not None and event.dur is not None
    return out, bad, coerced


def _coerce(value: Any) -> _Event | None:
    """An event from a loosely typed JSON object, or None when it cannot be one."""
    if not isinstance(value, dict):
        return None
    args = value.get("args")
    parsed_args = None
    if isinstance(args, dict):
        parsed_args = _Args(
            stream=_int_or_str(args.get("stream")),
            correlation=_int_or_none(args.get("correlation")),
            device=_int_or_none(args.get("device")),
            name=_str_or_none(args.get("name")),
            labels=_str_or_none(args.get("labels")),
        )
    pid, tid = value.get("pid", 0), value.get("tid", 0)
    return _Event(
        ph=str(value.get("ph", "")),
        cat=str(value.get("cat", "")),
        name=str(value.get("name", "")),
        ts=_float_or_none(value.get("ts")),
        dur=_float_or_none(value.get("dur")),
        pid=pid if isinstance(pid, (int, str)) and not isinstance(pid, bool) else str(pid),
        tid=tid if isinstance(tid, (int, str)) and not isinstance(tid, bool) else str(tid),
        args=parsed_args,
    )


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _int_or_str(value: Any) -> int | str | None:
    if isinstance(value, str):
        return value
    return _int_or_none(value)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _append(
    decoded: list[_Event],
    names: dict[str, int],
    threads: dict[tuple[str, str], int],
    cols: dict[str, list[npt.NDArray[Any]]],
    meta: _Meta,
) -> int:
    """Add a batch's complete events to the columns and its metadata to ``meta``; count drops.

    One list comprehension per field, checks vectorised afterwards: this loop is the parser's
    hot path (a few hundred nanoseconds per event).
    """
    complete = [e for e in decoded if e.ph == "X"]
    if len(complete) < len(decoded):
        for e in decoded:
            if e.ph == "M" and e.args is not None:
                _metadata_event(e, meta)
    if not complete:
        return 0
    ts = np.array([e.ts for e in complete], dtype=np.float64)  # None becomes NaN
    dur = np.array([e.dur for e in complete], dtype=np.float64)
    ok = np.isfinite(ts) & np.isfinite(dur) & (np.abs(ts) < _US_LIMIT)
    ok &= (dur >= 0) & (np.abs(ts) + dur < _US_LIMIT)
    dropped = int(ok.size - np.count_nonzero(ok))
    if dropped:
        complete = [e for e, good in zip(complete, ok.tolist(), strict=True) if good]
        ts, dur = ts[ok], dur[ok]
        if not complete:
            return dropped
    cat_keys = [e.cat for e in complete]
    cats = {k: i for i, k in enumerate(dict.fromkeys(cat_keys))}
    code_of = np.array([CATEGORY_CODES.get(c.lower(), OTHER) for c in cats], dtype=np.int8)
    cols["cat"].append(code_of[_ids(cat_keys, cats)])
    cols["name"].append(_ids([e.name for e in complete], names))
    pair_keys = [(e.pid, e.tid) for e in complete]
    pairs = {k: i for i, k in enumerate(dict.fromkeys(pair_keys))}
    global_ids = np.array(
        [threads.setdefault((str(p), str(t)), len(threads)) for p, t in pairs], dtype=np.int32
    )
    cols["thread"].append(global_ids[_ids(pair_keys, pairs)])
    cols["ts"].append(np.round(ts * 1000.0).astype(np.int64))
    cols["dur"].append(np.round(dur * 1000.0).astype(np.int64))
    args = [e.args for e in complete]
    streams = [a.stream if a is not None else None for a in args]
    try:
        cols["stream"].append(_ints(streams, meta))  # type: ignore[arg-type]
    except (ValueError, TypeError):  # some streams written as strings
        cols["stream"].append(_ints([_int_or_none(v) for v in streams], meta))
    cols["correlation"].append(_ints([a.correlation if a else None for a in args], meta))
    cols["device"].append(_ints([a.device if a else None for a in args], meta))
    return dropped


def _ids(keys: list[Any], index: dict[Any, int]) -> npt.NDArray[np.int32]:
    """Each key's id in ``index``, adding the new keys in order of first appearance."""
    for key in dict.fromkeys(keys):
        if key not in index:
            index[key] = len(index)
    return np.fromiter(map(index.__getitem__, keys), dtype=np.int32, count=len(keys))


def _ints(values: list[int | None], meta: _Meta) -> npt.NDArray[np.int64]:
    """Integers as an int64 column, -1 for missing ones and ones beyond 64 bits."""
    try:
        as_float = np.array(values, dtype=np.float64)  # None becomes NaN
        if np.abs(np.nan_to_num(as_float)).max(initial=0) < 2**53:
            return np.where(np.isnan(as_float), -1, as_float).astype(np.int64)
        return np.array([-1 if v is None else v for v in values], dtype=np.int64)
    except OverflowError:
        out = []
        for v in values:
            if v is not None and not -_INT64_MAX <= v <= _INT64_MAX:
                meta.big_ids += 1
                v = None
            out.append(-1 if v is None else v)
        return np.array(out, dtype=np.int64)


def _metadata_event(e: _Event, meta: _Meta) -> None:
    args = e.args
    if args is None:
        return
    pid = str(e.pid)
    if e.name == "process_name" and args.name is not None:
        meta.process_names[pid] = args.name
    elif e.name == "process_labels" and args.labels is not None:
        meta.process_labels[pid] = args.labels
    elif e.name == "thread_name" and args.name is not None:
        meta.thread_names[(pid, str(e.tid))] = args.name
