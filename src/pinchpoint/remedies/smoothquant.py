"""The ``smooth_quant`` remedy: int8 matmuls for models whose activations have outlier channels.

Dynamic int8 quantizes each Linear's input with one scale for the whole tensor, so a few input
channels with large values (common in transformers: after LayerNorm, after GELU) squeeze every
other channel into a handful of levels, and the output drifts (all-MiniLM-L6-v2 keeps a cosine
of only about 0.95 to its float32 embeddings). SmoothQuant (Xiao et al., 2023) moves that range
from the activations into the weights, which quantize well per output channel: for each Linear,
input channel ``j`` is divided by ``s_j = max|x_j|^alpha / max|W_j|^(1 - alpha)`` and the weight
column multiplied by it, an exact rewrite in float. The activation maxima come from the
workload's own batches. The smoothed model is then quantized dynamically, int8 weights per
output channel.

``alpha`` is how much of the range moves (0: none, 1: all of it). With ``alpha=None`` each of
:data:`ALPHAS` is tried on the calibration batches and the one whose outputs stay closest to
the float model's (mean cosine) is kept; the choice is recorded on the model
(``smooth_alpha``). The division before each Linear costs one elementwise multiply.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pinchpoint.errors import WorkloadError
from pinchpoint.remedies._base import RemedyConfig, clone_workload, handler, whole
from pinchpoint.workload import Mode, Workload, call_model

if TYPE_CHECKING:
    import torch

    from pinchpoint._profile import Machine

__all__ = ["ALPHAS", "SmoothQuant"]

#: The migration strengths tried when ``alpha`` is None.
ALPHAS = (0.5, 0.6, 0.7, 0.8, 0.9)
_INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")


@dataclass(frozen=True)
class SmoothQuant(RemedyConfig):
    """Smooth activation outliers into the weights, then quantize every Linear to int8.

    Args:
        alpha: the share of each input channel's range moved into the weights, in [0, 1];
            None chooses among :data:`ALPHAS` by fidelity on the calibration batches.
        calibration_batches: how many of the workload's batches give the activation maxima
            (and judge the choice of alpha).
    """

    name: ClassVar[str] = "smooth_quant"
    modes: ClassVar[tuple[Mode, ...]] = ("infer",)
    addresses: ClassVar[tuple[str, ...]] = ("quantize_int8",)

    alpha: float | None = None
    calibration_batches: int = 8

    def validate(self) -> None:
        if self.alpha is not None and (
            isinstance(self.alpha, bool)
            or not isinstance(self.alpha, (int, float))
            or not 0.0 <= self.alpha <= 1.0
        ):
            raise ValueError(f"smooth_quant alpha must be None or in [0, 1], not {self.alpha!r}")
        if not whole(self.calibration_batches, 1):
            raise ValueError(
                "smooth_quant calibration_batches must be a whole number >= 1, "
                f"not {self.calibration_batches!r}"
            )

    def gate(self, machine: Machine) -> str | None:
        if any(flag in machine.cpu_flags for flag in _INT8_FLAGS):
            return None
        return (
            f"this CPU has no int8 dot-product instructions ({', '.join(_INT8_FLAGS)}), so int8 "
            "matmuls are not faster than float32 (torch's int8 kernels run on the CPU only)"
        )


@handler(SmoothQuant)
def _smooth_quant(workload: Workload, config: SmoothQuant) -> Workload:
    import itertools

    import torch

    from pinchpoint._threads import torch_threads

    source = workload.model
    batches = list(itertools.islice(workload.batches(), config.calibration_batches))
    was_training = source.training
    source.eval()
    try:
        with torch_threads(workload.threads), torch.inference_mode():
            maxima = _input_maxima(source, batches)
            if not maxima:
                raise WorkloadError(f"workload {workload.name!r}: its model has no nn.Linear")
            alphas = ALPHAS if config.alpha is None else (config.alpha,)
            reference = [_output(call_model(source, b)) for b in batches]
            best: tuple[float, float, Any] | None = None
            for alpha in alphas:
                candidate = _quantized(_smoothed(source, maxima, alpha))
                score = _fidelity(candidate, batches, reference)
                if best is None or score > best[0]:
                    best = (score, alpha, candidate)
    finally:
        source.train(was_training)
    assert best is not None
    model = best[2]
    model.smooth_alpha = best[1]
    return clone_workload(workload, model=model)


def _input_maxima(model: Any, batches: list[Any]) -> dict[str, torch.Tensor]:
    """Each Linear's largest absolute input per channel over ``batches``."""
    import torch

    maxima: dict[str, torch.Tensor] = {}

    def record(name: str) -> Any:
        def hook(module: Any, args: tuple[Any, ...]) -> None:
            x = args[0].detach().float()
            peak = x.abs().reshape(-1, x.shape[-1]).amax(dim=0)
            maxima[name] = peak if name not in maxima else torch.maximum(maxima[name], peak)

        return hook

    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    handles = [m.register_forward_pre_hook(record(n)) for n, m in linears]
    try:
        for batch in batches:
            call_model(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    return maxima


def _smoothed(model: Any, maxima: dict[str, torch.Tensor], alpha: float) -> Any:
    """A float copy of ``model`` with each Linear's inputs divided by its smoothing scales."""
    import torch

    from pinchpoint.remedies._smooth_modules import SmoothedLinear

    smoothed = copy.deepcopy(model)
    for name, linear in list(smoothed.named_modules()):
        if not isinstance(linear, torch.nn.Linear) or name not in maxima:
            continue
        with torch.no_grad():
            act = maxima[name].clamp(min=1e-5)
            weight = linear.weight.abs().amax(dim=0).float().clamp(min=1e-5)
            scale = (act.pow(alpha) / weight.pow(1 - alpha)).clamp(min=1e-5)
            linear.weight.mul_(scale.to(linear.weight.dtype))
        parent_name, _, child = name.rpartition(".")
        parent = smoothed.get_submodule(parent_name) if parent_name else smoothed
        setattr(parent, child, SmoothedLinear(linear, scale))
    return smoothed


def _quantized(model: Any) -> Any:
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    from pinchpoint.remedies._wrap import quiet_warnings

    # torch.ao's eager quantization warns that it moves to torchao; it works in 2.13.
    with quiet_warnings(DeprecationWarning, FutureWarning, UserWarning):
        return quantize_dynamic(
            model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
        )


def _output(value: Any) -> torch.Tensor:
    from pinchpoint.trials.quality import output_tensor

    return output_tensor(value).float()


def _fidelity(model: Any, batches: list[Any], reference: list[torch.Tensor]) -> float:
    """Mean cosine, row by row, of ``model``'s outputs to the float model's."""
    import torch

    scores = []
    for batch, ref in zip(batches, reference, strict=True):
        out = _output(call_model(model, batch))
        rows = out.reshape(-1, out.shape[-1]), ref.reshape(-1, ref.shape[-1])
        scores.append(torch.nn.functional.cosine_similarity(*rows, dim=-1).mean().item())
    mean = sum(scores) / len(scores)
    return mean if math.isfinite(mean) else -math.inf
