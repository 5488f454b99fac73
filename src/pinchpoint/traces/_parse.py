"""Read one Kineto (PyTorch profiler) trace file into a columnar event table.

One file of about 1,000 lines because it is one parser: the careful reader is the stream
reader's fallback for the same file, and both decode into the same msgspec record types, coerce
fields the same way and append to the same columns (``_Columns``, ``_append``).

An intact file (``.json`` or ``.json.gz``) is read as a stream: decompressed a piece at a time,
cut between events, and each piece decoded by msgspec into small typed records whose fields go
straight into numpy columns; the records are dropped before the next piece. So a run never holds
the file's text whole nor a Python object per event beyond one piece: what stays is the columns.
A file the stream reader cannot take as it is (damaged, truncated) is read again whole by the
careful reader, which splits the events into raw byte slices and repairs what it can.

Only what the analyses read is kept: complete (``ph: "X"``) events with their category, name,
thread, start, duration, stream, correlation id and device, plus the process and thread names
(``ph: "M"``) and the file's top-level metadata (``distributedInfo``, ``deviceProperties``).

Damaged input degrades instead of failing: a truncated gzip stream or truncated JSON keeps the
events that arrived whole, invalid UTF-8 becomes U+FFFD in the string that holds it (both readers
repair the text before msgspec sees it, so no msgspec version's own handling of bad bytes can
drop an event), events with missing or ill-typed fields are skipped and counted, ids beyond 64
bits are dropped. Each such repair is recorded in
:attr:`EventTable.issues` so the analysis can state its reduced confidence. A file that holds no
trace at all raises :class:`~pinchpoint.errors.TraceFormatError`.
"""

from __future__ import annotations

import codecs
import gzip
import math
import re
import threading
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import compress
from pathlib import Path
from typing import Any, Union, cast

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


class _Ids(msgspec.Struct, gc=False, frozen=True):
    """The args of a complete event that the analyses read, in the order Kineto writes them.

    Absent ids default to -1 (the columns' "none"), so a batch usually converts to numpy
    without a Python-level pass; an explicit null still decodes, as None. (Each record type
    holds only the args its events use: msgspec fills every absent field's default, per event.)
    """

    device: int | None = -1
    stream: int | str | None = -1
    correlation: int | None = -1


class _Names(msgspec.Struct, gc=False, frozen=True):
    """The args of a metadata event: a process's or thread's name, a process's labels."""

    name: str | None = None
    labels: str | None = None


class _Args(msgspec.Struct, gc=False, frozen=True):
    """Both kinds of args, for an event read the lenient way before its kind is known."""

    device: int | None = -1
    stream: int | str | None = -1
    correlation: int | None = -1
    name: str | None = None
    labels: str | None = None


_NO_IDS, _NO_NAMES, _NO_ARGS = _Ids(), _Names(), _Args()


class _Event(msgspec.Struct, gc=False):
    ph: str = ""
    cat: str = ""
    name: str = ""
    ts: float | None = math.nan
    dur: float | None = math.nan
    pid: int | str = 0
    tid: int | str = 0
    args: _Args | None = _NO_ARGS


class _Envelope(msgspec.Struct):
    traceEvents: list[msgspec.Raw] | None = None
    distributedInfo: dict[str, Any] | None = None
    deviceProperties: list[Any] | None = None


class _Complete(msgspec.Struct, gc=False, tag="X", tag_field="ph"):
    """A complete event (``ph: "X"``): the only kind that becomes a row (fields in Kineto's
    order, which msgspec's key matching tries first)."""

    cat: str = ""
    name: str = ""
    pid: int | str = 0
    tid: int | str = 0
    ts: float | None = math.nan
    dur: float | None = math.nan
    args: _Ids | None = _NO_IDS


class _MetaEvent(msgspec.Struct, gc=False, tag="M", tag_field="ph"):
    """A metadata event (``ph: "M"``): process and thread names."""

    name: str = ""
    pid: int | str = 0
    tid: int | str = 0
    args: _Names | None = _NO_NAMES


# Every other phase of the Chrome trace format decodes to an empty record: msgspec then skips
# its fields without building them (flow events are a third of a training trace). A phase not
# listed fails validation and its chunk is read the lenient way, which keeps it.
_SKIPPED = tuple(
    msgspec.defstruct(f"_Phase{i}", [], tag=ph, tag_field="ph", gc=False)
    for i, ph in enumerate("BEiIbnestfpPONDRCcSTF()")
)
_EVENT_TYPES = (_Complete, _MetaEvent, *_SKIPPED)
_EVENTS: msgspec.json.Decoder[list[Any]] = msgspec.json.Decoder(list[Union[_EVENT_TYPES]])  # type: ignore[valid-type]  # noqa: UP007
_ONE_EVENT = msgspec.json.Decoder(_Event)
_ENVELOPE = msgspec.json.Decoder(_Envelope)
_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])


@dataclass
class EventTable:
    """The complete events of one trace file as numpy columns, with the file's metadata.

    Columns (one row per ``ph: "X"`` event, in file order): ``cat`` (a category code),
    ``name`` (an index into :attr:`names`), ``thread`` (an index into :attr:`threads`, which
    holds ``(pid, tid)`` pairs), ``ts_ns`` and ``dur_ns`` (nanoseconds), ``stream``,
    ``correlation`` and ``device`` (-1 where absent). Ids are read where the analyses use them:
    ``correlation`` for runtime calls and device events, ``stream`` and ``device`` for device
    events (kernels, copies, sets, device-side syncs); other rows hold -1.
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
    """The event table of the trace file at ``path`` (``.json`` or gzip-compressed).

    An intact file is read as a stream (decompressed and decoded a piece at a time, so neither
    its compressed nor its decompressed text is ever held whole); a file the stream reader
    cannot take as it is (damaged, truncated) is read again whole, the careful way.
    """
    path = Path(path)
    chunked = True  # whether the whole text is worth a chunked pass before the careful one
    try:
        return _stream_file(path)
    except _Careful:
        chunked = False  # the same text would stop the chunked reader at the same place
    except (EOFError, OSError, zlib.error):
        pass
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
        table = parse_trace_bytes(raw, issues, chunked=chunked)
    except TraceFormatError as exc:
        raise TraceFormatError(f"{path}: {exc}") from None
    return table


def _stream_file(path: Path) -> EventTable:
    """The table of an intact trace file, read and decoded one piece at a time."""
    with path.open("rb") as raw:
        if raw.read(2) == b"\x1f\x8b":
            raw.seek(0)
            with _gzip().GzipFile(fileobj=raw) as unzipped:
                return _parse_repaired(iter(partial(unzipped.read, _CHUNK_BYTES), b""), [])
        raw.seek(0)
        return _parse_repaired(iter(partial(raw.read, _CHUNK_BYTES), b""), [])


def _parse_repaired(pieces: Iterable[bytes | memoryview], issues: list[str]) -> EventTable:
    """:func:`_parse_chunked` of the pieces with their invalid UTF-8 replaced, and said so."""
    repair = _Utf8Repair()
    table = _parse_chunked(repair.pieces(pieces), issues)
    repair.report(table.issues)
    return table


def _gzip() -> Any:
    """ISA-L's gzip module when installed (about twice zlib's speed), else the standard one."""
    try:
        from isal import igzip
    except ImportError:  # pragma: no cover - isal ships wheels for the usual platforms
        return gzip
    return igzip


def _gunzip(raw: bytes, path: Path, issues: list[str]) -> bytes:
    try:
        return cast(bytes, _gzip().decompress(raw))
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


def parse_trace_bytes(
    raw: bytes, issues: list[str] | None = None, *, chunked: bool = True
) -> EventTable:
    """The event table of a trace held in memory as JSON bytes (see the module docstring).

    ``chunked=False`` goes straight to the careful reader (for text the chunked one already
    stopped on).
    """
    issues = [] if issues is None else issues
    start = raw[:64].lstrip()[:1]
    if start not in (b"{", b"["):
        if not raw.strip():
            raise TraceFormatError("the file is empty")
        raise TraceFormatError("not a trace: the file is not JSON")
    is_array = start == b"["
    if not raw.isascii():
        repair = _Utf8Repair()
        raw = b"".join(repair.pieces(_pieces(raw)))
        repair.report(issues)
    try:
        if chunked:
            return _parse_chunked(_pieces(raw), issues)
    except _Careful:
        pass
    envelope, events = _split(raw, is_array, issues)
    columns = _Columns()
    for lo in range(0, len(events), _BATCH):
        columns.add(_decode_raws(events[lo : lo + _BATCH], columns))
    table = columns.table(issues)
    if envelope is not None:
        _set_metadata(table, envelope.distributedInfo, envelope.deviceProperties)
    return table


def _pieces(raw: bytes) -> Iterator[memoryview]:
    view = memoryview(raw)
    for lo in range(0, len(raw), _CHUNK_BYTES):
        yield view[lo : lo + _CHUNK_BYTES]


class _Utf8Repair:
    """Replaces invalid UTF-8 in a stream of pieces with U+FFFD, and counts the strings repaired.

    Each invalid sequence becomes one U+FFFD, as Python's ``"replace"`` handler makes them (one per
    maximal invalid subpart), so the event that holds it is kept with the rest of its string. A
    piece that is all ASCII, the usual case, passes as it is; any other is decoded and encoded
    again, a sequence cut by the piece's end waiting for the next piece. Invalid bytes count by
    the JSON string that holds them: two are in the same string when no unescaped quote lies
    between them.
    """

    def __init__(self) -> None:
        self.strings = 0
        self._pending = b""  # the start of a sequence cut by the last piece's end
        self._open = False  # whether the string of the last invalid byte may still go on

    def pieces(self, pieces: Iterable[bytes | memoryview]) -> Iterator[bytes | memoryview]:
        """The pieces with their invalid UTF-8 replaced (an ASCII piece is yielded as it is)."""
        for piece in pieces:
            data = piece if isinstance(piece, bytes) else bytes(piece)
            if not self._pending and data.isascii():
                self._open = self._open and not _quote_between(data, 0, len(data))
                yield piece
                continue
            yield self._repaired(self._pending + data, final=False)
        if self._pending:
            yield self._repaired(self._pending, final=True)

    def report(self, issues: list[str]) -> None:
        """Add the count of repaired strings to ``issues``, when there were any."""
        if self.strings:
            held = "string held" if self.strings == 1 else "strings held"
            issues.append(f"{self.strings} {held} invalid UTF-8, replaced with U+FFFD")

    def _repaired(self, data: bytes, final: bool) -> bytes:
        with _BAD_LOCK:
            _bad_starts.clear()
            text, used = codecs.utf_8_decode(data, _REPLACE_NOTING, final)
            bad = list(_bad_starts)
        self._pending = data[used:]
        after = 0  # the string of an invalid byte goes on from here, while self._open
        for start in bad:
            if not (self._open and not _quote_between(data, after, start)):
                self.strings += 1
            self._open, after = True, start
        self._open = self._open and not _quote_between(data, after, used)
        return text.encode("utf-8") if bad else data[:used]


def _quote_between(data: bytes, lo: int, hi: int) -> bool:
    """Whether ``data[lo:hi]`` holds a ``"`` that is not escaped (one that ends a JSON string)."""
    at = data.find(b'"', lo, hi)
    while at >= 0:
        before = at - 1
        while before >= 0 and data[before] == 0x5C:  # a backslash
            before -= 1
        if (at - 1 - before) % 2 == 0:
            return True
        at = data.find(b'"', at + 1, hi)
    return False


# The error handler that replaces as "replace" does and notes where, for _Utf8Repair (codecs
# handlers are process-wide, so the notes are taken under a lock).
_REPLACE_NOTING = "pinchpoint.replace-noting"
_BAD_LOCK = threading.Lock()
_bad_starts: list[int] = []


def _replace_noting(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _bad_starts.append(exc.start)
    return "\ufffd", exc.end


codecs.register_error(_REPLACE_NOTING, _replace_noting)


class _Careful(Exception):
    """The chunked reader cannot read this file as it is; the careful reader will."""


#: Where one top-level event ends and the next begins (only ever trusted once both chunks decode).
_BETWEEN_EVENTS = re.compile(rb"\}\s*,\s*\{")
#: Bytes read (and decoded) at a time; also about the size of a decoded chunk.
_CHUNK_BYTES = 2**20
#: The last boundary is looked for in this many bytes at the end of the buffer first.
_BOUNDARY_WINDOW = 2**16
_TRAILING = "trailing characters"
_KEY = b'"traceEvents"'


def _parse_chunked(pieces: Iterable[bytes | memoryview], issues: list[str]) -> EventTable:
    """Decode the events array from successive pieces of the file, chunk by chunk, into columns.

    Each time a piece arrives, the text up to the last boundary between two events (a byte
    search for ``}, {``) is decoded and goes to the columns; the rest waits for the next piece.
    So the file is parsed once, and what is held at any time is one piece, one chunk's records
    and the columns: memory does not grow with the file beyond its columns.

    The boundary search can also match inside an event; such a cut leaves unbalanced JSON, its
    chunk fails to decode and the careful reader takes over. As the first chunk starts at the
    array's opening bracket, every chunk that decodes ends at a real boundary. The last chunk
    runs to the end of the file: msgspec reports where the array ends as "trailing characters",
    and what follows is the rest of the top-level object, whose metadata is read with the text
    before the array.
    """
    stream = iter(pieces)
    rest, is_array, head = _head(stream)
    columns = _Columns()
    # ``buf`` always starts with "[": a chunk is decoded in place, with the byte after its last
    # event's "}" (a comma or a space) briefly made the array's closing "]".
    buf = bytearray(b"[")
    buf += rest
    for piece in stream:
        buf += piece
        boundary = _last_boundary(buf)
        if boundary is None:
            continue  # no whole event yet: read on
        end = boundary.start() + 1
        saved = buf[end]
        buf[end] = ord("]")
        with memoryview(buf) as view:
            events = _decode_chunk(view[: end + 1], columns)
        buf[end] = saved
        columns.add(events)
        del events
        buf[1 : boundary.end() - 1] = b""
    last = bytes(buf)
    del buf
    tail = b""
    try:
        events = _EVENTS.decode(last)
    except msgspec.ValidationError:
        array = _array_part(last)
        events = _decode_chunk(array, columns)
        tail = last[len(array) :]
    except msgspec.DecodeError as exc:
        offset = _error_offset(exc)
        if offset is None or _TRAILING not in str(exc):
            raise _Careful from None
        cut = _array_end(last, offset)
        events = _decode_chunk(last[:cut], columns)
        tail = last[cut:]
    else:
        if not is_array:
            raise _Careful  # the object never closes: a truncated file
    columns.add(events)
    table = columns.table(issues)
    if not is_array:
        meta = _metadata_around(head, tail)
        _set_metadata(table, meta.distributedInfo, meta.deviceProperties)
    return table


def _head(stream: Iterator[bytes | memoryview]) -> tuple[bytes, bool, bytes]:
    """Read up to the events array's ``[``: what follows it, whether the file is an array, and
    the text before the ``"traceEvents"`` key (the metadata Kineto writes first)."""
    buf = b""
    while True:
        first = buf.lstrip()[:1]
        if first == b"[":
            return buf[buf.index(b"[") + 1 :], True, b""
        if first == b"{":
            key = buf.find(_KEY)
            begin = buf.find(b"[", key) if key >= 0 else -1
            if begin >= 0:
                if buf[key + len(_KEY) : begin].strip() != b":":
                    raise _Careful
                return buf[begin + 1 :], False, buf[:key]
        elif first:
            raise _Careful  # not JSON: the careful reader says so in its words
        piece = next(stream, None)
        if piece is None or len(buf) > _HEAD_LIMIT:
            raise _Careful
        buf += piece


#: A file whose first this many bytes hold no events array is left to the careful reader.
_HEAD_LIMIT = 2**26


def _last_boundary(buf: bytes | bytearray) -> re.Match[bytes] | None:
    """The last ``}, {`` in ``buf``: looked for backwards from its end one ``}`` at a time in its
    last bytes, then with one scan of the whole buffer (an event longer than that window).

    Matches cannot overlap (one starts with ``}`` and holds no other), so the match at the last
    ``}`` that starts one is the last match.
    """
    end = len(buf)
    floor = max(0, end - _BOUNDARY_WINDOW)
    while (brace := buf.rfind(b"}", floor, end)) >= 0:
        match = _BETWEEN_EVENTS.match(buf, brace)
        if match is not None:
            return match
        end = brace
    last = None
    for last in _BETWEEN_EVENTS.finditer(buf):  # noqa: B007 - the last one is wanted
        pass
    return last


def _array_part(last: bytes) -> bytes:
    """The events array at the start of ``last`` (what comes before the trailing text)."""
    try:
        _RAW_LIST.decode(last)
    except msgspec.DecodeError as exc:
        offset = _error_offset(exc)
        if offset is not None and _TRAILING in str(exc):
            return last[: _array_end(last, offset)]
        raise _Careful from None
    return last


def _array_end(last: bytes, offset: int) -> int:
    """Just past the ``]`` that closes the array, given where msgspec saw trailing text start.

    msgspec's offset points at or just past the first trailing byte, depending on the version;
    the closing bracket is the last ``]`` before it either way.
    """
    return last.rfind(b"]", 0, offset) + 1


class _Metadata(msgspec.Struct):
    distributedInfo: Any = None
    deviceProperties: Any = None


_METADATA = msgspec.json.Decoder(_Metadata)


def _metadata_around(head: bytes, tail: bytes) -> _Metadata:
    """The top-level object without its events: the text before and after the array, joined."""
    before = head.rstrip()
    before = before[:-1] if before.endswith(b",") else before
    after = tail.lstrip()
    if before.rstrip().endswith(b"{") and after.startswith(b","):
        after = after[1:]
    try:
        return _METADATA.decode(before + after)
    except msgspec.DecodeError:
        raise _Careful from None


def _set_metadata(table: EventTable, distributed: Any, device_properties: Any) -> None:
    if isinstance(distributed, dict):
        table.distributed = distributed
    if isinstance(device_properties, list):
        table.device_properties = [p for p in device_properties if isinstance(p, dict)]


def _decode_chunk(chunk: bytes | bytearray | memoryview, columns: _Columns) -> list[Any]:
    """The events of a JSON array, the lenient way where one is ill-typed."""
    try:
        return _EVENTS.decode(chunk)
    except msgspec.ValidationError:
        pass
    except msgspec.DecodeError:
        raise _Careful from None
    try:
        raws = _RAW_LIST.decode(chunk)
    except msgspec.DecodeError:
        raise _Careful from None
    return _decode_raws(raws, columns)


def _decode_raws(raws: Sequence[msgspec.Raw], columns: _Columns) -> list[Any]:
    """The events of raw slices: in one pass, or one by one where some are damaged."""
    try:
        return _EVENTS.decode(b"[" + b",".join(raws) + b"]")
    except msgspec.DecodeError:
        decoded, bad, fixed = _decode_leniently(raws)
        columns.skipped += bad
        columns.coerced += fixed
        return decoded


def _split(
    raw: bytes, is_array: bool, issues: list[str]
) -> tuple[_Envelope | None, list[msgspec.Raw]]:
    """The top-level metadata and the raw event slices, repairing what can be repaired: on
    broken JSON, the events before the break, or a one-line error without any."""
    try:
        if is_array:
            return None, _RAW_LIST.decode(raw)
        envelope = _ENVELOPE.decode(raw)
    except msgspec.ValidationError as exc:
        raise TraceFormatError(f"not a Kineto trace: {exc}") from None
    except msgspec.DecodeError as exc:
        salvaged = _salvage(raw, is_array, _error_offset(exc))
        if salvaged is None:
            raise TraceFormatError(
                f"not valid JSON, and no whole event before the break ({exc})"
            ) from None
        issues.append(f"the JSON is broken or truncated ({exc}); read the events before it")
        return salvaged
    if envelope.traceEvents is None:
        raise TraceFormatError("not a trace: the JSON object has no 'traceEvents' array")
    events, envelope.traceEvents = envelope.traceEvents, None
    return envelope, events


_OFFSET = re.compile(r"byte (\d+)")


def _error_offset(exc: msgspec.DecodeError) -> int | None:
    """Where msgspec says the JSON breaks (``… (byte 1234)``), when it says."""
    match = _OFFSET.search(str(exc))
    return int(match.group(1)) if match else None


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
        except msgspec.DecodeError:
            continue
        return (None if is_array else _metadata_before(head)), events
    return None


def _metadata_before(head: bytes) -> _Envelope:
    """The metadata written before ``traceEvents`` (Kineto writes it first), when it parses."""
    text = head.rstrip().rstrip(b",") + b"}"
    try:
        return _ENVELOPE.decode(text)
    except msgspec.DecodeError:
        return _Envelope()


class _Columns:
    """Columns under construction: batches of decoded events go in, an EventTable comes out."""

    def __init__(self) -> None:
        self.names = _id_map()
        self.cats = _id_map()
        self.cat_codes: npt.NDArray[np.int8] = np.zeros(0, dtype=np.int8)
        self.threads: dict[tuple[str, str], int] = {}
        self.parts: dict[str, list[npt.NDArray[Any]]] = {
            k: [] for k in ("cat", "name", "thread", "ts", "dur", "stream", "correlation", "device")
        }
        self.meta = _Meta()
        self.events_read = self.skipped = self.coerced = 0

    def add(self, decoded: list[Any]) -> None:
        self.events_read += len(decoded)
        self.skipped += _append(decoded, self)

    def table(self, issues: list[str]) -> EventTable:
        if self.skipped:
            issues.append(f"{self.skipped} events with missing or malformed fields were skipped")
        if self.coerced:
            issues.append(
                f"{self.coerced} events had ill-typed fields, read as the nearest valid value"
            )
        if self.meta.big_ids:
            issues.append(f"{self.meta.big_ids} ids beyond 64 bits were ignored")
        if not self.events_read:
            issues.append("the trace holds no events")

        def column(key: str, dtype: Any) -> Any:
            # Each column's batches are let go once joined, so a long trace holds its columns
            # about once, not twice, while the table is put together.
            parts = self.parts.pop(key)
            if not parts:
                return np.zeros(0, dtype=dtype)
            joined = parts[0] if len(parts) == 1 else np.concatenate(parts)
            return joined.astype(dtype, copy=False)

        return EventTable(
            names=list(self.names),
            threads=list(self.threads),
            cat=column("cat", np.int8),
            name=column("name", np.int32),
            thread=column("thread", np.int32),
            ts_ns=column("ts", np.int64),
            dur_ns=column("dur", np.int64),
            stream=column("stream", np.int64),
            correlation=column("correlation", np.int64),
            device=column("device", np.int64),
            process_names=self.meta.process_names,
            process_labels=self.meta.process_labels,
            thread_names=self.meta.thread_names,
            events_read=self.events_read,
            issues=issues,
        )


@dataclass
class _Meta:
    process_names: dict[str, str] = field(default_factory=dict)
    process_labels: dict[str, str] = field(default_factory=dict)
    thread_names: dict[tuple[str, str], str] = field(default_factory=dict)
    big_ids: int = 0


def _decode_leniently(chunk: Sequence[msgspec.Raw]) -> tuple[list[Any], int, int]:
    """Decode events one by one, coercing what can be coerced; count the dropped and coerced.

    Returns the complete and metadata events (as the tagged records the fast path makes), the
    number dropped and the number coerced.
    """
    out: list[Any] = []
    bad = coerced = 0
    for item in chunk:
        try:
            _keep(_ONE_EVENT.decode(item), out)
            continue
        except msgspec.DecodeError:
            pass
        try:
            value = msgspec.json.decode(item)
        except msgspec.DecodeError:
            bad += 1
            continue
        event = _coerce(value)
        if event is None:
            bad += 1
        else:
            _keep(event, out)
            # Counted as repaired only when usable: one without its times is counted as
            # skipped once it reaches the columns.
            coerced += event.ts is not None and event.dur is not None
    return out, bad, coerced


def _keep(e: _Event, out: list[Any]) -> None:
    """Add a leniently decoded event to ``out`` as a tagged record, when it is one that counts."""
    a = e.args
    if e.ph == "X":
        ids = None if a is None else _Ids(a.device, a.stream, a.correlation)
        out.append(
            _Complete(cat=e.cat, name=e.name, pid=e.pid, tid=e.tid, ts=e.ts, dur=e.dur, args=ids)
        )
    elif e.ph == "M":
        names = None if a is None else _Names(a.name, a.labels)
        out.append(_MetaEvent(e.name, e.pid, e.tid, names))


def _coerce(value: Any) -> _Event | None:
    """An event from a loosely typed JSON object, or None when it cannot be one."""
    if not isinstance(value, dict):
        return None
    args = value.get("args")
    parsed_args = None
    if isinstance(args, dict):
        stream, name, labels = args.get("stream"), args.get("name"), args.get("labels")
        parsed_args = _Args(
            stream=stream if isinstance(stream, str) else _int_or_none(stream),
            correlation=_int_or_none(args.get("correlation")),
            device=_int_or_none(args.get("device")),
            name=name if isinstance(name, str) else None,
            labels=labels if isinstance(labels, str) else None,
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
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    try:
        return int(value)
    except ValueError:
        return None


def _id_map() -> defaultdict[Any, int]:
    """A dict that gives each key it has not seen the next id (its size) on first lookup, so a
    column of ids is one pass with no test per key: ``[ids[key] for key in keys]``."""
    ids: defaultdict[Any, int] = defaultdict()
    ids.default_factory = ids.__len__
    return ids


def _of_type(decoded: list[Any], kind: type) -> list[Any]:
    """The records of one kind, selected without a Python-level loop (none subclasses another,
    so the type check is one pointer comparison)."""
    return list(filter(kind.__instancecheck__, decoded))


def _append(decoded: list[Any], columns: _Columns) -> int:
    """Add a batch's complete events to the columns and its metadata to theirs; count drops.

    This is the parser's hot path. Each field leaves the records through a list comprehension
    (the interpreter reads a record's slot faster there than through ``operator.attrgetter``)
    and goes to numpy in one C-level pass (ids from :func:`_id_map`) where its values are all
    plain numbers, through a checking Python pass only where some are not (nulls, strings,
    huge ids).
    """
    complete = _of_type(decoded, _Complete)
    if list(map(type, decoded)).count(_MetaEvent):
        for e in _of_type(decoded, _MetaEvent):
            _metadata_event(e, columns.meta)
    if not complete:
        return 0
    n = len(complete)
    ts = np.fromiter([e.ts for e in complete], dtype=np.float64, count=n)  # None becomes NaN
    dur = np.fromiter([e.dur for e in complete], dtype=np.float64, count=n)
    ok = np.isfinite(ts) & np.isfinite(dur) & (np.abs(ts) < _US_LIMIT)
    ok &= (dur >= 0) & (np.abs(ts) + dur < _US_LIMIT)
    dropped = int(ok.size - np.count_nonzero(ok))
    if dropped:
        complete = list(compress(complete, ok.tolist()))
        ts, dur = ts[ok], dur[ok]
        n = len(complete)
        if not complete:
            return dropped
    cols = columns.parts
    cats = columns.cats
    cat_ids = np.fromiter([cats[e.cat] for e in complete], dtype=np.int32, count=n)
    if len(cats) > len(columns.cat_codes):
        columns.cat_codes = np.array(
            [CATEGORY_CODES.get(c.lower(), OTHER) for c in cats], dtype=np.int8
        )
    codes = columns.cat_codes[cat_ids]
    cols["cat"].append(codes)
    names = columns.names
    cols["name"].append(np.fromiter([names[e.name] for e in complete], dtype=np.int32, count=n))
    cols["thread"].append(
        _thread_ids([e.pid for e in complete], [e.tid for e in complete], columns)
    )
    cols["ts"].append(np.round(ts * 1000.0).astype(np.int64))
    cols["dur"].append(np.round(dur * 1000.0).astype(np.int64))
    # Ids are read where the analyses use them (half the events are host operators, which
    # carry none): correlation for runtime calls and device events, stream and device for
    # device events. Explicit null args read as absent ones.
    on_device = np.isin(codes, GPU_CATEGORIES)
    launched = on_device | (codes == RUNTIME)
    args = [e.args or _NO_IDS for e in compress(complete, launched.tolist())]
    meta = columns.meta
    cols["correlation"].append(_id_column([a.correlation for a in args], launched, meta))
    args = list(compress(args, on_device[launched].tolist()))
    cols["stream"].append(_id_column([a.stream for a in args], on_device, meta))
    cols["device"].append(_id_column([a.device for a in args], on_device, meta))
    return dropped


def _id_column(
    values: list[Any], rows: npt.NDArray[np.bool_], meta: _Meta
) -> npt.NDArray[np.int64]:
    """An id column: ``values`` (of the ``rows`` set) where they are ids, -1 elsewhere."""
    out = np.full(rows.size, -1, dtype=np.int64)
    if not values:
        return out
    try:
        out[rows] = np.fromiter(values, dtype=np.int64, count=len(values))
    except (TypeError, ValueError, OverflowError):
        # Nulls, strings that are not numbers, ids beyond 64 bits.
        out[rows] = _ints([_int_or_none(v) for v in values], meta)
    return out


#: pid and tid pack into one int64 key while both are below this (Linux ids always are).
_ID_BITS = 31


def _thread_ids(pids: list[Any], tids: list[Any], columns: _Columns) -> Any:
    """Each event's index into the table's threads (``(pid, tid)`` as strings), adding new
    threads in order of first appearance."""
    n = len(pids)
    try:
        pid = np.fromiter(pids, dtype=np.int64, count=n)
        tid = np.fromiter(tids, dtype=np.int64, count=n)
    except (TypeError, ValueError, OverflowError):  # names such as "Spans", or huge numbers
        local, pairs = _named_thread_ids(pids, tids)
    else:
        limit = 1 << _ID_BITS
        if pid.min() >= 0 and tid.min() >= 0 and pid.max() < limit and tid.max() < limit:
            local, pairs = _packed_thread_ids(pid, tid)
        else:
            local, pairs = _named_thread_ids(pids, tids)
    threads = columns.threads
    global_of = np.fromiter(
        (threads.setdefault((str(p), str(t)), len(threads)) for p, t in pairs), dtype=np.int32
    )
    return global_of[local]


def _named_thread_ids(pids: list[Any], tids: list[Any]) -> tuple[npt.NDArray[Any], list[Any]]:
    """Local thread ids and the ``(pid, tid)`` of each, for ids that are not small integers.

    pids and tids are numbered apart (a handful of distinct values each, one C-level pass
    apiece, no tuple per event) and the pairs of numbers then go through
    :func:`_packed_thread_ids`.
    """
    n = len(pids)
    pid_ids, tid_ids = _id_map(), _id_map()
    pid = np.fromiter(map(pid_ids.__getitem__, pids), dtype=np.int64, count=n)
    tid = np.fromiter(map(tid_ids.__getitem__, tids), dtype=np.int64, count=n)
    local, pairs = _packed_thread_ids(pid, tid)
    pid_keys, tid_keys = list(pid_ids), list(tid_ids)
    return local, [(pid_keys[p], tid_keys[t]) for p, t in pairs]


def _packed_thread_ids(
    pid: npt.NDArray[np.int64], tid: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[Any], list[tuple[int, int]]]:
    """Local thread ids (by first appearance) and the ``(pid, tid)`` of each, from one sort of
    the pair packed into an int64 (both below ``2**31``)."""
    codes, first, inverse = np.unique((pid << 32) | tid, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    pairs = [(c >> 32, c & 0xFFFFFFFF) for c in codes[order].tolist()]
    return rank[inverse.reshape(-1)], pairs


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


def _metadata_event(e: _MetaEvent, meta: _Meta) -> None:
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
