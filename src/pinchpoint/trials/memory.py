"""A model's size in bytes and the peak memory an arm of a trial reaches while it runs.

:func:`size_bytes` counts a model's weights. :func:`peak_memories` measures two arms' peak memory,
each the model's bytes plus the largest growth of memory while the arm runs:

- on CUDA, from ``torch.cuda.max_memory_allocated`` after resetting the peak statistics;
- on a Linux CPU, from the process's resident-set high-water mark (``VmHWM``), reset through
  ``/proc/self/clear_refs`` after handing freed heap back to the system with glibc's
  ``malloc_trim`` (method ``"rss-peak"``);
- elsewhere, by a thread sampling the resident set every millisecond (``"rss-sampled"``).

Limits of the CPU figures: they count the pages the arm touched that were not resident before,
so memory the allocator kept from earlier work and hands out again does not count, and the
whole process is measured (another thread allocating at the same time counts too); a peak
shorter than a millisecond can escape the sampler. Each arm is measured
:data:`MEMORY_REPEATS` times, alternating with the other, and the median kept.
"""

from __future__ import annotations

import functools
import gc
import statistics
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["MEMORY_REPEATS", "Arm", "peak_memories", "size_bytes"]

#: Measurements of each arm's peak memory (alternating); the median is kept.
MEMORY_REPEATS = 3

#: A factory of ``(model, run)``, called before each measurement and outside it.
Arm = Callable[[], tuple[Any, Callable[[], None]]]


def size_bytes(model: Any) -> int:
    """The bytes of a model's weights: parameters, buffers and whatever its state dict holds.

    A model with its own ``size_bytes()`` (an exported-model wrapper) is asked. Otherwise every
    tensor of ``parameters()``, ``buffers()`` and ``state_dict()`` (nested tuples, lists and
    dicts followed, so quantized modules' packed weights count) is counted once per storage,
    so tied weights count once.
    """
    own = getattr(model, "size_bytes", None)
    if callable(own):
        return int(own())
    tensors: list[Any] = []
    for name in ("parameters", "buffers"):
        method = getattr(model, name, None)
        if callable(method):
            tensors.extend(method())
    state = getattr(model, "state_dict", None)
    if callable(state):
        _collect_tensors(state(), tensors)
    seen: set[tuple[str, int]] = set()
    total = 0
    for tensor in tensors:
        key, nbytes = _storage(tensor)
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        total += nbytes
    return total


def _collect_tensors(value: Any, into: list[Any]) -> None:
    import torch

    if isinstance(value, torch.Tensor):
        into.append(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            _collect_tensors(item, into)
    elif isinstance(value, (tuple, list)):
        for item in value:
            _collect_tensors(item, into)


def _storage(tensor: Any) -> tuple[tuple[str, int] | None, int]:
    """A key for the memory a tensor lives in (None when it has no address) and its bytes."""
    try:
        storage = tensor.untyped_storage()
        pointer, nbytes = int(storage.data_ptr()), int(storage.nbytes())
    except (RuntimeError, NotImplementedError, TypeError):
        pointer, nbytes = int(tensor.data_ptr()), tensor.numel() * tensor.element_size()
    if pointer == 0:
        return None, tensor.numel() * tensor.element_size()
    return (str(tensor.device), pointer), nbytes


def peak_memories(
    baseline: Arm,
    candidate: Arm,
    device: torch.device,
) -> tuple[int, int, str]:
    """Each arm's peak memory in bytes (model bytes + growth while running), and the method.

    Each arm is a factory of ``(model, run)`` called before every measurement, outside it, so
    that a training arm starts each one from a fresh copy (no optimizer state yet).
    """
    arms = (baseline, candidate)
    peaks: tuple[list[int], list[int]] = ([], [])
    method = ""
    for index in range(MEMORY_REPEATS):
        order = (0, 1) if index % 2 == 0 else (1, 0)
        for arm in order:
            model, run = arms[arm]()
            growth, method = _peak_growth(run, device)
            peaks[arm].append(size_bytes(model) + growth)
            del model, run
    return int(statistics.median(peaks[0])), int(statistics.median(peaks[1])), method


def _peak_growth(run: Callable[[], None], device: torch.device) -> tuple[int, str]:
    """How far memory rose above its level at the start while ``run`` ran, and the method."""
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        torch.cuda.synchronize(device)
        return max(0, torch.cuda.max_memory_allocated(device) - before), "cuda-max-allocated"
    # Give memory the C allocator holds but does not use back to the system (glibc only).
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
    if _reset_high_water_mark():
        resident = _proc_status("VmRSS")
        run()
        peak = _proc_status("VmHWM")
        if resident is not None and peak is not None:
            return max(0, peak - resident), "rss-peak"
    return _sampled_growth(run), "rss-sampled"


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    import ctypes
    import ctypes.util

    # find_library runs ldconfig: once per process is enough.
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None


def _reset_high_water_mark() -> bool:
    """Reset the process's peak resident set to its current size (Linux); False if it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def _proc_status(field: str) -> int | None:
    """A memory field of ``/proc/self/status``, in bytes."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _sampled_growth(run: Callable[[], None]) -> int:
    """The largest resident-set growth seen by a thread sampling it every millisecond."""
    import psutil

    process = psutil.Process()
    before = process.memory_info().rss
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            done.wait(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run()
    finally:
        done.set()
        sampler.join()
    peak = max(peak, process.memory_info().rss)
    return max(0, peak - before)
