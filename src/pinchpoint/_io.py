"""Files in and out: JSON read with one-line errors, output that is never half-written."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import orjson

from pinchpoint.errors import ProfileFormatError

__all__ = ["atomic_write_bytes", "read_json"]


def read_json(path: str | Path) -> Any:
    """The JSON value in the file at ``path``; ProfileFormatError, on one line, if it cannot be."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ProfileFormatError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise ProfileFormatError(f"{path} is a folder, not a file") from None
    except OSError as exc:
        raise ProfileFormatError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProfileFormatError(f"{path} is not valid JSON: {exc}") from exc


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    Readers see either the old file or the whole new one; a failure leaves the old file as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
