"""Run a user's script as ``python`` would, with a :class:`~.autostep.StepFinder` recording it.

:func:`run_script` gives the script what the interpreter gives it: ``sys.argv`` (the script's
path, then its arguments), ``__name__ == "__main__"``, its folder first on ``sys.path`` (for
``-m``, the current folder), and afterwards the same exit status. How the script ended is kept
in a :class:`ScriptRun`, never lost: a return, ``sys.exit(code)``, an exception (its traceback is
printed as Python prints it, from the script's own frames), Ctrl-C, or SIGTERM (turned into an
exception while the script runs, so its ``finally`` blocks and the profile are written, and then
re-delivered, so the process ends by that signal as it would have without pinchpoint).

A SIGINT the process was started with ignored stays ignored, as under ``python``: a shell without
job control starts a command put in the background (``cmd &``) so, and Python then installs no
KeyboardInterrupt handler. Ctrl-C does not reach such a run; SIGTERM still ends it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import runpy
import signal
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NoReturn

from pinchpoint._profile import Profile
from pinchpoint.errors import PinchpointError
from pinchpoint.recorders.autostep import StepFinder, Stopped

__all__ = ["ScriptRun", "Terminated", "run_script", "script_file"]


class Terminated(BaseException):
    """SIGTERM arrived while the script ran."""


@dataclass
class ScriptRun:
    """How a script run ended, and what was recorded of it.

    ``status`` is the exit status ``python`` would have given (0, the ``sys.exit`` code, 1 for
    an exception); ``error`` the exception that ended it (None for a return or ``sys.exit``);
    ``signal`` the signal that ended it (SIGINT, SIGTERM) or None; ``stopped`` whether
    ``--stop`` ended it once the steps were recorded.
    """

    path: str
    status: int
    profile: Profile | None
    found: str | None
    error: BaseException | None = None
    signal: int | None = None
    stopped: bool = False

    def how(self) -> str:
        """How the script ended, in words: ``"ended"``, ``"raised ValueError"``..."""
        if self.signal == signal.SIGINT:
            return "was interrupted (Ctrl-C)"
        if self.signal == signal.SIGTERM:
            return "was terminated (SIGTERM)"
        if self.error is not None:
            return f"raised {type(self.error).__name__}"
        if self.stopped:
            return "was stopped once its steps were recorded (--stop)"
        return "ended" if self.status == 0 else f"exited with status {self.status}"

    def end(self) -> NoReturn:
        """Leave as the script would have: its traceback and status, or its signal."""
        if self.error is not None and self.signal != signal.SIGTERM:
            _print_traceback(self.error, self.path)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        if self.signal is not None:
            signal.signal(self.signal, signal.SIG_DFL)
            os.kill(os.getpid(), self.signal)
        raise SystemExit(self.status)


def script_file(target: str, *, module: bool) -> str:
    """The file that runs for ``target`` (a script's path, or a module's ``__main__``); a
    PinchpointError saying why, as ``python`` would, when there is none."""
    if not module:
        path = Path(target)
        if not path.is_file():
            raise PinchpointError(f"can't open file {target!r}: no such file")
        return str(path.resolve())
    try:
        spec = importlib.util.find_spec(target)
    except (ImportError, ValueError) as exc:
        raise PinchpointError(f"no module named {target!r} ({exc})") from None
    if spec is None:
        raise PinchpointError(f"no module named {target!r}")
    if spec.submodule_search_locations is not None:  # a package: its __main__ runs
        main = importlib.util.find_spec(f"{target}.__main__")
        if main is None or main.origin is None:
            raise PinchpointError(f"{target!r} is a package and cannot be run: no __main__")
        return main.origin
    if spec.origin is None:
        raise PinchpointError(f"module {target!r} has no file to run")
    return spec.origin


def run_script(target: str, args: list[str], finder: StepFinder, *, module: bool) -> ScriptRun:
    """Run ``target`` with ``args`` under ``finder``; how it ended, and its Profile.

    Raises:
        PinchpointError: the script or module does not exist (nothing ran).
    """
    path = script_file(target, module=module)
    status, stopped = 0, False
    error: BaseException | None = None
    caught: int | None = None
    with _as_main(path, args, module=module), _sigterm_raises():
        finder.install()
        try:
            if module:
                runpy.run_module(target, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(path, run_name="__main__")
        except SystemExit as exc:
            status = _exit_status(exc.code)
        except Stopped:
            stopped = True
        except KeyboardInterrupt as exc:
            error, caught, status = exc, signal.SIGINT, 128 + signal.SIGINT
        except Terminated as exc:
            error, caught, status = exc, signal.SIGTERM, 128 + signal.SIGTERM
        except BaseException as exc:
            error, status = exc, 1
        finally:
            profile = finder.finish()
    return ScriptRun(path, status, profile, finder.found, error, caught, stopped)


@contextlib.contextmanager
def _as_main(path: str, args: list[str], *, module: bool) -> Iterator[None]:
    """``sys.argv`` and ``sys.path`` as ``python script.py args`` (or ``-m``) sets them."""
    argv, syspath = sys.argv[:], sys.path[:]
    sys.argv = [path, *args]
    sys.path.insert(0, os.getcwd() if module else str(Path(path).parent))
    try:
        yield
    finally:
        sys.argv, sys.path[:] = argv, syspath


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    def raise_terminated(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    try:
        previous: Any = signal.signal(signal.SIGTERM, raise_terminated)
    except ValueError:  # not the main thread: SIGTERM keeps its handler
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_status(code: object) -> int:
    """The status ``python`` exits with for ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _print_traceback(error: BaseException, path: str) -> None:
    """Print ``error`` as Python would, from the first frame of the script's own code."""
    tb: TracebackType | None = error.__traceback__
    start = tb
    while start is not None and not _own(start, path):
        start = start.tb_next
    traceback.print_exception(type(error), error, start or tb, file=sys.stderr)


def _own(tb: TracebackType, path: str) -> bool:
    filename = tb.tb_frame.f_code.co_filename
    return filename == path or not (
        filename.startswith(str(Path(__file__).parent.parent)) or "runpy" in filename
    )
