"""Processor, memory, accelerator and software facts, read without importing torch.

The processor's model and instruction-set flags come from ``/proc/cpuinfo`` on Linux (the flags
decide which fast paths exist: VNNI for int8, AMX or AVX-512 BF16 for bf16); elsewhere from the
``platform`` module. GPU facts and thread counts are read from torch only when torch is already
imported, so describing the machine of a trace analysis never loads it.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import os
import platform
import sys
from pathlib import Path
from typing import Any

import psutil

from pinchpoint._profile import Environment, Machine

__all__ = [
    "INTERESTING_FLAGS",
    "describe_environment",
    "describe_machine",
    "process_memory_limit",
]

#: Instruction-set extensions that matter for deep-learning kernels, as Linux names them.
INTERESTING_FLAGS: tuple[str, ...] = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
    "asimd",
    "sve",
    "bf16",
    "i8mm",
)


def _read_cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str, list[str]]:
    """The processor model name and its interesting flags from a Linux cpuinfo file."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "", []
    model = ""
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, [f for f in INTERESTING_FLAGS if f in flags]


def _gpu_facts() -> dict[str, Any] | None:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    return {
        "name": props.name,
        "index": index,
        "count": torch.cuda.device_count(),
        "capability": f"{props.major}.{props.minor}",
        "memory_bytes": int(props.total_memory),
        "multiprocessors": int(props.multi_processor_count),
    }


@functools.cache
def _fixed_facts() -> Machine:
    """The facts that cannot change while a process runs, read once."""
    model, flags = _read_cpuinfo()
    return Machine(
        cpu_model=model or platform.processor() or platform.machine(),
        cpu_flags=flags,
        cores_physical=psutil.cpu_count(logical=False),
        cores_logical=psutil.cpu_count(logical=True) or os.cpu_count(),
        memory_bytes=int(psutil.virtual_memory().total),
        os=f"{platform.system()} {platform.release()}",
        arch=platform.machine(),
    )


def describe_machine() -> Machine:
    """This machine's processor, cores, threads, memory, and GPU when torch is loaded."""
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    return dataclasses.replace(_fixed_facts(), threads=threads, gpu=_gpu_facts())


#: Packages whose versions change how a run performs.
TRACKED_PACKAGES: tuple[str, ...] = (
    "pinchpoint",
    "torch",
    "numpy",
    "transformers",
    "onnxruntime",
    "scikit-learn",
)


@functools.cache
def _package_versions() -> tuple[tuple[str, str], ...]:
    versions = []
    for name in TRACKED_PACKAGES:
        try:
            versions.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            continue
    return tuple(versions)


def describe_environment() -> Environment:
    """Python's version and the versions of the packages that matter, where installed."""
    packages = dict(_package_versions())
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch.version, "cuda", None):
        packages["cuda"] = str(torch.version.cuda)
    return Environment(python=platform.python_version(), packages=packages)


def process_memory_limit() -> int:
    """The most memory this process may use: its cgroup's limit, else RLIMIT_AS, else all RAM."""
    limits = [int(psutil.virtual_memory().total)]
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            limits.append(int(text))
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft > 0:
            limits.append(soft)
    except (ImportError, OSError, ValueError):
        pass
    return min(limits)
