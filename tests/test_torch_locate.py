"""Every rectifier call site is found and counted exactly: each model's scan equals the brute-force stats computed
from its own stored pre-activations."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from torch import nn  # noqa: E402

from reluscope.diagnose import ActivationStats  # noqa: E402
from reluscope.torch import NoRectifierError, find_sites, monitor, register_rectifier, scan  # noqa: E402
from test_torch_models import (  # noqa: E402
    Branchy,
    ConvBN,
    Dense,
    Functional,
    Reused,
    Smooth,
    assert_same_stats,
    batches_of,
    brute_force,
    one_torch_thread,  # noqa: F401
    per_channel,
    seeded,
)

pytestmark = pytest.mark.torch


def _data(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


@pytest.mark.parametrize(
    ("model_cls", "shape", "names"),
    [
        (Dense, (37, 6), ["act1", "act2"]),
        (Reused, (29, 5), ["act", "act#2"]),
        (Functional, (31, 4), ["relu", "relu#2", "relu#3", "relu#4", "leaky_relu", "block.relu"]),
        (ConvBN, (19, 2, 6, 6), ["features.2", "relu"]),
        (Smooth, (41, 6), [f"acts.{k}" for k in Smooth().acts]),
    ],
)
def test_scan_equals_brute_force(model_cls: type, shape: tuple[int, ...], names: list[str]) -> None:
    model = seeded(model_cls)
    batches = batches_of(_data(*shape), [10, 1, shape[0] - 11])  # uneven batches, one of a single sample
    got = scan(model, batches, per_position=True)
    want = brute_force(model, batches)
    assert got.names == names == want.names
    assert_same_stats(got, want)
    assert got.n_samples(names[0]) == shape[0]
    assert_same_stats(scan(model, batches), per_channel(want))  # the default: conv sites per channel only


def test_dead_units_are_found() -> None:
    """The units the models were built with dead (bias -50, BN bias -30, GELU bias -40) are reported dead."""
    dense = scan(seeded(Dense), [_data(50, 6)])
    assert dense.dead_mask("act1")[:3].all() and not dense.dead_mask("act1")[3:].all()
    conv = scan(seeded(ConvBN), [_data(20, 2, 6, 6)], per_position=True)
    assert conv.kind("features.2") == "conv" and conv.n_units("features.2") == 5
    assert conv.dead_mask("features.2")[0] and not conv.dead_mask("features.2")[1:].any()
    assert conv.position_frequency("features.2").shape == (5, 6, 6)


def test_in_place_relu_counts_the_pre_activation() -> None:
    """nn.ReLU(inplace=True) overwrites its input; the max pre-activation must still be the negative value it had."""
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.copy_(torch.tensor([-2.0, -0.5, 0.0, 1.5]))
    stats = scan(model, [torch.ones(5, 3)])
    np.testing.assert_array_equal(stats.max_preactivation("1"), [-2.0, -0.5, 0.0, 1.5])
    np.testing.assert_array_equal(stats.fire_count("1"), [0, 0, 0, 5])  # exactly 0 does not fire


@pytest.mark.parametrize("inplace_fn", [F.leaky_relu_, F.elu_, lambda t: F.relu6(t, inplace=True)])
def test_other_in_place_rectifiers(inplace_fn: object) -> None:
    class M(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return inplace_fn(x * 1.0)  # type: ignore[operator]

    x = torch.tensor([[-3.0, -1.0, 0.5], [-2.0, 0.0, 2.0]])
    stats = scan(M(), [x])
    (name,) = stats.names
    np.testing.assert_array_equal(stats.max_preactivation(name), [-2.0, 0.0, 2.0])
    np.testing.assert_array_equal(stats.fire_count(name), [0, 0, 2])


def test_data_dependent_branch() -> None:
    """torch.fx cannot trace the model; the scan sees exactly the calls that ran, batch by batch."""
    model = seeded(Branchy)
    with pytest.raises(torch.fx.proxy.TraceError):
        torch.fx.symbolic_trace(model)
    x = _data(40, 3)
    batches = [x[:10] + 2.0, x[10:20] - 2.0, x[20:35] + 2.0, x[35:] - 2.0]  # branch taken, not, taken, not
    got = scan(model, batches)
    assert_same_stats(got, brute_force(model, batches))
    assert got.n_samples("relu") == 40 and got.n_samples("relu#2") == 25


def test_gelu_silu_fire_means_positive_pre_activation() -> None:
    """GELU/SiLU are negative (not zero) for negative inputs; a unit fires only on the positive side."""
    model = nn.Sequential(nn.Linear(2, 3), nn.GELU(), nn.Linear(3, 3), nn.SiLU())
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.copy_(torch.tensor([-1.0, 0.5, -0.2]))
    stats = scan(model, [_data(16, 2)])
    np.testing.assert_array_equal(stats.dead_mask("1"), [True, False, True])
    # ... although the dead GELU units have a non-zero mean |activation| (GELU(-1) = -0.159)
    assert stats.mean_abs_activation("1")[0] == pytest.approx(0.15865525, rel=1e-6)
    out = model[1](torch.tensor([-1.0, -1e-3, 1e-3, 1.0]))
    assert ((out > 0) == torch.tensor([False, False, True, True])).all()


def test_find_sites_names_and_kinds() -> None:
    sites = find_sites(seeded(ConvBN), _data(2, 2, 6, 6))
    assert [(s.name, s.function, s.module, s.call, s.kind) for s in sites] == [
        ("features.2", "relu", "features.2", 1, "conv"),
        ("relu", "relu", "", 1, "conv"),
    ]
    assert sites[0].shape == (5, 6, 6) and sites[0].units == 5
    reused = find_sites(seeded(Reused), _data(2, 5))
    assert [(s.name, s.call, s.shape) for s in reused] == [("act", 1, (8,)), ("act#2", 2, (4,))]


def test_find_sites_leaves_the_model_as_it_was() -> None:
    model = seeded(ConvBN).train()
    model.features[0].eval()  # a submodule's own flag survives too
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    find_sites(model, _data(3, 2, 6, 6))
    assert model.training and model.features[1].training and not model.features[0].training
    assert torch.is_grad_enabled()
    assert all(torch.equal(v, buffers[k]) for k, v in model.state_dict().items())  # no BatchNorm update
    assert not torch.overrides._get_current_function_mode_stack()


def test_parameters_and_non_rectifiers_are_not_sites() -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.tensor([1.0, -1.0]))
            self.fc = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = F.relu(self.scale)  # a constraint on a parameter, not a layer of units
            h = torch.sigmoid(self.fc(x)) + F.hardtanh(x) + torch.tanh(x)  # not rectifiers
            return F.hardtanh(h, 0.0, 6.0) * s  # hardtanh(0, 6) is ReLU6

    assert [(s.name, s.function) for s in find_sites(M(), _data(3, 2))] == [("relu6", "relu6")]


def test_linear_on_tokens_reads_the_last_dim() -> None:
    """(N, L, F) from a Linear: F units, every token of every sample is a sample, with or without channels_last."""
    model = nn.Sequential(nn.Linear(4, 6), nn.GELU())
    x = _data(5, 7, 4)
    pre = model[0](x).detach()
    ref = ActivationStats()
    ref.update("1", pre.reshape(-1, 6).numpy(), model[1](pre).reshape(-1, 6).numpy())
    for flag in (False, True):
        stats = scan(model, [x], channels_last=flag, per_position=True)
        assert_same_stats(stats, ref)
        assert stats.n_samples("1") == 35 and stats.unit_axis("1") == 2 and stats.axis_source("1") == "linear"
        assert stats.sample_shape("1") == (7,) and stats.describe_samples("1") == "5×7 positions"
    by_user = scan(model, [x], unit_axis={"1": 1})  # the old rank rule, now only on request
    assert by_user.n_units("1") == 7 and by_user.axis_source("1") == "user" and by_user.n_samples("1") == 5
    (site,) = find_sites(model, x)
    assert (site.unit_axis, site.axis_source, site.sample_shape, site.kind) == (2, "linear", (7,), "dense")


def test_rule_applies_without_a_producer() -> None:
    """A permuted tensor has no producer: dim 1 by the rule, the last dim with channels_last, recorded as "rule"."""

    class Permuted(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.relu(x.permute(0, 2, 1))

    x = _data(3, 4, 5)
    stats = scan(Permuted(), [x])
    assert stats.n_units("relu") == 5 and stats.axis_source("relu") == "rule" and stats.kind("relu") == "dense"
    last = scan(Permuted(), [x], channels_last=True)
    assert last.n_units("relu") == 4 and last.axis_source("relu") == "rule" and last.n_samples("relu") == 15
    with pytest.raises(ValueError, match=r"dim 0 is the batch"):
        scan(Permuted(), [x], unit_axis={"relu": 0})
    with pytest.raises(ValueError, match=r"ran as no site.*'relu'"):
        scan(Permuted(), [x], unit_axis={"nope": 1})
    with pytest.raises(TypeError, match="unit_axis"):
        scan(Permuted(), [x], unit_axis={"relu": "last"})  # type: ignore[dict-item]


def test_per_channel_default_allows_varying_sizes() -> None:
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU())
    batches = [_data(4, 1, 5, 5), _data(4, 1, 7, 7, seed=1)]
    with pytest.raises(ValueError, match=r"per-sample shape changed.*per_position=False"):
        scan(model, batches, per_position=True)
    stats = scan(model, batches)
    assert stats.kind("1") == "dense" and stats.n_units("1") == 3 and stats.n_samples("1") == 8
    channel_fired = [(model(b) > 0).flatten(2).any(2).sum(0) for b in batches]
    np.testing.assert_array_equal(stats.fire_count("1"), (channel_fired[0] + channel_fired[1]).numpy())


def test_unbatched_and_empty_batches() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    stats = scan(model, [_data(3), _data(0, 3), _data(2, 3)])
    assert stats.n_samples("1") == 3


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 9),
    units=st.integers(1, 6),
    spatial=st.sampled_from([(), (3, 2), (1, 4)]),
    cut=st.integers(0, 9),
    seed=st.integers(0, 2**16),
)
def test_hypothesis_shapes_and_batching(n: int, units: int, spatial: tuple[int, ...], cut: int, seed: int) -> None:
    """Any dense or conv shape, any split into two batches: scan == ActivationStats.update on the same arrays."""
    x = _data(n, units, *spatial, seed=seed).double()
    cut = min(cut, n)
    stats = scan(nn.ReLU(), [x[:cut], x[cut:]], per_position=True)
    ref = ActivationStats()
    for part in (x[:cut], x[cut:]):
        ref.update("relu", part.numpy(), part.relu().numpy())
    assert_same_stats(stats, ref, rtol=1e-12)


def test_batches_larger_than_the_int16_count_chunk() -> None:
    x = _data(40000, 3)
    stats = scan(nn.ReLU(), [x])
    np.testing.assert_array_equal(stats.fire_count("relu"), (x > 0).sum(0).numpy())


_ZERO = torch.zeros(())
RELU_SPELLINGS = {
    "F.relu": lambda h: F.relu(h),
    "relu_": lambda h: h.relu_(),
    "clamp(min=0)": lambda h: h.clamp(min=0),
    "x.clamp(0)": lambda h: h.clamp(0),
    "clamp(0, None)": lambda h: torch.clamp(h, 0, None),
    "clamp(0, inf)": lambda h: torch.clamp(h, 0.0, float("inf")),
    "clamp_(min=0)": lambda h: h.clamp_(min=0),
    "clip(min=0)": lambda h: h.clip(min=0),
    "clamp_min(0)": lambda h: torch.clamp_min(h, 0),
    "clamp_min_(0)": lambda h: h.clamp_min_(0.0),
    "maximum(x, zeros_like)": lambda h: torch.maximum(h, torch.zeros_like(h)),
    "maximum(zeros, x)": lambda h: torch.maximum(torch.zeros(h.shape[-1]), h),
    "max(x, 0-tensor buffer)": lambda h: torch.max(h, _ZERO),
    "threshold(x, 0, 0)": lambda h: F.threshold(h, 0.0, 0.0),
    "nn.Threshold(0, 0)": lambda h: nn.Threshold(0, 0)(h),
    "hardtanh(x, 0, 6)": lambda h: F.hardtanh(h, 0.0, 6.0),
    "relu6": lambda h: F.relu6(h),
    "clamp(0, 6)": lambda h: h.clamp(0, 6),
}


class Spelled(nn.Module):
    """PyTorch's classic two-layer example: linear2(spelling(linear1(x))); 20 hidden units, 5 killed by bias -50."""

    def __init__(self, spelling: Any) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear1 = nn.Linear(4, 20)
        self.linear2 = nn.Linear(20, 3)
        self.spelling = spelling
        with torch.no_grad():
            self.linear1.bias[:5] = -50.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.spelling(self.linear1(x)))


@pytest.mark.parametrize("spelling", list(RELU_SPELLINGS))
def test_every_spelling_of_max_x_0_is_found(spelling: str) -> None:
    model = Spelled(RELU_SPELLINGS[spelling])
    x = _data(30, 4)
    stats = scan(model, [x[:11], x[11:]])
    (name,) = stats.names
    pre = model.linear1(x).detach()
    np.testing.assert_array_equal(stats.fire_count(name), (pre > 0).sum(0).numpy())
    np.testing.assert_array_equal(stats.max_preactivation(name), pre.amax(0).double().numpy())
    assert stats.dead_mask(name)[:5].all() and stats.axis_source(name) == "linear"
    act = RELU_SPELLINGS[spelling](pre.clone())
    np.testing.assert_allclose(stats.mean_abs_activation(name), act.abs().mean(0).double().numpy(), rtol=1e-6)
    (site,) = find_sites(model, x)
    assert site.function in ("relu", "relu6", "hardtanh")


@pytest.mark.parametrize(
    "not_a_rectifier",
    [
        lambda h: h.clamp(min=0.5),
        lambda h: h.clamp(-1, 1),
        lambda h: torch.clamp(h, max=0),
        lambda h: F.threshold(h, 0.1, 0.0),
        lambda h: F.threshold(h, 0.0, -1.0),
        lambda h: torch.maximum(h, torch.ones_like(h)),
        lambda h: F.hardtanh(h),
    ],
)
def test_other_clamps_are_not_rectifiers(not_a_rectifier: Any) -> None:
    model = Spelled(not_a_rectifier)
    assert find_sites(model, _data(3, 4)) == []
    with pytest.raises(NoRectifierError, match=r"none of them a rectifier: linear, .*register_rectifier"):
        scan(model, [_data(3, 4)])


def test_register_rectifier_for_functions_and_modules() -> None:
    """Custom rectifiers: a Python function (through the returned wrapper), a torch function, a module class."""

    def shifted(h: torch.Tensor) -> torch.Tensor:  # max(h - 1, 0): fires where h > 1
        return (h - 1).clamp(min=0)

    class Square(nn.Module):  # relu(h)**2 computed with a where (not a recognised spelling by itself)
        def forward(self, h: torch.Tensor) -> torch.Tensor:
            return torch.where(h > 0, h * h, torch.zeros_like(h))

    x = _data(25, 4)
    with register_rectifier(shifted, fires=1.0) as reg:
        model = Spelled(reg.function)
        stats = scan(model, [x])
        pre = model.linear1(x).detach()
        assert stats.names == ["shifted"] and reg.label == "shifted"
        np.testing.assert_array_equal(stats.fire_count("shifted"), (pre > 1).sum(0).numpy())
    assert "fires > 1" in repr(reg)
    reg.remove()  # idempotent
    # unregistered, the wrapper is transparent: its clamp(min=0) is found, a rectifier of h - 1 (same counts)
    inner = scan(Spelled(reg.function), [x])
    assert inner.names == ["clamp"] and (inner.fire_count("clamp") == stats.fire_count("shifted")).all()
    with register_rectifier(Square):
        model = Spelled(Square())
        stats = scan(model, [x])
        assert stats.names == ["spelling"]  # named by its module path; calls inside it are not sites
        np.testing.assert_array_equal(stats.fire_count("spelling"), (model.linear1(x) > 0).sum(0).numpy())
        with monitor(model, full_every=1, train_only=False) as m:
            model(x)
        assert m.stats == stats
    with register_rectifier(torch.sigmoid, name="sig"):
        assert [s.function for s in find_sites(Spelled(torch.sigmoid), x)] == ["sig"]
    assert find_sites(Spelled(torch.sigmoid), x) == []
    with pytest.raises(TypeError, match="fires"):
        register_rectifier(shifted, fires=float("nan"))
    with pytest.raises(TypeError, match=r"nn\.Module subclass"):
        register_rectifier(int)  # type: ignore[arg-type]


def test_stats_metadata_round_trip_and_old_dicts() -> None:
    model = Spelled(F.relu)
    stats = scan(model, [_data(6, 4)])
    d = stats.to_dict()
    assert d["sites"][0]["unit_axis"] == 1 and d["sites"][0]["axis_source"] == "linear"
    back = ActivationStats.from_dict(json.loads(json.dumps(d)))
    assert back.to_dict() == d and back.axis_source("relu") == "linear" and back.sample_shape("relu") == ()
    old = {
        **d,
        "sites": [
            {k: v for k, v in s.items() if k not in ("unit_axis", "axis_source", "sample_shape")} for s in d["sites"]
        ],
    }
    legacy = ActivationStats.from_dict(old)
    assert legacy == stats and legacy.unit_axis("relu") is None and legacy.describe_samples("relu") == "6 samples"
    assert legacy.merge(stats).axis_source("relu") == "linear"
    bad = {**d, "sites": [{**d["sites"][0], "axis_source": "guess"}]}
    with pytest.raises(ValueError, match="axis_source"):
        ActivationStats.from_dict(bad)


@pytest.mark.parametrize("conv", [nn.Conv1d, nn.Conv2d, nn.Conv3d])
def test_conv_channels_whatever_the_rank_and_memory_format(conv: type[nn.Module]) -> None:
    """Conv*d outputs: units on dim 1 (axis_source "conv"), also in channels_last memory format."""
    torch.manual_seed(0)
    model = nn.Sequential(conv(2, 5, 3, padding=1), nn.ReLU())
    spatial = {nn.Conv1d: (6,), nn.Conv2d: (6, 6), nn.Conv3d: (3, 4, 4)}[conv]
    x = _data(7, 2, *spatial)
    want = scan(model, [x])
    assert want.n_units("1") == 5 and want.axis_source("1") == "conv" and want.n_samples("1") == 7
    pre = model[0](x).detach()
    np.testing.assert_array_equal(want.fire_count("1"), (pre.flatten(2).amax(2) > 0).sum(0).numpy())
    if conv is nn.Conv2d:
        model = model.to(memory_format=torch.channels_last)
        got = scan(model, [x.to(memory_format=torch.channels_last)])
        np.testing.assert_array_equal(got.fire_count("1"), want.fire_count("1"))
        assert got.axis_source("1") == "conv"
