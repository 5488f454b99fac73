"""The ``pinchpoint`` command: argument parsing only; the work is done by the public API.

Errors a user can cause (``PinchpointError``) print as one line on stderr with exit status 2;
``--debug`` shows the traceback instead.

``options`` holds the app, the options its commands share and the helpers every command uses;
``measure`` (profile, diagnose, merge, trace, compare, scale), ``improve`` (optimize,
calibrate, lr-find) and ``show`` (zoo, demo, report) hold the commands; ``entry`` holds
:func:`main`, the script's entry point.
"""

from pinchpoint.cli.entry import main
from pinchpoint.cli.options import app, parse_size

__all__ = ["app", "main", "parse_size"]
