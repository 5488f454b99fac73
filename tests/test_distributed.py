"""Data-parallel profiling: real torchrun jobs of 2 ranks on gloo over the loopback.

Each job starts three interpreters (torchrun and two ranks), so the jobs are module fixtures
shared by the tests that read them: a healthy job through the command line, a planted slow rank,
a planted communication-heavy job, one with DDP settings and gradient accumulation, and a user's
own DDP script instrumented with ``pinchpoint.Recorder``. Ranks run one thread each.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import orjson
import psutil
import pytest

from helpers import run_cli
from pinchpoint import PinchpointError, Profile, ProfileFormatError, WorkloadError
from pinchpoint.analyzers import run_analyzers
from pinchpoint.analyzers.ranks import straggler_test
from pinchpoint.errors import DeviceError
from pinchpoint.recorders.job import launch, merge

pytestmark = pytest.mark.slow

#: A job of a few seconds of work must never hold the test run: torchrun is ended after this.
TIMEOUT_S = 180.0


@pytest.fixture(scope="module", autouse=True)
def _one_thread_per_rank() -> Iterator[None]:
    """Two ranks on a 2-core machine: one intra-op thread each, gloo on the loopback."""
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "GLOO_SOCKET_IFNAME")}
    os.environ.update({"OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"})
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def balanced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Profile, str, Path]:
    """zoo:ddp-balanced on 2 ranks, through `pinchpoint profile --nproc 2`."""
    folder = tmp_path_factory.mktemp("balanced")
    out = folder / "merged.json"
    result = run_cli(
        "profile",
        "zoo:ddp-balanced",
        "--nproc",
        "2",
        "--steps",
        "12",
        "--warmup",
        "2",
        "--device",
        "cpu",
        "--json",
        str(out),
        "--ranks-dir",
        str(folder / "ranks"),
        "--timeout",
        str(TIMEOUT_S),
    )
    assert result.returncode == 0, result.stderr
    return Profile.load(out), result.stdout, folder / "ranks"


@pytest.fixture(scope="module")
def slow_rank() -> Profile:
    profile = launch("zoo:ddp-slow-rank", nproc=2, steps=14, warmup=2, timeout_s=TIMEOUT_S)
    assert profile is not None
    return profile


@pytest.fixture(scope="module")
def comm_heavy() -> Profile:
    profile = launch("zoo:ddp-comm-heavy", nproc=2, steps=10, warmup=2, timeout_s=TIMEOUT_S)
    assert profile is not None
    return profile


def _ranks(profile: Profile) -> list[int]:
    return [r.distributed.rank for r in profile.ranks if r.distributed is not None]


# --------------------------------------------------------------------------- a healthy job


def test_the_merged_profile_has_both_ranks_of_one_job(
    balanced: tuple[Profile, str, Path],
) -> None:
    profile, stdout, ranks_dir = balanced
    assert _ranks(profile) == [0, 1]
    assert sorted(p.name for p in ranks_dir.glob("rank-*.json")) == ["rank-0.json", "rank-1.json"]
    facts = [r.distributed for r in profile.ranks]
    assert all(d is not None and d.world_size == 2 and d.backend == "gloo" for d in facts)
    jobs = {d.job for d in facts if d is not None}
    assert len(jobs) == 1 and jobs != {""}
    assert profile.distributed is not None and profile.distributed.rank == 0
    assert profile.distributed.comm_measured and profile.distributed.nodes == 1
    # The top level is rank 0's own Profile.
    assert profile.steps == profile.ranks[0].steps
    # A DistributedSampler gave each rank its own half of the data: the losses differ.
    for rank in profile.ranks:
        assert rank.settings["data_sharding"] == "DistributedSampler"
        assert len(rank.measured_steps) == 12
    losses = [[s.loss for s in r.measured_steps] for r in profile.ranks]
    assert losses[0] != losses[1]
    # What the command printed: the job's all-reduce line and the ranks side by side.
    assert "Data-parallel: 2 ranks, gloo" in stdout and "Ranks" in stdout
    assert "communication" in stdout


def test_all_reduce_time_is_measured_and_the_phases_add_up(
    balanced: tuple[Profile, str, Path],
) -> None:
    profile = balanced[0]
    for rank in profile.ranks:
        for step in rank.steps:
            assert sum(step.phases.values()) == pytest.approx(step.wall_s, rel=1e-9, abs=1e-12)
            assert step.comm_s is not None and step.comm_s > 0
            # The all-reduces run from inside backward to the end of the exposed wait.
            window = step.phases["backward"] + step.phases["communication"]
            assert 0 < step.comm_s <= window + 1e-6
        stats = rank.communication_stats()
        assert stats is not None and stats.steps == 12
        assert 0 <= stats.exposed_share < 1 and stats.overlap is not None
        assert 0 <= stats.overlap <= 1
    # One bucket per step at DDP's default cap: all 19,466 parameters' float32 gradients.
    assert profile.distributed is not None
    assert sum(profile.distributed.buckets_bytes) == profile.memory.parameters_bytes == 77_864


def test_healthy_ranks_give_no_straggler(balanced: tuple[Profile, str, Path]) -> None:
    profile = balanced[0]
    report = straggler_test(profile)
    assert report is not None and report.ranks == 2 and report.steps == 12
    assert report.power == "ok" and report.stragglers == []
    assert "straggler" not in [f.kind for f in run_analyzers(profile)]


def test_the_merged_profile_round_trips_through_json(
    balanced: tuple[Profile, str, Path], tmp_path: Path
) -> None:
    profile = balanced[0]
    again = Profile.from_json(profile.to_json())
    assert again == profile
    assert again.ranks[1] == profile.ranks[1]
    saved = profile.save(tmp_path / "again.json")
    assert Profile.load(saved) == profile
    data = orjson.loads(profile.to_json())
    assert data["summary"]["communication"]["steps"] == 12
    assert len(data["ranks"]) == 2 and data["ranks"][1]["distributed"]["rank"] == 1


def test_reports_show_every_rank(balanced: tuple[Profile, str, Path]) -> None:
    from pinchpoint.renderers.html import render_html
    from pinchpoint.report import Report

    report = Report.build(balanced[0])
    ids = [s.id for s in report.sections]
    assert ids[:3] == ["steps", "ranks", "stragglers"]
    charts = [c.id for c in report.charts]
    assert {"rank-step-time", "rank-communication", "stragglers"} <= set(charts)
    table = next(t for t in report.tables if t.id == "dp-ranks")
    assert [row[0] for row in table.rows] == [0, 1]
    step_times = {row[0]: row[3] for row in table.rows}
    assert step_times == {r.distributed.rank: r.step_time_s for r in balanced[0].ranks}
    assert "rank-communication" in render_html(report)


# --------------------------------------------------------------------------- planted problems


def test_a_planted_slow_rank_is_found_as_a_straggler(slow_rank: Profile) -> None:
    findings = run_analyzers(slow_rank)
    stragglers = [f for f in findings if f.kind == "straggler"]
    assert [f.evidence["rank"] for f in stragglers] == [1]
    evidence = stragglers[0].evidence
    assert evidence["confidence"] >= 0.99 and evidence["p_value"] < 0.01
    # Rank 1 evaluates eight batches' worth of images per step on top of its own.
    assert evidence["excess_share"] >= 0.5
    assert findings[0].kind == "straggler"
    # The fast rank is the one that waits in the all-reduce.
    waits = [
        statistics.median(s.phases["communication"] for s in r.measured_steps)
        for r in slow_rank.ranks
    ]
    assert waits[0] > 2 * waits[1]
    # The wait is charged to the straggler, not to communication.
    assert "communication_bound" not in [f.kind for f in findings]


def test_diagnose_reads_a_merged_profile_as_a_job(slow_rank: Profile) -> None:
    import pinchpoint
    from pinchpoint.renderers.terminal import render_diagnosis

    before = slow_rank.to_json()
    diagnosis = pinchpoint.diagnose(slow_rank, name="slow job")
    assert diagnosis.findings[0].kind == "straggler"
    assert diagnosis.findings[0].evidence["rank"] == 1
    # Calibrated peaks reach every rank of this machine, on a copy: the caller's is untouched.
    assert all(r.machine.peaks for r in diagnosis.profile.ranks)
    assert slow_rank.to_json() == before
    again = pinchpoint.Diagnosis.from_dict(orjson.loads(diagnosis.to_json()))
    assert again.profile == diagnosis.profile and again.findings == diagnosis.findings
    from rich.console import Console

    console = Console(width=100, record=True)
    console.print(render_diagnosis(diagnosis))
    text = console.export_text()
    assert "Principal bottleneck: straggler" in text and "Ranks" in text


def test_a_planted_communication_heavy_job_is_communication_bound(comm_heavy: Profile) -> None:
    findings = run_analyzers(comm_heavy)
    principal = findings[0]
    assert principal.kind == "communication_bound"
    evidence = principal.evidence
    assert evidence["source"] == "all-reduce hook"
    assert evidence["exposed_communication_share"] >= 0.10
    overlap = evidence["comm_comp_overlap"]
    assert overlap is not None and 0 <= overlap <= 1
    stats = comm_heavy.job_communication_stats()
    assert stats is not None and overlap == stats.overlap
    assert evidence["exposed_communication_s"] == stats.exposed_s <= stats.allreduce_s
    assert "straggler" not in [f.kind for f in findings]
    # 36 MB of gradients per step, in DDP's 25 MB buckets (the first of them 1 MB).
    assert comm_heavy.distributed is not None
    assert sum(comm_heavy.distributed.buckets_bytes) == comm_heavy.memory.parameters_bytes
    assert len(comm_heavy.distributed.buckets_bytes) >= 2


# --------------------------------------------------------------------------- DDP settings


def test_ddp_settings_and_no_sync_accumulation() -> None:
    ddp = {"bucket_cap_mb": 0.01, "comm_hook": "bf16", "gradient_as_bucket_view": True}
    profile = launch(
        "zoo:ddp-balanced",
        nproc=2,
        steps=6,
        warmup=1,
        ddp=ddp,
        accumulate=2,
        batch_size=32,
        timeout_s=TIMEOUT_S,
    )
    assert profile is not None and _ranks(profile) == [0, 1]
    dist = profile.distributed
    assert dist is not None
    assert dist.ddp["bucket_cap_mb"] == pytest.approx(0.01, rel=1e-3)
    assert dist.ddp["comm_hook"] == "bf16" and dist.ddp["gradient_as_bucket_view"] is True
    # 10 kB buckets split 78 kB of gradients (their float32 size, before compression).
    assert len(dist.buckets_bytes) >= 4
    assert sum(dist.buckets_bytes) == profile.memory.parameters_bytes
    for rank in profile.ranks:
        for step in rank.steps:
            assert step.samples == 32
            if step.index % 2 == 0:
                # The first micro-batch of each optimizer step runs under no_sync().
                assert step.comm_s == 0.0 and step.phases["communication"] == 0.0
            else:
                assert step.comm_s is not None and step.comm_s > 0


# --------------------------------------------------------------------------- a user's own script

USER_SCRIPT = """
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import pinchpoint

dist.init_process_group("gloo")
torch.manual_seed(0)
model = DistributedDataParallel(
    torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
data = torch.utils.data.TensorDataset(torch.randn(512, 32), torch.randint(0, 4, (512,)))
loader = torch.utils.data.DataLoader(
    data, batch_size=32, sampler=torch.utils.data.DistributedSampler(data)
)
rec = pinchpoint.Recorder(model, optimizer, warmup=1, sample=False, name="my-ddp")
for batch in rec.data(loader, steps=6):
    with rec.step():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(batch[0]), batch[1])
        rec.record_loss(loss)
        loss.backward()
        optimizer.step()
rec.profile().save(f"{sys.argv[1]}/rank-{dist.get_rank()}.json")
rec.close()
dist.destroy_process_group()
"""


@pytest.fixture(scope="module")
def user_ranks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Per-rank profiles written by a user's own DDP script run under torchrun."""
    folder = tmp_path_factory.mktemp("user")
    script = folder / "train.py"
    script.write_text(textwrap.dedent(USER_SCRIPT))
    out = folder / "ranks"
    out.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node=2", "--local-addr=127.0.0.1", str(script), str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_merge_joins_the_ranks_of_a_users_own_ddp_script(user_ranks: Path, tmp_path: Path) -> None:
    out = tmp_path / "merged.json"
    result = run_cli("merge", str(user_ranks), "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "my-ddp" in result.stdout and "Ranks" in result.stdout
    merged = Profile.load(out)
    assert merged.name == "my-ddp" and _ranks(merged) == [0, 1]
    for rank in merged.ranks:
        assert len(rank.measured_steps) == 5
        for step in rank.steps:
            assert step.comm_s is not None and step.comm_s > 0
            assert sum(step.phases.values()) == pytest.approx(step.wall_s, rel=1e-9, abs=1e-12)
    assert merged == merge(user_ranks) == merge(sorted(user_ranks.glob("*.json")))


def test_merging_and_reading_a_job_does_not_load_torch(user_ranks: Path, tmp_path: Path) -> None:
    code = (
        "import sys, pinchpoint.recorders as d\n"
        "from pinchpoint.analyzers import run_analyzers\n"
        "from pinchpoint.report import Report\n"
        "from pinchpoint.renderers.html import render_html\n"
        "from pinchpoint.renderers.terminal import render_profile\n"
        f"job = d.merge({str(user_ranks)!r})\n"
        "run_analyzers(job); render_html(Report.build(job)); render_profile(job)\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_merge_refuses_what_is_not_one_job(user_ranks: Path, tmp_path: Path) -> None:
    rank0, rank1 = user_ranks / "rank-0.json", user_ranks / "rank-1.json"
    with pytest.raises(ProfileFormatError, match=r"rank\(s\) 1 of a world of 2 are missing"):
        merge([rank0])
    with pytest.raises(ProfileFormatError, match="both hold rank 1"):
        merge([rank0, rank1, rank1])
    other = orjson.loads(rank1.read_bytes())
    other["distributed"]["job"] = "another-job"
    (tmp_path / "other.json").write_bytes(orjson.dumps(other))
    with pytest.raises(ProfileFormatError, match="different jobs"):
        merge([rank0, tmp_path / "other.json"])
    other["distributed"].update(job="", world_size=4)
    (tmp_path / "wider.json").write_bytes(orjson.dumps(other))
    with pytest.raises(ProfileFormatError, match=r"different world sizes \[2, 4\]"):
        merge([rank0, tmp_path / "wider.json"])
    Profile("single", "train", "cpu").save(tmp_path / "single.json")
    with pytest.raises(ProfileFormatError, match="has no rank"):
        merge([rank0, tmp_path / "single.json"])
    merged = merge(user_ranks)
    with pytest.raises(ProfileFormatError, match="already a merged profile"):
        merge([merged])
    # On the command line: one line, exit 2.
    folder = tmp_path / "dup"
    folder.mkdir()
    for name in ("rank-0.json", "rank-1.json"):
        shutil.copy(user_ranks / name, folder / name)
    shutil.copy(rank1, folder / "copy.json")
    result = run_cli("merge", str(folder))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "both hold rank 1" in result.stderr
    assert result.stderr.count("\n") == 1


# --------------------------------------------------------------------------- bad input


def test_bad_launch_settings_fail_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nproc must be an integer of at least 1"):
        launch("zoo:ddp-balanced", nproc=0)
    with pytest.raises(ValueError, match="several nodes need rdzv_endpoint"):
        launch("zoo:ddp-balanced", nproc=1, nnodes=2)
    with pytest.raises(ValueError, match="HOST:PORT"):
        launch("zoo:ddp-balanced", nproc=1, nnodes=2, rdzv_endpoint="nowhere")
    with pytest.raises(ValueError, match=r"node_rank must lie in 0\.\.1"):
        launch("zoo:ddp-balanced", nproc=1, nnodes=2, node_rank=2, rdzv_endpoint="h:1")
    with pytest.raises(ValueError, match="unknown setting"):
        launch("zoo:ddp-balanced", nproc=1, ddp={"bucket_mb": 5})
    with pytest.raises(ValueError, match="comm_hook"):
        launch("zoo:ddp-balanced", nproc=1, ddp={"comm_hook": "int8"})
    with pytest.raises(WorkloadError, match="no zoo workload named 'nope'"):
        launch("zoo:nope", nproc=1)
    with pytest.raises(WorkloadError, match="no such file"):
        launch(str(tmp_path / "missing.py"), nproc=1)
    import torch

    if torch.cuda.device_count() < 64:
        with pytest.raises(DeviceError, match="each rank needs its own"):
            launch("zoo:ddp-balanced", nproc=64, device="cuda")
    result = run_cli("profile", "zoo:ddp-balanced", "--nproc", "0")
    assert result.returncode == 2 and result.stderr.startswith("error: ")
    assert "--nproc must be at least 1" in result.stderr and result.stderr.count("\n") == 1
    saved = tmp_path / "saved.json"
    Profile("saved", "train", "cpu").save(saved)
    result = run_cli("diagnose", str(saved), "--nproc", "2")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "--nproc records a workload" in result.stderr


FAILING = """
import pinchpoint
import torch


def workload():
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 2)

    def loss(model, batch):
        if torch.distributed.get_rank() == 1:
            raise RuntimeError("rank one's loss is broken")
        return model(batch).pow(2).mean()

    return pinchpoint.Workload(
        model=model,
        data=[torch.randn(4, 8) for _ in range(4)],
        loss=loss,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        name="breaks",
    )
"""


def test_a_rank_that_raises_is_a_one_line_error(tmp_path: Path) -> None:
    target = tmp_path / "breaks.py"
    target.write_text(textwrap.dedent(FAILING))
    result = run_cli(
        "profile", str(target), "--nproc", "2", "--steps", "3", "--timeout", str(TIMEOUT_S)
    )
    assert result.returncode == 2
    assert result.stderr == (
        "error: rank 1 failed: workload 'breaks' failed at step 0: RuntimeError: rank one's "
        "loss is broken\n"
    )
    assert "Traceback" not in result.stdout + result.stderr


def test_a_job_past_its_timeout_is_ended(tmp_path: Path) -> None:
    out = tmp_path / "ranks"
    with pytest.raises(PinchpointError, match="did not finish in 2 s"):
        launch("zoo:ddp-balanced", nproc=2, steps=1000, out_dir=out, timeout_s=2)
    # Nothing of the job is left running: torchrun and its ranks were ended as a group.
    left = [
        p for p in psutil.process_iter(["cmdline"]) if str(out) in " ".join(p.info["cmdline"] or [])
    ]
    assert left == []


# --------------------------------------------------------------------------- on a GPU


@pytest.mark.gpu
def test_nccl_ranks_on_gpus(tmp_path: Path) -> None:
    import torch

    nproc = min(2, torch.cuda.device_count())
    profile = launch(
        "zoo:ddp-balanced", nproc=nproc, steps=12, warmup=2, device="cuda", timeout_s=TIMEOUT_S
    )
    assert profile is not None and _ranks(profile) == list(range(nproc))
    assert profile.distributed is not None and profile.distributed.backend == "nccl"
    assert profile.device.startswith("cuda")
    for rank in profile.ranks:
        for step in rank.steps:
            assert sum(step.phases.values()) == pytest.approx(step.wall_s, rel=1e-6)
            assert step.comm_s is not None and step.comm_s > 0
            assert step.comm_s <= step.phases["backward"] + step.phases["communication"] + 1e-4
    assert Profile.from_json(profile.to_json()) == profile
    if nproc >= 2:
        assert "straggler" not in [f.kind for f in run_analyzers(profile)]


@pytest.mark.gpu
def test_nccl_planted_slow_rank_and_communication_heavy_job() -> None:
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices")
    slow = launch("zoo:ddp-slow-rank", nproc=2, steps=14, device="cuda", timeout_s=TIMEOUT_S)
    assert slow is not None
    stragglers = [f for f in run_analyzers(slow) if f.kind == "straggler"]
    assert [f.evidence["rank"] for f in stragglers] == [1]
    heavy = launch("zoo:ddp-comm-heavy", nproc=2, steps=10, device="cuda", timeout_s=TIMEOUT_S)
    assert heavy is not None
    stats = heavy.job_communication_stats()
    assert stats is not None and stats.allreduce_s > 0


def test_ranks_that_share_their_cores_need_a_larger_excess(
    balanced: tuple[Profile, str, Path],
) -> None:
    # Two one-thread ranks on this 2-core machine share its cores: the scheduler alone skews
    # them, so a straggler must be 40 % slower; with cores to spare the usual 5 % applies.
    import dataclasses

    from pinchpoint.analyzers.ranks import SHARED_CORES_MIN_EXCESS, shares_cores

    profile = balanced[0]
    assert profile.machine.threads == 1 and profile.machine.cores_logical == os.cpu_count()
    assert shares_cores(profile) == ((os.cpu_count() or 1) <= 2)
    roomy = dataclasses.replace(
        profile, machine=dataclasses.replace(profile.machine, cores_logical=64)
    )
    assert not shares_cores(roomy)
    report, roomy_report = straggler_test(profile), straggler_test(roomy)
    assert report is not None and roomy_report is not None
    expected = SHARED_CORES_MIN_EXCESS if shares_cores(profile) else 0.05
    assert report.min_excess_share == expected and roomy_report.min_excess_share == 0.05
