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

from typing import Any

from transformers import TrainerCallback

from pinchpoint.integrations._session import RecordingCallback

__all__ = ["PinchpointCallback"]


class PinchpointCallback(RecordingCallback, TrainerCallback):
    """Record ``steps`` training steps after ``warmup`` and diagnose them at the end of training.

    Arguments (``steps``, ``warmup``, ``stop``, ``json``, ``html``, ``show``) as
    :class:`~pinchpoint.integrations._session.RecordingCallback`; after training,
    ``callback.profile`` and ``callback.diagnosis`` hold the results.
    """

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model, optimizer = kwargs.get("model"), kwargs.get("optimizer")
        self.session.start(type(model).__name__, model, optimizer)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.session.stop and self.session.done:
            control.should_training_stop = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.session.end()
