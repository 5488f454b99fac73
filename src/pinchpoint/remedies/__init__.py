"""Remedies: one technique per module, each a validated config object behind one verb.

``pinchpoint.apply(workload, pinchpoint.remedies.Quantize(method="dynamic-int8"))`` returns a new
Workload with the remedy applied; the caller's is never changed. Importing this package does not
import torch: configs are plain dataclasses and the handlers load torch when they run.

Inference: :class:`Quantize`, :class:`SmoothQuant`, :class:`Precision`, :class:`Compile`,
:class:`OnnxRuntime`, :class:`Threads`, :class:`BatchSize`. Recompiling models:
:class:`DynamicShapes`, :class:`PadToBuckets`. Model size and compute:
:class:`Prune`, :class:`Distill`.
Training: :class:`DataLoaderSettings`, :class:`OptimizerSettings`, :class:`MixedPrecision`,
:class:`GradClip`, :class:`LRSchedule`, :class:`GradAccumulation`,
:class:`ActivationCheckpointing`, :class:`LogEvery`. Data-parallel (DDP): :class:`DDPBuckets`,
:class:`GradCompression`, :class:`NoSyncAccumulation`, :class:`PerRankBatch`.
"""

from __future__ import annotations

from pinchpoint.remedies._base import (
    RemedyConfig,
    apply,
    clone_workload,
    config_from_dict,
    handler,
    rebind_optimizer,
    registered,
)
from pinchpoint.remedies.compile import Compile, DynamicShapes
from pinchpoint.remedies.distill import Distill
from pinchpoint.remedies.distributed import (
    DDPBuckets,
    GradCompression,
    NoSyncAccumulation,
    PerRankBatch,
)
from pinchpoint.remedies.logging import LogEvery
from pinchpoint.remedies.onnx import OnnxRuntime
from pinchpoint.remedies.precision import Precision
from pinchpoint.remedies.prune import Prune
from pinchpoint.remedies.quantize import Quantize
from pinchpoint.remedies.runtime import BatchSize, Threads
from pinchpoint.remedies.shapes import PadToBuckets
from pinchpoint.remedies.smoothquant import SmoothQuant
from pinchpoint.remedies.training import (
    ActivationCheckpointing,
    DataLoaderSettings,
    GradAccumulation,
    GradClip,
    LRSchedule,
    MixedPrecision,
    OptimizerSettings,
)

__all__ = [
    "ActivationCheckpointing",
    "BatchSize",
    "Compile",
    "DDPBuckets",
    "DataLoaderSettings",
    "Distill",
    "DynamicShapes",
    "GradAccumulation",
    "GradClip",
    "GradCompression",
    "LRSchedule",
    "LogEvery",
    "MixedPrecision",
    "NoSyncAccumulation",
    "OnnxRuntime",
    "OptimizerSettings",
    "PadToBuckets",
    "PerRankBatch",
    "Precision",
    "Prune",
    "Quantize",
    "RemedyConfig",
    "SmoothQuant",
    "Threads",
    "apply",
    "clone_workload",
    "config_from_dict",
    "handler",
    "rebind_optimizer",
    "registered",
]
