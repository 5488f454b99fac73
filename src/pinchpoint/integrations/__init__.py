"""Callbacks for the trainers users already train with, each an optional dependency.

- :class:`pinchpoint.integrations.transformers.PinchpointCallback`: Hugging Face ``Trainer``.
- :class:`pinchpoint.integrations.lightning.PinchpointCallback`: Lightning ``Trainer``.

Both record the training steps with the same :class:`~pinchpoint.recorders.autostep.StepFinder`
that ``pinchpoint run`` uses (steps, phases with the dataloader wait, loss, gradient norms and
training health), and at the end of training diagnose the Profile, print the diagnosis and save
it where asked. ``pinchpoint run`` on a script that uses either trainer needs no callback; the
callback is for jobs started some other way (a notebook, a launcher). Importing this package
imports neither trainer.
"""

__all__: list[str] = []
