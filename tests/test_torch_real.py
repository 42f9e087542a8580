"""Real architectures measured right: each site's units and fire counts equal an independent brute force (forward
pre-hooks on the activation modules, reading the tensors they receive): torchvision resnet18, mobilenet_v2 (ReLU6
runs as hardtanh(0, 6)), a small VisionTransformer (GELU on tokens), transformer MLPs (HF-style,
nn.TransformerEncoderLayer, ReLU and GELU), a ViT-style patch embed + MLP and the mixed CNN + token model of
issue 14. Random init, small inputs, no download."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402

from conftest import import_torchvision  # noqa: E402
from reluscope.torch import find_sites, monitor, scan  # noqa: E402
from test_torch_models import one_torch_thread  # noqa: E402, F401

pytestmark = pytest.mark.torch


class _Plain(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        return func(*args, **(kwargs or {}))


def brute_force(
    model: nn.Module, batches: list[torch.Tensor], acts: dict[nn.Module, str], axis: Callable[[torch.Tensor], int]
) -> dict[str, tuple[int, np.ndarray, np.ndarray]]:
    """{site: (n_samples, fire_count, max_pre)} from forward pre-hooks on the activation modules ``acts`` (module ->
    path; the k-th call of a module in one forward is ``path#k``). ``axis(pre)`` gives the unit dim: dim 1 of a
    rank-4 map is per channel (a channel fires on a sample if any position is > 0); another axis makes every
    index of the other dims a sample."""
    out: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}
    calls: dict[str, int] = {}

    def hook(module: nn.Module, args: Any) -> None:
        path = acts[module]
        calls[path] = calls.get(path, 0) + 1
        name = path if calls[path] == 1 else f"{path}#{calls[path]}"
        pre = args[0].detach().double()
        a = axis(pre)
        per = pre.flatten(2).amax(2) if pre.ndim >= 3 and a == 1 else pre.movedim(a, -1).reshape(-1, pre.shape[a])
        n, fire, mx = out.get(name, (0, np.zeros(per.shape[1], np.int64), np.full(per.shape[1], -np.inf)))
        out[name] = (n + per.shape[0], fire + (per > 0).sum(0).numpy(), np.maximum(mx, per.amax(0).numpy()))

    handles = [m.register_forward_pre_hook(hook) for m in acts]
    try:
        # an empty TorchFunctionMode: PyTorch skips the same fast paths (nn.MultiheadAttention's fused kernel) as
        # under the adapter's mode, so both runs compute bit-identical activations
        with torch.no_grad(), _Plain():
            for xb in batches:
                calls.clear()
                model(xb)
    finally:
        for h in handles:
            h.remove()
    return out


def check(model: nn.Module, batches: list[torch.Tensor], kinds: tuple[type[nn.Module], ...], axis: Any) -> Any:
    model.eval()
    acts = {m: p for p, m in model.named_modules() if isinstance(m, kinds)}
    want = brute_force(model, batches, acts, axis)
    got = scan(model, batches)
    assert got.names == list(want)
    for name, (n, fire, mx) in want.items():
        assert got.n_samples(name) == n, name
        np.testing.assert_array_equal(got.fire_count(name), fire, err_msg=name)
        np.testing.assert_array_equal(got.max_preactivation(name), mx, err_msg=name)  # same tensors: exact
    return got


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _dead_report(stats: Any) -> dict[str, tuple[int, int]]:
    return {n: (stats.n_units(n), int(stats.dead_mask(n).sum())) for n in stats.names}


def test_resnet18() -> None:
    tv = import_torchvision()
    torch.manual_seed(0)
    model = tv.models.resnet18(num_classes=10)
    got = check(model, [_x(3, 3, 32, 32), _x(2, 3, 32, 32, seed=1)], (nn.ReLU,), lambda pre: 1)
    assert len(got.names) == 17 and got.names[:3] == ["relu", "layer1.0.relu", "layer1.0.relu#2"]
    assert all(got.axis_source(n) == "conv" for n in got.names)  # through BN and the residual add
    print("resnet18", _dead_report(got))


def test_mobilenet_v2_relu6_as_hardtanh() -> None:
    tv = import_torchvision()
    torch.manual_seed(0)
    model = tv.models.mobilenet_v2(num_classes=10)
    got = check(model, [_x(2, 3, 32, 32), _x(2, 3, 32, 32, seed=1)], (nn.ReLU6,), lambda pre: 1)
    sites = find_sites(model, _x(1, 3, 32, 32))
    assert len(sites) == 35 and {s.function for s in sites} == {"relu6"}
    assert {s.axis_source for s in sites} == {"conv"}
    print("mobilenet_v2", _dead_report(got))


def test_small_vision_transformer_gelu_on_tokens() -> None:
    tv = import_torchvision()
    torch.manual_seed(0)
    model = tv.models.VisionTransformer(
        image_size=16, patch_size=4, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=24, num_classes=5
    )
    got = check(model, [_x(3, 3, 16, 16), _x(2, 3, 16, 16, seed=1)], (nn.GELU,), lambda pre: pre.ndim - 1)
    for name in got.names:  # 16 patches + the class token per image
        assert got.n_units(name) == 24 and got.axis_source(name) == "linear" and got.n_samples(name) == 5 * 17
        assert got.describe_samples(name) == "5×17 positions"
    print("vit", _dead_report(got))


class HFMLP(nn.Module):
    """Hugging Face style: dense_h_to_4h -> act -> dense_4h_to_h on (N, L, D), with a residual add and LayerNorm."""

    def __init__(self, act: nn.Module, d: int = 8, h: int = 32) -> None:
        super().__init__()
        self.up = nn.Linear(d, h)
        self.act = act
        self.down = nn.Linear(h, d)
        self.norm = nn.LayerNorm(d)
        with torch.no_grad():
            self.up.bias[:5] = -50.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.down(self.act(self.up(x))))


@pytest.mark.parametrize("act", [nn.ReLU, nn.GELU])
def test_transformer_mlps(act: type[nn.Module]) -> None:
    torch.manual_seed(0)
    hf = HFMLP(act())
    got = check(hf, [_x(4, 9, 8), _x(3, 9, 8, seed=1)], (act,), lambda pre: pre.ndim - 1)
    assert _dead_report(got) == {"act": (32, 5)} and got.n_samples("act") == 63
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=32, dropout=0.0, activation=act(), batch_first=True)
    with torch.no_grad():
        layer.linear1.bias[:7] = -50.0
    got = check(layer, [_x(4, 9, 8), _x(3, 9, 8, seed=1)], (act,), lambda pre: pre.ndim - 1)
    (name,) = got.names
    assert got.n_units(name) == 32 and int(got.dead_mask(name).sum()) >= 7 and got.axis_source(name) == "linear"
    print("encoder layer", act.__name__, _dead_report(got))


class PatchMLP(nn.Module):
    """ViT-style: Conv patch embed (ReLU on the patch map), flatten to tokens, LayerNorm, MLP with GELU."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 12, 4, stride=4)
        self.embed_act = nn.ReLU()
        self.norm = nn.LayerNorm(12)
        self.fc1 = nn.Linear(12, 20)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(20, 12)
        with torch.no_grad():
            self.embed.bias[:2] = -50.0
            self.fc1.bias[:3] = -50.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.embed_act(self.embed(x)).flatten(2).transpose(1, 2)  # (N, 16, 12)
        return self.fc2(self.act(self.fc1(self.norm(p))))


def test_vit_style_patch_embed_and_mlp() -> None:
    torch.manual_seed(0)
    model = PatchMLP()
    acts = (nn.ReLU, nn.GELU)
    got = check(model, [_x(3, 3, 16, 16), _x(2, 3, 16, 16, seed=1)], acts, lambda pre: 1 if pre.ndim == 4 else -1)
    assert _dead_report(got) == {"embed_act": (12, 2), "act": (20, 3)}
    assert (got.axis_source("embed_act"), got.axis_source("act")) == ("conv", "linear")


class Mixed(nn.Module):
    """Issue 14's model: a Conv-BN-ReLU stem (6 channels, one killed by a BN bias of -50), turned into 9 tokens of
    width 8, then Linear(8, 32) -> ReLU(inplace=True) -> Linear(32, 8) with 12 features killed by bias -50; with
    torch.manual_seed(0) two more never fire on the 64 samples (the brute force agrees): 14 dead."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.to_tokens = nn.Conv2d(6, 8, 2, stride=2)  # (6, 6, 6) -> (8, 3, 3): 9 tokens of width 8
        self.mlp = nn.Sequential(nn.Linear(8, 32), nn.ReLU(inplace=True), nn.Linear(32, 8))
        with torch.no_grad():
            self.stem[1].bias[0] = -50.0
            self.mlp[0].bias[:12] = -50.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.to_tokens(self.stem(x)).flatten(2).transpose(1, 2)  # (N, 9, 8)
        return self.mlp(tokens).mean(1)


def mixed_data() -> list[torch.Tensor]:
    x = _x(64, 1, 6, 6)
    return [x[:40], x[40:]]


def test_mixed_cnn_and_tokens_without_options() -> None:
    torch.manual_seed(0)
    model = Mixed().eval()
    got = check(model, mixed_data(), (nn.ReLU,), lambda pre: 1 if pre.ndim == 4 else -1)
    assert _dead_report(got) == {"stem.2": (6, 1), "mlp.1": (32, 14)}
    assert got.n_samples("stem.2") == 64 and got.describe_samples("mlp.1") == "64×9 positions"
    # channels_last is sugar for the fallback rule only: Linear and Conv sites keep their producer's axis
    assert _dead_report(scan(model, mixed_data(), channels_last=True)) == _dead_report(got)
    with monitor(model, full_every=1, train_only=False) as m, torch.no_grad():
        for xb in mixed_data():
            model(xb)
    assert m.stats == got


def test_compiled_model_equals_eager() -> None:
    """scan and monitor on torch.compile(model): the eager module's statistics (recorded passes run it eagerly)."""
    torch.manual_seed(0)
    model = Mixed()
    compiled = torch.compile(model, backend="eager")
    eager_stats = scan(model, mixed_data())
    assert scan(compiled, mixed_data()) == eager_stats
    assert [s.name for s in find_sites(compiled, mixed_data()[0])] == ["stem.2", "mlp.1"]
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the weights stay, so every pass sees the same model
    with monitor(compiled, full_every=1) as m:
        for xb in mixed_data():
            opt.zero_grad()
            compiled(xb).sum().backward()
            opt.step()
    with monitor(model, full_every=1) as ref:  # the same training steps on the eager model (BN in train mode)
        for xb in mixed_data():
            opt.zero_grad()
            model(xb).sum().backward()
            opt.step()
    assert m.steps == ref.steps == 2 and m.stats == ref.stats
    with monitor(compiled, every=2, full_every=2) as half:  # steps 1 and 3 recorded (eager), step 2 compiled
        for xb in [*mixed_data(), mixed_data()[0]]:
            compiled(xb).sum().backward()
    assert half.steps == 3 and half.stats.n_samples("stem.2") == 40 + 40
