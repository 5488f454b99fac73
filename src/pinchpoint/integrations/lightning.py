"""A Lightning callback that records the training steps and diagnoses them.

::

    from pinchpoint.integrations.lightning import PinchpointCallback

    trainer = lightning.Trainer(max_epochs=1, callbacks=[PinchpointCallback(json="d.json")])
    trainer.fit(model, train_loader)     # the diagnosis prints when training ends

It needs ``lightning`` (``pip install pinchpoint[trainers]``). The optimizer comes
from the Trainer; the model is the module whose forward the ``training_step`` calls, found on
the first step (which is not recorded). Lightning's optimizer closure runs forward and backward
inside ``optimizer.step()``: the Recorder times the update after it. See
:mod:`pinchpoint.integrations`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch import Callback

from pinchpoint.diagnosis import Diagnosis
from pinchpoint.integrations._session import TrainingSession

__all__ = ["PinchpointCallback"]


class PinchpointCallback(Callback):
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

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        optimizers = list(trainer.optimizers)
        self.session.start(type(pl_module).__name__, None, optimizers[0] if optimizers else None)

    def on_train_batch_end(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
        if self.session.stop and self.session.done:
            trainer.should_stop = True

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.session.end()
