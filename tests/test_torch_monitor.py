"""reluscope.torch.monitor: exact against brute force, never changes training, never keeps a graph, always detaches."""

from __future__ import annotations

import copy
import gc
import weakref
from contextlib import nullcontext
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from reluscope.diagnose import ActivationStats  # noqa: E402
from reluscope.torch import Monitor, monitor  # noqa: E402
from test_torch_models import (  # noqa: E402
    ConvBN,
    Dense,
    Logging,
    assert_same_stats,
    one_torch_thread,  # noqa: F401
    per_channel,
    seeded,
)

pytestmark = pytest.mark.torch


def _no_mode_left() -> bool:
    return not torch.overrides._get_current_function_mode_stack()


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


class Net(Logging):
    """Conv -> BN -> ReLU(inplace) -> Dropout -> F.relu(linear) -> GELU(linear) -> linear: BN batch statistics,
    dropout randomness, in-place ops, functional calls and a smooth rectifier, all in training mode."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True))
        self.drop = nn.Dropout(0.3)
        self.fc1 = nn.Linear(4 * 5 * 5, 16)
        self.fc2 = nn.Linear(16, 12)
        self.gelu = nn.GELU()
        self.out = nn.Linear(12, 3)
        with torch.no_grad():
            self.fc1.bias[:4] = -20.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, bn, act = self.features
        h = self.keep("features.2", bn(conv(x)), act)
        h = self.drop(h).flatten(1)
        h = self.keep("relu", self.fc1(h), F.relu)
        h = self.keep("gelu", self.fc2(h), self.gelu)
        return self.out(h)


def _batches(n_steps: int, n: int = 12, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    sizes = [n + (i % 3) for i in range(n_steps)]  # uneven
    return [(torch.randn(s, 1, 5, 5, generator=g), torch.randint(0, 3, (s,), generator=g)) for s in sizes]


def _train(
    model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], watch: dict[str, Any] | None
) -> tuple[list[float], list[torch.Tensor], Monitor | None, list[list[tuple[str, torch.Tensor, torch.Tensor]]]]:
    """SGD with momentum; returns losses, final parameters, the monitor and the per-step logs of the model."""
    torch.manual_seed(123)  # dropout masks
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses: list[float] = []
    logs: list[list[tuple[str, torch.Tensor, torch.Tensor]]] = []
    ctx = monitor(model, **watch) if watch is not None else nullcontext()
    with ctx as m:
        model.train()
        for xb, yb in batches:
            if isinstance(model, Logging):
                model.log = []
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if isinstance(model, Logging):
                assert model.log is not None
                logs.append(model.log)
                model.log = None
    return losses, [p.detach().clone() for p in model.parameters()], m, logs


def _reference(logs: list[list[tuple[str, torch.Tensor, torch.Tensor]]], steps: list[int]) -> ActivationStats:
    ref = ActivationStats()
    for t in steps:
        for name, pre, act in logs[t]:
            ref.update(name, pre.numpy(), act.numpy())
    return ref


def test_training_is_bit_identical_with_and_without_monitor() -> None:
    base = seeded(Net)
    batches = _batches(6)
    runs = [
        _train(copy.deepcopy(base), batches, None),
        _train(copy.deepcopy(base), batches, {}),  # cheap path every step
        _train(copy.deepcopy(base), batches, {"full_every": 1, "per_position": True}),
        _train(copy.deepcopy(base), batches, {"every": 2, "full_every": 3}),
    ]
    for losses, params, _, _ in runs[1:]:
        assert losses == runs[0][0]
        assert all(torch.equal(a, b) for a, b in zip(params, runs[0][1], strict=True))


def test_full_counts_every_step_equal_brute_force() -> None:
    _, _, m, logs = _train(seeded(Net), _batches(5), {"full_every": 1, "per_position": True})
    assert m is not None and m.removed
    want = _reference(logs, list(range(5)))
    assert_same_stats(m.stats, want)
    assert_same_stats(m.full_stats, want)
    assert m.stats.dead_mask("relu")[:4].all()


def test_cheap_path_gives_exact_dead_masks_and_maxima() -> None:
    _, _, m, logs = _train(seeded(Net), _batches(5), {})
    assert m is not None
    want = per_channel(_reference(logs, list(range(5))))
    got = m.stats
    assert got.names == want.names == ["features.2", "relu", "gelu"]
    for name in want.names:
        assert got.n_samples(name) == want.n_samples(name)
        np.testing.assert_array_equal(got.dead_mask(name), want.dead_mask(name))
        np.testing.assert_array_equal(got.max_preactivation(name), want.max_preactivation(name))
        assert (got.fire_count(name) <= want.fire_count(name)).all()  # a lower bound without full counts
    assert m.full_stats.names == []


def test_every_and_full_every_select_the_steps() -> None:
    _, _, m, logs = _train(seeded(Net), _batches(7), {"every": 2, "full_every": 4})
    assert m is not None and m.steps == 7
    recorded, full = [0, 2, 4, 6], [0, 4]
    window = per_channel(_reference(logs, recorded))
    exact = per_channel(_reference(logs, full))
    assert_same_stats(m.full_stats, exact)
    for name in window.names:
        assert m.stats.n_samples(name) == window.n_samples(name)
        np.testing.assert_array_equal(m.stats.dead_mask(name), window.dead_mask(name))
        np.testing.assert_array_equal(m.stats.max_preactivation(name), window.max_preactivation(name))
        # counts: exact on the full steps, at least 1 for units that fired only in the cheap steps
        expected = np.maximum(exact.fire_count(name), ~window.dead_mask(name))
        np.testing.assert_array_equal(m.stats.fire_count(name), expected)


def test_reset_window_and_dead_fractions() -> None:
    model = seeded(Dense)
    x = torch.randn(20, 6, generator=torch.Generator().manual_seed(0))
    with monitor(model, full_every=1) as m:
        model(x)
        fractions = m.dead_fractions()
        closed = m.reset_window()
        assert m.stats.names == [] and [s.name for s in m.sites] == ["act1", "act2"]
        model(x[:5])
        assert m.stats.n_samples("act1") == 5
    assert closed.n_samples("act1") == 20
    assert fractions == {name: closed.dead_fraction(name) for name in closed.names}
    assert fractions["act1"] >= 3 / 10  # the three units built dead


def test_eval_passes_are_skipped_unless_asked() -> None:
    model = seeded(Dense)
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(0))
    with monitor(model) as m:
        model.eval()
        model(x)
        assert m.steps == 0 and m.stats.names == []
        model.train()
        model(x)
        assert m.steps == 1 and m.stats.n_samples("act1") == 8
    with monitor(model.eval(), train_only=False) as m2:
        model(x)
        assert m2.steps == 1


class KeepsWeakRefs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 2)
        self.refs: list[weakref.ref[torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.fc1(x)
        h = torch.relu(pre)
        self.refs += [weakref.ref(pre), weakref.ref(h)]
        return self.fc2(h)


@pytest.mark.parametrize("full_every", [None, 1])
def test_no_graph_is_kept_alive(full_every: int | None) -> None:
    model = KeepsWeakRefs()
    with monitor(model, full_every=full_every) as m:
        out = model(torch.randn(6, 4))
        loss = out.square().mean()
        loss.backward()
        del out, loss
        gc.collect()
        assert model.refs and all(r() is None for r in model.refs)  # activations (and their graph) are freed
        for acc in m._rec.accs.values():
            for t in (acc.run_max, acc.full_max, acc.fire_count, acc.abs_hi, acc.abs_lo):
                assert not t.requires_grad and t.grad_fn is None


class Fails(nn.Module):
    def __init__(self, exc: BaseException) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.exc = exc
        self.fail = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc(x))
        if self.fail:
            raise self.exc
        return h


def test_hooks_removed_when_forward_raises_in_context() -> None:
    model = Fails(RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"), monitor(model):
        model(torch.randn(2, 3))
    assert _no_mode_left() and _no_hooks(model)


def test_mode_exited_after_a_raising_step_and_monitor_keeps_working() -> None:
    model = Fails(ValueError("bad batch"))
    m = monitor(model, full_every=1)
    with pytest.raises(ValueError, match="bad batch"):
        model(torch.randn(2, 3))
    assert _no_mode_left()  # the always-call hook left the mode
    model.fail = False
    model(torch.randn(4, 3))
    assert m.stats.n_samples("relu") == 6  # the failed step's pre-activations were seen too
    m.remove()
    m.remove()  # idempotent
    assert _no_hooks(model) and m.removed and "removed" in repr(m)
    model(torch.randn(4, 3))
    assert m.stats.n_samples("relu") == 6  # detached: nothing more recorded, stats still readable


def test_keyboard_interrupt_in_forward_leaves_nothing_behind() -> None:
    model = Fails(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt), monitor(model):
        model(torch.randn(2, 3))
    assert _no_mode_left() and _no_hooks(model)


def test_bad_arguments() -> None:
    model = seeded(Dense)
    with pytest.raises(ValueError, match="every must be a positive integer"):
        monitor(model, every=0)
    with pytest.raises(ValueError, match="full_every must be a positive integer or None"):
        monitor(model, full_every=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="train_only"):
        monitor(model, train_only="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"nn\.Module"):
        monitor(object())  # type: ignore[arg-type]
    assert _no_hooks(model)


def test_diverged_model_is_reported_on_read() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    with monitor(model) as m:
        model(torch.full((2, 2), float("nan")))
        with pytest.raises(ValueError, match="NaN or inf"):
            _ = m.stats


def test_conv_model_per_channel_by_default() -> None:
    model = seeded(ConvBN).train()
    with monitor(model) as m:
        model(torch.randn(4, 2, 6, 6))
    assert [(s.name, s.kind, s.shape) for s in m.sites] == [("features.2", "dense", (5,)), ("relu", "dense", (4,))]


def test_monitor_says_what_ran_and_takes_unit_axis_overrides() -> None:
    """No sites: functions_seen lists what the recorded passes executed. unit_axis works as in scan."""
    tanh = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
    with monitor(tanh) as m:
        tanh(torch.randn(2, 3, generator=torch.Generator().manual_seed(0)))
    assert m.sites == [] and m.functions_seen == ["linear", "tanh"]
    tokens = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    x = torch.randn(5, 6, 3, generator=torch.Generator().manual_seed(1))
    with monitor(tokens, full_every=1) as by_feature, monitor(tokens, full_every=1, unit_axis={"1": 1}) as by_token:
        tokens(x)
    assert by_feature.stats.n_units("1") == 4 and by_feature.stats.n_samples("1") == 30
    assert by_token.stats.n_units("1") == 6 and by_token.stats.axis_source("1") == "user"
