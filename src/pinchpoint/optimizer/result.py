"""The optimize result: every candidate's trial, the chosen one, and how the result is saved.

:class:`OptimizeResult` is what :func:`~pinchpoint.optimizer.optimize` returns: one
:class:`TrialRecord` per :class:`Candidate` tried, the best accepted one, the best-effort one
when none was accepted, and the Pareto frontier (speed, quality, size).

``OptimizeResult.save(DIR)`` writes ``optimize.json`` (schema ``pinchpoint.optimize/1``), the
chosen model (``model.pt``: the whole module, ``torch.load(..., weights_only=False)``; plus
``model.onnx`` when ONNX Runtime won) and ``remedies.json``, the configs to apply to the original
workload to get it again (:func:`load_remedies` reads them back).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pinchpoint.remedies import RemedyConfig, config_from_dict
from pinchpoint.trials.quality import Budget
from pinchpoint.workload import Workload

if TYPE_CHECKING:
    from pinchpoint._profile import Machine
    from pinchpoint.trials.trial import Trial

__all__ = [
    "SCHEMA",
    "Candidate",
    "OptimizeResult",
    "TrialRecord",
    "load_remedies",
    "writable_folder",
]

SCHEMA = "pinchpoint.optimize/1"


@dataclass(frozen=True)
class Candidate:
    """Remedies to try together, why they are tried, and why they may not pay off here."""

    remedies: tuple[RemedyConfig, ...]
    reason: str
    gate: str | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(r.label() for r in self.remedies)

    @property
    def short(self) -> str:
        """The remedies for display: ``a + b``, each with only its non-default settings."""
        return " + ".join(r.short_label() for r in self.remedies)


@dataclass
class TrialRecord:
    """One candidate's outcome: its trial, or why it could not be measured."""

    candidate: Candidate
    trial: Trial | None = None
    error: str | None = None
    seconds: float = 0.0
    workload: Workload | None = field(default=None, repr=False)

    @property
    def accepted(self) -> bool:
        return self.trial is not None and self.trial.accepted

    @property
    def why(self) -> str:
        if self.trial is not None:
            return self.trial.why
        return f"could not be tried: {self.error}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "remedies": [r.to_dict() for r in self.candidate.remedies],
            "labels": list(self.candidate.labels),
            "reason": self.candidate.reason,
            "gate": self.candidate.gate,
            "seconds": self.seconds,
        }
        if self.trial is None:
            out.update(
                speedup=None,
                speedup_ci=None,
                quality=None,
                quality_drop=None,
                size_bytes=None,
                accepted=False,
                why=self.why,
                error=self.error,
            )
            return out
        measured = self.trial.to_dict()
        measured.pop("remedies", None)
        out.update(measured)
        return out


@dataclass
class OptimizeResult:
    """What :func:`optimize` measured: every trial, the best one, the Pareto frontier."""

    target: str
    objective: str
    budget: Budget
    machine: Machine
    baseline: dict[str, Any]
    records: list[TrialRecord]
    best: int | None
    best_effort: int | None
    pareto: list[int]
    diagnosis: dict[str, Any] | None = None
    seconds: float = 0.0
    stopped_early: bool = False
    nproc: int | None = None

    @property
    def chosen(self) -> TrialRecord | None:
        """The best accepted trial, else the best-effort one."""
        index = self.best if self.best is not None else self.best_effort
        return None if index is None else self.records[index]

    @property
    def trials(self) -> list[Trial]:
        return [r.trial for r in self.records if r.trial is not None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "target": self.target,
            "objective": self.objective,
            "budget": self.budget.to_dict(),
            "machine": self.machine.to_dict(),
            "baseline": self.baseline,
            "diagnosis": self.diagnosis,
            "trials": [r.to_dict() for r in self.records],
            "best": self.best,
            "best_effort": self.best_effort,
            "pareto": self.pareto,
            "seconds": self.seconds,
            "stopped_early": self.stopped_early,
            "nproc": self.nproc,
        }

    def save(self, folder: str | Path) -> Path:
        """Write ``optimize.json``, the chosen model and ``remedies.json`` into ``folder``."""
        folder = writable_folder(Path(folder))
        chosen = self.chosen
        if chosen is not None and chosen.workload is not None:
            _save_model(chosen.workload.model, folder)
            _write_json(
                folder / "remedies.json",
                {
                    "schema": SCHEMA,
                    "best": self.best is not None,
                    "remedies": [r.to_dict() for r in chosen.candidate.remedies],
                },
            )
        return _write_json(folder / "optimize.json", self.to_dict())


def writable_folder(folder: Path) -> Path:
    """The folder a result is saved in, created if needed; a one-line PinchpointError when it
    cannot be."""
    from pinchpoint.errors import PinchpointError

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise PinchpointError(f"cannot write results to {folder}: it is a file") from None
    except OSError as exc:
        raise PinchpointError(f"cannot write results to {folder}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise PinchpointError(f"cannot write results to {folder}: permission denied")
    return folder


def _write_json(path: Path, data: Any) -> Path:
    import orjson

    from pinchpoint._io import atomic_write_bytes

    return atomic_write_bytes(
        path, orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )


def _save_model(model: Any, folder: Path) -> None:
    import os
    import tempfile

    import torch

    if hasattr(model, "save") and callable(model.save):  # an exported backend (ONNX)
        model.save(folder / "model.onnx")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".model-", suffix=".pt")
    os.fchmod(fd, 0o644)
    os.close(fd)
    try:
        try:
            torch.save(model, tmp)
        except Exception:  # a compiled or exported wrapper that does not pickle: keep weights
            torch.save(model.state_dict(), tmp)
        os.replace(tmp, folder / "model.pt")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_remedies(path: str | Path) -> list[RemedyConfig]:
    """The configs a saved ``remedies.json`` lists, to apply them to the original workload."""
    import orjson

    data = orjson.loads(Path(path).read_bytes())
    return [config_from_dict(d) for d in data.get("remedies", [])]
