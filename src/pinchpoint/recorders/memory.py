"""The memory probe of a recorded run: what its tensors hold, what the process and device used."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable
from typing import Any

import psutil
import torch

from pinchpoint._profile import Memory

__all__ = ["memory_probe", "tensor_bytes"]


def tensor_bytes(tensors: Iterable[Any]) -> int:
    """Bytes held by the tensors among ``tensors`` (anything else counts nothing)."""
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def memory_probe(
    params: Iterable[Any],
    optimizer: Any,
    device: torch.device,
    *,
    gradients_bytes: int | None,
    activation_peak: int | None,
) -> Memory:
    """The run's memory now: parameters, gradients and optimizer state from their tensors, the
    activation peak measured by the sampled steps, the process's resident memory (and its peak)
    and, on CUDA, the allocator's peak and the device's capacity."""
    params_bytes = tensor_bytes(params)
    optimizer_state = None
    if optimizer is not None:
        optimizer_state = sum(
            tensor_bytes(v for v in state.values()) for state in optimizer.state.values()
        )
    process = psutil.Process()
    peak_rss = None
    with contextlib.suppress(ImportError, OSError):
        import resource

        scale = 1 if sys.platform == "darwin" else 1024
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    cuda = device.type == "cuda"
    return Memory(
        parameters_bytes=params_bytes,
        gradients_bytes=gradients_bytes,
        optimizer_state_bytes=optimizer_state,
        activations_peak_bytes=activation_peak,
        process_rss_bytes=int(process.memory_info().rss),
        process_peak_rss_bytes=peak_rss,
        device_peak_bytes=int(torch.cuda.max_memory_allocated(device)) if cuda else None,
        device_capacity_bytes=(
            int(torch.cuda.get_device_properties(device).total_memory) if cuda else None
        ),
        source="cuda" if cuda else ("cpu-profiler" if activation_peak is not None else None),
    )
