"""The result registry: every saved kind is recognised by its schema and read back by one call."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

import pinchpoint
from pinchpoint import results
from pinchpoint.diagnosis import Diagnosis
from pinchpoint.errors import ProfileFormatError
from pinchpoint.report import BUILDERS, Report, register_builder

DATA = Path(__file__).parent / "data"
SAVED_DIAGNOSIS = DATA / "golden" / "slow-collate.diagnosis.json"
TRACE = DATA / "traces" / "tiny_compare_base.json.gz"


def test_every_saved_kind_has_one_registered_type_and_schema() -> None:
    kinds = [t.kind for t in results.types()]
    assert kinds == ["profile", "diagnosis", "trace", "optimize", "lr_find", "compare", "scale"]
    for t in results.types():
        # The registry's schema is the one the class writes.
        module = __import__(t.module, fromlist=["SCHEMA"])
        assert t.schema == module.SCHEMA, t.kind
        assert results.result_type(t.schema) is t
        assert results.result_type(t.family + "/9") is t  # a later version is still recognised
    assert results.result_type("pinchpoint.nothing/1") is None
    assert results.result_type(None) is None


def test_load_result_reads_a_saved_diagnosis_and_its_profile(tmp_path: Path) -> None:
    diagnosis = pinchpoint.load_result(SAVED_DIAGNOSIS)
    assert isinstance(diagnosis, Diagnosis)
    assert results.kind_of(diagnosis) == "diagnosis"
    assert isinstance(diagnosis, results.Result)
    assert diagnosis.findings and diagnosis.findings[0].kind == "input_bound"
    saved = diagnosis.profile.save(tmp_path / "profile.json")
    profile = pinchpoint.load_result(saved)
    assert profile == diagnosis.profile
    assert results.kind_of(profile) == "profile"
    assert results.kind_of(orjson.loads(saved.read_bytes())) == "profile"


def test_load_result_analyses_a_trace_and_reads_its_saved_analysis(tmp_path: Path) -> None:
    analysis = pinchpoint.load_result(TRACE)
    assert results.kind_of(analysis) == "trace"
    saved = analysis.save(tmp_path / "trace.json")
    again = pinchpoint.load_result(saved)
    # A saved trace analysis loads back into the same Profiles, findings and straggler test.
    assert results.kind_of(again) == "trace"
    assert again.ranks == analysis.ranks and again.findings == analysis.findings
    assert again.to_dict() == orjson.loads(saved.read_bytes())
    assert Report.build(again) == Report.build(analysis)


def test_bad_files_fail_in_one_line_naming_the_file(tmp_path: Path) -> None:
    not_ours = tmp_path / "other.json"
    not_ours.write_text('{"schema": "someone.else/1"}')
    with pytest.raises(
        ProfileFormatError,
        match=(
            r"other\.json is not a saved pinchpoint result .*expected a profile, diagnosis, .*"
            r" or scaling measurement\)"
        ),
    ):
        pinchpoint.load_result(not_ours)
    broken = tmp_path / "broken.json"
    data = orjson.loads(SAVED_DIAGNOSIS.read_bytes())
    data["schema"] = "pinchpoint.diagnosis/2"
    broken.write_bytes(orjson.dumps(data))
    with pytest.raises(ProfileFormatError, match=r"^.*broken\.json: not a pinchpoint diagnosis"):
        pinchpoint.load_result(broken)
    with pytest.raises(ProfileFormatError, match="no such file"):
        pinchpoint.load_result(tmp_path / "missing.json")


def test_a_result_without_a_report_says_so(tmp_path: Path) -> None:
    scale = tmp_path / "scale.json"
    scale.write_text('{"schema": "pinchpoint.scale/1"}')
    with pytest.raises(ProfileFormatError, match="is a scaling measurement, which has no report"):
        Report.load(scale)
    with pytest.raises(TypeError, match="a Report is built from a profile, diagnosis"):
        Report.build(object())
    with pytest.raises(ValueError, match="no result type 'nothing'"):
        register_builder("nothing", BUILDERS["profile"])


def test_an_optimize_folder_loads_as_its_optimize_json(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    shutil.copy(SAVED_DIAGNOSIS, folder / "optimize.json")  # any result: the folder is resolved
    assert isinstance(pinchpoint.load_result(folder), Diagnosis)


def test_the_registry_loads_without_torch() -> None:
    code = (
        "import sys, pinchpoint\n"
        f"pinchpoint.load_result({str(SAVED_DIAGNOSIS)!r})\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
