"""The codec of saved results: real files round-trip byte for byte; its per-field rules."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest

import pinchpoint
from pinchpoint import codec, results
from pinchpoint._profile import Profile, Step
from pinchpoint.diagnosis import Diagnosis
from pinchpoint.errors import ProfileFormatError
from pinchpoint.stragglers import StragglerReport
from pinchpoint.trials.trial import TrainingComparison

DATA = Path(__file__).parent / "data"
SAVED_DIAGNOSIS = DATA / "golden" / "slow-collate.diagnosis.json"
TRACES = DATA / "traces"
# Saved by `pinchpoint scale zoo:ddp-balanced` and `pinchpoint lr-find` on a CPU machine.
SAVED_SCALE = DATA / "saved" / "scale.json"
SAVED_LR = DATA / "saved" / "lr.json"
SAVED_OPTIMIZE = DATA / "saved" / "optimize.json"


def _dump(data: Any) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2)


def _real_data(kind: str) -> dict[str, Any]:
    """A real run's saved data of a registered kind."""
    if kind == "profile":
        return orjson.loads(SAVED_DIAGNOSIS.read_bytes())["profile"]  # type: ignore[no-any-return]
    if kind == "diagnosis":
        return orjson.loads(SAVED_DIAGNOSIS.read_bytes())  # type: ignore[no-any-return]
    if kind == "lr_find":
        return orjson.loads(SAVED_LR.read_bytes())  # type: ignore[no-any-return]
    if kind == "optimize":
        return orjson.loads(SAVED_OPTIMIZE.read_bytes())  # type: ignore[no-any-return]
    if kind == "scale":
        return orjson.loads(SAVED_SCALE.read_bytes())  # type: ignore[no-any-return]
    if kind == "trace":
        return orjson.loads((DATA / "golden" / "a100-nccl.trace.json").read_bytes())  # type: ignore[no-any-return]
    if kind == "compare":
        a, b = TRACES / "tiny_compare_base.json.gz", TRACES / "tiny_compare_test.json.gz"
        return pinchpoint.compare(a, b).to_dict()  # type: ignore[no-any-return]
    raise AssertionError(f"no real data for {kind}")


@pytest.mark.parametrize("kind", [t.kind for t in results.types()])
def test_every_registered_result_re_encodes_a_real_file_identically(kind: str) -> None:
    """encode(decode(data)) is stable for every result type: no field is saved one way only."""
    rtype = next(t for t in results.types() if t.kind == kind)
    first = rtype.decode(_real_data(kind)).to_dict()
    again = rtype.decode(orjson.loads(_dump(first))).to_dict()
    assert _dump(again) == _dump(first)
    assert first["schema"] == rtype.schema


def test_files_saved_by_the_tree_re_save_byte_for_byte() -> None:
    for path in (SAVED_SCALE, SAVED_LR):
        assert _dump(pinchpoint.load_result(path).to_dict()) == path.read_bytes()
    scale = pinchpoint.load_result(SAVED_SCALE)
    assert [(p.nproc, p.global_batch) for p in scale.points] == [(1, 64), (2, 128)]
    assert scale.points[1].speedup == pytest.approx(1.43196, abs=1e-5)
    assert scale.points[1].efficiency == pytest.approx(0.71598, abs=1e-5)
    assert scale.to_dict()["reference_nproc"] == 1  # derived, written for readers
    assert scale.profiles == []  # not saved
    lr = pinchpoint.load_result(SAVED_LR)
    assert (lr.optimizer, len(lr.lrs), lr.stopped_early) == ("Adam", 40, False)
    assert lr.suggestion == pytest.approx(3.4551e-3, rel=1e-4)
    assert list(lr.to_dict())[:3] == ["schema", "optimizer", "suggestion"]
    opt = pinchpoint.load_result(SAVED_OPTIMIZE)
    assert _dump(opt.to_dict()) == SAVED_OPTIMIZE.read_bytes().rstrip(b"\n")
    chosen = opt.chosen
    assert chosen is not None and chosen.trial is not None and chosen.trial.accepted
    assert chosen.candidate.short == "dataloader(num_workers=2, persistent_workers=True)"
    assert chosen.trial.speedup == pytest.approx(5.498, abs=1e-3)
    assert chosen.workload is None  # the model is in its own file


def test_an_older_file_without_the_newer_keys_loads_with_defaults() -> None:
    data = orjson.loads(SAVED_DIAGNOSIS.read_bytes())
    diagnosis = Diagnosis.from_dict(data)
    assert diagnosis.principal is not None and diagnosis.principal.kind == "input_bound"
    assert diagnosis.principal.share == pytest.approx(0.91347, abs=1e-5)
    assert all(f.rank_reason == "" for f in diagnosis.findings)  # saved before it existed
    profile = data["profile"]
    for step in profile["steps"]:
        assert "comm_s" not in step and "lr" not in step
    for op in profile["operators"]:
        op.pop("work_s", None)
    profile.pop("device_timeline", None)
    loaded = Profile.from_dict(profile)
    assert len(loaded.steps) == 9
    assert loaded.steps[3].wall_s == pytest.approx(0.010597, abs=1e-6)
    assert loaded.steps[3].comm_s is None and loaded.compilation is None
    assert all(o.work_s is None for o in loaded.operators)
    assert "compilation" not in loaded.to_dict()
    assert "comm_s" not in loaded.to_dict()["steps"][3]


def test_non_finite_floats_are_strings_and_come_back() -> None:
    step = Step(0, 0.5, {"forward": 0.5}, loss=math.nan, grad_norm=math.inf, comm_s=0.1)
    data = step.to_dict()
    assert (data["loss"], data["grad_norm"], data["comm_s"]) == ("NaN", "Infinity", 0.1)
    back = Step.from_dict(orjson.loads(_dump(data)))
    assert back.grad_norm == math.inf and back.loss is not None and math.isnan(back.loss)
    assert Step.from_dict({**data, "grad_norm": "-Infinity"}).grad_norm == -math.inf
    assert back.comm_s == 0.1


def test_trial_records_write_non_finite_as_null() -> None:
    compared = TrainingComparison(20, 2, 1, math.nan, 1.5, 0.0, 0.0, (math.nan,), (1.5,), True)
    data = compared.to_dict()
    assert data["loss_baseline"] is None and data["losses_baseline"] == [None]
    back = TrainingComparison.from_dict(orjson.loads(_dump(data)))
    assert math.isnan(back.loss_baseline) and math.isnan(back.losses_baseline[0])
    assert back.losses_candidate == (1.5,)


def test_a_straggler_report_from_a_real_trace_round_trips() -> None:
    report = pinchpoint.load_trace(TRACES / "two_ranks_a").stragglers
    assert report is not None
    data = report.to_dict()
    assert [r["rank"] for r in data["per_rank"]] == [0, 1]
    assert data["per_rank"][1]["median_busy_s"] == pytest.approx(0.1402775)
    assert StragglerReport.from_dict(orjson.loads(_dump(data))) == report


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("name"), r"broken pinchpoint profile: missing key 'name'"),
        (lambda d: d["steps"][1].pop("wall_s"), r"missing key 'steps\[1\]\.wall_s'"),
        (lambda d: d["steps"][0].update(wall_s=[1]), r"steps\[0\]\.wall_s: \[1\] is not a number"),
        (lambda d: d.update(steps={}), r"steps: \{\} where a list"),
        (lambda d: d.update(schema="pinchpoint.profile/9"), r"not a pinchpoint profile \(schema"),
    ],
)
def test_broken_data_gives_the_format_error_naming_where(change: Any, message: str) -> None:
    data = orjson.loads(SAVED_DIAGNOSIS.read_bytes())["profile"]
    change(data)
    with pytest.raises(ProfileFormatError, match=message) as info:
        Profile.from_dict(data)
    assert "\n" not in str(info.value)


def test_unknown_keys_are_ignored() -> None:
    data = orjson.loads(SAVED_DIAGNOSIS.read_bytes())
    assert "summary" in data["profile"] and "healthy" in data  # derived, for readers
    plain = Diagnosis.from_dict(data)
    assert Diagnosis.from_dict({**data, "later": {"key": 1}}).to_dict() == plain.to_dict()


@dataclass(frozen=True)
class _Inner(codec.Saved):
    label: Literal["a", "b"]
    pair: tuple[int, float]


@dataclass(frozen=True)
class _Outer(codec.Saved):
    """Every kind of field the codec reads by its hint, and each per-field rule."""

    inners: list[_Inner]
    table: dict[str, list[float | None]]
    note: str = field(metadata=codec.missing_as("none"))
    by_rank: dict[int, int] = field(
        default_factory=dict,
        metadata=codec.custom(
            lambda d: sorted(d.items()), lambda rows: {int(k): int(v) for k, v in rows}
        ),
    )
    extra: float | None = field(default=None, metadata=codec.omit_none())
    cache: list[int] = field(default_factory=list, compare=False, metadata=codec.not_saved())
    anything: Any = None

    saved_as = codec.Document("pinchpoint.test/1", "test record")

    def _saving(self, data: dict[str, Any]) -> dict[str, Any]:
        return codec.arrange(data, "schema note size", size=len(self.inners))


def test_a_record_of_every_field_kind_round_trips() -> None:
    record = _Outer(
        [_Inner("a", (1, 2.5)), _Inner("b", (3, -math.inf))],
        {"x": [1.0, None, math.nan]},
        "hi",
        by_rank={2: 5, 1: 4},
        cache=[9],
        anything={"k": [1]},
    )
    data = record.to_dict()
    assert list(data) == ["schema", "note", "size", "inners", "table", "by_rank", "anything"]
    assert data["inners"][1] == {"label": "b", "pair": [3, "-Infinity"]}
    assert data["by_rank"] == [(1, 4), (2, 5)]
    back = _Outer.from_dict(orjson.loads(_dump(data)))
    assert back.inners[1].pair == (3, -math.inf) and back.by_rank == {1: 4, 2: 5}
    assert back.table["x"][:2] == [1.0, None] and math.isnan(back.table["x"][2] or 0.0)
    assert back.cache == [] and back.extra is None and back.anything == {"k": [1]}
    assert _Outer.from_dict({**data, "extra": 2.0}).to_dict()["extra"] == 2.0
    del data["note"]
    assert _Outer.from_dict(data).note == "none"
    data["inners"][0]["label"] = "c"
    with pytest.raises(codec.FormatError, match=r"inners\[0\]\.label: 'c' where a"):
        _Outer.from_dict(data)
    with pytest.raises(codec.FormatError, match="JSON is not an object"):
        _Outer.from_dict([1])


def test_every_saved_class_resolves_its_fields() -> None:
    """Each Saved dataclass the package defines has type hints the codec can read."""
    import pinchpoint.machine.calibrate
    import pinchpoint.remedies
    import pinchpoint.trials.scale  # noqa: F401

    seen, todo = set(), list(codec.Saved.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if dataclasses.is_dataclass(cls) and cls.__module__.startswith("pinchpoint."):
            assert codec._slots(cls) is not None
            seen.add(cls.__name__)
    assert {"Profile", "Step", "Diagnosis", "Finding", "Trial", "ScaleResult", "Peaks"} <= seen
