"""Tests of the inference remedies: quantize, precision, compile, onnx_runtime, threads, batch_size.

Each runs on a tiny model and checks what the remedy really changes (integer layers, bf16
weights, an ONNX file, re-batched data), that outputs stay close to float32, that bad settings
are refused and that the caller's model is never changed.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from pinchpoint._profile import Machine  # noqa: E402
from pinchpoint.errors import WorkloadError  # noqa: E402
from pinchpoint.remedies._base import RemedyConfig, apply, config_from_dict  # noqa: E402
from pinchpoint.remedies.compile import Compile  # noqa: E402
from pinchpoint.remedies.onnx import OnnxRuntime  # noqa: E402
from pinchpoint.remedies.precision import Precision  # noqa: E402
from pinchpoint.remedies.quantize import Quantize  # noqa: E402
from pinchpoint.remedies.runtime import BatchSize, Threads  # noqa: E402
from pinchpoint.workload import Workload, call_model  # noqa: E402

AMX = Machine(cpu_flags=["avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"])
BARE = Machine(cpu_flags=["sse4_2", "avx2"], cores_physical=2, cores_logical=4)


def mlp(width: int = 64, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(64, width), nn.GELU(), nn.Linear(width, width), nn.GELU(), nn.Linear(width, 32)
    ).eval()


class TinyBlock(nn.Module):
    """A one-layer transformer: attention and an MLP over (batch, tokens, 64) inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(64, 192)
        self.out = nn.Linear(64, 64)
        self.up = nn.Linear(64, 256)
        self.down = nn.Linear(256, 64)
        self.norm1 = nn.LayerNorm(64)
        self.norm2 = nn.LayerNorm(64)

    def forward(self, x: Any) -> Any:
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        heads = [t.unflatten(-1, (4, 16)).transpose(1, 2) for t in (q, k, v)]
        attended = nn.functional.scaled_dot_product_attention(*heads)
        x = x + self.out(attended.transpose(1, 2).flatten(-2))
        return x + self.down(nn.functional.gelu(self.up(self.norm2(x))))


class DictModel(nn.Module):
    """Keyword inputs (float features, integer ids) and a dict output with an integer entry."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 64)
        self.proj = nn.Linear(64, 64)

    def forward(self, features: Any, ids: Any) -> Any:
        hidden = self.proj(features + self.embed(ids).mean(dim=1))
        return {"hidden": hidden, "pair": (hidden.sum(-1), ids + 1)}


def workload(model: nn.Module, data: Any, **kw: Any) -> Workload:
    return Workload(model=model, data=data, name="tiny", **kw)


def cosine(a: Any, b: Any) -> float:
    a, b = a.detach().flatten().float(), b.detach().flatten().float()
    return float(nn.functional.cosine_similarity(a, b, dim=0))


def snapshot(model: nn.Module) -> dict[str, Any]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: nn.Module, before: dict[str, Any]) -> None:
    after = model.state_dict()
    assert list(after) == list(before)
    for key, value in before.items():
        assert after[key].dtype == value.dtype, key
        assert torch.equal(after[key], value), key


def state_bytes(model: nn.Module) -> int:
    total = 0
    for value in model.state_dict().values():
        if isinstance(value, torch.Tensor):
            total += value.numel() * value.element_size()
    return total


def run(model: Any, batch: Any) -> Any:
    with torch.inference_mode():
        return call_model(model, batch)


# ---------------------------------------------------------------- configs


ALL_CONFIGS: list[RemedyConfig] = [
    Quantize(),
    Quantize(method="static-int8", calibration_batches=3),
    Quantize(method="weight-only-int4"),
    Precision(),
    Precision(dtype="fp16", how="autocast"),
    Compile(),
    Compile(mode="max-autotune", freezing=False, dynamic=True, cpp_wrapper=True),
    OnnxRuntime(),
    OnnxRuntime(quantize="int8", threads=2, opset=18),
    Threads(count=3),
    BatchSize(size=16),
]


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=lambda c: c.label())
def test_config_round_trips_through_its_dict(config: RemedyConfig) -> None:
    data = config.to_dict()
    assert data["remedy"] == config.name
    assert config_from_dict(data) == config


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Quantize(method="int3"), "quantize method"),
        (lambda: Quantize(calibration_batches=0), "calibration_batches"),
        (lambda: Quantize(calibration_batches=True), "calibration_batches"),
        (lambda: Precision(dtype="fp8"), "precision dtype"),
        (lambda: Precision(how="cast"), "precision how"),
        (lambda: Compile(mode="fast"), "compile mode"),
        (lambda: Compile(backend=""), "compile backend"),
        (lambda: Compile(freezing="yes"), "compile freezing"),
        (lambda: Compile(backend="eager", freezing=False, cpp_wrapper=True), "cpp_wrapper"),
        (lambda: OnnxRuntime(quantize="int4"), "onnx_runtime quantize"),
        (lambda: OnnxRuntime(threads=0), "onnx_runtime threads"),
        (lambda: OnnxRuntime(opset=11), "onnx_runtime opset"),
        (lambda: Threads(count=0), "threads count"),
        (lambda: Threads(count=2.5), "threads count"),
        (lambda: BatchSize(size=-1), "batch_size size"),
    ],
)
def test_bad_settings_are_refused(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_inference_only_remedies_refuse_a_training_workload() -> None:
    model = mlp()
    train = Workload(
        model=model,
        data=[torch.randn(4, 64)],
        loss=lambda m, b: m(b).sum(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
    )
    for config in (Quantize(), Precision(), OnnxRuntime()):
        with pytest.raises(ValueError, match="applies to infer"):
            apply(train, config)


def test_gates_explain_what_the_machine_lacks() -> None:
    assert Quantize().gate(AMX) is None
    assert "int8 dot-product" in (Quantize().gate(BARE) or "")
    assert "int8 dot-product" in (Quantize("weight-only-int8").gate(BARE) or "")
    assert Quantize("weight-only-int4").gate(BARE) is None
    assert Precision().gate(AMX) is None
    assert "no native bf16" in (Precision().gate(BARE) or "")
    assert "no native fp16" in (Precision(dtype="fp16").gate(AMX) or "")
    turing = Machine(cpu_flags=[], gpu={"name": "T4", "capability": "7.5"})
    assert "8.0 or newer; this GPU is 7.5" in (Precision().gate(turing) or "")
    assert Precision(dtype="fp16").gate(turing) is None
    assert "CUDA graphs" in (Compile(mode="reduce-overhead").gate(AMX) or "")
    assert "int8 dot-product" in (OnnxRuntime(quantize="int8").gate(BARE) or "")
    assert OnnxRuntime().gate(BARE) is None
    assert "oversubscribe" in (Threads(count=8).gate(BARE) or "")
    assert Threads(count=2).gate(BARE) is None


# ---------------------------------------------------------------- quantize


def test_dynamic_int8_swaps_linears_for_quantized_ones() -> None:
    from torch.ao.nn.quantized import dynamic

    model = mlp()
    before = snapshot(model)
    x = torch.randn(16, 64)
    result = apply(workload(model, [x]), Quantize())
    layers = list(result.model.modules())
    assert sum(isinstance(layer, dynamic.Linear) for layer in layers) == 3
    assert not any(type(layer) is nn.Linear for layer in layers)
    assert cosine(run(result.model, x), model(x)) >= 0.999
    assert result.applied == ("quantize(method=dynamic-int8, calibration_batches=8)",)
    assert_unchanged(model, before)


def test_dynamic_int8_needs_linear_layers() -> None:
    with pytest.raises(WorkloadError, match=r"no nn\.Linear"):
        apply(workload(nn.Sequential(nn.ReLU()), [torch.randn(2, 4)]), Quantize())


@pytest.mark.parametrize(
    ("method", "buffer", "dtype", "ratio", "min_cosine"),
    [
        ("weight-only-int8", "weight_int8", torch.int8, 0.30, 0.999),
        ("weight-only-int4", "weight_int4", torch.uint8, 0.20, 0.99),
    ],
)
def test_weight_only_layers_hold_integer_weights(
    method: str, buffer: str, dtype: Any, ratio: float, min_cosine: float
) -> None:
    from pinchpoint.remedies._quantize_modules import Int4WeightOnlyLinear, Int8WeightOnlyLinear

    kind = Int8WeightOnlyLinear if method.endswith("int8") else Int4WeightOnlyLinear
    for model, x in ((mlp(width=256), torch.randn(8, 64)), (TinyBlock(), torch.randn(2, 10, 64))):
        torch.manual_seed(1)
        model.eval()
        before = snapshot(model)
        result = apply(workload(model, [x]), Quantize(method=method))
        swapped = [m for m in result.model.modules() if isinstance(m, kind)]
        assert swapped and not any(type(m) is nn.Linear for m in result.model.modules())
        assert all(getattr(m, buffer).dtype == dtype for m in swapped)
        linear_bytes = sum(
            m.weight.numel() * 4 for m in model.modules() if isinstance(m, nn.Linear)
        )
        saved = state_bytes(model) - state_bytes(result.model)
        # The weights shrink to a quarter (int8) or an eighth (int4) plus their scales.
        assert saved >= (1 - ratio) * linear_bytes
        assert cosine(run(result.model, x), model(x)) >= min_cosine
        assert_unchanged(model, before)


def test_int4_pads_odd_widths_and_dequantizes_weight_for_readers() -> None:
    from pinchpoint.remedies._quantize_modules import Int4WeightOnlyLinear

    torch.manual_seed(2)
    linear = nn.Linear(64, 10)
    layer = Int4WeightOnlyLinear(linear, 32)
    x = torch.randn(5, 64)
    # The CPU kernel needs output channels in multiples of 16: 10 are padded to 16.
    assert layer.weight_int4.shape == (16, 32)
    assert layer(x).shape == (5, 10)
    assert cosine(layer(x), linear(x)) >= 0.99
    assert layer.weight.shape == (10, 64)
    # The layer multiplies in bf16 on the CPU: about three significant digits.
    assert torch.allclose(layer(x), x @ layer.weight.t() + linear.bias, atol=0.05)
    assert cosine(layer(x), x @ layer.weight.t() + linear.bias) >= 0.9999


def test_int4_skips_layers_whose_inputs_do_not_split_into_groups() -> None:
    model = nn.Sequential(nn.Linear(48, 16))
    with pytest.raises(WorkloadError, match="multiple of 32"):
        apply(workload(model, [torch.randn(2, 48)]), Quantize(method="weight-only-int4"))


def digits_like_cnn() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    ).eval()


def test_static_int8_calibrates_on_the_workload_batches() -> None:
    model = digits_like_cnn()
    before = snapshot(model)
    batches = [torch.rand(16, 1, 8, 8) for _ in range(4)]
    result = apply(workload(model, batches), Quantize(method="static-int8", calibration_batches=4))
    names = {type(m).__name__ for m in result.model.modules()}
    assert {"ConvReLU2d", "Linear"} <= names
    modules = dict(result.model.named_modules())
    assert modules["0"].weight().dtype == torch.qint8
    x = torch.rand(32, 1, 8, 8)
    assert cosine(run(result.model, x), model(x)) >= 0.99
    assert_unchanged(model, before)


def test_static_int8_names_why_it_cannot_run() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 4)

        def forward(self, x: Any) -> Any:
            # A branch on a tensor's value: torch.fx cannot trace it.
            return self.linear(x) if x.sum() > 0 else x

    with pytest.raises(WorkloadError, match=r"torch\.fx can trace"):
        apply(workload(Branchy().eval(), [torch.randn(2, 4)]), Quantize(method="static-int8"))
    with pytest.raises(WorkloadError, match="dicts of keyword"):
        apply(
            workload(DictModel(), [{"features": torch.randn(2, 64)}]),
            Quantize(method="static-int8"),
        )


# ---------------------------------------------------------------- precision


def test_convert_holds_bf16_weights_and_speaks_float32() -> None:
    model = TinyBlock().eval()
    before = snapshot(model)
    x = torch.randn(2, 10, 64)
    result = apply(workload(model, [x]), Precision())
    dtypes = {p.dtype for p in result.model.parameters()}
    assert dtypes == {torch.bfloat16}
    out = run(result.model, x)
    assert out.dtype == torch.float32
    assert cosine(out, model(x)) >= 0.999
    assert_unchanged(model, before)


def test_convert_keeps_structure_and_integer_tensors() -> None:
    model = DictModel().eval()
    batch = {"features": torch.randn(3, 64), "ids": torch.randint(0, 50, (3, 5))}
    result = apply(workload(model, [batch]), Precision(dtype="fp16"))
    out = run(result.model, batch)
    assert set(out) == {"hidden", "pair"}
    assert out["hidden"].dtype == torch.float32 and out["pair"][0].dtype == torch.float32
    assert out["pair"][1].dtype == torch.int64 and torch.equal(out["pair"][1], batch["ids"] + 1)
    assert cosine(out["hidden"], model(**batch)["hidden"]) >= 0.999


def test_autocast_runs_matmuls_in_bf16_and_returns_float32() -> None:
    model = mlp()
    before = snapshot(model)
    x = torch.randn(4, 64)
    result = apply(workload(model, [x]), Precision(how="autocast"))
    seen = []
    first = next(m for m in result.model.modules() if isinstance(m, nn.Linear))
    first.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
    out = run(result.model, x)
    assert seen == [torch.bfloat16]
    assert {p.dtype for p in result.model.parameters()} == {torch.float32}
    assert out.dtype == torch.float32
    assert cosine(out, model(x)) >= 0.999
    assert_unchanged(model, before)


# ---------------------------------------------------------------- compile


def test_compile_with_freezing_gives_the_same_output() -> None:
    import torch._inductor.config as inductor_config

    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8)).eval()
    before = snapshot(model)
    x = torch.randn(4, 16)
    result = apply(workload(model, [x]), Compile())
    out = run(result.model, x)
    assert torch.allclose(out, model(x), atol=1e-5)
    assert result.model._compiled is not None
    assert inductor_config.freezing is False  # restored after the compiling call
    # The state dict holds the weights once, under the wrapped module's names.
    assert list(result.model.state_dict()) == [f"module.{k}" for k in before]
    clone = copy.deepcopy(result.model)
    assert clone._compiled is None
    assert_unchanged(model, before)

    # A second copy of the same class, other weights, no freezing: it compiles a graph of its
    # own, and neither copy runs the other's.
    torch.manual_seed(5)
    other = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8)).eval()
    unfrozen = apply(workload(other, [x]), Compile(freezing=False)).model
    assert torch.allclose(run(unfrozen, x), other(x), atol=1e-5)
    assert torch.allclose(run(result.model, x), model(x), atol=1e-5)


def test_compile_for_training_keeps_the_optimizer_on_its_weights() -> None:
    model = mlp()
    before = snapshot(model)
    train = Workload(
        model=model,
        data=[torch.randn(4, 64)],
        loss=lambda m, b: m(b).sum(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
    )
    result = apply(train, Compile())
    # Frozen weights could not train: freezing is dropped for a training workload.
    assert result.model.freezing is False
    optimized = {id(p) for group in result.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in result.model.parameters()}
    assert not optimized & {id(p) for p in model.parameters()}
    assert_unchanged(model, before)


def test_compile_refuses_an_unknown_backend() -> None:
    with pytest.raises(ValueError, match="not one of torch's"):
        apply(workload(mlp(), [torch.randn(2, 64)]), Compile(backend="nope", freezing=False))


# ---------------------------------------------------------------- onnx runtime


@pytest.fixture(scope="module")
def onnx_pair() -> tuple[nn.Module, Any, Any, Any]:
    pytest.importorskip("onnxruntime")
    model = mlp(width=256)
    x = torch.randn(4, 64)
    base = workload(model, [x], threads=1)
    before = snapshot(model)
    fp32 = apply(base, OnnxRuntime()).model
    int8 = apply(base, OnnxRuntime(quantize="int8")).model
    assert_unchanged(model, before)
    return model, x, fp32, int8


def test_onnx_matches_torch_with_a_dynamic_batch(onnx_pair: Any) -> None:
    model, x, fp32, int8 = onnx_pair
    assert list(fp32.parameters()) == []
    for batch in (x, torch.randn(9, 64)):
        out = run(fp32, batch)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
        assert torch.allclose(out, model(batch), atol=1e-5)
        assert cosine(run(int8, batch), model(batch)) >= 0.99


def test_onnx_int8_file_is_smaller_and_saves_loadable(onnx_pair: Any, tmp_path: Any) -> None:
    import onnx
    import onnxruntime

    _, x, fp32, int8 = onnx_pair
    # Weights are most of the file: int8 ones take a quarter of the bytes.
    assert int8.size_bytes() < 0.4 * fp32.size_bytes()
    ops = {node.op_type for node in onnx.load(int8.path).graph.node}
    assert "DynamicQuantizeLinear" in ops or "MatMulInteger" in ops
    target = tmp_path / "model.onnx"
    int8.save(target)
    assert target.stat().st_size == int8.size_bytes()
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    (loaded,) = session.run(None, {"input": x.numpy()})
    assert torch.allclose(torch.from_numpy(loaded), run(int8, x), atol=1e-5)


def test_onnx_module_copies_into_its_own_file(onnx_pair: Any) -> None:
    _, x, fp32, _ = onnx_pair
    clone = copy.deepcopy(fp32)
    assert clone.path != fp32.path
    assert torch.equal(run(clone, x), run(fp32, x))


def test_onnx_keeps_keyword_inputs_and_output_structure() -> None:
    from transformers.modeling_outputs import BaseModelOutput

    from pinchpoint.zoo._text import embed

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(30, 32)
            self.proj = nn.Linear(32, 32)

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.proj(self.embed(input_ids)) * attention_mask.unsqueeze(-1)
            return BaseModelOutput(last_hidden_state=hidden)

    torch.manual_seed(5)
    model = Encoder().eval()
    batch = {
        "input_ids": torch.randint(0, 30, (2, 7)),
        "attention_mask": torch.tensor([[1] * 7, [1] * 4 + [0] * 3]),
    }
    result = apply(workload(model, [batch]), OnnxRuntime(threads=1))
    out = run(result.model, batch)
    assert type(out) is BaseModelOutput
    assert torch.allclose(out.last_hidden_state, out[0])
    assert torch.allclose(out.last_hidden_state, model(**batch).last_hidden_state, atol=1e-5)
    # The zoo's sentence-embedding evaluator runs a model without parameters on the CPU.
    assert torch.allclose(embed(result.model, [batch]), embed(model, [batch]), atol=1e-5)


# ---------------------------------------------------------------- threads and batch size


def test_threads_sets_the_count_and_shares_the_unchanged_model() -> None:
    model = mlp()
    before = snapshot(model)
    base = workload(model, [torch.randn(2, 64)])
    result = apply(base, Threads(count=3))
    assert result.threads == 3 and base.threads is None
    assert result.model is model
    assert_unchanged(model, before)


def test_threads_copies_a_training_model() -> None:
    model = mlp()
    train = Workload(
        model=model,
        data=[torch.randn(4, 64)],
        loss=lambda m, b: m(b).sum(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
    )
    result = apply(train, Threads(count=1))
    assert result.model is not model and result.threads == 1
    result.loss(result.model, torch.randn(4, 64)).backward()
    result.optimizer.step()
    assert all(p.grad is None for p in model.parameters())


def test_batch_size_rebatches_lists_of_batches() -> None:
    tensors = [torch.arange(i * 5, i * 5 + 5).float().unsqueeze(1) for i in range(3)]
    result = apply(workload(nn.Identity(), tensors), BatchSize(size=4))
    assert [b.shape[0] for b in result.data] == [4, 4, 4]  # 15 samples: the short 3 dropped
    assert torch.equal(torch.cat(result.data).squeeze(1), torch.arange(12).float())

    pairs = [(torch.randn(5, 2), torch.arange(5)) for _ in range(2)]
    out = apply(workload(nn.Identity(), pairs), BatchSize(size=10)).data
    assert len(out) == 1 and isinstance(out[0], tuple)
    assert out[0][0].shape == (10, 2) and out[0][1].shape == (10,)

    dicts = [{"a": torch.randn(3, 4), "b": torch.ones(3, dtype=torch.long)} for _ in range(2)]
    out = apply(workload(nn.Identity(), dicts), BatchSize(size=2)).data
    assert [d["a"].shape for d in out] == [(2, 4)] * 3 and out[0]["b"].dtype == torch.long

    few = apply(workload(nn.Identity(), [torch.randn(3, 2)]), BatchSize(size=8)).data
    assert [b.shape[0] for b in few] == [3]  # fewer samples than the size: one batch


def test_batch_size_repeats_or_cuts_a_single_batch() -> None:
    x = torch.arange(3).float().unsqueeze(1)
    grown = apply(workload(nn.Identity(), x), BatchSize(size=8)).data
    assert grown.shape == (8, 1)
    assert grown.squeeze(1).tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    cut = apply(workload(nn.Identity(), {"x": torch.randn(10, 4)}), BatchSize(size=4)).data
    assert cut["x"].shape == (4, 4)


def test_batch_size_rebuilds_a_dataloader() -> None:
    from torch.utils.data import DataLoader, TensorDataset

    dataset = TensorDataset(torch.randn(20, 3), torch.arange(20))
    loader = DataLoader(dataset, batch_size=4, shuffle=True, drop_last=True)
    result = apply(workload(nn.Identity(), loader), BatchSize(size=8))
    assert isinstance(result.data, DataLoader) and result.data is not loader
    assert result.data.drop_last and isinstance(result.data.sampler, torch.utils.data.RandomSampler)
    sizes = [len(b[1]) for b in result.data]
    assert sizes == [8, 8]
    assert loader.batch_size == 4


def test_batch_size_refuses_data_it_cannot_split() -> None:
    with pytest.raises(WorkloadError, match="re-batches"):
        apply(workload(nn.Identity(), [["a", "b"]]), BatchSize(size=2))
    with pytest.raises(WorkloadError, match="re-batches"):
        apply(workload(nn.Identity(), iter([torch.randn(2)])), BatchSize(size=2))
