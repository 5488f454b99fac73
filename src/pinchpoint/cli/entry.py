"""The ``pinchpoint`` script's entry point: the environment and memory settings a run starts
with, then the app with every command registered."""

import contextlib
import gc
import os
import sys
from typing import NoReturn

# The command modules register their commands on the app; importing them in this order lists
# the commands in --help in this order.
from pinchpoint.cli import run, measure, improve, show  # noqa: F401  # isort: skip
from pinchpoint.cli.options import app

__all__ = ["main"]


def main() -> None:
    """Entry point of the ``pinchpoint`` script."""
    if _command(sys.argv[1:]) != "run":  # a user's script runs in the environment it is given
        # Quiet third-party progress bars and hub look-ups: everything pinchpoint runs is offline.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if _command(sys.argv[1:]) in _FILE_COMMANDS:
        _reuse_freed_memory()
        # These commands make few reference cycles and live for seconds; the collector's passes
        # over every tracked object (numpy's and rich's module state included) buy nothing.
        gc.disable()
    try:
        app(prog_name="pinchpoint")
    except SystemExit as exc:
        if _command(sys.argv[1:]) in _FILE_COMMANDS and "--debug" not in sys.argv[1:]:
            _quick_exit(exc.code)
        raise


#: Commands that only read and write files: no user code runs in them, so nothing of the user's
#: waits for the interpreter's shutdown.
_FILE_COMMANDS = frozenset({"trace", "compare", "report", "merge"})


def _command(args: list[str]) -> str | None:
    return next((a for a in args if not a.startswith("-")), None)


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _reuse_freed_memory() -> None:
    """Have glibc keep the memory a file command frees for its next allocations.

    Reading a trace allocates and frees, chunk after chunk, arrays and buffers of a few hundred
    kB to a few MB. glibc's adaptive defaults map each block above its threshold afresh and hand
    the heap's free top back to the kernel once it exceeds twice that threshold, so every chunk
    touched new pages: about 2,900 page faults per 8 MB rank file, 10-25 % of the time it takes
    to read. Fixed thresholds (blocks up to 16 MiB from the heap, up to 64 MiB of free top kept)
    bring that to a few faults per file. Linux with glibc only; elsewhere nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - a libc without mallopt
        return
    mallopt(_M_MMAP_THRESHOLD, 16 << 20)
    mallopt(_M_TRIM_THRESHOLD, 64 << 20)


def _quick_exit(code: object) -> NoReturn:
    """Leave without the interpreter's shutdown, once the output is flushed.

    The shutdown frees every object and module one by one (1.4 % of the instructions of
    ``pinchpoint trace`` on eight ranks, and the pages go back to the kernel one by one); the
    files are already written, atomically, by then.
    """
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)
