"""One rank of a launched data-parallel job: what torchrun runs in every process.

``python -m pinchpoint.recorders._worker OPTIONS_JSON`` (see :func:`pinchpoint.recorders.job.
launch`, which writes the options) does, in order:

1. joins the process group torchrun describes in the environment (gloo on a CPU; NCCL on CUDA,
   on the GPU of its local rank), and agrees with the other ranks on a job id;
2. loads the workload and applies the launch's ``ddp``, ``accumulate`` and ``batch_size``;
3. shards the data: a DataLoader gets a DistributedSampler (same batch size, collate_fn and
   workers; its epoch set at every pass), a list of batches is strided across the ranks, a
   single batch is used by every rank;
4. wraps the model in DistributedDataParallel with the workload's ``ddp`` settings and a
   communication hook that times every bucket's all-reduce (around the fp16/bf16 compression
   hook when one is asked for);
5. records with :func:`pinchpoint.profile`, exactly as a single process does, and saves
   ``rank-N.json``; rank 0 gathers every rank's Profile and writes the ones from other nodes.

An error in any of this is written, as one line with the time, to ``rank-N.error`` before the
process exits with status 1; torchrun then ends the other ranks and the launcher reports the
first rank that failed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import sys
import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from pinchpoint.errors import PinchpointError, WorkloadError

_ERROR_FILE = "rank-{rank}.error"
_RANK_FILE = "rank-{rank}.json"


class _Epochs:
    """A sharded DataLoader that sets its DistributedSampler's epoch at each pass, so every
    pass shuffles differently (and the same on every rank)."""

    def __init__(self, loader: Any, sampler: Any) -> None:
        self.loader = loader
        self.sampler = sampler
        self.epoch = 0

    def __iter__(self) -> Iterator[Any]:
        self.sampler.set_epoch(self.epoch)
        self.epoch += 1
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)


def shard(data: Any, rank: int, world: int, seed: int = 0) -> tuple[Any, str]:
    """``data`` split across ``world`` ranks for ``rank``, and how (for the Profile's settings).

    A DataLoader over a map-style dataset with a batch size is rebuilt around a
    DistributedSampler that keeps its shuffling; a list or tuple of batches is strided; anything
    else (one batch, an iterable dataset, a custom batch sampler) is left as it is, the same on
    every rank.
    """
    import torch
    from torch.utils.data import DataLoader, DistributedSampler, IterableDataset, RandomSampler

    if isinstance(data, DataLoader):
        if isinstance(data.dataset, IterableDataset) or data.batch_size is None:
            return data, "none (an iterable dataset or a custom batch sampler: not sharded)"
        sampler: DistributedSampler[Any] = DistributedSampler(
            data.dataset,
            num_replicas=world,
            rank=rank,
            shuffle=isinstance(data.sampler, RandomSampler),
            seed=seed,
            drop_last=data.drop_last,
        )
        workers = data.num_workers
        loader = DataLoader(
            data.dataset,
            batch_size=data.batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=data.collate_fn,
            pin_memory=data.pin_memory,
            drop_last=data.drop_last,
            timeout=data.timeout,
            worker_init_fn=data.worker_init_fn,
            multiprocessing_context=data.multiprocessing_context if workers else None,
            generator=data.generator,
            prefetch_factor=data.prefetch_factor if workers else None,
            persistent_workers=data.persistent_workers if workers else False,
            pin_memory_device=data.pin_memory_device,
        )
        return _Epochs(loader, sampler), "DistributedSampler"
    if (
        isinstance(data, (list, tuple))
        and len(data) >= world
        and not isinstance(data, torch.Tensor)
    ):
        return list(data[rank::world]), "strided batches"
    return data, "none (one batch, used by every rank)"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, PinchpointError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _write_error(out: Path, rank: int, exc: BaseException) -> None:
    record = {"rank": rank, "time": time.time(), "error": _one_line(exc)}
    with contextlib.suppress(OSError):
        (out / _ERROR_FILE.format(rank=rank)).write_bytes(orjson.dumps(record))


def run(options: dict[str, Any]) -> None:
    """Everything one rank does (see the module docstring)."""
    import torch
    import torch.distributed as dist

    from pinchpoint.recorders.comm import CommTimer
    from pinchpoint.recorders.run import move_model, profile
    from pinchpoint.targets import load_workload

    out = Path(options["out_dir"])
    cuda = options["device"] == "cuda"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    timeout = options.get("timeout_s")
    dist.init_process_group(
        "nccl" if cuda else "gloo",
        timeout=datetime.timedelta(seconds=timeout) if timeout else None,
        device_id=device if cuda else None,
    )
    rank, world = dist.get_rank(), dist.get_world_size()
    token = [uuid.uuid4().hex if rank == 0 else ""]
    dist.broadcast_object_list(token, src=0)
    try:
        target = options["target"]
        batch_size = options.get("batch_size")
        zoo = target.startswith("zoo:")
        workload = load_workload(
            target, **({"batch_size": batch_size} if zoo and batch_size else {})
        )
        if workload.mode != "train":
            raise WorkloadError(
                f"workload {workload.name!r} runs inference: data-parallel profiling needs a "
                "training workload (a loss and an optimizer)"
            )
        changes: dict[str, Any] = {}
        if options.get("ddp") is not None:
            changes["ddp"] = dict(options["ddp"])
        if options.get("accumulate") is not None:
            changes["accumulate"] = int(options["accumulate"])
        data = workload.data
        if batch_size and not zoo:
            from pinchpoint.remedies.runtime import rebatch

            data = rebatch(data, int(batch_size), workload.name)
        data, sharding = shard(data, rank, world)
        settings = dict(changes.get("ddp", workload.ddp))
        move_model(workload.name, workload.model, device)
        model = torch.nn.parallel.DistributedDataParallel(
            workload.model,
            device_ids=[local_rank] if cuda else None,
            bucket_cap_mb=settings.get("bucket_cap_mb"),
            gradient_as_bucket_view=bool(settings.get("gradient_as_bucket_view", False)),
            static_graph=bool(settings.get("static_graph", False)),
        )
        CommTimer(settings.get("comm_hook")).attach(model)
        workload = dataclasses.replace(workload, model=model, data=data, **changes)
        result = profile(
            workload, steps=int(options["steps"]), warmup=int(options["warmup"]), device=device
        )
    except BaseException as exc:
        _write_error(out, rank, exc)
        raise
    assert result.distributed is not None  # the process group is up
    result.distributed = dataclasses.replace(result.distributed, job=token[0])
    result.settings.update(
        {
            "data_sharding": sharding,
            "launch": {
                "target": target,
                "nproc_per_node": options["nproc"],
                "nnodes": options["nnodes"],
                "device": options["device"],
            },
        }
    )
    path = result.save(out / _RANK_FILE.format(rank=rank))
    # Rank 0 gathers every rank's Profile, so the node that holds it has the whole job.
    gathered: list[Any] | None = [None] * world if rank == 0 else None
    dist.gather_object(path.read_bytes(), gathered, dst=0)
    if gathered is not None:
        for other, text in enumerate(gathered):
            theirs = out / _RANK_FILE.format(rank=other)
            if other != rank and text is not None and not theirs.exists():
                from pinchpoint._io import atomic_write_bytes

                atomic_write_bytes(theirs, text)
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    """The entry point torchrun runs; exit status 1 (after writing the error file) on failure."""
    rank = int(os.environ.get("RANK", "0"))
    out = Path(".")
    try:
        if len(sys.argv) != 2:
            raise PinchpointError("usage: python -m pinchpoint.recorders._worker OPTIONS_JSON")
        options: dict[str, Any] = orjson.loads(sys.argv[1])
        out = Path(options["out_dir"])
        run(options)
    except BaseException as exc:
        if not (out / _ERROR_FILE.format(rank=rank)).exists():
            _write_error(out, rank, exc)
        if os.environ.get("PINCHPOINT_DEBUG"):
            traceback.print_exc()
        else:
            print(f"rank {rank}: error: {_one_line(exc)}", file=sys.stderr, flush=True)
        sys.exit(1)
    # Every file is written and the group is down. Leave without the interpreter's teardown:
    # gloo's threads can still be joinable when C++ statics are destroyed, and the runtime
    # then aborts ("terminate called without an active exception", about 1 launch in 30),
    # which torchrun reports as a failed rank.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
