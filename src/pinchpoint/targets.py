"""Turn what a user names on the command line into a Workload.

A target is ``zoo:NAME`` (a built-in workload), ``path/to/file.py`` (its function ``workload``),
``path/to/file.py:function``, or (for diagnosis) a saved profile or diagnosis ``.json`` or a
profiler trace (a ``.json``/``.json.gz`` file or a folder of per-rank files). The
file is run the way Python runs a script: its folder goes first on ``sys.path`` so it can import
its neighbours. Every failure becomes a one-line WorkloadError.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pinchpoint import results
from pinchpoint._io import read_json
from pinchpoint._profile import Profile
from pinchpoint.errors import PinchpointError, WorkloadError
from pinchpoint.workload import Workload

if TYPE_CHECKING:
    from pinchpoint.traces import TraceAnalysis

__all__ = ["DEFAULT_FUNCTION", "load_target", "load_workload", "split_target"]

#: The function a workload file is expected to define when the target names none.
DEFAULT_FUNCTION = "workload"


def split_target(target: str) -> tuple[str, str]:
    """Split ``file.py:function`` into its file and function (``workload`` when absent)."""
    head, sep, tail = target.rpartition(":")
    if sep and tail.isidentifier() and head and not head.endswith(("/", "\\")) and len(head) > 1:
        return head, tail
    return target, DEFAULT_FUNCTION


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_workload(target: str, **options: Any) -> Workload:
    """The Workload ``target`` names (see the module docstring); ``options`` go to zoo builders."""
    if target.startswith("zoo:"):
        from pinchpoint import zoo

        return zoo.get(target[4:], **options)
    file, function = split_target(target)
    path = Path(file)
    if not path.exists():
        hint = (
            " (built-in workloads are named zoo:NAME; see `pinchpoint zoo`)"
            if ":" not in target
            else ""
        )
        raise WorkloadError(f"no such file: {file}{hint}")
    if not path.is_file():
        raise WorkloadError(f"not a file: {file}")
    module = _run_file(path.resolve())
    builder = getattr(module, function, None)
    if builder is None:
        defined = sorted(
            name
            for name, value in vars(module).items()
            if callable(value)
            and not name.startswith("_")
            and getattr(value, "__module__", None) == module.__name__
        )
        also = f" (it defines: {', '.join(defined)})" if defined else ""
        raise WorkloadError(f"{file} has no function {function!r}{also}")
    if not callable(builder):
        raise WorkloadError(f"{file}: {function!r} is not a function")
    try:
        result = builder()
    except PinchpointError:
        raise
    except Exception as exc:
        raise WorkloadError(f"{file}:{function}() raised {_one_line(exc)}") from exc
    if not isinstance(result, Workload):
        raise WorkloadError(
            f"{file}:{function}() returned {type(result).__name__}, not a pinchpoint.Workload"
        )
    return result


def load_target(target: str, **options: Any) -> Workload | Profile | TraceAnalysis:
    """A Workload; a Profile for a saved profile or diagnosis (``.json``); a TraceAnalysis
    for a profiler trace file (``.json``, ``.json.gz``) or a folder of them."""
    if results.is_trace(target):
        from pinchpoint.traces import load_trace

        return load_trace(target)
    if target.endswith(".json") and not target.startswith("zoo:"):
        return load_profile_json(target)
    return load_workload(target, **options)


def load_profile_json(path: str) -> Profile:
    """The Profile in a saved profile or diagnosis JSON file."""
    data = read_json(path)
    if results.kind_of(data) == "diagnosis":
        data = data.get("profile")
    return Profile.from_dict(data)


def _run_file(path: Path) -> Any:
    """Import ``path`` as a fresh module, with its folder first on ``sys.path``."""
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = f"_pinchpoint_target_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise WorkloadError(f"cannot load {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except PinchpointError:
        raise
    except SyntaxError as exc:
        raise WorkloadError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from exc
    except Exception as exc:
        raise WorkloadError(f"{path} raised {_one_line(exc)} while loading") from exc
    return module
