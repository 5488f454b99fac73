"""The public surface: what `import pinchpoint` exposes, and that it stays free of torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pinchpoint

TRACES = Path(__file__).parent / "data" / "traces"


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(out.split())


def test_import_does_not_load_torch() -> None:
    loaded = _modules_after(
        "import pinchpoint, pinchpoint.zoo, pinchpoint.targets, pinchpoint.machine.calibrate, "
        "pinchpoint.analyzers, pinchpoint.renderers, pinchpoint.remedies, pinchpoint.trials, "
        "pinchpoint.optimizer; pinchpoint.remedies.Quantize(); pinchpoint.remedies.Prune()"
    )
    assert "pinchpoint" in loaded
    assert not {m for m in loaded if m == "torch" or m.startswith("torch.")}


def test_loading_a_saved_profile_does_not_load_torch(tmp_path) -> None:
    path = tmp_path / "p.json"
    pinchpoint.Profile(name="x", mode="train", device="cpu").save(path)
    loaded = _modules_after(f"import pinchpoint; pinchpoint.Profile.load({str(path)!r})")
    assert "torch" not in loaded


def test_analysing_a_trace_does_not_load_torch() -> None:
    loaded = _modules_after(
        "import pinchpoint; a = pinchpoint.load_trace("
        f"{str(TRACES / 'two_ranks_a')!r}, workers=1); pinchpoint.diagnose(a); a.to_json()"
    )
    assert "torch" not in loaded
    # numpy's masked arrays cost about 12 ms to import in every process that analyses a rank;
    # np.unique, np.percentile and float np.median import them on first use.
    assert "numpy.ma" not in loaded


def test_public_api_is_pinned() -> None:
    assert set(pinchpoint.__all__) == {
        "KINDS",
        "Comparison",
        "compare",
        "Diagnosis",
        "Finding",
        "Remedy",
        "diagnose",
        "PHASES",
        "DeviceError",
        "PinchpointError",
        "Profile",
        "ProfileFormatError",
        "Recorder",
        "Step",
        "TraceAnalysis",
        "TraceFormatError",
        "Workload",
        "WorkloadError",
        "__version__",
        "load_trace",
        "profile",
        "OptimizeResult",
        "Trial",
        "apply",
        "optimize",
        "remedies",
        "trial",
        "launch",
        "load_result",
        "merge",
        "scale",
        "ScaleResult",
    }
    for name in pinchpoint.__all__:
        assert getattr(pinchpoint, name) is not None


def test_lazy_names_resolve_to_the_recorder() -> None:
    from pinchpoint.recorders import Recorder, profile

    assert pinchpoint.Recorder is Recorder
    assert pinchpoint.profile is profile
    assert "Recorder" in dir(pinchpoint)
