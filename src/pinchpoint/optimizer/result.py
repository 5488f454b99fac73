"""The optimize result: every candidate's trial, the chosen one, and how the result is saved.

:class:`OptimizeResult` is what :func:`~pinchpoint.optimizer.optimize` returns: one
:class:`TrialRecord` per :class:`Candidate` tried, the best accepted one, the best-effort one
when none was accepted, and the Pareto frontier (speed, quality, size).

``OptimizeResult.save(DIR)`` writes ``optimize.json`` (schema ``pinchpoint.optimize/1``), the
chosen model (``model.pt``: the whole module, ``torch.load(..., weights_only=False)``; plus
``model.onnx`` when ONNX Runtime won) and ``remedies.json``, the configs to apply to the original
workload to get it again (:func:`load_remedies` reads them back).

The file's ``trials`` rows flatten each record, the candidate's remedies and reason beside its
trial's numbers, as the contract has always had them; ``TrialRecord.to_dict``/``from_dict``
write and read that flattening, and hand the typed parts (the remedy configs, the trial, the
budget, the machine) to their own codecs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from pinchpoint._io import atomic_write_bytes
from pinchpoint._profile import Machine
from pinchpoint.codec import FormatError
from pinchpoint.errors import PinchpointError
from pinchpoint.remedies import RemedyConfig, config_from_dict
from pinchpoint.trials.quality import Budget
from pinchpoint.workload import Workload

if TYPE_CHECKING:
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
            out.update(dict.fromkeys(("speedup", "speedup_ci", "quality", "quality_drop")))
            out.update(size_bytes=None, accepted=False, why=self.why, error=self.error)
            return out
        measured = self.trial.to_dict()
        measured.pop("remedies", None)
        out.update(measured)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialRecord:
        """A ``trials`` row read back: its candidate, and its trial unless it could not be
        tried (a row without a ``speed``). The model it made is not saved."""
        from pinchpoint.trials.trial import Trial

        candidate = Candidate(
            tuple(config_from_dict(r) for r in data["remedies"]),
            str(data["reason"]),
            data.get("gate"),
        )
        trial = None
        if data.get("speed") is not None:
            trial = Trial.from_dict({**data, "remedies": data.get("labels", [])})
        return cls(candidate, trial, data.get("error"), float(data.get("seconds", 0.0)))


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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OptimizeResult:
        """Read :meth:`to_dict`'s output back (the chosen model is in its own file)."""
        if data.get("schema") != SCHEMA:
            found = f"schema {data.get('schema')!r}" if data.get("schema") else "no schema field"
            raise FormatError(f"not a pinchpoint optimize result ({found}; expected {SCHEMA!r})")
        try:
            return cls(
                target=str(data["target"]),
                objective=str(data["objective"]),
                budget=Budget.from_dict(data["budget"]),
                machine=Machine.from_dict(data.get("machine") or {}),
                baseline=dict(data["baseline"]),
                records=[TrialRecord.from_dict(r) for r in data["trials"]],
                best=data.get("best"),
                best_effort=data.get("best_effort"),
                pareto=[int(i) for i in data.get("pareto") or []],
                diagnosis=data.get("diagnosis"),
                seconds=float(data.get("seconds", 0.0)),
                stopped_early=bool(data.get("stopped_early", False)),
                nproc=data.get("nproc"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
            raise FormatError(f"broken pinchpoint optimize result: {what}") from exc

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
    return atomic_write_bytes(
        path, orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )


def _save_model(model: Any, folder: Path) -> None:
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
    data = orjson.loads(Path(path).read_bytes())
    return [config_from_dict(d) for d in data.get("remedies", [])]
