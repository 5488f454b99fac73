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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pinchpoint._profile import Profile

__all__ = [
    "RooflinePoint",
    "achieved_fraction",
    "module_points",
    "operator_points",
    "peak_for_dtypes",
]

Bound = Literal["compute", "memory"]

_DTYPE_PEAKS = {
    "c10::BFloat16": "flops_bfloat16",
    "c10::Half": "flops_float16",
    "signed char": "flops_int8",
}


@dataclass(frozen=True)
class RooflinePoint:
    """One operator or module placed on the roofline."""

    name: str
    flops: int
    bytes: int
    seconds: float
    intensity_flops_per_byte: float
    achieved_flops_per_s: float
    attainable_flops_per_s: float
    bound: Bound

    @property
    def fraction(self) -> float:
        """Achieved over attainable rate (0 for pure data movement)."""
        if self.attainable_flops_per_s <= 0:
            return 0.0
        return self.achieved_flops_per_s / self.attainable_flops_per_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "flops": self.flops,
            "bytes": self.bytes,
            "seconds": self.seconds,
            "intensity_flops_per_byte": self.intensity_flops_per_byte,
            "achieved_flops_per_s": self.achieved_flops_per_s,
            "attainable_flops_per_s": self.attainable_flops_per_s,
            "fraction": self.fraction,
            "bound": self.bound,
        }


def peak_for_dtypes(peaks: dict[str, float], dtypes: list[str]) -> float:
    """The matmul peak that applies to an operator with these input dtypes (fp32 by default)."""
    for dtype in dtypes:
        key = _DTYPE_PEAKS.get(dtype)
        if key is not None and key in peaks:
            return peaks[key]
    return peaks["flops_float32"]


def _point(
    name: str, flops: int, nbytes: int, seconds: float, peak: float, bandwidth: float
) -> RooflinePoint:
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
    )


def operator_points(profile: Profile) -> list[RooflinePoint]:
    """Every profiled operator whose FLOPs and bytes are known and that did work of its own.

    Composite operators (zero FLOPs and zero bytes of their own: their children did the work)
    and operators whose FLOPs could not be counted are left out.
    """
    peaks = profile.machine.peaks
    if "flops_float32" not in peaks or "bandwidth_bytes_per_s" not in peaks:
        return []
    bandwidth = peaks["bandwidth_bytes_per_s"]
    points = []
    for op in profile.operators:
        if op.flops is None or op.bytes is None or op.self_s <= 0:
            continue
        if op.flops == 0 and op.bytes == 0:
            continue
        peak = peak_for_dtypes(peaks, op.input_dtypes)
        points.append(_point(op.name, op.flops, op.bytes, op.self_s, peak, bandwidth))
    return points


def module_points(profile: Profile) -> list[RooflinePoint]:
    """Modules with forward FLOPs and a measured forward time, placed by their forward pass.

    A module's bytes are not measured directly; its intensity uses the bytes of its operators
    as recorded in its FLOP pass (``bytes_forward``) when present.
    """
    peaks = profile.machine.peaks
    if "flops_float32" not in peaks or "bandwidth_bytes_per_s" not in peaks:
        return []
    bandwidth = peaks["bandwidth_bytes_per_s"]
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
                bandwidth,
            )
        )
    return points


def achieved_fraction(points: list[RooflinePoint]) -> float:
    """Time-weighted achieved fraction of the attainable rate over a set of points."""
    seconds = sum(p.seconds for p in points)
    if seconds <= 0:
        return 0.0
    return sum(p.fraction * p.seconds for p in points) / seconds
