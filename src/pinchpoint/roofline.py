"""The roofline: where each operator and module stands against the machine's measured peaks.

For work with ``flops`` floating-point operations moving ``bytes`` bytes in ``seconds``:

- arithmetic intensity ``I = flops / bytes`` (FLOP per byte);
- attainable rate ``min(peak_flops, I · bandwidth)``: below the ridge point
  ``peak_flops / bandwidth`` the memory system caps it, above it the arithmetic units do;
- achieved rate ``flops / seconds`` and its fraction of the attainable rate.

Work below the ridge is memory-bound, at or above it compute-bound. Operators that move bytes
without arithmetic (copies) have intensity 0 and are memory-bound. The peaks are those that
calibration measured (``Machine.peaks``), so the same rules hold on a laptop and on an H100.
Pure arithmetic on a Profile; it imports no torch and draws nothing.

Two rules keep every point at or under its roof:

- **FLOPs and time on the same operator.** An operator's FLOPs are divided by its work time
  (``Operator.work_s``: its calls with everything they ran below them), not its self time: the
  FLOP counter credits ``aten::convolution`` with the convolution, whose time is spent in its
  child ``aten::mkldnn_convolution``. Profiles without work times (trace files, older saves)
  fall back to self time.
- **A memory roof per cache level (hierarchical roofline).** The main-memory bandwidth caps work
  that streams from DRAM; a small operator whose bytes per call fit in a cache (tens of KB of
  activations in a small CNN) moves them at that cache's bandwidth, which calibration measures
  too (``bandwidth_l2_bytes_per_s`` for working sets up to ``cache_l2_bytes``, and likewise for
  ``l3``). An operator's memory roof is the fastest its bytes per call could move: as many as
  each cache holds served at that cache's rate, the rest from main memory
  (:func:`bandwidth_for_bytes`). Work that fits in L2 comes under the L2 roof, a 50 MB call on
  a 32 MB L3 under a blend mostly set by the L3 (it can find most of its data there: the
  tensors its producer just wrote), a gigabyte under main memory's. Profiles calibrated before
  cache roofs existed use ``bandwidth_bytes_per_s`` for all. A module's bytes per call are its
  forward bytes (one call a step). Every bandwidth counts bytes as the FLOP counter does (tensor
  sizes read plus written) and is the best of a copy, a triad and an in-place update, which
  moves its counted bytes fastest (:mod:`pinchpoint.machine.calibrate`).

The peaks are the best rates calibration saw; a calibration taken while other jobs held the
machine reads low, and a point measured in a quiet moment can then sit somewhat above its roof.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pinchpoint import codec
from pinchpoint._profile import Profile

__all__ = [
    "CACHE_LEVELS",
    "RooflinePoint",
    "achieved_fraction",
    "bandwidth_for_bytes",
    "module_points",
    "operator_points",
    "peak_for_dtypes",
]

Bound = Literal["compute", "memory"]

#: Cache levels with a measured bandwidth, smallest first: peaks hold ``cache_<level>_bytes``
#: (the working set the level holds) and ``bandwidth_<level>_bytes_per_s``.
CACHE_LEVELS: tuple[str, ...] = ("l2", "l3")

_DTYPE_PEAKS = {
    "c10::BFloat16": "flops_bfloat16",
    "c10::Half": "flops_float16",
    "signed char": "flops_int8",
}


@dataclass(frozen=True)
class RooflinePoint(codec.Saved):
    """One operator or module placed on the roofline.

    ``seconds`` is the time its ``flops`` took (an operator's work time, see the module
    docstring); ``bandwidth_bytes_per_s`` the memory roof it sits under and ``memory_level``
    the smallest memory level that holds its bytes per call (``"l2"``, ``"l3"``, ``"dram"``).
    """

    name: str
    flops: int
    bytes: int
    seconds: float
    intensity_flops_per_byte: float
    achieved_flops_per_s: float
    attainable_flops_per_s: float
    bound: Bound
    bandwidth_bytes_per_s: float = 0.0
    memory_level: str = "dram"

    @property
    def fraction(self) -> float:
        """Achieved over attainable rate (0 for pure data movement)."""
        if self.attainable_flops_per_s <= 0:
            return 0.0
        return self.achieved_flops_per_s / self.attainable_flops_per_s

    def _saving(self, data: dict[str, Any]) -> dict[str, Any]:
        return codec.arrange(data, _POINT_KEYS, fraction=self.fraction)  # for readers


#: The keys of a saved point: its fields, with the derived ``fraction`` after the rates.
_POINT_KEYS = (
    "name flops bytes seconds intensity_flops_per_byte achieved_flops_per_s "
    "attainable_flops_per_s fraction"
)


def peak_for_dtypes(peaks: dict[str, float], dtypes: list[str]) -> float:
    """The matmul peak that applies to an operator with these input dtypes (fp32 by default)."""
    for dtype in dtypes:
        key = _DTYPE_PEAKS.get(dtype)
        if key is not None and key in peaks:
            return peaks[key]
    return peaks["flops_float32"]


def bandwidth_for_bytes(peaks: dict[str, float], bytes_per_call: float) -> tuple[float, str]:
    """The memory roof for work moving ``bytes_per_call`` bytes a call, and the name of the
    smallest level that holds them (``"dram"`` when no cache does).

    The roof is the rate if every cache served as many of the bytes as it holds and main memory
    the rest: the first ``cache_l2_bytes`` at the L2 rate, the next ones up to ``cache_l3_bytes``
    at the L3 rate, the remainder at ``bandwidth_bytes_per_s``; bytes over time. So it is a
    level's bandwidth for work that fits in that level, and falls smoothly to main memory's as
    the bytes outgrow the caches. A level's rate is the best measured at it or any larger level
    (data that fits in L2 fits in L3 too; a small copy's fixed cost per call can hold the
    L2-sized measurement below the L3 one), and never below main memory's.
    """
    dram = peaks["bandwidth_bytes_per_s"]
    levels = [
        (level, peaks[f"cache_{level}_bytes"], peaks[f"bandwidth_{level}_bytes_per_s"])
        for level in CACHE_LEVELS
        if peaks.get(f"cache_{level}_bytes", 0) > 0
        and peaks.get(f"bandwidth_{level}_bytes_per_s", 0) > 0
    ]
    if not levels:
        return dram, "dram"
    # Each level's rate: the best at it or beyond.
    rates = [max([dram] + [rate for _, _, rate in levels[i:]]) for i in range(len(levels))]
    found = next((name for name, size, _ in levels if bytes_per_call <= size), "dram")
    if bytes_per_call <= levels[0][1]:
        return rates[0], found
    seconds, left, below = 0.0, float(bytes_per_call), 0.0
    for (_, size, _), rate in zip(levels, rates, strict=True):
        served = min(left, max(size - below, 0.0))
        seconds += served / rate
        left -= served
        below = max(below, size)
    seconds += left / dram
    return bytes_per_call / seconds, found


def _point(
    name: str, flops: int, nbytes: int, seconds: float, peak: float, memory: tuple[float, str]
) -> RooflinePoint:
    bandwidth, level = memory
    intensity = flops / nbytes if nbytes > 0 else float("inf")
    attainable = min(peak, intensity * bandwidth)
    bound: Bound = "compute" if intensity >= peak / bandwidth else "memory"
    return RooflinePoint(
        name=name,
        flops=flops,
        bytes=nbytes,
        seconds=seconds,
        intensity_flops_per_byte=intensity,
        achieved_flops_per_s=flops / seconds if seconds > 0 else 0.0,
        attainable_flops_per_s=attainable,
        bound=bound,
        bandwidth_bytes_per_s=bandwidth,
        memory_level=level,
    )


def operator_points(profile: Profile) -> list[RooflinePoint]:
    """Every profiled operator whose FLOPs and bytes are known and that did work of its own.

    Composite operators (zero FLOPs and zero bytes of their own: their children did the work)
    and operators whose FLOPs could not be counted are left out. Each point's time is the
    operator's work time where the profile has it, else its self time (see the module
    docstring), and its memory roof the one its bytes per call fit under.
    """
    peaks = profile.machine.peaks
    if "flops_float32" not in peaks or "bandwidth_bytes_per_s" not in peaks:
        return []
    points = []
    for op in profile.operators:
        seconds = op.self_s if op.work_s is None else op.work_s
        if op.flops is None or op.bytes is None or seconds <= 0:
            continue
        if op.flops == 0 and op.bytes == 0:
            continue
        peak = peak_for_dtypes(peaks, op.input_dtypes)
        memory = bandwidth_for_bytes(peaks, op.bytes / max(op.count, 1))
        points.append(_point(op.name, op.flops, op.bytes, seconds, peak, memory))
    return points


def module_points(profile: Profile) -> list[RooflinePoint]:
    """Modules with forward FLOPs and a measured forward time, placed by their forward pass.

    A module's bytes are not measured directly; its intensity uses the bytes of its operators
    as recorded in its FLOP pass (``bytes_forward``) when present.
    """
    peaks = profile.machine.peaks
    if "flops_float32" not in peaks or "bandwidth_bytes_per_s" not in peaks:
        return []
    points = []
    for module in profile.modules:
        seconds = module.forward_s
        if not seconds or module.flops_forward <= 0 or module.bytes_forward <= 0:
            continue
        name = module.name or "(model)"
        points.append(
            _point(
                name,
                module.flops_forward,
                module.bytes_forward,
                seconds,
                peaks["flops_float32"],
                bandwidth_for_bytes(peaks, module.bytes_forward),
            )
        )
    return points


def achieved_fraction(points: list[RooflinePoint]) -> float:
    """Time-weighted achieved fraction of the attainable rate over a set of points."""
    seconds = sum(p.seconds for p in points)
    if seconds <= 0:
        return 0.0
    return sum(p.fraction * p.seconds for p in points) / seconds
