"""The ranking of findings (pinchpoint.finding.rank) and the taxonomy page that states it.

The rules are checked on made-up findings, so each one is seen alone: a run that does not work
outranks any time saving, a large saving outranks slowed learning, which outranks a small saving,
and a symptom ranks after its cause. End-to-end cases are in tests/test_root_cause.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from pinchpoint.diagnosis import Diagnosis
from pinchpoint.finding import KINDS, Finding, Severity, rank, rank_tier, severity_for

ROOT = Path(__file__).resolve().parents[1]
TAXONOMY = ROOT / "docs" / "taxonomy.md"
GOLDEN = Path(__file__).parent / "data" / "golden"


def _runtime(kind: str, saving: float) -> Finding:
    return Finding(kind, severity_for(saving), saving, saving, f"{kind} found.")


def _training(
    kind: str, importance: float, severity: Severity = "high", **evidence: object
) -> Finding:
    return Finding(kind, severity, importance, importance, f"{kind} found.", dict(evidence))


def test_a_run_that_does_not_learn_outranks_any_time_saving() -> None:
    ranked = rank([_runtime("input_bound", 0.95), _training("lr_too_low", 0.8)])
    assert [f.kind for f in ranked] == ["lr_too_low", "input_bound"]
    assert "outranks any time saving" in ranked[0].rank_reason


def test_a_mild_plateau_ranks_after_a_large_saving_and_before_a_small_one() -> None:
    plateau = _training("loss_plateau", 0.5, severity="medium")
    ranked = rank([plateau, _runtime("overhead_bound", 0.15), _runtime("optimizer_bound", 0.35)])
    assert [f.kind for f in ranked] == ["optimizer_bound", "loss_plateau", "overhead_bound"]
    assert [rank_tier(f) for f in ranked] == [1, 2, 3]
    assert ranked[0].rank_reason.startswith("A large, measured time saving (35% of the step)")
    assert "slowed, not stopped" in ranked[1].rank_reason


def test_a_run_over_its_memory_budget_is_in_the_first_tier() -> None:
    over = Finding("memory_capacity", "high", 1.4, 1.0, "too big.")
    ranked = rank([_runtime("compute_bound", 0.5), over])
    assert ranked[0].kind == "memory_capacity" and rank_tier(over) == 0
    assert "does not fit" in ranked[0].rank_reason


def test_a_symptom_ranks_after_its_cause_and_says_so() -> None:
    cause = _training("exploding_gradients", 1.0, cause="initialization")
    symptom = _training("nan_inf", 0.95, explained_by="exploding_gradients")
    ranked = rank([symptom, cause])
    assert [f.kind for f in ranked] == ["exploding_gradients", "nan_inf"]
    assert "root cause of nan_inf" in ranked[0].rank_reason
    assert "initialization, not the learning rate" in ranked[0].rank_reason
    assert "symptom of exploding_gradients" in ranked[1].rank_reason


def test_ranking_is_stable_and_idempotent() -> None:
    findings = [
        _runtime("memory_bound", 0.2),
        _runtime("overhead_bound", 0.2),
        _training("dead_units", 0.2, severity="medium"),
    ]
    once = rank(findings)
    assert [f.kind for f in once] == ["dead_units", "memory_bound", "overhead_bound"]
    assert rank(once) == once
    assert rank(findings[::-1]) == once


def test_rank_reason_round_trips_and_old_json_loads_without_it() -> None:
    ranked = rank([_runtime("input_bound", 0.5)])
    data = ranked[0].to_dict()
    assert data["rank_reason"] == ranked[0].rank_reason
    assert Finding.from_dict(orjson.loads(orjson.dumps(data))) == ranked[0]
    del data["rank_reason"]
    assert Finding.from_dict(data).rank_reason == ""
    # A diagnosis saved before rank reasons existed still loads, under the same schema.
    raw = orjson.loads((GOLDEN / "slow-collate.diagnosis.json").read_bytes())
    assert all("rank_reason" not in f for f in raw["findings"])
    old = Diagnosis.from_dict(raw)
    assert old.findings and all(f.rank_reason == "" for f in old.findings)
    assert old.to_dict()["schema"] == "pinchpoint.diagnosis/1"


def _emitted_kinds() -> set[str]:
    """The kinds named in the analyzers' source: ``kind="..."`` and training ``_finding("...")``."""
    found: set[str] = set()
    for path in (ROOT / "src" / "pinchpoint" / "analyzers").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        found |= set(re.findall(r'kind="([a-z_]+)"', text))
        found |= set(re.findall(r'_finding\(\s*"([a-z_]+)"', text))
    return found


def test_every_kind_the_analyzers_emit_is_in_the_catalog() -> None:
    emitted = _emitted_kinds()
    assert emitted <= set(KINDS)
    assert set(KINDS) <= emitted, sorted(set(KINDS) - emitted)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_described_in_docs_taxonomy(kind: str) -> None:
    text = TAXONOMY.read_text(encoding="utf-8")
    # In a table row of its own, and named again where it is shown or ranked.
    assert re.search(rf"^\| `{kind}` \|", text, re.MULTILINE), kind
    assert text.count(f"`{kind}`") >= 2, kind


def test_docs_taxonomy_states_the_ranking_rules() -> None:
    text = " ".join(TAXONOMY.read_text(encoding="utf-8").split())
    assert "## Ranking" in text
    for rule in (
        "a run that diverges or does not learn outranks any speed-up",
        "A learning problem that only slows learning does not outrank a large time saving",
        "root cause before symptom",
        "rank_reason",
    ):
        assert rule.lower() in text.lower(), rule


def test_a_runtime_symptom_ranks_right_after_its_cause() -> None:
    # Stalled threads inflate every operator's time: a compute_bound finding read off them, even
    # with the larger estimated saving, ranks after thread_oversubscription.
    from pinchpoint.analyzers.threads import mark_symptoms

    cause = _runtime("thread_oversubscription", 0.28)
    findings = [_runtime("compute_bound", 0.31), cause, _runtime("input_bound", 0.05)]
    ranked = rank(mark_symptoms(findings))
    assert [f.kind for f in ranked] == ["thread_oversubscription", "compute_bound", "input_bound"]
    assert ranked[1].evidence["explained_by"] == "thread_oversubscription"
    assert "symptom of thread_oversubscription" in ranked[1].rank_reason
    # Without the cause nothing is marked and the saving decides.
    alone = rank(mark_symptoms([_runtime("compute_bound", 0.31), _runtime("input_bound", 0.05)]))
    assert [f.kind for f in alone] == ["compute_bound", "input_bound"]
    assert "explained_by" not in alone[0].evidence
