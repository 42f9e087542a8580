"""Hooked passes: once the first pass has found the sites, models whose structure cannot change are recorded by hooks
on their rectifier modules alone, with exactly the statistics of the TorchFunctionMode; every other model keeps the
mode on every pass."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from reluscope.torch import monitor, register_rectifier, scan  # noqa: E402
from reluscope.torch._plan import fixed_structure  # noqa: E402
from test_torch_models import one_torch_thread  # noqa: E402, F401

sys.path.insert(0, str(Path(__file__).parent))
from conftest import import_torchvision  # noqa: E402

pytestmark = pytest.mark.torch


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _seeded(build: Any) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build()  # type: ignore[no-any-return]


class Reused(nn.Module):
    """One in-place ReLU module at two depths (sites act, act#2), a GELU, a config branch and a container loop."""

    def __init__(self, skip: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(5, 8)
        self.fc2 = nn.Linear(8, 8)
        self.act = nn.ReLU(inplace=True)
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(8, 8), nn.GELU()) for _ in range(2)])
        self.skip = skip
        self.out = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc1(x))
        h = self.act(self.fc2(h))
        for block in self.blocks:
            h = block(h) + h if self.skip else block(h)
        return self.out(h)


class DataBranch(nn.Module):
    """A module runs only when the batch mean is positive: the structure is not fixed."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 6)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(6, 6)
        self.act2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.fc1(x))
        if x.mean() > 0:
            h = self.act2(self.fc2(h))
        return h


def _cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 5, 3, stride=2),
        nn.ReLU6(),
        nn.Flatten(),
        nn.Linear(5 * 7 * 7, 3),
    )


def _train(model: nn.Module, batches: list[torch.Tensor], *, plan: bool, **options: Any) -> tuple[Any, int]:
    """Train a few steps with a monitor; (its window and full statistics as dicts, hooked passes)."""
    model = copy.deepcopy(model).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with torch.random.fork_rng(devices=[]), monitor(model, **options) as m:
        torch.manual_seed(1)  # dropout draws, if any
        m._rec.allow_plan = plan
        for xb in batches:
            opt.zero_grad()
            model(xb).square().mean().backward()
            opt.step()
    return (m.stats.to_dict(), m.full_stats.to_dict()), m._rec.hooked_passes


def _models() -> dict[str, tuple[Any, list[torch.Tensor]]]:
    return {
        "reused": (lambda: Reused(), [_x(6, 5, seed=s) for s in range(4)]),
        "cnn": (_cnn, [_x(4, 3, 16, 16, seed=s) for s in range(4)]),
        "tokens": (
            lambda: nn.Sequential(nn.Linear(3, 6), nn.GELU(), nn.Linear(6, 2)),
            [_x(2, 5, 3, seed=s) for s in range(4)],
        ),
    }


@pytest.mark.parametrize("name", ["reused", "cnn", "tokens"])
@pytest.mark.parametrize("options", [{}, {"full_every": 1}, {"full_every": 2, "per_position": True}])
def test_hooked_passes_equal_the_mode_exactly(name: str, options: dict[str, Any]) -> None:
    build, batches = _models()[name]
    model = _seeded(build)
    assert fixed_structure(model)
    with_mode, hooked_none = _train(model, batches, plan=False, **options)
    hooked, n_hooked = _train(model, batches, plan=True, **options)
    assert hooked_none == 0 and n_hooked == len(batches) - 1  # the first pass learns the sites
    assert hooked == with_mode


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2"])
def test_torchvision_models_take_hooked_passes_with_equal_statistics(arch: str) -> None:
    tv = import_torchvision()
    model = _seeded(lambda: getattr(tv.models, arch)(num_classes=5))
    assert fixed_structure(model)
    batches = [_x(2, 3, 32, 32, seed=s) for s in range(3)]
    with_mode, _ = _train(model, batches, plan=False, full_every=2)
    hooked, n_hooked = _train(model, batches, plan=True, full_every=2)
    assert n_hooked == 2 and hooked == with_mode


def test_scan_takes_hooked_batches_with_equal_statistics() -> None:
    model = _seeded(_cnn)
    batches = [_x(3, 3, 16, 16, seed=s) for s in range(3)]
    got = scan(model, batches, per_position=True)
    want = scan(model, batches, per_position=True, call=lambda m, b: m(b))  # a custom call keeps the mode
    assert got.to_dict() == want.to_dict()


def test_models_whose_structure_may_change_keep_the_mode() -> None:
    # a data-dependent branch: act2 runs only for some batches; both are counted exactly
    model = _seeded(DataBranch)
    assert not fixed_structure(model)
    batches = [_x(4, 3, seed=0) - 5, _x(4, 3, seed=1) + 5, _x(4, 3, seed=2) - 5]
    _, n_hooked = _train(model, batches, plan=True)
    assert n_hooked == 0
    stats = scan(model, batches)
    assert stats.n_samples("act1") == 12 and stats.n_samples("act2") == 4
    # a rectifier module that did not run in the first pass
    unused = _seeded(Spare)
    assert fixed_structure(unused)
    _, n_hooked = _train(unused, [_x(2, 3, seed=s) for s in range(3)], plan=True)
    assert n_hooked == 0
    # a functional site
    functional = _seeded(lambda: Functional())
    _, n_hooked = _train(functional, [_x(2, 3, seed=s) for s in range(3)], plan=True)
    assert n_hooked == 0


def test_registered_rectifiers_and_foreign_hooks_keep_the_mode() -> None:
    model = _seeded(_cnn)
    batches = [_x(2, 3, 16, 16, seed=s) for s in range(3)]
    with register_rectifier(torch.sigmoid):
        _, n_hooked = _train(model, batches, plan=True)
    assert n_hooked == 0
    handle = model[4].register_forward_hook(lambda m, a, out: out * 2)  # it changes what the site returns
    try:
        _, n_hooked = _train(model, batches, plan=True)
    finally:
        handle.remove()
    assert n_hooked == 0


class Spare(nn.Module):
    """``spare`` is never called by this forward (code elsewhere might call it)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.act = nn.ReLU()
        self.spare = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x))


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(x))


class Helper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _helper(self.fc(x))


def _helper(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(min=0)


class Looping(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        while x.norm() > 1:
            x = x / 2
        return self.act(self.fc(x))


class Stored(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act_fn = torch.tanh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act_fn(self.fc(x))


class ShapeBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.ReLU()
        self.b = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) if x.shape[0] > 2 else self.b(x)


@pytest.mark.parametrize(
    ("build", "fixed"),
    [
        (Functional, False),  # F.relu in forward
        (Helper, False),  # a module-level helper calling clamp
        (Looping, False),  # a while loop on values
        (Stored, False),  # a function kept as an attribute: unknown
        (ShapeBranch, False),  # a branch on the batch shape
        (lambda: nn.TransformerEncoderLayer(8, 2, 16, activation="gelu"), False),  # activation is a function
        (lambda: Reused(skip=False), True),
        (_cnn, True),
    ],
)
def test_fixed_structure_is_conservative(build: Any, fixed: bool) -> None:
    assert fixed_structure(_seeded(build)) is fixed
