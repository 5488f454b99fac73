#!/usr/bin/env bash
# One GPU self-check of pinchpoint: every `gpu`-marked test and the CUDA paths end to end, each
# check under its own time limit, then one summary table (check | PASS/FAIL | seconds | figure).
#
#   bash benchmarks/gpu_check.sh            # on a machine with an NVIDIA GPU: about 5-8 minutes
#   bash benchmarks/gpu_check.sh --quick    # the same (--quick is accepted and ignored)
#
# Without a GPU (no nvidia-smi, nvidia-smi lists none, or torch cannot use it) it prints one line
# and exits 0 within seconds, so CI can run it anywhere. Otherwise it exits 1 when any check
# failed. The checks, in order:
#
#   calibrate             pinchpoint calibrate --device cuda --refresh; the measured peaks beside
#                         the card's published ones (the table in verify.py below)
#   profile/diagnose      zoo:digits-cnn and zoo:tiny-gpt on cuda: CUDA-event clock, the device's
#                         memory, CUDA runtime calls among the operators, phases adding up to the
#                         step, a nonzero transfer phase (their batches start on the host)
#   planted-transfer      host_transfer_bound planted in a workload file written below: large
#                         pageable batches into a cheap model (the zoo plants only CPU mistakes)
#   planted-sync          sync_bound planted the same way: a forward that logs .item() per layer
#   kineto-trace          a torch.profiler trace of a few CUDA training steps, exported with
#                         export_chrome_trace, read by pinchpoint trace: GPU kernels found
#   nccl-nproc1           pinchpoint profile zoo:digits-cnn --nproc 1 --device cuda: backend nccl
#   pytest-gpu            pytest -m gpu (the tests tests/conftest.py skips where torch sees no GPU)
#   optimize-bert-base    pinchpoint optimize zoo:bert-base --device cuda, 90 s budget
#
# Time: every check has its own limit (coreutils timeout, which ends the check's whole process
# group), and all of them share one budget of PINCHPOINT_GPU_CHECK_BUDGET_S (450 s): a check that
# would start with less than 20 s of it left fails as "not run", so the checks end within 8 minutes
# (the CUDA set-up below, when needed, comes before and is not counted). A failing check never
# stops the others.
#
# Outputs: every command's log and JSON, the calibration cache and the table (summary.txt) go to
# $OUT/gpu-check when OUT is set (so a remote machine sends them back), else to a new folder in
# $TMPDIR (/tmp). The optimize check's model.pt (hundreds of MB) is deleted once checked.
#
# Environment:
#   OUT                              where outputs go (see above)
#   PINCHPOINT_GPU_CHECK_DEVICE=cpu  dry run for development on a machine without a GPU: the same
#                                    checks with --device cpu, skipping pytest -m gpu and the
#                                    CUDA-only assertions (about 5 minutes on 2 cores)
#   PINCHPOINT_GPU_CHECK_PYTHON      an interpreter with pinchpoint and a CUDA build of torch, used
#                                    as it is (no set-up)
#   PINCHPOINT_GPU_CHECK_BUDGET_S    the shared time budget of the checks (default 450)
#
# Environment (set-up):
#   PINCHPOINT_GPU_WHEELS            a folder of wheels for route 2 below, for a machine offline
#   PINCHPOINT_GPU_VENV              where route 3 builds its venv (default .venv-gpu)
#   PINCHPOINT_GPU_TORCH_INDEX       the index route 3 takes torch from (default PyPI)
#
# Assumptions about the GPU machine: the repository was copied there; bash, coreutils' timeout and
# python3 are there; no network but perhaps PyPI. The zoo workloads used need none (the digits
# come with scikit-learn, bert-base has random weights, tiny-gpt reads Python's own sources).
# .venv holds the CPU build of torch (torch==2.13.0+cpu from requirements.lock), which cannot use
# a GPU, so the interpreter is the first of:
#   1. PINCHPOINT_GPU_CHECK_PYTHON, or .venv/bin/python if its torch has CUDA;
#   2. python3, if its torch has CUDA (a GPU image's own, as on the lent H100/H200 machines:
#      torch 2.11+cu130 in /opt/torch/.venv): pinchpoint runs from src/ on PYTHONPATH and only the
#      dependencies it lacks (isal, msgspec, orjson, platformdirs, plotly there) go into .gpu-site;
#      offline, carry their wheels (`pip download --no-deps --only-binary=:all: -d .whl ...` for
#      its Python and platform) and set PINCHPOINT_GPU_WHEELS=.whl;
#   3. a separate venv (.venv-gpu, kept for later runs) with the lock's other pins and
#      torch==2.13.0 from PyPI, whose default Linux x86_64 wheel is the CUDA build: a CUDA 13 one
#      (it requires nvidia-*-cu13 libraries and triton 3.7.1, a few GB), so the driver must be R580
#      or newer; for an older driver point PINCHPOINT_GPU_TORCH_INDEX at PyTorch's index of an
#      older CUDA (.../whl/cu126, whose 2.13.0+cu126 satisfies ==2.13.0). It needs the network.
# A set-up that fails says so in one line and exits 1: a GPU is here but cannot be checked. Where
# torch with CUDA still sees no GPU (a driver too old for its CUDA), the one line says so and the
# exit is 0, as on a machine without a GPU. A dry run uses .venv (built with
# `make .venv/.installed-stamp` when missing).

set -u
set -o pipefail

usage() { sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

for arg in "$@"; do
    case "$arg" in
        --quick) ;;  # accepted for CI's sake; the check has one size
        -h | --help) usage; exit 0 ;;
        *) echo "gpu_check: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

DEVICE=${PINCHPOINT_GPU_CHECK_DEVICE:-cuda}
case "$DEVICE" in
    cuda | cpu) ;;
    *) echo "gpu_check: PINCHPOINT_GPU_CHECK_DEVICE must be cuda or cpu, not '$DEVICE'" >&2; exit 2 ;;
esac
DRY=0
[ "$DEVICE" = cpu ] && DRY=1

# --- No GPU: one line, exit 0, before anything slow ---------------------------------------------
GPU_NAME=cpu DRIVER=n/a TORCH=
if [ "$DRY" = 0 ]; then
    if ! command -v nvidia-smi >/dev/null 2>&1; then
        echo "gpu_check: no NVIDIA GPU here (no nvidia-smi); nothing to check."
        exit 0
    fi
    GPU_LINE=$(timeout 30 nvidia-smi --query-gpu=name,driver_version --format=csv,noheader \
        2>/dev/null | head -n 1)
    GPU_NAME=${GPU_LINE%,*}
    DRIVER=${GPU_LINE##*, }
    if [ -z "$GPU_LINE" ]; then
        echo "gpu_check: no NVIDIA GPU here (nvidia-smi lists none); nothing to check."
        exit 0
    fi
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
export PIP_DISABLE_PIP_VERSION_CHECK=1

# --- The interpreter: one whose torch has CUDA (in a dry run, any) ------------------------------
torch_cuda() {  # torch_cuda PYTHON: prints the CUDA version of its torch, or nothing
    "$1" -c 'import torch; print(torch.version.cuda or "")' 2>/dev/null
}
TORCH_LOCKED=$(sed -n 's/^torch==\([0-9][0-9.]*\).*/\1/p' requirements.lock 2>/dev/null | head -n 1)

# Route 2, a GPU image's own python3 with a CUDA torch: pinchpoint runs from src/ on PYTHONPATH,
# and only the project's dependencies that python3 lacks (or has in a version pyproject.toml rules
# out) go into .gpu-site with pip --target, from PINCHPOINT_GPU_WHEELS when set (offline), else
# from pip's index. torch and everything else stay python3's own.
use_image_python() {
    local site=$ROOT/.gpu-site missing=() where=() round
    export PYTHONPATH=$ROOT/src:$site${PYTHONPATH:+:$PYTHONPATH}
    if [ -n "${PINCHPOINT_GPU_WHEELS:-}" ]; then
        where=(--no-index --find-links "$PINCHPOINT_GPU_WHEELS")
    fi
    # pip --target ignores what python3 already has, so each missing requirement goes in alone
    # (--no-deps) and the walk over the requirements runs again, for the ones that brought.
    for round in 1 2 3 4 5 6; do
        mapfile -t missing < <(python3 - <<'PYEOF'
import importlib.metadata as metadata
import tomllib

from packaging.requirements import Requirement

with open("pyproject.toml", "rb") as f:
    todo = [Requirement(r) for r in tomllib.load(f)["project"]["dependencies"]]
seen = set()
while todo:
    requirement = todo.pop()
    if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
        continue
    try:
        version = metadata.version(requirement.name)
    except metadata.PackageNotFoundError:
        version = None
    if version is None or not requirement.specifier.contains(version, prereleases=True):
        print(requirement.name + str(requirement.specifier))
    elif requirement.name.lower() not in seen:
        seen.add(requirement.name.lower())
        todo += [Requirement(r) for r in metadata.requires(requirement.name) or []]
PYEOF
        )
        [ "${#missing[@]}" = 0 ] && return 0
        echo "gpu_check: python3 has a CUDA torch; adding to $site (round $round):" \
            "${missing[*]}" >&2
        timeout 900 python3 -m pip install -q --no-deps --upgrade --no-compile --target "$site" \
            "${where[@]}" "${missing[@]}" >&2 || break
    done
    echo "gpu_check: FAIL: could not install ${missing[*]} for python3 (offline? carry their" \
        "wheels and set PINCHPOINT_GPU_WHEELS)"
    exit 1
}

# Route 3, nothing here has a CUDA torch: a separate venv, never touching .venv, with the lock's
# pins but torch (offline-capable where the machine has those wheels), then torch==<the lock's
# version> from PyPI with its dependencies, which on Linux x86_64 is the CUDA build. pip's own
# configuration is bypassed for that one install: a local wheel of the CPU build (2.13.0+cpu) also
# satisfies ==2.13.0 and would win. A stamp lets later runs reuse the venv.
make_cuda_venv() {
    local venv=$1 torch_version=$TORCH_LOCKED stamp=$1/.installed-stamp-torch-$TORCH_LOCKED reqs rc
    if [ -f "$stamp" ] && [ -n "$(torch_cuda "$venv/bin/python")" ]; then
        return 0
    fi
    echo "gpu_check: no CUDA build of torch here; installing torch==$torch_version (CUDA) and" \
        "pinchpoint into $venv (several GB, needs PyPI)" >&2
    reqs=$(mktemp) || return 1
    grep -v '^torch==' requirements.lock >"$reqs"
    {
        { [ -x "$venv/bin/python" ] || python3 -m venv "$venv"; } &&
            timeout 1800 "$venv/bin/python" -m pip install -q --no-deps -r "$reqs" &&
            env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL -u PIP_CONSTRAINT \
                PIP_CONFIG_FILE=/dev/null timeout 1800 "$venv/bin/python" -m pip install -q \
                --index-url "${PINCHPOINT_GPU_TORCH_INDEX:-https://pypi.org/simple}" \
                "torch==$torch_version" &&
            timeout 600 "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
    } >&2
    rc=$?
    rm -f "$reqs"
    [ "$rc" = 0 ] || return 1
    "$venv/bin/python" -m pip check >&2 || echo "gpu_check: (pip check complains; going on)" >&2
    [ -n "$(torch_cuda "$venv/bin/python")" ] || return 1
    touch "$stamp"
}

CUDA_VENV=${PINCHPOINT_GPU_VENV:-$ROOT/.venv-gpu}
if [ -n "${PINCHPOINT_GPU_CHECK_PYTHON:-}" ]; then
    PY=$PINCHPOINT_GPU_CHECK_PYTHON
    if [ "$DRY" = 0 ] && [ -z "$(torch_cuda "$PY")" ]; then
        echo "gpu_check: FAIL: PINCHPOINT_GPU_CHECK_PYTHON=$PY has no CUDA build of torch"
        exit 1
    fi
elif [ "$DRY" = 1 ]; then
    # A dry run needs no CUDA: the project's venv, built first if it is missing.
    PY=.venv/bin/python
    if [ ! -x "$PY" ]; then
        echo "gpu_check: .venv is missing: building it with make .venv/.installed-stamp" >&2
        make .venv/.installed-stamp >&2 || PY=python3
    fi
elif [ -x .venv/bin/python ] && [ -n "$(torch_cuda .venv/bin/python)" ]; then
    PY=.venv/bin/python  # route 1: the project's venv already has a CUDA torch
elif [ -f "$CUDA_VENV/.installed-stamp-torch-$TORCH_LOCKED" ] &&
    [ -n "$(torch_cuda "$CUDA_VENV/bin/python")" ]; then
    PY=$CUDA_VENV/bin/python  # route 3, built by an earlier run
elif [ -n "$(torch_cuda python3)" ]; then
    PY=python3
    use_image_python
else
    if ! make_cuda_venv "$CUDA_VENV"; then
        echo "gpu_check: FAIL: a GPU is here ($GPU_NAME) but no CUDA build of torch could be" \
            "installed into $CUDA_VENV (offline? set PINCHPOINT_GPU_CHECK_PYTHON)"
        exit 1
    fi
    PY=$CUDA_VENV/bin/python
fi
# --- end of the interpreter section -------------------------------------------------------------

if [ "$DRY" = 0 ] &&
    ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: torch (CUDA $(torch_cuda "$PY")) cannot use the $GPU_NAME that nvidia-smi" \
        "lists (driver $DRIVER: too old for that CUDA?); nothing to check."
    exit 0
fi

# --- Where outputs go ---------------------------------------------------------------------------
if [ -n "${OUT:-}" ]; then
    WORK=$OUT/gpu-check
    mkdir -p "$WORK" || exit 2
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/pinchpoint-gpu-check.XXXXXX") || exit 2
fi
WORK=$(cd "$WORK" && pwd)
export PINCHPOINT_CACHE_DIR=$WORK/cache  # a fresh calibration, and the user's cache untouched
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1
export COLUMNS=100
PP=("$PY" -m pinchpoint)

# --- Helper files: the verifier, the planted GPU workloads, the Kineto recording -----------------
cat >"$WORK/verify.py" <<'PYEOF'
"""The checks of gpu_check.sh: read one command's output, print 'PASS<tab>figure' or
'FAIL<tab>reason' on one line. Reads JSON only (never imports torch), so it is quick."""

import fnmatch
import glob
import json
import os
import re
import statistics
import sys

SYNC_OPERATORS = {
    "cudaStreamSynchronize",
    "cudaDeviceSynchronize",
    "cudaEventSynchronize",
    "aten::_local_scalar_dense",
}

# Published dense peaks (no sparsity) from NVIDIA's datasheets: TFLOP/s for fp32 (CUDA cores),
# TF32, BF16 and FP16 tensor cores; memory bandwidth in GB/s. None: the card has no such unit.
# Matched in order against the name nvidia-smi and torch report (case-insensitive globs). The A10G
# is AWS's variant of the A10 with no NVIDIA datasheet: third-party figures.
# fmt: off
PUBLISHED = [
    # pattern           card              fp32  tf32   bf16   fp16   GB/s
    ("*H100*PCIe*",      "H100 PCIe",      51.0, 378.0, 756.0, 756.0, 2000),
    ("*H100*NVL*",       "H100 NVL",       60.0, 417.5, 835.5, 835.5, 3900),
    ("*H100*",           "H100 SXM",       67.0, 494.5, 989.5, 989.5, 3350),
    ("*H200*NVL*",       "H200 NVL",       60.0, 417.5, 835.5, 835.5, 4800),
    ("*H200*",           "H200 SXM",       67.0, 494.5, 989.5, 989.5, 4800),
    ("*A100*80GB*PCIe*", "A100 80GB PCIe", 19.5, 156.0, 312.0, 312.0, 1935),
    ("*A100*PCIe*",      "A100 40GB PCIe", 19.5, 156.0, 312.0, 312.0, 1555),
    ("*A100*80GB*",      "A100 80GB SXM",  19.5, 156.0, 312.0, 312.0, 2039),
    ("*A100*",           "A100 40GB SXM",  19.5, 156.0, 312.0, 312.0, 1555),
    ("NVIDIA L4",        "L4",             30.3,  60.0, 121.0, 121.0,  300),
    ("*A10G*",           "A10G",           35.0,  35.0,  70.0,  70.0,  600),
    ("*V100S*",          "V100S PCIe",     16.4,  None,  None, 130.0, 1134),
    ("*V100*PCIe*",      "V100 PCIe",      14.0,  None,  None, 112.0,  900),
    ("*V100*",           "V100 SXM2",      15.7,  None,  None, 125.0,  900),
    ("*T4",              "T4",              8.1,  None,  None,  65.0,  320),
]
# fmt: on


class Fail(Exception):
    """A check's failure, with its one-line reason."""


def need(condition, reason):
    if not condition:
        raise Fail(reason)


def load(path):
    need(os.path.exists(path), f"{os.path.basename(path)} was not written")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def ms(seconds):
    return f"{seconds * 1e3:.2f} ms"


def profile_facts(p, device, transfer_expected=True):
    """Check one Profile dict recorded on ``device``; a short figure of what it shows."""
    need(str(p.get("schema", "")).startswith("pinchpoint.profile/"), "not a pinchpoint profile")
    need(str(p.get("device", "")).startswith(device), f"device {p.get('device')!r}, not {device}")
    clock = (p.get("settings") or {}).get("clock")
    want_clock = "CudaClock" if device == "cuda" else "PerfClock"
    need(clock == want_clock, f"clock {clock!r}, not {want_clock}")
    steps = [s for s in p.get("steps", []) if not s.get("warmup") and s.get("sampled") is None]
    need(steps, "no measured steps")
    for s in steps:
        total = sum(s["phases"].values())
        need(
            abs(total - s["wall_s"]) <= 0.02 * s["wall_s"] + 1e-4,
            f"step {s['index']}: phases add to {ms(total)}, wall {ms(s['wall_s'])}",
        )
        need(s["phases"].get("forward", 0) > 0, f"step {s['index']}: no forward time")
        if p.get("mode") == "train":
            need(s["phases"].get("backward", 0) > 0, f"step {s['index']}: no backward time")
    phases = (p.get("summary") or {}).get("phases") or {}
    transfer = phases.get("transfer", {})
    operators = p.get("operators") or []
    op_total = sum(o["self_s"] for o in operators)
    syncs = [o for o in operators if o["name"] in SYNC_OPERATORS]
    sync_share = sum(o["self_s"] for o in syncs) / op_total if op_total > 0 else 0.0
    memory = p.get("memory") or {}
    if device == "cuda":
        need(memory.get("source") == "cuda", f"memory source {memory.get('source')!r}, not cuda")
        need((memory.get("device_peak_bytes") or 0) > 0, "no device memory peak")
        need(operators, "no operators profiled")
        need(
            any(o["name"].startswith("cuda") for o in operators),
            "no CUDA runtime calls among the operators (was CUDA profiled?)",
        )
        if transfer_expected:
            need(transfer.get("median_s", 0) > 0, "transfer phase is zero on cuda")
    else:
        need(transfer.get("median_s", 0) == 0, "transfer phase nonzero on cpu")
    step = (p.get("summary") or {}).get("step_time_s") or statistics.median(
        s["wall_s"] for s in steps
    )
    names = ",".join(sorted({o["name"].removeprefix("aten::") for o in syncs})) or "none"
    return (
        f"{clock}; step {ms(step)}; transfer {transfer.get('share', 0):.1%};"
        f" sync ops {sync_share:.1%} ({names})"
    )


def check_profile(path, device):
    return profile_facts(load(path), device)


def check_diagnose(path, device, expected=""):
    d = load(path)
    need(d.get("schema") == "pinchpoint.diagnosis/1", "not a pinchpoint diagnosis")
    planted = bool(expected)
    # The planted sync workload's batches already live on the device: no copy to time.
    figure = profile_facts(d["profile"], device, transfer_expected=expected != "sync_bound")
    findings = d.get("findings") or []
    principal = findings[0] if findings else None
    kind = principal["kind"] if principal else "none (healthy)"
    head = f"principal {kind}"
    if principal:
        head += f" ({principal.get('share', 0):.0%})"
    if device != "cuda":
        if planted:
            head += f" (cpu: {expected} not asserted)"
        return f"{head}; {figure}"
    if planted:
        need(principal is not None and kind == expected, f"{head}, not {expected}")
        evidence = principal.get("evidence") or {}
        if expected == "sync_bound":
            ops = evidence.get("sync_operators") or []
            need("aten::_local_scalar_dense" in ops, f"sync ops {ops}: the .item() calls missing")
        if expected == "host_transfer_bound":
            need(evidence.get("transfer_share", 0) >= 0.05, "transfer share below 5 %")
    elif principal is not None and kind == "sync_bound":
        # The zoo workloads never synchronise themselves: a sync_bound made of
        # cudaDeviceSynchronize alone points at the recorder's own end-of-step wait.
        ops = (principal.get("evidence") or {}).get("sync_operators") or []
        need(
            set(ops) != {"cudaDeviceSynchronize"},
            "principal sync_bound from cudaDeviceSynchronize alone, which the zoo workload never"
            " calls (the recorder's own end-of-step wait?)",
        )
    return f"{head}; {figure}"


def lookup(name):
    for pattern, card, *peaks in PUBLISHED:
        if fnmatch.fnmatch(name.lower(), pattern.lower()):
            return card, peaks
    return None, None


def check_calibrate(folder, device, name):
    files = sorted(glob.glob(os.path.join(folder, "*.json")), key=os.path.getmtime)
    files = [f for f in files if os.path.basename(f).startswith(device)]
    need(files, f"no {device} calibration in {folder}")
    c = load(files[-1])
    flops = c.get("flops") or {}
    bandwidth = c.get("bandwidth_bytes_per_s") or 0
    need(flops.get("float32", 0) > 0, "no float32 peak")
    need(bandwidth > 0, "no bandwidth")
    need(str(c.get("device", "")).startswith(device), f"device {c.get('device')!r}")
    card, peaks = lookup(name) if device == "cuda" else (None, None)
    measured = {
        "fp32": flops.get("float32"),
        "tf32": None,  # calibrate measures float32 as torch runs it, not TF32 separately
        "bf16": flops.get("bfloat16"),
        "fp16": flops.get("float16"),
    }
    keys = ("fp32", "tf32", "bf16", "fp16", "gbs")
    published = dict(zip(keys, peaks or [None] * len(keys), strict=True))
    rows = [("", "measured", f"published ({card or 'n/a: card not in the table'})")]

    def tf(x):
        return "n/a" if x is None else f"{x:g}"

    for key in ("fp32", "tf32", "bf16", "fp16"):
        got = measured[key] / 1e12 if measured[key] else None
        rows.append((f"{key} TFLOP/s", "-" if got is None else f"{got:.1f}", tf(published[key])))
    rows.append(("memory GB/s", f"{bandwidth / 1e9:.0f}", tf(published["gbs"])))
    rows.append(("dispatch us", f"{c.get('dispatch_s', 0) * 1e6:.2f}", "n/a"))
    table = "\n".join(f"{a:<16}{b:>10}  {c_}" for a, b, c_ in rows)
    work = os.path.dirname(os.path.dirname(folder))  # WORK/cache/calibration
    with open(os.path.join(work, "calibrate-vs-published.txt"), "w", encoding="utf-8") as f:
        f.write(f"{name}\n{table}\n")
    print(table, file=sys.stderr)
    parts = []
    # Cards without bf16 (V100, T4) show their fp16 tensor cores instead.
    for key in ("fp32", "tf32", "bf16" if published["bf16"] or not peaks else "fp16"):
        got = measured[key] / 1e12 if measured[key] else None
        pub = published[key]
        if got is None and pub is None:
            continue
        parts.append(f"{key} {'-' if got is None else f'{got:.1f}'}/{tf(pub)}")
    if peaks and published["fp32"] and measured["fp32"] / 1e12 > 1.25 * published["fp32"]:
        parts[0] += " (TF32 on?)"
    gbs = f"{bandwidth / 1e9:.0f}/{tf(published['gbs'])}"
    figure = f"TFLOP/s measured/published: {' '.join(parts)}; GB/s {gbs}"
    if peaks:
        # A measurement above the datasheet means the timing is wrong (an unsynchronised timer,
        # a cache-resident buffer), not a fast card. fp32 may use TF32 when torch allows it.
        ceiling = max(x for x in (published["fp32"], published["tf32"]) if x is not None)
        need(measured["fp32"] / 1e12 <= 1.25 * ceiling, f"fp32 above the published peak: {figure}")
        if measured["bf16"] and published["bf16"]:
            need(
                measured["bf16"] / 1e12 <= 1.25 * published["bf16"],
                f"bf16 above the published peak: {figure}",
            )
        need(bandwidth / 1e9 <= 1.25 * published["gbs"], f"bandwidth above published: {figure}")
    if device != "cuda":
        rates = " ".join(f"{k} {v / 1e9:.0f}" for k, v in measured.items() if v)
        return f"cpu GFLOP/s {rates}; GB/s {bandwidth / 1e9:.0f} (no published figures)"
    return f"{card or name}: {figure}"


def check_nccl(path, device):
    p = load(path)
    dist = p.get("distributed") or {}
    want = "nccl" if device == "cuda" else "gloo"
    need(dist.get("backend") == want, f"backend {dist.get('backend')!r}, not {want}")
    need(dist.get("world_size") == 1, f"world size {dist.get('world_size')}")
    ranks = p.get("ranks") or []
    need(len(ranks) == 1, f"{len(ranks)} rank profiles, not 1")
    figure = profile_facts(ranks[0], device)
    comm = [s["comm_s"] for s in ranks[0]["steps"] if s.get("comm_s") is not None]
    need(comm and max(comm) > 0, "no all-reduce time measured")
    return f"backend {want}, all-reduce {ms(statistics.median(comm))}/step; {figure}"


def check_trace(path, device):
    t = load(path)
    need(t.get("schema") == "pinchpoint.trace/1", "not a pinchpoint trace analysis")
    ranks = t.get("ranks") or []
    need(ranks, "no rank in the trace")
    r = ranks[0]
    steps = r.get("steps") or []
    need(steps, "no ProfilerStep steps found")
    ops = r.get("operators") or []
    if device != "cuda":
        return f"cpu-only trace: {len(steps)} steps, {len(ops)} operators, gpu {r.get('gpu')}"
    gpu = r.get("gpu")
    need(gpu is not None, "no GPU section: no device events found")
    kernels = gpu.get("kernels") or {}
    totals = kernels.get("totals") or {}
    compute = (kernels.get("by_kind") or {}).get("computation") or {}
    need(totals and compute.get("count", 0) > 0, "no GPU computation kernels found")
    kind = (r.get("device") or {}).get("kind")
    need(kind == "cuda", f"device kind {kind!r}")
    copies = ((kernels.get("by_kind") or {}).get("memory") or {}).get("count", 0)
    return (
        f"{compute['count']} computation kernels ({len(totals)} distinct names), {copies} copies,"
        f" {len(steps)} steps; compute {gpu.get('compute_share', 0):.0%}, idle"
        f" {gpu.get('idle_share', 0):.0%} of the span; {t.get('confidence')} confidence"
    )


def check_optimize(folder, device):
    o = load(os.path.join(folder, "optimize.json"))
    need(o.get("schema") == "pinchpoint.optimize/1", "not a pinchpoint optimize result")
    trials = o.get("trials") or []
    need(trials, "no trial ran")
    if device == "cuda":
        need((o.get("machine") or {}).get("gpu"), "the result names no GPU")
    principal = (o.get("diagnosis") or {}).get("principal")
    ran = [t for t in trials if t.get("speedup") is not None]
    plural = "" if len(trials) == 1 else "s"
    head = f"{len(trials)} trial{plural} ({len(ran)} timed) in {o.get('seconds', 0):.0f} s"
    pick = o.get("best")
    label = "best"
    if pick is None:
        pick, label = o.get("best_effort"), "none accepted; best effort"
    if pick is not None:
        t = trials[pick]
        x = t.get("speedup")
        head += f"; {label} {'+'.join(t.get('labels', []))} {x:.2f}x" if x else f"; {label} -"
    return f"{head}; diagnosis: {principal or 'healthy'}"


def check_pytest(log, rc):
    with open(log, encoding="utf-8", errors="replace") as f:
        text = f.read()
    pattern = r"(\d+) (passed|failed|skipped|errors?|deselected)"
    counts = {k: int(n) for n, k in re.findall(pattern, text)}
    figure = ", ".join(f"{n} {k}" for k, n in counts.items() if k != "deselected") or "no summary"
    need(rc == "0", f"pytest exit {rc}: {figure}")
    need(counts.get("passed", 0) > 0, f"no gpu test passed: {figure} (does torch see the GPU?)")
    return figure


def check_run(path, device, recorded):
    """``pinchpoint run`` on an unmodified script: its steps found on ``device``. The script's own
    copies to the device are part of ``other``, not a transfer phase."""
    d = load(path)
    need(d.get("schema") == "pinchpoint.diagnosis/1", "not a pinchpoint diagnosis")
    p = d["profile"]
    need(p.get("mode") == "train", f"mode {p.get('mode')!r}, not train")
    need(len(p["steps"]) == int(recorded), f"{len(p['steps'])} steps found, not {recorded}")
    figure = profile_facts(p, device, transfer_expected=False)
    findings = d.get("findings") or []
    kind = findings[0]["kind"] if findings else "none (healthy)"
    return f"{len(p['steps'])} steps found, principal {kind}; {figure}"


def main():
    what, args = sys.argv[1], sys.argv[2:]
    try:
        figure = globals()[f"check_{what}"](*args)
        print(f"PASS\t{figure}")
    except Fail as exc:
        print(f"FAIL\t{exc}")
    except Exception as exc:  # a broken output file must still make one row
        print(f"FAIL\tcould not read the output: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
PYEOF

cat >"$WORK/planted_gpu.py" <<'PYEOF'
"""Two GPU mistakes users really make, planted for gpu_check.sh (the zoo's planted workloads are
CPU ones). Each function returns a pinchpoint.Workload; run with --device cuda."""

import torch
from torch import nn

import pinchpoint


def host_transfer():
    """host_transfer_bound: 77 MB float32 image batches in pageable host memory, copied to the
    device every step, into a model that only pools and classifies them."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 10))
    generator = torch.Generator().manual_seed(0)
    data = [torch.randn(128, 3, 224, 224, generator=generator) for _ in range(3)]
    return pinchpoint.Workload(model=model, data=data, name="planted-host-transfer")


class LoggedMLP(nn.Module):
    """An MLP whose forward logs every layer's activation norm with .item(): a sync per layer."""

    def __init__(self, width: int = 2048, depth: int = 8) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.head = nn.Linear(width, 10)
        self.norms: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.relu(layer(x))
            self.norms.append(x.norm().item())
        del self.norms[:-64]
        return self.head(x)


def sync():
    """sync_bound: the LoggedMLP trained on batches that already live on the device (no copy)."""
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = LoggedMLP()
    generator = torch.Generator().manual_seed(0)
    data = [
        (
            torch.randn(1024, 2048, generator=generator).to(device),
            torch.randint(0, 10, (1024,), generator=generator).to(device),
        )
        for _ in range(4)
    ]
    return pinchpoint.Workload(
        model=model,
        data=data,
        loss=lambda m, batch: nn.functional.cross_entropy(m(batch[0]), batch[1]),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        name="planted-sync",
    )
PYEOF

cat >"$WORK/kineto_trace.py" <<'PYEOF'
"""Record a Kineto trace of a few training steps with torch.profiler and export it (gzipped)."""

import gzip
import os
import shutil
import sys

import torch
from torch.profiler import ProfilerActivity, profile, schedule

device, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
model = torch.nn.Sequential(
    torch.nn.Linear(512, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 10)
).to(device)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(256, 512), torch.randint(0, 10, (256,))
activities = [ProfilerActivity.CPU]
if device == "cuda":
    activities.append(ProfilerActivity.CUDA)
with profile(activities=activities, schedule=schedule(wait=1, warmup=1, active=5)) as prof:
    for _ in range(7):
        xb, yb = x.to(device), y.to(device)
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        prof.step()
plain = out[: -len(".gz")]
prof.export_chrome_trace(plain)
with open(plain, "rb") as src, gzip.open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
os.remove(plain)
print(f"trace written to {out}")
PYEOF

# --- Running checks -----------------------------------------------------------------------------
BUDGET_S=${PINCHPOINT_GPU_CHECK_BUDGET_S:-450}
now_ms() {
    if [ -n "${EPOCHREALTIME:-}" ]; then
        local t=${EPOCHREALTIME/[.,]/}
        echo $((10#$t / 1000))
    else
        echo $(($(date +%s) * 1000))
    fi
}
START_MS=$(now_ms)
NAMES=() RESULTS=() SECONDS_TAKEN=() FIGURES=()
LIMIT=0 LOG=/dev/null

# last_error LOG: the reason a command failed, from its log, on one line.
last_error() {
    local line
    line=$(grep -E '^error:|Error|FAILED|Traceback' "$1" 2>/dev/null | tail -n 1)
    [ -n "$line" ] || line=$(grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n 1)
    printf '%s' "${line:0:110}"
}

# limited CMD...: run one command of a check under the check's limit, appending to its log; on
# failure print the check's FAIL line and return 1.
limited() {
    echo "\$ $*" >>"$LOG"
    timeout -k 10 "$LIMIT" "$@" >>"$LOG" 2>&1
    local rc=$?
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        printf 'FAIL\ttimed out after %s s (%s)\n' "$LIMIT" "$(basename "$LOG")"
        return 1
    elif [ "$rc" != 0 ]; then
        printf 'FAIL\texit %s: %s\n' "$rc" "$(last_error "$LOG")"
        return 1
    fi
}

verify() { "$PY" "$WORK/verify.py" "$@" 2>>"$LOG"; }

# check NAME LIMIT_S FUNCTION ARGS...: run one check within its limit and the shared budget.
check() {
    local name=$1 limit=$2 fn=$3 left t0 out result figure
    shift 3
    left=$((BUDGET_S - ($(now_ms) - START_MS) / 1000))
    if [ "$left" -lt 20 ]; then
        record "$name" FAIL 0 "not run: the ${BUDGET_S} s budget was spent"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    LIMIT=$limit LOG=$WORK/$name.log
    : >"$LOG"
    printf 'gpu_check: %-22s ...' "$name" >&2
    t0=$(now_ms)
    out=$("$fn" "$@" | tail -n 1)
    result=${out%%$'\t'*}
    figure=${out#*$'\t'}
    case "$result" in
        PASS | FAIL | SKIP) ;;
        *) result=FAIL figure="no verdict: $(last_error "$LOG")" ;;
    esac
    echo "verdict: $out" >>"$LOG"
    record "$name" "$result" $(($(now_ms) - t0)) "$figure"
    printf ' %s\n' "$result" >&2
}

record() {  # record NAME RESULT MILLISECONDS FIGURE
    NAMES+=("$1") RESULTS+=("$2") FIGURES+=("$4")
    SECONDS_TAKEN+=("$(printf '%d.%d' $(($3 / 1000)) $(($3 % 1000 / 100)))")
}

# --- The checks ---------------------------------------------------------------------------------
c_calibrate() {
    limited "${PP[@]}" calibrate --device "$DEVICE" --refresh || return 0
    verify calibrate "$PINCHPOINT_CACHE_DIR/calibration" "$DEVICE" "$GPU_NAME"
}

c_profile() {  # c_profile TARGET JSON
    limited "${PP[@]}" profile "$1" --device "$DEVICE" --steps 10 --warmup 2 --json "$WORK/$2" \
        || return 0
    verify profile "$WORK/$2" "$DEVICE"
}

c_diagnose() {  # c_diagnose TARGET JSON [EXPECTED_KIND]
    limited "${PP[@]}" diagnose "$1" --device "$DEVICE" --steps 10 --warmup 2 \
        --json "$WORK/$2" || return 0
    verify diagnose "$WORK/$2" "$DEVICE" "${3:-}"
}

c_run() {  # an unmodified training script under `pinchpoint run`: 2 warm-up, 2 sampled, 10 steps
    limited "${PP[@]}" run --steps 10 --warmup 2 --json "$WORK/run-script.json" \
        tests/scripts/plain_train.py --device "$DEVICE" --epochs 2 || return 0
    verify run "$WORK/run-script.json" "$DEVICE" 14
}

c_trace() {
    limited "$PY" "$WORK/kineto_trace.py" "$DEVICE" "$WORK/kineto-trace.json.gz" || return 0
    limited "${PP[@]}" trace "$WORK/kineto-trace.json.gz" --json "$WORK/kineto-trace-analysis.json" \
        || return 0
    verify trace "$WORK/kineto-trace-analysis.json" "$DEVICE"
}

c_nccl() {
    limited "${PP[@]}" profile zoo:digits-cnn --nproc 1 --device "$DEVICE" --steps 10 --warmup 2 \
        --timeout $((LIMIT > 40 ? LIMIT - 15 : LIMIT)) --json "$WORK/nccl-nproc1.json" || return 0
    verify nccl "$WORK/nccl-nproc1.json" "$DEVICE"
}

c_pytest() {
    if [ "$DRY" = 1 ]; then
        printf 'SKIP\tnot run in a cpu dry run (every gpu test would skip)\n'
        return 0
    fi
    # Only the files that hold gpu tests: collecting the rest would import what a GPU image's
    # python3 may lack (playwright for the browser tests) and take longer.
    local files=()
    mapfile -t files < <(grep -l 'mark\.gpu' tests/test_*.py)
    echo "\$ $PY -m pytest -m gpu ${files[*]}" >>"$LOG"
    timeout -k 10 "$LIMIT" "$PY" -m pytest -m gpu -q -p no:cacheprovider \
        --junitxml="$WORK/pytest-gpu.xml" "${files[@]}" >>"$LOG" 2>&1
    local rc=$?
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        printf 'FAIL\ttimed out after %s s (%s)\n' "$LIMIT" "$(basename "$LOG")"
        return 0
    fi
    verify pytest "$LOG" "$rc"
}

c_optimize() {  # c_optimize TIME_BUDGET
    local out=$WORK/optimize-bert-base
    limited "${PP[@]}" optimize zoo:bert-base --device "$DEVICE" --time-budget "$1" --out "$out" \
        || return 0
    # The chosen model is hundreds of MB: checked, then deleted so it never travels back.
    if [ -f "$out/model.pt" ]; then
        echo "model.pt: $(du -h "$out/model.pt" | cut -f1) (deleted)" >>"$LOG"
        rm -f "$out/model.pt"
    fi
    verify optimize "$out" "$DEVICE"
}

if [ "$DRY" = 1 ]; then
    echo "gpu_check: dry run on the cpu (PINCHPOINT_GPU_CHECK_DEVICE=cpu), outputs in $WORK" >&2
else
    TORCH=$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null)
    echo "gpu_check: $GPU_NAME (driver $DRIVER), torch $TORCH, $PY; outputs in $WORK" >&2
fi

PLANTED=$WORK/planted_gpu.py
OPTIMIZE_BUDGET=90s
[ "$DRY" = 1 ] && OPTIMIZE_BUDGET=30s

check calibrate 120 c_calibrate
check profile-digits-cnn 120 c_profile zoo:digits-cnn profile-digits-cnn.json
check diagnose-digits-cnn 120 c_diagnose zoo:digits-cnn diagnose-digits-cnn.json
check profile-tiny-gpt 120 c_profile zoo:tiny-gpt profile-tiny-gpt.json
check diagnose-tiny-gpt 120 c_diagnose zoo:tiny-gpt diagnose-tiny-gpt.json
check planted-transfer 120 c_diagnose "$PLANTED:host_transfer" planted-transfer.json \
    host_transfer_bound
check planted-sync 120 c_diagnose "$PLANTED:sync" planted-sync.json sync_bound
check run-script 120 c_run
check kineto-trace 120 c_trace
check nccl-nproc1 180 c_nccl
check pytest-gpu 300 c_pytest
check optimize-bert-base 240 c_optimize "$OPTIMIZE_BUDGET"

# --- The table ----------------------------------------------------------------------------------
failed=0
{
    if [ "$DRY" = 1 ]; then
        echo "pinchpoint GPU check: DRY RUN on the cpu ($(uname -n)), outputs in $WORK"
    else
        echo "pinchpoint GPU check: $GPU_NAME (driver $DRIVER), torch $TORCH; outputs in $WORK"
    fi
    printf '%-20s %-6s %8s  %s\n' check result seconds "figure or reason"
    for i in "${!NAMES[@]}"; do
        printf '%-20s %-6s %8s  %s\n' "${NAMES[$i]}" "${RESULTS[$i]}" "${SECONDS_TAKEN[$i]}" \
            "${FIGURES[$i]}"
        [ "${RESULTS[$i]}" = FAIL ] && failed=$((failed + 1))
    done
    echo "total $((($(now_ms) - START_MS) / 1000)) s; ${failed} of ${#NAMES[@]} checks failed"
} | tee "$WORK/summary.txt"
failed=$(grep -c '^[^ ]* *FAIL ' "$WORK/summary.txt")
[ "$failed" = 0 ]
