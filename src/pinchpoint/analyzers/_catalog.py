"""The remedies each finding kind points to, with the reason each helps.

Names match the remedy registry the optimizer uses, so a finding's remedies can be applied and
verified. Analyzers pick from these lists and reorder them by their evidence.
"""

from __future__ import annotations

from pinchpoint.finding import Remedy

__all__ = ["remedy"]

_CATALOG: dict[str, str] = {
    "dataloader_workers": (
        "load and collate batches in worker processes (DataLoader num_workers), so the next "
        "batch is ready while this step computes"
    ),
    "prefetch": "prefetch several batches and keep workers alive between epochs "
    "(prefetch_factor, persistent_workers)",
    "cheaper_collate": "move per-sample Python work out of collate_fn: vectorise it, or "
    "pre-process the dataset once, offline",
    "pin_memory": "pinned host memory lets copies to the device run asynchronously",
    "non_blocking_copies": "copy with non_blocking=True from pinned memory so the copy overlaps "
    "compute",
    "device_preprocessing": "do preprocessing on the device after one compact copy",
    "remove_syncs": "drop per-step .item(), .cpu() and synchronize calls; log every N steps",
    "log_less_often": "log every N steps (Workload.log_every) instead of every step: the "
    "same lines, a fraction of the reads back to the host",
    "torch_compile": "torch.compile fuses small operators and removes Python and dispatch "
    "overhead between them",
    "cuda_graphs": "CUDA graphs replay the whole step with one launch",
    "dynamic_shapes": "compile with dynamic=True: one graph with symbolic sizes serves every "
    "length, instead of one compile per new shape",
    "pad_to_buckets": "pad each batch's varying dimension up to a multiple (64, say), so only a "
    "handful of shapes ever compile and each compiles once",
    "mark_dynamic": "torch._dynamo.mark_dynamic(tensor, dim) on the dimension that varies keeps "
    "it symbolic while every other size stays static",
    "fix_graph_breaks": "move Python side effects out of forward (print, .item(), branches on "
    "tensor values, attributes changed per call): each breaks the graph or fails a guard, and "
    "so recompiles",
    "larger_batch": "a larger batch gives each operator more work for the same fixed overhead",
    "fused_modules": "fused implementations (nn.functional.scaled_dot_product_attention, fused "
    "norms) replace chains of small operators",
    "mixed_precision": "bf16/fp16 matmuls run at a multiple of the fp32 rate where the hardware "
    "has native support",
    "quantize_int8": "int8 matmuls (VNNI/AMX on CPU, tensor cores on GPU) cut both arithmetic "
    "and bytes",
    "prune_structured": "structured pruning removes whole channels or heads, shrinking the dense "
    "math itself",
    "distill": "a smaller student trained to match this model does less arithmetic per sample",
    "operator_fusion": "fusing elementwise chains (torch.compile) reads and writes each tensor "
    "once instead of once per operator",
    "lower_precision_activations": "bf16/fp16 activations halve the bytes every elementwise "
    "operator moves",
    "in_place_ops": "in-place operators avoid allocating and writing new tensors",
    "channels_last": "channels-last layout lets convolution kernels read memory contiguously",
    "foreach_optimizer": "foreach or fused optimizers update all parameters in a few kernels "
    "instead of a Python loop over tensors",
    "fewer_param_tensors": "merge many small parameters into fewer larger tensors",
    "cheaper_optimizer": "SGD with momentum or Adafactor keeps less state and does less work per "
    "parameter",
    "activation_checkpointing": "recompute activations in backward instead of keeping them, "
    "trading compute for memory",
    "grad_accumulation": "a smaller micro-batch with gradient accumulation keeps the effective "
    "batch while cutting activation memory",
    "optimizer_state_sharding": "shard optimizer state across ranks (ZeRO/FSDP) or use an "
    "8-bit optimizer",
    "offload": "offload parameters or optimizer state to host memory",
    "gradient_bucketing": "tune DistributedDataParallel's bucket_cap_mb so all-reduces start "
    "while backward still runs and overlap it",
    "no_sync_accumulation": "accumulate gradients over several micro-batches under no_sync() "
    "and all-reduce once",
    "gradient_compression": "a bf16/fp16 compression communication hook halves the bytes each "
    "all-reduce moves",
    "rebalance_data": "give every rank equal work: balance sample lengths or shard sizes across "
    "ranks",
    "check_slow_host": "check the slow rank's host: other jobs, thermal throttling, a slower "
    "device or link",
    "pin_threads": "pin each rank's threads to its own cores so ranks do not compete",
    "fewer_threads": "one intra-op thread per usable core (torch.set_num_threads): parallel "
    "operators stop waiting at their barriers for threads the scheduler took off the cores",
}


def remedy(name: str, why: str | None = None) -> Remedy:
    """The catalog's remedy ``name``, with ``why`` replacing the generic reason when given."""
    return Remedy(name=name, why=why or _CATALOG[name])
