"""reluscope.torch.scan: eval mode and no_grad during the scan, modes restored, inputs of every kind, the numpy twin,
TorchScript models, and the import error without torch."""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from _rounding import assert_fire_counts_within_rounding, rounding_bounds

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from reluscope.diagnose import ActivationStats  # noqa: E402
from reluscope.diagnose import scan as numpy_scan  # noqa: E402
from reluscope.nn import MLP  # noqa: E402
from reluscope.torch import NoRectifierError, find_sites, from_mlp, scan  # noqa: E402
from test_torch_models import (  # noqa: E402
    ConvBN,
    Dense,
    assert_same_stats,
    brute_force,
    one_torch_thread,  # noqa: F401
    seeded,
)

pytestmark = pytest.mark.torch
T = TypeVar("T")


def _data(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _no_mode_left() -> bool:
    return not torch.overrides._get_current_function_mode_stack()


class Spy(nn.Module):
    """Records the training flag and grad mode its forward sees; raises on request."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.drop = nn.Dropout(0.5)
        self.seen: list[tuple[bool, bool]] = []
        self.fail_at: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, torch.is_grad_enabled()))
        if self.fail_at is not None and len(self.seen) == self.fail_at:
            raise RuntimeError("boom")
        return F.relu(self.drop(self.fc(x)))


def test_eval_and_no_grad_during_scan_and_modes_restored() -> None:
    model = Spy().train()
    model.drop.eval()  # a submodule deliberately in eval mode must stay so
    scan(model, [_data(4, 3), _data(4, 3)])
    assert model.seen == [(False, False), (False, False)]
    assert model.training and not model.drop.training and model.fc.training
    assert torch.is_grad_enabled() and _no_mode_left()
    model.eval()
    scan(model, [_data(4, 3)])
    assert not model.training


def test_modes_restored_and_nothing_left_when_forward_raises() -> None:
    model = Spy().train()
    model.fail_at = 2
    with pytest.raises(RuntimeError, match="boom"):
        scan(model, [_data(4, 3), _data(4, 3), _data(4, 3)])
    assert model.training and model.drop.training
    assert _no_mode_left() and torch.is_grad_enabled()
    assert not model._forward_hooks and not model._forward_pre_hooks
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_dataloader_tuples_numpy_and_progress() -> None:
    model = seeded(Dense)
    x = _data(45, 6)
    y = torch.zeros(45, dtype=torch.long)
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    calls: list[tuple[int, int | None]] = []
    a = scan(model, loader, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(16, 45), (32, 45), (45, 45)]
    b = scan(model, [x[:20].numpy(), (x[20:], y[20:])])
    c = scan(model, (xb for xb in [x]), progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (45, None)  # a generator does not know its length
    assert_same_stats(a, brute_force(model, [x]))
    assert_same_stats(b, a)
    assert_same_stats(c, a)


def test_custom_call_and_continued_stats() -> None:
    model = seeded(Dense)
    x = _data(30, 6)
    batches = [{"inputs": x[:12]}, {"inputs": x[12:]}]
    with pytest.raises(TypeError, match="call=lambda model, batch"):
        scan(model, batches)
    first = scan(model, batches[:1], call=lambda m, b: m(b["inputs"]))
    both = scan(model, batches[1:], call=lambda m, b: m(b["inputs"]), stats=first)
    assert both is first
    assert_same_stats(both, brute_force(model, [x]))


def test_bad_arguments() -> None:
    model = seeded(Dense)
    with pytest.raises(TypeError, match=r"torch.nn.Module.*from_mlp"):
        scan(MLP([2, 3, 2]), [_data(2, 2)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="yielded no batch"):
        scan(model, [])
    with pytest.raises(TypeError, match="per_position"):
        scan(model, [_data(2, 6)], per_position=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="stats must be"):
        scan(model, [_data(2, 6)], stats={})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="device"):
        scan(model, [_data(2, 6)], device="not-a-device")
    with pytest.raises(ValueError, match="NaN"):
        scan(model, [torch.full((2, 6), float("nan"))])


def test_model_without_rectifiers_says_what_it_saw() -> None:
    """No silent empty result: the error lists the torch functions that ran and how to register a rectifier."""
    with pytest.raises(
        NoRectifierError,
        match=r"saw 2 torch functions, none of them a rectifier: linear, tanh.*"
        r"register_rectifier",
    ) as info:
        scan(nn.Sequential(nn.Linear(2, 3), nn.Tanh()), [_data(4, 2)])
    assert info.value.functions == ["linear", "tanh"] and isinstance(info.value, ValueError)


@pytest.mark.parametrize("activation", ["relu", "leaky", "prelu"])
def test_numpy_mlp_and_torch_twin_give_identical_stats(activation: str) -> None:
    """Dyadic weights, inputs and slopes make every product and sum exact, so both backends agree to the last bit."""
    rng = np.random.default_rng(3)
    net = MLP([8, 16, 12, 3], activation=activation, slope=0.125, seed=0, dtype="float64")
    params = {k: rng.integers(-4, 5, size=v.shape) / 8.0 for k, v in net.params.items()}
    if activation == "prelu":
        params = {k: (np.full(v.shape, 0.25) if k.startswith("a") else v) for k, v in params.items()}
    net.set_params(params)
    X = rng.integers(-3, 4, size=(70, 8)) / 4.0
    twin = from_mlp(net)
    np.testing.assert_array_equal(twin(torch.from_numpy(X)).detach().numpy(), net.scores(X))
    want = numpy_scan(net, X, batch_size=32)
    got = scan(twin, [torch.from_numpy(X[i : i + 32]) for i in range(0, 70, 32)])
    assert got.names == ["hidden1", "hidden2"]
    assert got == want  # to_dict equality: counts, maxima, |activation| sums (hi and lo), shapes


@pytest.mark.parametrize("activation", ["relu", "elu"])
def test_numpy_mlp_and_torch_twin_on_random_float32_data(activation: str) -> None:
    net = MLP([10, 32, 32, 4], activation=activation, seed=1, dtype="float32", init="normal", init_std=0.3)
    X = np.random.default_rng(0).standard_normal((200, 10)).astype(np.float32)
    want = numpy_scan(net, X, batch_size=64)
    got = scan(from_mlp(net), [torch.from_numpy(X)])
    # numpy's OpenBLAS and torch's kernels round differently: fire counts agree up to samples within rounding of 0
    for name, pre, bound in zip(want.names, net.preactivations(X), rounding_bounds(net, X), strict=True):
        assert_fire_counts_within_rounding(got.fire_count(name), pre, bound)
        np.testing.assert_allclose(got.max_preactivation(name), want.max_preactivation(name), rtol=1e-5)
        np.testing.assert_allclose(got.mean_abs_activation(name), want.mean_abs_activation(name), rtol=1e-5)
    with pytest.raises(TypeError, match=r"reluscope\.nn\.MLP"):
        from_mlp(nn.Linear(2, 2))  # type: ignore[arg-type]


def test_from_mlp_sigmoid_has_no_sites() -> None:
    net = MLP([3, 5, 2], activation="sigmoid", seed=0)
    X = np.random.default_rng(0).standard_normal((6, 3))
    twin = from_mlp(net)
    np.testing.assert_allclose(twin(torch.from_numpy(X)).detach().numpy(), net.scores(X), rtol=1e-12)
    with pytest.raises(NoRectifierError, match="sigmoid"):
        scan(twin, [torch.from_numpy(X)])
    assert find_sites(twin, torch.from_numpy(X)) == []


class Scriptable(nn.Module):
    """Conv-BN-ReLU(inplace), functional GELU, a data-dependent relu_ and a reused module."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU(inplace=True)
        self.fc = nn.Linear(4 * 6 * 6, 5)
        self.fc2 = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.bn(self.conv(x)))
        h = F.gelu(self.fc(h.flatten(1)))
        if bool(h.sum() > 0):
            h = h.relu_()
        return self.fc2(self.act(h))


def _jit(fn: Callable[[], T]) -> T:
    """TorchScript is deprecated in recent PyTorch (DeprecationWarning); the adapter still reads it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return fn()


def test_torchscript_scripted_and_traced_match_eager(tmp_path: Path) -> None:
    from reluscope.torch._script import uninstrumented_sites

    model = seeded(Scriptable).eval()
    x = _data(12, 1, 8, 8)
    eager = scan(model, [x[:5], x[5:]])
    assert eager.names == ["act", "gelu", "relu", "act#2"]
    scripted = _jit(lambda: torch.jit.script(model))
    traced = _jit(lambda: torch.jit.trace(model, x[:2]))
    for ts in (scripted, traced):
        path = str(tmp_path / "m.pt")
        _jit(lambda ts=ts, path=path: torch.jit.save(ts, path))
        loaded = _jit(lambda path=path: torch.jit.load(path))
        loaded.train()
        got = scan(loaded, [x[:5], (x[5:], None)])
        assert [n for n in eager.names if n in got.names] == got.names
        for name in got.names:
            i, j = eager.names.index(name), got.names.index(name)
            assert got.to_dict()["sites"][j] == eager.to_dict()["sites"][i]
        assert loaded.training  # restored
    assert got.names == eager.names  # traced: no control flow left
    assert uninstrumented_sites(scripted) == ["relu"]  # the `if` branch of the scripted model
    assert scan(scripted, [x]).names == ["act", "gelu", "act#2"]


def test_conv_model_on_its_batches_all_sites_conv() -> None:
    model = seeded(ConvBN)
    stats = scan(model, [_data(8, 2, 6, 6)], per_position=True)
    assert [stats.kind(n) for n in stats.names] == ["conv", "conv"]
    assert isinstance(stats, ActivationStats)
    default = scan(model, [_data(8, 2, 6, 6)])
    assert [(default.kind(n), default.n_units(n)) for n in default.names] == [("dense", 5), ("dense", 4)]


def test_import_error_without_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "reluscope.torch" or m.startswith("reluscope.torch.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"reluscope.torch needs PyTorch: pip install 'reluscope\[torch\]'"):
        importlib.import_module("reluscope.torch")
