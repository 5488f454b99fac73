"""A data-parallel job: launch a workload on many ranks under torchrun, merge their Profiles.

:func:`launch` runs ``python -m torch.distributed.run`` (torchrun) on
:mod:`pinchpoint.recorders._worker`, which in every rank loads the workload, joins the process
group (gloo on a CPU, NCCL on CUDA), wraps the model in DistributedDataParallel, shards a
DataLoader's data with a DistributedSampler, records the run with the same
:class:`~pinchpoint.Recorder` a single process uses and saves one Profile per rank
(``rank-N.json``) in the output folder. Rank 0 also gathers every rank's Profile, so the node
that holds rank 0 has the whole job. :func:`merge` joins per-rank Profiles, from ``launch`` or
from a user's own DDP script instrumented with ``pinchpoint.Recorder``, into one multi-rank
Profile (rank 0's, with every rank's in :attr:`~pinchpoint.Profile.ranks`), which
:func:`pinchpoint.diagnose` and the reports read like any other.

A rank that fails stops the job (torchrun ends the others) and becomes one
:class:`~pinchpoint.errors.PinchpointError` line naming the rank and its error; a job that runs
past ``timeout_s`` has its whole process group ended. Importing this module does not import
torch.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from pinchpoint._profile import Profile
from pinchpoint.errors import DeviceError, PinchpointError, ProfileFormatError, WorkloadError
from pinchpoint.workload import ddp_settings_problem

__all__ = ["RANK_FILE", "launch", "merge", "rank_files"]

#: The name of rank N's Profile in an output folder.
RANK_FILE = "rank-{rank}.json"
#: torchrun's and the ranks' combined output, kept in the output folder.
LOG_FILE = "torchrun.log"

_RANK_NAME = re.compile(r"^rank-(\d+)\.(json|error)$")
#: Seconds the ranks get to stop after SIGTERM before they are killed.
_GRACE_S = 10.0


def launch(
    target: str,
    *,
    nproc: int,
    nnodes: int = 1,
    node_rank: int = 0,
    rdzv_endpoint: str | None = None,
    steps: int = 20,
    warmup: int = 3,
    device: str = "cpu",
    ddp: Mapping[str, Any] | None = None,
    accumulate: int | None = None,
    batch_size: int | None = None,
    out_dir: str | Path | None = None,
    timeout_s: float | None = None,
) -> Profile | None:
    """Record ``target`` on ``nproc`` ranks per node with DistributedDataParallel under torchrun.

    On one node the job uses torchrun's ``--standalone`` rendezvous on a free loopback port and
    gloo stays on the loopback interface. On several, run the same call on every node with
    ``nnodes``, this node's ``node_rank`` (node 0 hosts the rendezvous) and a shared
    ``rdzv_endpoint`` (``HOST:PORT`` of node 0), as torchrun's c10d rendezvous wants.

    Args:
        target: ``zoo:NAME``, ``file.py`` or ``file.py:function`` naming a training workload.
        nproc: ranks (processes) on this node.
        steps, warmup: as for :func:`pinchpoint.profile`, in every rank.
        device: ``"cpu"`` (gloo), ``"cuda"`` (NCCL, one GPU per local rank) or ``"auto"``.
        ddp: DistributedDataParallel settings that replace the workload's own
            (see :attr:`pinchpoint.Workload.ddp`).
        accumulate: micro-batches per optimizer step, replacing the workload's (the ones
            before the last run under ``no_sync()``).
        batch_size: samples per batch and rank (a zoo builder's option; other workloads'
            data is re-batched).
        out_dir: the folder for ``rank-N.json`` (and ``torchrun.log``, the job's output); a
            new temporary folder when None. A previous launch's files there are replaced.
        timeout_s: end the whole job after this many seconds (None: no limit).

    Returns:
        The merged multi-rank Profile on the node that holds rank 0; None on the others,
        whose ranks' files are in ``out_dir`` (rank 0 gathered them too).

    Raises:
        WorkloadError: a rank failed (the message names it and its last error line), or the
            target cannot be found.
        DeviceError: CUDA was asked for without enough GPUs.
        PinchpointError: the job ran past ``timeout_s``, or torchrun itself failed.
        ValueError: a setting is out of range.
    """
    _check(nproc=nproc, nnodes=nnodes, node_rank=node_rank, steps=steps, warmup=warmup)
    if nnodes > 1 and not rdzv_endpoint:
        raise ValueError("several nodes need rdzv_endpoint (HOST:PORT of node 0's rendezvous)")
    if rdzv_endpoint is not None and not re.fullmatch(r"\[?[^\s\[\]]+\]?:\d{1,5}", rdzv_endpoint):
        raise ValueError(f"rdzv_endpoint must look like HOST:PORT, not {rdzv_endpoint!r}")
    if ddp is not None and (problem := ddp_settings_problem(ddp)) is not None:
        raise ValueError(f"ddp: {problem}")
    for name, value in (("accumulate", accumulate), ("batch_size", batch_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{name} must be an integer, not {value!r}")
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, not {value}")
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, not {timeout_s}")
    kind = _device_kind(device, nproc)
    target = _resolved_target(target)
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="pinchpoint-"))
    out.mkdir(parents=True, exist_ok=True)
    _clear(out)
    options = {
        "target": target,
        "steps": steps,
        "warmup": warmup,
        "device": kind,
        "ddp": dict(ddp) if ddp is not None else None,
        "accumulate": accumulate,
        "batch_size": batch_size,
        "out_dir": str(out.resolve()),
        "timeout_s": timeout_s,
        "nproc": nproc,
        "nnodes": nnodes,
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *_rendezvous(nproc, nnodes, node_rank, rdzv_endpoint),
        "-m",
        "pinchpoint.recorders._worker",
        orjson.dumps(options).decode(),
    ]
    log = out / LOG_FILE
    code = _run(command, _environment(nproc, nnodes, kind), log, timeout_s)
    if code != 0:
        raise _failure(out, log, code)
    ranks = rank_files(out)
    if 0 not in ranks:
        return None
    return merge([ranks[r] for r in sorted(ranks)])


def _check(*, nproc: int, nnodes: int, node_rank: int, steps: int, warmup: int) -> None:
    for name, value, least in (("nproc", nproc, 1), ("nnodes", nnodes, 1), ("steps", steps, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer of at least {least}, not {value!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer of at least 0, not {warmup!r}")
    if isinstance(node_rank, bool) or not isinstance(node_rank, int):
        raise ValueError(f"node_rank must be an integer, not {node_rank!r}")
    if not 0 <= node_rank < nnodes:
        raise ValueError(f"node_rank must lie in 0..{nnodes - 1} for {nnodes} node(s)")


def _device_kind(device: str, nproc: int) -> str:
    """``"cpu"`` or ``"cuda"`` for the ranks; a DeviceError when this node lacks the GPUs."""
    name = device.strip().lower()
    if name not in ("auto", "cpu", "cuda"):
        raise DeviceError(
            f"device {device!r}: the ranks of a launch run on cpu or cuda (each rank takes "
            "the GPU of its local rank), or auto"
        )
    if name == "cpu":
        return "cpu"
    import torch

    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if name == "auto":
        return "cuda" if available >= nproc else "cpu"
    if available < nproc:
        raise DeviceError(
            f"device 'cuda' was asked for with {nproc} rank(s) per node, but this machine has "
            f"{available} GPU(s): each rank needs its own"
        )
    return "cuda"


def _resolved_target(target: str) -> str:
    """The target as the ranks will load it: a file made absolute, checked to exist."""
    from pinchpoint.targets import split_target

    if target.startswith("zoo:"):
        from pinchpoint import zoo

        if target[4:] not in zoo.names():
            raise WorkloadError(f"no zoo workload named {target[4:]!r}; see `pinchpoint zoo`")
        return target
    file, function = split_target(target)
    path = Path(file)
    if not path.is_file():
        raise WorkloadError(f"no such file: {file}")
    return f"{path.resolve()}:{function}"


def _rendezvous(nproc: int, nnodes: int, node_rank: int, endpoint: str | None) -> list[str]:
    args = [f"--nproc-per-node={nproc}", f"--nnodes={nnodes}", "--max-restarts=0"]
    if nnodes == 1 and endpoint is None:
        # A rendezvous store on a free port of this machine, reached over the loopback.
        return [*args, "--standalone", "--local-addr=127.0.0.1"]
    return [
        *args,
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={endpoint}",
        # Every node runs the same command, so the id derived from the endpoint is shared.
        f"--rdzv-id=pinchpoint-{endpoint}",
        f"--rdzv-conf=is_host={'true' if node_rank == 0 else 'false'}",
    ]


def _environment(nproc: int, nnodes: int, kind: str) -> dict[str, str]:
    env = dict(os.environ)
    # The ranks of one node share its cores (torchrun itself would say 1 and warn).
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    env.setdefault("PYTHONUNBUFFERED", "1")
    if nnodes == 1 and kind == "cpu" and sys.platform.startswith("linux"):
        # gloo connects on the interface of the host's name unless told: keep it on loopback.
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    return env


def _clear(out: Path) -> None:
    """Remove a previous launch's rank files and log from ``out`` (never anything else)."""
    for path in out.iterdir():
        if (_RANK_NAME.match(path.name) or path.name == LOG_FILE) and path.is_file():
            path.unlink()


def _run(command: list[str], env: dict[str, str], log: Path, timeout_s: float | None) -> int:
    """Run torchrun in a session of its own; on timeout end that session's processes."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            return process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _end_group(process)
            raise PinchpointError(
                f"the job did not finish in {timeout_s:g} s and was stopped (log: {log})"
            ) from None
        except BaseException:
            _end_group(process)
            raise


def _end_group(process: subprocess.Popen[bytes]) -> None:
    """End torchrun and its ranks: SIGTERM to the session's process group, then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, _GRACE_S), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _failure(out: Path, log: Path, code: int) -> PinchpointError:
    """The error of a failed job: the first rank to fail, with its one-line error."""
    errors = []
    for path in out.iterdir():
        match = _RANK_NAME.match(path.name)
        if match and match.group(2) == "error":
            with contextlib.suppress(OSError, orjson.JSONDecodeError, KeyError, TypeError):
                record = orjson.loads(path.read_bytes())
                errors.append((float(record["time"]), int(match.group(1)), str(record["error"])))
    if errors:
        _, rank, message = min(errors)
        return WorkloadError(f"rank {rank} failed: {message}")
    return PinchpointError(f"torchrun failed ({_last_error_line(log, code)}; log: {log})")


def _last_error_line(log: Path, code: int) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        text = " ".join(line.split())
        if re.search(r"(Error|Exception|error:)", text):
            return text
    return f"exit status {code}"


def rank_files(folder: str | Path) -> dict[int, Path]:
    """The per-rank Profiles ``launch`` left in ``folder``, by rank."""
    out = {}
    for path in Path(folder).iterdir():
        match = _RANK_NAME.match(path.name)
        if match and match.group(2) == "json":
            out[int(match.group(1))] = path
    return out


def merge(paths_or_dir: str | Path | Iterable[str | Path | Profile]) -> Profile:
    """Join per-rank Profiles of one data-parallel job into one multi-rank Profile.

    ``paths_or_dir`` is a folder (every ``.json`` in it), or files, or Profiles. Each must be
    one rank's Profile recorded under torch.distributed (a ``Recorder`` in a DDP script, or
    :func:`launch`). The result is rank 0's Profile with every rank's in ``ranks``.

    Raises:
        ProfileFormatError: on one line, when a file is not such a Profile, the Profiles come
            from different jobs or world sizes, two claim one rank, or a rank is missing.
    """
    items: list[tuple[str, Profile]] = []
    for item in _inputs(paths_or_dir):
        if isinstance(item, Profile):
            items.append((f"profile {item.name!r}", item))
        else:
            from pinchpoint.targets import load_profile_json

            items.append((str(item), load_profile_json(str(item))))
    if not items:
        raise ProfileFormatError(f"no per-rank profiles to merge in {paths_or_dir}")
    for where, profile in items:
        if profile.ranks:
            raise ProfileFormatError(
                f"{where} is already a merged profile of {len(profile.ranks)} ranks: merge "
                "the per-rank files only"
            )
        if profile.distributed is None:
            raise ProfileFormatError(
                f"{where} was not recorded in a torch.distributed process group: it has no rank"
            )
    _check_one_job(items)
    ordered = sorted((p for _, p in items), key=lambda p: _dist(p).rank)
    first = ordered[0]
    node_ranks = {_dist(p).node_rank for p in ordered}
    seen = len(node_ranks) if None not in node_ranks else len({_dist(p).hostname for p in ordered})
    return replace(
        first,
        settings=dict(first.settings),
        distributed=replace(_dist(first), nodes=max(_dist(first).nodes or 1, seen)),
        ranks=list(ordered),
    )


def _dist(profile: Profile) -> Any:
    assert profile.distributed is not None  # merge() checked every Profile
    return profile.distributed


def _inputs(source: str | Path | Iterable[str | Path | Profile]) -> list[Path | Profile]:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            return [p for p in sorted(path.iterdir()) if p.suffix == ".json" and p.is_file()]
        if not path.exists():
            raise ProfileFormatError(f"no such file or folder: {path}")
        return [path]
    return [item if isinstance(item, Profile) else Path(item) for item in source]


def _check_one_job(items: list[tuple[str, Profile]]) -> None:
    """Refuse Profiles that cannot be one job's ranks (one line each)."""
    jobs = {_dist(p).job for _, p in items if _dist(p).job}
    if len(jobs) > 1:
        raise ProfileFormatError(
            f"the profiles come from different jobs ({len(jobs)} job ids): merge one job's ranks"
        )
    sizes = sorted({_dist(p).world_size for _, p in items})
    if len(sizes) > 1:
        raise ProfileFormatError(f"the profiles come from jobs of different world sizes {sizes}")
    seen: dict[int, str] = {}
    for where, profile in items:
        rank = _dist(profile).rank
        if rank in seen:
            raise ProfileFormatError(f"{seen[rank]} and {where} both hold rank {rank}")
        seen[rank] = where
    world = sizes[0]
    missing = sorted(set(range(world)) - set(seen))
    if missing:
        shown = ", ".join(map(str, missing[:8])) + (" …" if len(missing) > 8 else "")
        raise ProfileFormatError(f"rank(s) {shown} of a world of {world} are missing")
