"""Shared pieces of the torch adapter tests (imported by the other test_torch_* files): models that log their own
pre-activations (the brute-force reference) and a comparison of two ActivationStats."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from reluscope.diagnose import ActivationStats  # noqa: E402


@pytest.fixture(autouse=True)
def one_torch_thread() -> Any:
    """Tiny models run fastest on one thread; on a loaded 2-core machine two threads spin for seconds.
    Test modules import this fixture to use it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Logging(nn.Module):
    """Models whose forward calls ``self.keep(name, pre, fn)``: fn(pre) is returned and, while ``self.log`` is a
    list, (name, copy of pre, copy of fn(pre)) is appended: the stored activations the brute force counts from."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, torch.Tensor, torch.Tensor]] | None = None

    def keep(self, name: str, pre: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        pre_copy = pre.detach().clone()
        out = fn(pre)
        if self.log is not None:
            self.log.append((name, pre_copy, out.detach().clone()))
        return out


def brute_force(model: Logging, batches: Iterable[torch.Tensor], *, train: bool = False) -> ActivationStats:
    """Stats from the logged activations, fed batch by batch to the numpy ActivationStats."""
    ref = ActivationStats()
    was = model.training
    model.train(train)
    try:
        with torch.no_grad():
            for xb in batches:
                model.log = []
                model(xb)
                for name, pre, act in model.log:
                    ref.update(name, pre.numpy(), act.numpy())
    finally:
        model.log = None
        model.train(was)
    return ref


def assert_same_stats(got: ActivationStats, want: ActivationStats, *, rtol: float = 1e-5) -> None:
    """Names, shapes, sample and fire counts, maxima, position counts exactly; |activation| sums to rtol."""
    g, w = got.to_dict()["sites"], want.to_dict()["sites"]
    assert [s["name"] for s in g] == [s["name"] for s in w]
    for a, b in zip(g, w, strict=True):
        name = a["name"]
        for key in ("shape", "n_samples", "fire_count", "max_pre", "position_fire_count"):
            assert a[key] == b[key], f"{name}: {key} differs"
        total_a = np.asarray(a["abs_sum"]) + np.asarray(a["abs_sum_lo"])
        total_b = np.asarray(b["abs_sum"]) + np.asarray(b["abs_sum_lo"])
        np.testing.assert_allclose(total_a, total_b, rtol=rtol, atol=1e-12, err_msg=f"{name}: abs_sum")


def per_channel(ref: ActivationStats) -> ActivationStats:
    """Conv sites recorded per channel only (per_position=False): the same counters, positions dropped."""
    d = ref.to_dict()
    for site in d["sites"]:
        if len(site["shape"]) == 3:
            site["shape"] = site["shape"][:1]
            site["position_fire_count"] = None
    return ActivationStats.from_dict(d)


# Models ------------------------------------------------------------------------------------------------------------
class Dense(Logging):
    """fc1 -> nn.ReLU -> fc2 -> nn.ReLU(inplace=True) -> fc3."""

    def __init__(self, d: int = 6, h: int = 10, c: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, h)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(h, h)
        self.act2 = nn.ReLU(inplace=True)
        self.fc3 = nn.Linear(h, c)
        with torch.no_grad():
            self.fc1.bias[:3] = -50.0  # three units that never fire

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.keep("act1", self.fc1(x), self.act1)
        h = self.keep("act2", self.fc2(h), self.act2)
        return self.fc3(h)


class Reused(Logging):
    """One nn.ReLU module applied at two depths: two sites, act and act#2."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(5, 8)
        self.fc2 = nn.Linear(8, 4)
        self.act = nn.ReLU()
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.keep("act", self.fc1(x), self.act)
        h = self.keep("act#2", self.fc2(h), self.act)
        return self.out(h)


class Functional(Logging):
    """F.relu, torch.relu, x.relu_(), F.relu(inplace=True), F.leaky_relu_ and x.relu() called in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.ModuleList([nn.Linear(4, 7), nn.Linear(7, 6), nn.Linear(6, 5), nn.Linear(5, 5), nn.Linear(5, 4)])
        self.block = Block()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.keep("relu", self.fc[0](x), F.relu)
        h = self.keep("relu#2", self.fc[1](h), torch.relu)
        h = self.keep("relu#3", self.fc[2](h), lambda t: t.relu_())
        h = self.keep("relu#4", self.fc[3](h), lambda t: F.relu(t, inplace=True))
        h = self.keep("leaky_relu", self.fc[4](h), lambda t: F.leaky_relu_(t, 0.1))
        return self.block(h, self)


class Block(nn.Module):
    """A submodule calling x.relu() in its own forward: site block.relu."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor, owner: Logging) -> torch.Tensor:
        pre = self.fc(x)
        pre_copy = pre.detach().clone()
        out = pre.relu()
        if owner.log is not None:
            owner.log.append(("block.relu", pre_copy, out.detach().clone()))
        return out


class ConvBN(Logging):
    """Conv2d -> BatchNorm2d -> ReLU(inplace=True) inside a Sequential, then a conv with F.relu, then a linear."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(2, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(inplace=True))
        self.conv2 = nn.Conv2d(5, 4, 3)
        self.head = nn.Linear(4 * 4 * 4, 3)
        with torch.no_grad():
            self.features[1].running_mean.uniform_(-0.5, 0.5)
            self.features[1].running_var.uniform_(0.5, 2.0)
            self.features[1].bias[0] = -30.0  # channel 0 is dead

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, bn, act = self.features
        h = self.keep("features.2", bn(conv(x)), act)
        h = self.keep("relu", self.conv2(h), F.relu)
        return self.head(h.flatten(1))


class Branchy(Logging):
    """A data-dependent `if` (torch.fx cannot trace it): the second ReLU runs only for some batches."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 6)
        self.fc2 = nn.Linear(6, 6)
        self.out = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.keep("relu", self.fc1(x), F.relu)
        if x.mean() > 0:
            h = self.keep("relu#2", self.fc2(h), F.relu)
        return self.out(h)


class Smooth(Logging):
    """The rest of the family: GELU, SiLU (in place), ELU (in place), LeakyReLU (in place), ReLU6 (in place),
    PReLU, Hardswish, Mish, SELU, CELU."""

    def __init__(self) -> None:
        super().__init__()
        self.acts = nn.ModuleDict(
            {
                "gelu": nn.GELU(),
                "silu": nn.SiLU(inplace=True),
                "elu": nn.ELU(inplace=True),
                "leaky": nn.LeakyReLU(0.2, inplace=True),
                "relu6": nn.ReLU6(inplace=True),
                "prelu": nn.PReLU(6, init=0.3),
                "hardswish": nn.Hardswish(),
                "mish": nn.Mish(),
                "selu": nn.SELU(),
                "celu": nn.CELU(),
            }
        )
        self.fcs = nn.ModuleList([nn.Linear(6, 6) for _ in self.acts])
        with torch.no_grad():
            self.fcs[0].bias[0] = -40.0  # gelu unit 0 never reaches the positive side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for (key, act), fc in zip(self.acts.items(), self.fcs, strict=True):
            h = self.keep(f"acts.{key}", fc(h), act)
        return h


def batches_of(x: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    out, start = [], 0
    for s in sizes:
        out.append(x[start : start + s])
        start += s
    assert start == len(x)
    return out


def seeded(model_cls: type[nn.Module], seed: int = 0, **kw: Any) -> Any:
    torch.manual_seed(seed)
    return model_cls(**kw)
