"""Training-health instruments: per-layer gradients and updates, activations, NaN/Inf.

The :class:`HealthMonitor` rides on the recorder's hooks:

- **every step** (the always-on tier): each layer's gradient norm, from the per-tensor norms the
  recorder already computes for the global norm (one ``torch._foreach_norm`` call); and every
  ``update_every`` steps each layer's update-to-weight ratio ``‖Δw‖ / ‖w‖`` over the optimizer
  step (a snapshot of the parameters before it, then foreach norms after it: four passes over
  the weights, too many for every step of a large model);
- **sampled steps** (every ``activation_every`` steps): forward hooks on activation modules record
  the share of dead ReLU-family units (a unit is dead when it outputs zero for every sample of the
  batch), the share of saturated sigmoid/tanh outputs (within 0.01 of their limits), and the mean
  and standard deviation of the outputs;
- **non-finite values**: the loss and the global gradient norm are checked every step for free;
  the first time either is non-finite the per-tensor norms name the parameter, and on the next
  step forward hooks on every module name the first one whose output is non-finite, without
  running autograd's anomaly mode.

A "layer" is a module with parameters of its own, named as ``named_modules`` names it, in
registration order (which follows depth for the models people write). The steps that carry the
FLOP counter or the profiler get no health instruments, so they never appear in the operators.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from pinchpoint._profile import Health

__all__ = ["ACTIVATION_KINDS", "HealthMonitor"]

#: Activation modules watched on sampled steps, by the family their statistics belong to.
ACTIVATION_KINDS: dict[type, str] = {
    torch.nn.ReLU: "relu",
    torch.nn.ReLU6: "relu",
    torch.nn.Sigmoid: "sigmoid",
    torch.nn.Tanh: "tanh",
    torch.nn.Hardtanh: "tanh",
    torch.nn.GELU: "smooth",
    torch.nn.SiLU: "smooth",
    torch.nn.LeakyReLU: "smooth",
    torch.nn.ELU: "smooth",
}
_SATURATION_MARGIN = 0.01
_NAN = torch.tensor(float("nan"))


def _to_numbers(stats: dict[str, list[Any]]) -> dict[str, list[float | None]]:
    """Activation statistics as numbers (NaN marks a statistic that does not apply)."""
    keys = list(stats)
    slots = len(stats[keys[0]])
    filled = [i for i in range(slots) if stats["mean"][i] is not None]
    out: dict[str, list[float | None]] = {k: [None] * slots for k in keys}
    if filled:
        table = torch.stack([torch.stack([stats[k][i].float() for k in keys]) for i in filled])
        for i, row in zip(filled, table.tolist(), strict=True):
            for k, v in zip(keys, row, strict=True):
                out[k][i] = None if math.isnan(v) else v
    return out


def _first_nonfinite(values: list[float]) -> int | None:
    return next((i for i, v in enumerate(values) if not math.isfinite(v)), None)


class HealthMonitor:
    """Collects the training-health series of one recorded run (see the module docstring)."""

    def __init__(
        self, model: torch.nn.Module, activation_every: int = 20, update_every: int = 10
    ) -> None:
        self._model = model
        self.activation_every = activation_every
        self.update_every = update_every
        self.layers: list[str] = []
        self.layer_ndim: list[int] = []
        self._layer_of: list[int] = []  # parameter position -> layer index
        self._params: list[torch.Tensor] = []
        self._param_names: list[str] = []
        for name, module in model.named_modules():
            own = [(n, p) for n, p in module.named_parameters(recurse=False) if p.requires_grad]
            if not own:
                continue
            self.layers.append(name)
            self.layer_ndim.append(max(p.dim() for _, p in own))
            for pname, param in own:
                self._params.append(param)
                self._param_names.append(f"{name}.{pname}" if name else pname)
                self._layer_of.append(len(self.layers) - 1)
        self._activation_modules = [
            (name, module, ACTIVATION_KINDS[type(module)])
            for name, module in model.named_modules()
            if type(module) in ACTIVATION_KINDS
        ]
        self.grad_steps: list[int] = []
        self.grad_norm: list[list[float | None]] = []
        self.update_steps: list[int] = []
        self.update_ratio: list[list[float | None]] = []
        self.weight_norm: list[list[float | None]] = []
        self.activation_steps: list[int] = []
        self.activation_rows: list[dict[str, list[float | None]]] = []
        self.nonfinite: dict[str, Any] | None = None
        self._pending_norms: Any = None
        self._before: list[torch.Tensor] | None = None
        self._pending_update: Any = None
        self._hooks: list[Any] = []
        self._activation_stats: dict[str, list[Any]] = {}
        self._hunt_next = False
        self._hunted: str | None = None
        self._early: tuple[str, str | None] | None = None

    # ------------------------------------------------------------------------- every step

    def grad_norms(self) -> Any:
        """Per-tensor gradient norms now (a tensor, read at the step's end), and the global norm."""
        grads = [p.grad for p in self._params]
        present = [g for g in grads if g is not None]
        if not present:
            return None
        norms = torch._foreach_norm(present, 2.0)
        stacked = torch.stack([n if n.dtype == torch.float32 else n.float() for n in norms])
        if len(present) == len(grads):
            self._pending_norms = stacked
        else:
            full = torch.full((len(grads),), float("nan"))
            index = [i for i, g in enumerate(grads) if g is not None]
            full[index] = stacked.to(full.device)
            self._pending_norms = full
        return torch.linalg.vector_norm(stacked)

    def check_loss(self, loss: torch.Tensor) -> None:
        """On a CPU, when a loss comes out non-finite, look at the weights before backward runs.

        Once backward and the optimizer have run, a NaN is everywhere; right now the weight that
        produced it (if any) can still be named. On a GPU this check would synchronise every
        step, so there the weights are checked with the update ratios instead.
        """
        if self.nonfinite is not None or loss.device.type != "cpu":
            return
        if math.isfinite(loss.item()):
            return
        with torch.no_grad():
            norms = [float(n) for n in torch._foreach_norm(self._params, 2.0)]
        bad = _first_nonfinite(norms)
        self._early = ("weights", self._param_names[bad]) if bad is not None else ("loss", None)

    def before_optimizer(self, index: int) -> None:
        """Snapshot the parameters the optimizer is about to change (every ``update_every``)."""
        if index % self.update_every:
            return
        with torch.no_grad():
            self._before = list(torch._foreach_mul(self._params, 1.0)) if self._params else None

    def after_optimizer(self) -> None:
        """Measure each parameter's change over the optimizer step against its size."""
        if self._before is None:
            return
        with torch.no_grad():
            prior = torch.stack([n.float() for n in torch._foreach_norm(self._before, 2.0)])
            torch._foreach_sub_(self._before, self._params)
            change = torch.stack([n.float() for n in torch._foreach_norm(self._before, 2.0)])
            size = torch.stack([n.float() for n in torch._foreach_norm(self._params, 2.0)])
        self._before = None
        self._pending_update = (prior, change, size)

    # ---------------------------------------------------------------------- step boundaries

    def begin_step(self, index: int, sample_activations: bool) -> None:
        """Install the hooks this step needs (activation statistics, the NaN hunt)."""
        if sample_activations and self._activation_modules:
            slots = len(self._activation_modules)
            self._activation_stats = {
                k: [None] * slots for k in ("dead", "saturated", "mean", "std")
            }
            for slot, (_, module, kind) in enumerate(self._activation_modules):
                hook = self._activation_hook(kind, slot)
                self._hooks.append(module.register_forward_hook(hook))
            self.activation_steps.append(index)
        if self._hunt_next:
            self._hunt_next = False
            for name, module in self._model.named_modules():
                self._hooks.append(module.register_forward_hook(self._hunt_hook(name)))

    def end_step(self, index: int, loss: float | None, grad_norm: float | None) -> None:
        """Turn this step's pending tensors into numbers and look for non-finite values."""
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        if self._activation_stats:
            self.activation_rows.append(_to_numbers(self._activation_stats))
            self._activation_stats = {}
        norms = self._pending_norms.tolist() if self._pending_norms is not None else None
        self._pending_norms = None
        if norms is not None:
            self.grad_steps.append(index)
            self.grad_norm.append(self._per_layer(norms))
        prior: list[float] | None = None
        size: list[float] | None = None
        if self._pending_update is not None:
            prior, change, size = (t.tolist() for t in self._pending_update)
            self._pending_update = None
            self.update_steps.append(index)
            moved, sizes = self._per_layer(change), self._per_layer(size)
            self.update_ratio.append(
                [m / s if m is not None and s else None for m, s in zip(moved, sizes, strict=True)]
            )
            self.weight_norm.append(sizes)
        if self.nonfinite is None:
            # In the order things happen in a step: the weights it started from, the loss, the
            # gradients, the weights the update left.
            if self._early is not None:
                self._found(index, *self._early)
            elif prior is not None and (bad := _first_nonfinite(prior)) is not None:
                self._found(index, "weights", self._param_names[bad])
            elif loss is not None and not math.isfinite(loss):
                self._found(index, "loss", None)
            elif grad_norm is not None and not math.isfinite(grad_norm) and norms is not None:
                bad = _first_nonfinite(norms)
                self._found(index, "gradients", self._param_names[bad] if bad is not None else None)
            elif size is not None and (bad := _first_nonfinite(size)) is not None:
                self._found(index, "updated weights", self._param_names[bad])
        if self._hunted is not None and self.nonfinite is not None:
            self.nonfinite.setdefault("first_nonfinite_output", self._hunted)

    def _found(self, index: int, where: str, tensor: str | None) -> None:
        self.nonfinite = {"step": index, "in": where, "tensor": tensor}
        self._hunt_next = True

    def _per_layer(self, per_tensor: list[float]) -> list[float | None]:
        squares = [0.0] * len(self.layers)
        seen = [False] * len(self.layers)
        for value, layer in zip(per_tensor, self._layer_of, strict=True):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            squares[layer] += value * value
            seen[layer] = True
        return [math.sqrt(s) if ok else None for s, ok in zip(squares, seen, strict=True)]

    # ----------------------------------------------------------------------------- hooks

    def _activation_hook(self, kind: str, slot: int) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            stats = self._activation_stats
            if not isinstance(output, torch.Tensor) or output.numel() == 0:
                return
            if stats["mean"][slot] is not None:
                return  # a module called twice in a step: its first call speaks for it
            y = output.detach()
            dead = saturated = _NAN
            if kind == "relu" and y.dim() >= 2:
                unit_dim = 1 if y.dim() in (4, 5) else y.dim() - 1
                other = [d for d in range(y.dim()) if d != unit_dim]
                alive = y.amax(dim=other) > 0
                dead = 1 - alive.sum() / alive.numel()
            elif kind == "sigmoid":
                saturated = (y - 0.5).abs().gt(0.5 - _SATURATION_MARGIN).sum() / y.numel()
            elif kind == "tanh":
                saturated = y.abs().gt(1 - _SATURATION_MARGIN).sum() / y.numel()
            std, mean = torch.std_mean(y) if y.numel() > 1 else (torch.zeros(()), y.mean())
            # Kept as tensors: one conversion for the whole step, at its end.
            stats["dead"][slot] = dead
            stats["saturated"][slot] = saturated
            stats["mean"][slot] = mean
            stats["std"][slot] = std

        return hook

    def _hunt_hook(self, name: str) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            if (
                self._hunted is None
                and isinstance(output, torch.Tensor)
                and output.is_floating_point()
                and not bool(torch.isfinite(output).all())
            ):
                self._hunted = name or "(model)"

        return hook

    def result(self) -> Health:
        """The series collected so far."""
        names = [name for name, _, _ in self._activation_modules]
        kinds = [kind for _, _, kind in self._activation_modules]
        rows = self.activation_rows

        def column(key: str) -> list[list[float | None]]:
            return [list(row[key]) for row in rows]

        return Health(
            layers=list(self.layers),
            layer_ndim=list(self.layer_ndim),
            grad_steps=list(self.grad_steps),
            grad_norm=[list(r) for r in self.grad_norm],
            update_steps=list(self.update_steps),
            update_ratio=[list(r) for r in self.update_ratio],
            weight_norm=[list(r) for r in self.weight_norm],
            activation_layers=names,
            activation_kinds=kinds,
            activation_steps=list(self.activation_steps),
            dead_share=column("dead"),
            saturated_share=column("saturated"),
            activation_mean=column("mean"),
            activation_std=column("std"),
            nonfinite=dict(self.nonfinite) if self.nonfinite is not None else None,
        )
