"""SmoothQuant: exact in float, and closer int8 outputs where activations have outliers."""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch

import pinchpoint
from pinchpoint import Workload
from pinchpoint._profile import Machine
from pinchpoint.remedies import Quantize, SmoothQuant, config_from_dict
from pinchpoint.remedies.smoothquant import ALPHAS, _input_maxima, _smoothed


def _outlier_workload() -> Workload:
    """An MLP fed inputs where 4 of 64 channels are 50 times larger than the rest, as after a
    transformer's LayerNorm: per-tensor int8 activations lose the small channels."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 32)
    ).eval()
    scale = torch.ones(64)
    scale[:4] = 50.0
    data = [torch.randn(16, 64) * scale for _ in range(6)]
    return Workload(model=model, data=data, name="outliers", threads=1)


def _cosine(a: Any, b: Any, data: list[torch.Tensor]) -> float:
    with torch.inference_mode():
        return float(
            torch.stack(
                [torch.nn.functional.cosine_similarity(a(x), b(x), dim=-1).mean() for x in data]
            ).mean()
        )


def test_smoothing_is_exact_in_float() -> None:
    workload = _outlier_workload()
    with torch.inference_mode():
        maxima = _input_maxima(workload.model, workload.data)
    smoothed = _smoothed(workload.model, maxima, 0.7)
    with torch.inference_mode():
        for x in workload.data:
            torch.testing.assert_close(smoothed(x), workload.model(x), rtol=1e-4, atol=1e-4)
    # The outlier channels' range went into the weights: the first layer's inputs are flatter.
    first = smoothed[0]
    assert float(first.inverse_scale[:4].mean()) < float(first.inverse_scale[4:].mean()) / 5


def test_int8_keeps_closer_to_float_than_plain_dynamic_quantization() -> None:
    workload = _outlier_workload()
    snapshot = {k: v.clone() for k, v in workload.model.state_dict().items()}
    smooth = pinchpoint.apply(workload, SmoothQuant())
    plain = pinchpoint.apply(workload, Quantize("dynamic-int8"))
    smooth_cos = _cosine(smooth.model, workload.model, workload.data)
    plain_cos = _cosine(plain.model, workload.model, workload.data)
    assert smooth_cos > 0.999 > plain_cos
    assert smooth.model.smooth_alpha in ALPHAS
    int8 = torch.ao.nn.quantized.dynamic.Linear
    quantized = [m for m in smooth.model.modules() if isinstance(m, int8)]
    assert len(quantized) == 2  # both Linear layers run in int8
    for key, value in workload.model.state_dict().items():  # the caller's model is untouched
        assert torch.equal(value, snapshot[key])
    buffer = io.BytesIO()
    torch.save(smooth.model, buffer)  # the chosen model can be saved as a whole module
    assert buffer.tell() > 0


def test_a_fixed_alpha_is_used_as_given() -> None:
    result = pinchpoint.apply(_outlier_workload(), SmoothQuant(alpha=0.3, calibration_batches=2))
    assert result.model.smooth_alpha == 0.3
    assert result.applied == ("smooth_quant(alpha=0.3, calibration_batches=2)",)


@pytest.mark.parametrize(
    "settings", [{"alpha": 1.5}, {"alpha": -0.1}, {"alpha": True}, {"calibration_batches": 0}]
)
def test_bad_settings_are_rejected(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="smooth_quant"):
        SmoothQuant(**settings)


def test_gate_and_round_trip() -> None:
    config = SmoothQuant(alpha=0.6)
    assert config_from_dict(config.to_dict()) == config
    assert config.gate(Machine(cpu_flags=["avx512_vnni"])) is None
    assert "no int8 dot-product" in str(config.gate(Machine(cpu_flags=["avx2"])))
