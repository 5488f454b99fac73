"""A Hugging Face ``Trainer`` callback that records the training steps and diagnoses them.

::

    from pinchpoint.integrations.transformers import PinchpointCallback

    trainer = Trainer(model, args, train_dataset=..., callbacks=[PinchpointCallback(json="d.json")])
    trainer.train()          # the diagnosis prints when training ends

It needs ``transformers`` (and the ``accelerate`` its Trainer needs): ``pip install
pinchpoint[trainers]``. The model and optimizer come from the Trainer, so the first step is
recorded (as warm-up). See :mod:`pinchpoint.integrations`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from pinchpoint.diagnosis import Diagnosis
from pinchpoint.integrations._session import TrainingSession

__all__ = ["PinchpointCallback"]


class PinchpointCallback(TrainerCallback):
    """Record ``steps`` training steps after ``warmup`` and diagnose them at the end of training.

    Args:
        steps: measured steps to record (the recording then stops; training goes on).
        warmup: recorded steps left out of statistics.
        stop: end training once the steps are recorded.
        json: write the diagnosis (with its Profile) as JSON to this file.
        html: write the HTML report to this file.
        show: print the diagnosis to the terminal.

    After training, ``callback.profile`` and ``callback.diagnosis`` hold the results.
    """

    def __init__(
        self,
        *,
        steps: int = 20,
        warmup: int = 2,
        stop: bool = False,
        json: str | Path | None = None,
        html: str | Path | None = None,
        show: bool = True,
    ) -> None:
        self.session = TrainingSession(
            steps=steps, warmup=warmup, stop=stop, json=json, html=html, show=show
        )

    @property
    def profile(self) -> Any:
        return self.session.profile

    @property
    def diagnosis(self) -> Diagnosis | None:
        return self.session.diagnosis

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model, optimizer = kwargs.get("model"), kwargs.get("optimizer")
        self.session.start(type(model).__name__, model, optimizer)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.session.stop and self.session.done:
            control.should_training_stop = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.session.end()
