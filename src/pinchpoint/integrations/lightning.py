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

from typing import Any

from lightning.pytorch import Callback

from pinchpoint.integrations._session import RecordingCallback

__all__ = ["PinchpointCallback"]


class PinchpointCallback(RecordingCallback, Callback):
    """Record ``steps`` training steps after ``warmup`` and diagnose them at the end of training.

    Arguments (``steps``, ``warmup``, ``stop``, ``json``, ``html``, ``show``) as
    :class:`~pinchpoint.integrations._session.RecordingCallback`; after training,
    ``callback.profile`` and ``callback.diagnosis`` hold the results.
    """

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        optimizers = list(trainer.optimizers)
        self.session.start(type(pl_module).__name__, None, optimizers[0] if optimizers else None)

    def on_train_batch_end(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
        if self.session.stop and self.session.done:
            trainer.should_stop = True

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.session.end()
