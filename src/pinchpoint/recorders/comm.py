"""Timing DistributedDataParallel's gradient all-reduce, and the facts of a data-parallel rank.

DDP hands each gradient bucket to a *communication hook* as soon as backward has filled it; the
hook starts the all-reduce and returns a future that completes with the reduced bucket. A
:class:`CommTimer` is such a hook wrapped around the one DDP would otherwise run (torch's default
all-reduce, or its fp16/bf16 compression hook): it marks, on the recorder's clock, when each
bucket was handed over and, in a callback on the future, when its all-reduce completed. DDP's
backward returns only once every bucket's future has completed, so the recorder can split the
step exactly:

- ``backward`` ends with the last local gradient (as without DDP);
- ``communication`` runs from there to the completion of the last bucket's all-reduce: the
  wait that backward did not hide (on a rank that finished early, the wait for the others);
- a step's ``comm_s`` is the union of its buckets' all-reduce intervals, so
  ``1 - communication / comm_s`` is the share of all-reduce time overlapped with backward.

On a CPU the marks are host time (the future's callback runs in the backend's thread when the
all-reduce finishes). On a GPU they are CUDA events: the callback runs with streams that wait
for the collective, so the event lands when it finished on the device.

One timer serves a model for its life: :func:`timer_for` attaches it once (DDP accepts one hook)
and recorders reuse it.
"""

from __future__ import annotations

import os
import socket
import threading
import weakref
from collections.abc import Callable
from typing import Any

import torch

from pinchpoint._profile import Distributed
from pinchpoint.recorders.clock import Clock, PerfClock

__all__ = ["COMM_HOOKS", "CommTimer", "describe_distributed", "is_ddp", "timer_for"]

#: The gradient compression hooks a timer can wrap instead of the plain all-reduce.
COMM_HOOKS = ("fp16", "bf16")

_TIMERS: weakref.WeakKeyDictionary[Any, CommTimer] = weakref.WeakKeyDictionary()


def is_ddp(model: Any) -> bool:
    """Whether ``model`` is a DistributedDataParallel module (without needing torch.distributed
    to be built in)."""
    if not torch.distributed.is_available():
        return False
    from torch.nn.parallel import DistributedDataParallel

    return isinstance(model, DistributedDataParallel)


def _inner_hook(comm_hook: str | None) -> Callable[[Any, Any], Any]:
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

    if comm_hook is None:
        return default_hooks.allreduce_hook
    if comm_hook == "fp16":
        return default_hooks.fp16_compress_hook
    if comm_hook == "bf16":
        return default_hooks.bf16_compress_hook
    raise ValueError(f"comm_hook must be None, 'fp16' or 'bf16', not {comm_hook!r}")


class CommTimer:
    """A DDP communication hook that times each bucket's all-reduce around another hook.

    Args:
        comm_hook: ``None`` for torch's default all-reduce, ``"fp16"`` or ``"bf16"`` for its
            compression hooks (the bucket cast, divided by the world size, all-reduced and cast
            back).
    """

    def __init__(self, comm_hook: str | None = None) -> None:
        self.comm_hook = comm_hook
        self._inner = _inner_hook(comm_hook)
        self.clock: Clock = PerfClock()
        self._lock = threading.Lock()
        self._done: list[tuple[int, Any, Any]] = []
        self._sizes: dict[int, int] = {}
        self.buckets_bytes: list[int] = []

    def attach(self, model: Any) -> None:
        """Register this timer as ``model``'s communication hook (once, before its backward)."""
        # DDP inspects the hook's signature: a parameter named ``bucket`` and either no
        # annotations or torch's own classes (strings from postponed annotations fail), so the
        # hook it sees is a plain lambda.
        model.register_comm_hook(None, lambda state, bucket: self._hook(state, bucket))
        _TIMERS[model] = self

    def begin(self) -> None:
        """Forget the all-reduces seen so far: a new step starts."""
        with self._lock:
            self._done = []
            self._sizes = {}

    def last_end(self) -> Any:
        """The clock's mark of the latest completed all-reduce of this step (None if none)."""
        with self._lock:
            return self._done[-1][2] if self._done else None

    def seconds(self, reference: Any) -> float:
        """Seconds in which some all-reduce of this step ran (the union of their intervals).

        ``reference`` is a mark made before all of them; valid after the clock's ``wait``.
        """
        with self._lock:
            done = list(self._done)
            if self._sizes:
                self.buckets_bytes = [self._sizes[i] for i, _, _ in done if i in self._sizes]
        spans = sorted(
            (self.clock.seconds(reference, start), self.clock.seconds(reference, end))
            for _, start, end in done
        )
        total = 0.0
        reach = float("-inf")
        for start, end in spans:
            if end <= reach:
                continue
            total += end - max(start, reach)
            reach = end
        return total

    def _hook(self, state: Any, bucket: Any) -> Any:
        start = self.clock.mark()
        index = int(bucket.index())
        buffer = bucket.buffer()
        size = int(buffer.numel() * buffer.element_size())
        future = self._inner(state, bucket)

        def completed(fut: Any) -> Any:
            end = self.clock.mark()
            with self._lock:
                self._done.append((index, start, end))
                self._sizes[index] = size
            return fut.value()

        return future.then(completed)


def timer_for(model: Any, clock: Clock) -> CommTimer | None:
    """The timer of DDP ``model`` on ``clock``: the one attached before, or a new one around
    the default all-reduce. None when the model is not DDP or has a hook of its own."""
    if not is_ddp(model):
        return None
    timer = _TIMERS.get(model)
    if timer is None:
        if getattr(model, "_comm_hooks", None):
            return None
        timer = CommTimer()
        timer.attach(model)
    timer.clock = clock
    return timer


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "")
    return int(value) if value.strip().lstrip("-").isdigit() else None


def describe_distributed(model: Any, timer: CommTimer | None) -> Distributed | None:
    """This rank's facts when a process group is initialised (None otherwise)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return None
    world = dist.get_world_size()
    local_world = _env_int("LOCAL_WORLD_SIZE")
    ddp: dict[str, Any] = {}
    if is_ddp(model):
        hooks = getattr(model, "_comm_hooks", [])
        ddp = {
            "bucket_cap_mb": float(model.bucket_bytes_cap) / 2**20,
            "comm_hook": (timer.comm_hook if timer is not None else ("custom" if hooks else None)),
            "gradient_as_bucket_view": bool(model.gradient_as_bucket_view),
            "static_graph": bool(model.static_graph),
            "find_unused_parameters": bool(model.find_unused_parameters),
        }
    return Distributed(
        rank=dist.get_rank(),
        world_size=world,
        backend=str(dist.get_backend()),
        local_rank=_env_int("LOCAL_RANK"),
        node_rank=_env_int("GROUP_RANK"),
        nodes=world // local_world if local_world else None,
        hostname=socket.gethostname(),
        job=os.environ.get("TORCHELASTIC_RUN_ID", ""),
        ddp=ddp,
        buckets_bytes=list(timer.buckets_bytes) if timer is not None else [],
        comm_measured=timer is not None,
    )
