"""The per-step path of scan and monitor never reads a value on the host (no device sync on a GPU), and the conv
reductions (positions first or batch first, fire counts from output sums) equal brute force on every map size."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from reluscope.torch import monitor, scan  # noqa: E402
from test_torch_models import (  # noqa: E402
    Logging,
    assert_same_stats,
    brute_force,
    one_torch_thread,  # noqa: F401
    per_channel,
)

pytestmark = pytest.mark.torch

# Reading a tensor's value on the host: each of these syncs a GPU stream.
_HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")


@contextmanager
def no_host_reads() -> Iterator[list[str]]:
    """Every host read of a tensor value raises inside the block (and is listed, in case something catches it)."""
    called: list[str] = []
    saved = {name: getattr(torch.Tensor, name) for name in _HOST_READS}

    def raiser(name: str) -> Callable[..., Any]:
        def read(self: Any, *args: Any, **kwargs: Any) -> Any:
            called.append(name)
            raise AssertionError(f"Tensor.{name} called in the per-step path")

        return read

    try:
        for name in _HOST_READS:
            setattr(torch.Tensor, name, raiser(name))
        yield called
    finally:
        for name, fn in saved.items():
            setattr(torch.Tensor, name, fn)


class Zoo(Logging):
    """Conv sites on odd and tiny maps (7x7, 3x3, 2x2: batch-first maxima; 16x16: positions first) with ReLU in
    place, ReLU6, Hardtanh(0, 2), GELU and a functional clamp(min=0); token sites (N, L, F); a reused module."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.act1 = nn.ReLU(inplace=True)
        self.c2 = nn.Conv2d(6, 5, 3, stride=2, padding=1)  # 16x16 -> 8x8
        self.act2 = nn.ReLU6(inplace=True)
        self.c3 = nn.Conv2d(5, 4, 2, stride=2)  # 8x8 -> 4x4
        self.act3 = nn.Hardtanh(0.0, 2.0)
        self.c4 = nn.Conv2d(4, 4, 3, padding=1)
        self.act4 = nn.GELU()
        self.c5 = nn.Conv2d(4, 3, 2)  # 4x4 -> 3x3
        self.c6 = nn.Conv2d(3, 3, 2)  # 3x3 -> 2x2
        self.tok = nn.Linear(4, 5)
        self.shared = nn.ReLU()
        self.odd = nn.Conv2d(3, 2, 3, padding=1)
        with torch.no_grad():
            self.bn1.bias[0] = -30.0  # a dead channel
            self.tok.bias[:2] = -40.0  # two dead token units

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.keep("act1", self.bn1(self.c1(x)), self.act1)  # (N, 6, 16, 16)
        h = self.keep("act2", self.c2(h), self.act2)  # 8x8
        h = self.keep("act3", self.c3(h), self.act3)  # 4x4
        h = self.keep("act4", self.c4(h), self.act4)
        h = self.keep("clamp", self.c5(h), lambda t: t.clamp(min=0))  # 3x3
        h2 = self.keep("shared", self.c6(h), self.shared)  # 2x2, then the same module on tokens
        odd = F.interpolate(x, size=(7, 7))
        o = self.keep("relu", self.odd(odd), F.relu)  # 7x7
        tokens = h2.flatten(2).transpose(1, 2)  # (N, 4, 3): 4 tokens of 3 channels
        pre = self.tok(F.pad(tokens, (0, 1)))  # (N, 4, 5): 5 units on the last dim, N*4 token samples
        pre_rows = pre.detach().reshape(-1, 5).clone()
        t = self.shared(pre)
        if self.log is not None:
            self.log.append(("shared#2", pre_rows, t.detach().reshape(-1, 5).clone()))
        return t.sum((1, 2)) + o.sum((1, 2, 3))


def _batches(n: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 3, 16, 16, generator=g) for _ in range(n)]


def _seeded_zoo() -> Zoo:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Zoo()


def _fixed_cnn() -> nn.Sequential:
    """A model of fixed structure: hooked passes after the first one."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 4, 3),
            nn.BatchNorm2d(4),
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(4 * 14 * 14, 5),
            nn.GELU(),
        )


def _train(model: nn.Module, batches: list[torch.Tensor], watch: Callable[[], Any]) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for i, xb in enumerate(batches):
        opt.zero_grad()
        with watch() if i else _nothing():  # the first pass may learn its sites freely
            loss = model(xb).square().mean()
        loss.backward()
        opt.step()


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@pytest.mark.parametrize("options", [{}, {"full_every": 1}, {"full_every": 1, "per_position": True}])
def test_monitor_steps_read_nothing_on_the_host(options: dict[str, Any]) -> None:
    model = _seeded_zoo()
    reads: list[list[str]] = []

    @contextmanager
    def watch() -> Iterator[None]:
        with no_host_reads() as called:
            yield
        reads.append(called)

    with monitor(model, **options) as m:
        _train(model, _batches(4), watch)
    assert reads == [[], [], []]
    assert len(m.sites) == 8 and m.stats.n_samples("act1") == 16  # the statistics are read after the steps


@pytest.mark.parametrize("options", [{}, {"full_every": 1, "per_position": True}])
def test_hooked_monitor_steps_read_nothing_on_the_host(options: dict[str, Any]) -> None:
    """A model of fixed structure is recorded by hooks on its rectifier modules after the first pass."""
    model = _fixed_cnn()
    reads: list[list[str]] = []

    @contextmanager
    def watch() -> Iterator[None]:
        with no_host_reads() as called:
            yield
        reads.append(called)

    with monitor(model, **options) as m:
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        for i, xb in enumerate(_batches(4)):
            opt.zero_grad()
            with watch() if i else _nothing():
                loss = model(xb).square().mean()
            loss.backward()
            opt.step()
    assert reads == [[], [], []] and m._rec.hooked_passes == 3
    assert m.stats.n_samples("2") == 16 and m.stats.n_samples("5") == 16


def test_scan_batches_read_nothing_on_the_host() -> None:
    model = _seeded_zoo()
    calls = [0]

    def call(m: nn.Module, batch: torch.Tensor) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            return m(batch)
        with no_host_reads() as called:
            out = m(batch)
        assert called == []
        return out

    stats = scan(model, _batches(3), call=call, per_position=True)
    assert calls[0] == 3 and stats.n_samples("act1") == 12


def test_conv_reductions_equal_brute_force_on_every_map_size() -> None:
    model = _seeded_zoo()
    batches = _batches(3)
    want = brute_force(model, batches)
    assert_same_stats(scan(model, batches, per_position=True), want)
    got = scan(model, batches)
    assert_same_stats(got, per_channel(want))
    assert got.names == ["act1", "act2", "act3", "act4", "clamp", "shared", "relu", "shared#2"]
    assert got.dead_mask("act1")[0] and got.dead_mask("shared#2")[:2].all()


def test_monitor_cheap_and_full_paths_equal_brute_force() -> None:
    base = _seeded_zoo()
    batches = _batches(4)
    ref_model = copy.deepcopy(base)
    want = per_channel(brute_force(ref_model, batches, train=True))  # BN in train mode, no parameter updates
    for options in ({}, {"full_every": 1}):
        model = copy.deepcopy(base).train()
        with monitor(model, **options) as m, torch.no_grad():
            for xb in batches:
                model(xb)
        got = m.stats
        for name in want.names:
            assert got.n_samples(name) == want.n_samples(name)
            np.testing.assert_array_equal(got.dead_mask(name), want.dead_mask(name))
            np.testing.assert_array_equal(got.max_preactivation(name), want.max_preactivation(name))
        if options:
            assert_same_stats(m.full_stats, want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("options", [{}, {"full_every": 1}])
@pytest.mark.parametrize("build", [_seeded_zoo, _fixed_cnn])
def test_cuda_monitor_steps_never_sync(options: dict[str, Any], build: Callable[[], nn.Module]) -> None:
    """Under ``torch.cuda.set_sync_debug_mode("error")`` any synchronising call raises; the training step itself
    (Linear/Conv/BN/ReLU, cross-entropy on device labels, SGD) syncs nowhere, so a raise would be the monitor's."""
    device = torch.device("cuda")
    model = build().to(device)
    batches = [b.to(device) for b in _batches(4)]

    @contextmanager
    def watch() -> Iterator[None]:
        torch.cuda.synchronize()
        prior = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode(prior)

    with monitor(model, **options) as m:
        _train(model, batches, watch)
    assert m.stats.n_samples(m.stats.names[0]) == 16


def test_staged_sums_fold_bit_identically_to_one_twosum_per_site() -> None:
    """flush() folds every site's batch sums with foreach calls: the same float64 arithmetic, so the same bits as
    TwoSum + FastTwoSum applied site by site, also for a site staged twice before a flush."""
    from reluscope.torch._locate import _Recorder, _renormalise_, _two_sum_

    g = torch.Generator().manual_seed(3)
    rec = _Recorder(nn.Module(), per_position=False)
    accs = [rec.site_acc(f"s{i}", "relu", "", 1, torch.zeros(2, units)) for i, units in enumerate((5, 3, 7))]
    ref = [(torch.zeros(a.shape, dtype=torch.float64), torch.zeros(a.shape, dtype=torch.float64)) for a in accs]
    for step in range(6):
        order = [0, 1, 2, 0] if step == 3 else [0, 1, 2]  # site 0 twice in one flush
        for i in order:
            units = accs[i].shape[0]
            sums = torch.rand(units, generator=g, dtype=torch.float64) * 10.0 ** (step - 3)
            bmax = torch.randn(units, generator=g)
            rec._staged.append((accs[i], bmax.double(), sums))
            _two_sum_(ref[i][0], ref[i][1], sums)
            _renormalise_(ref[i][0], ref[i][1])
        rec.flush()
    for acc, (hi, lo) in zip(accs, ref, strict=True):
        assert torch.equal(acc.abs_hi, hi) and torch.equal(acc.abs_lo, lo)
    assert rec._staged == []
