"""Cost of the PyTorch adapter: monitor overhead per training step, and a whole-dataset scan vs a bare forward.

Run: ``python benchmarks/bench_torch.py [--steps 60] [--scan-rounds 15] [--prune-rounds 20] [--threads 2]
[--mlp-batch 256] [--only monitor,scan,prune] [--quick]``

1. **Monitor overhead per training step** (zero_grad, forward, cross-entropy, backward, SGD step) on an
   ``MLP [1024, 784, 1024, 10]`` (sizes as in ``reluscope.nn.MLP``: 1024 inputs, hidden 784 and 1024, 10 classes;
   batch ``--mlp-batch``, 256) and a small CNN (conv-BN-ReLU x2 + max-pool + linear on 3x32x32, batch 64).
   Three identical copies of each model train side by side on the same batches: bare, with ``monitor(model)``
   (cheap path every step) and with ``monitor(model, full_every=1)`` (full fire counts every step). The sides
   run one step each in rotating order, so machine load drifts hit all of them; each side's time is the median.
   Targets: cheap <= 1.01x, full <= 1.05x.
2. **Scan cost**: ``reluscope.torch.scan`` over a dataset vs a bare ``model(x)`` loop under ``torch.no_grad()``
   in eval mode over the same batches, alternating whole passes; medians. Target <= 1.10x. The CNN is scanned
   both with the default per-channel counts and with ``per_position=True`` (per-position fire maps).
3. **Pruning dead units**: ``reluscope.torch.prune_dead`` on models with ~40% of their prunable units dead
   (negative biases: torchvision's vgg11 at random init, 4096-wide classifier, on 3x32x32; a transformer encoder
   layer's ReLU MLP; an MLP; a Conv-BN-ReLU CNN). Forward time of the pruned model over the original's, one
   ``no_grad`` eval forward each per round in alternating order; the ratio of medians and the min/max of the
   per-round ratios, with the parameters saved and the max |output change| measured by ``prune_dead``.

Each timing is taken twice: wall clock and process CPU time. On a shared, loaded machine the CPU time is the
steadier of the two (time spent descheduled does not count); with several threads it includes their spinning.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from reluscope.torch import monitor, prune_dead, scan


def seeded(build: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    """Build a model whose default init comes from a seeded stream, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(4),
        nn.Flatten(),
        nn.Linear(64 * 8 * 8, 10),
    )


def step_fn(model: nn.Module) -> Callable[[torch.Tensor, torch.Tensor], None]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def timed(fn: Callable[[], None], wall: list[float], cpu: list[float]) -> None:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    cpu.append(time.process_time() - c0)
    wall.append(time.perf_counter() - w0)


def report(label: str, wall: list[float], cpu: list[float], base: tuple[float, float] | None, target: str) -> None:
    w, c = statistics.median(wall), statistics.median(cpu)
    ratio = "" if base is None else f"   ratio wall {w / base[0]:.3f}  cpu {c / base[1]:.3f}  (target <= {target})"
    print(f"  {label:24s} wall {w * 1e3:8.2f} ms  cpu {c * 1e3:8.2f} ms{ratio}")


def bench_monitor(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
    sides = {"bare": copy.deepcopy(model), "cheap": copy.deepcopy(model), "full": copy.deepcopy(model)}
    handles = [monitor(sides["cheap"]), monitor(sides["full"], full_every=1)]
    steppers = {k: step_fn(m) for k, m in sides.items()}
    wall: dict[str, list[float]] = {k: [] for k in sides}
    cpu: dict[str, list[float]] = {k: [] for k in sides}
    keys = list(sides)
    for k in keys:  # warm-up: allocator, thread pools, first-call paths
        for _ in range(3):
            steppers[k](x, y)
    for i in range(steps):
        for k in keys[i % 3 :] + keys[: i % 3]:
            timed(lambda k=k: steppers[k](x, y), wall[k], cpu[k])
    dead = handles[1].dead_fractions()
    for h in handles:
        h.remove()
    base = (statistics.median(wall["bare"]), statistics.median(cpu["bare"]))
    print(f"{name}: training step, medians of {steps} alternating steps; sites {list(dead)}")
    report("bare", wall["bare"], cpu["bare"], None, "")
    report("monitor (cheap)", wall["cheap"], cpu["cheap"], base, "1.01")
    report("monitor (full_every=1)", wall["full"], cpu["full"], base, "1.05")


def bench_scan(name: str, model: nn.Module, batches: list[torch.Tensor], rounds: int, positions: bool) -> None:
    model.eval()

    def bare() -> None:
        with torch.no_grad():
            for xb in batches:
                model(xb)

    def scanned() -> None:
        scan(model, batches)

    def scanned_positions() -> None:
        scan(model, batches, per_position=True)

    sides: dict[str, Callable[[], None]] = {"bare": bare, "scan": scanned}
    if positions:
        sides["scan per_position"] = scanned_positions
    keys = list(sides)
    wall: dict[str, list[float]] = {k: [] for k in keys}
    cpu: dict[str, list[float]] = {k: [] for k in keys}
    for fn in sides.values():
        fn()
    for r in range(rounds):
        for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
            timed(sides[k], wall[k], cpu[k])
    n = sum(len(xb) for xb in batches)
    print(f"{name}: pass over {n} samples in {len(batches)} batches, medians of {rounds} alternating passes")
    base = (statistics.median(wall["bare"]), statistics.median(cpu["bare"]))
    report("bare no_grad forward", wall["bare"], cpu["bare"], None, "")
    for k in keys[1:]:
        report(k, wall[k], cpu[k], base, "1.10")


def kill(bias: torch.Tensor, fraction: float = 0.4) -> None:
    """Every unit whose index falls in the first ``fraction`` of each block of 10 gets a bias of -100: dead."""
    with torch.no_grad():
        idx = torch.arange(bias.numel())
        bias[(idx % 10) < round(10 * fraction)] = -100.0


def vgg11() -> nn.Module:
    import sys
    import types

    try:
        import torchvision
    except RuntimeError as e:  # PyPI's CUDA-linked wheel beside a CPU torch: skip its op registrations
        if "torchvision::" not in str(e):
            raise
        for k in [k for k in sys.modules if k.startswith("torchvision")]:
            del sys.modules[k]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
        import torchvision
    model: nn.Module = torchvision.models.vgg11(num_classes=10)
    return model


def bench_prune(name: str, model: nn.Module, x: torch.Tensor, rounds: int) -> None:
    model.eval()
    stats = scan(model, [x])
    rep = prune_dead(model, stats, data=[x])
    pruned = rep.model
    pruned.eval()
    sides = {"original": model, "pruned": pruned}
    wall: dict[str, list[float]] = {k: [] for k in sides}
    cpu: dict[str, list[float]] = {k: [] for k in sides}

    def fwd(m: nn.Module) -> None:
        with torch.no_grad():
            m(x)

    for m in sides.values():
        fwd(m)
    keys = list(sides)
    for r in range(rounds):
        for k in keys[r % 2 :] + keys[: r % 2]:
            timed(lambda k=k: fwd(sides[k]), wall[k], cpu[k])
    ratios = [p / o for p, o in zip(wall["pruned"], wall["original"], strict=True)]
    ratios_cpu = [p / o for p, o in zip(cpu["pruned"], cpu["original"], strict=True)]
    units = sum(s.units_before for s in rep.sites)
    dead = sum(stats.dead_mask(s.name).sum() for s in rep.sites) / max(units, 1)
    print(f"{name}: batch {len(x)}, medians of {rounds} alternating forwards")
    print(
        f"  dead fraction {float(dead):.1%} of {units} prunable units; removed {rep.units_removed}; parameters "
        f"{rep.params_before} -> {rep.params_after} (saved {rep.params_saved / rep.params_before:.1%}); "
        f"multiply-adds/sample saved {rep.macs_saved / max(rep.macs_before, 1):.1%}; "
        f"max |output change| {rep.max_abs_delta:.3g} (max |output| {rep.max_abs_output:.3g}); refused {rep.refused}"
    )
    report("original", wall["original"], cpu["original"], None, "")
    report("pruned", wall["pruned"], cpu["pruned"], None, "")
    w = statistics.median(wall["pruned"]) / statistics.median(wall["original"])
    c = statistics.median(cpu["pruned"]) / statistics.median(cpu["original"])
    print(
        f"  pruned/original: wall {w:.3f} (per round min {min(ratios):.3f}, max {max(ratios):.3f}); "
        f"cpu {c:.3f} (min {min(ratios_cpu):.3f}, max {max(ratios_cpu):.3f})"
    )


def main() -> None:
    if hasattr(sys.stdout, "reconfigure"):  # a log (stdout not a terminal) shows each row as it is measured
        sys.stdout.reconfigure(line_buffering=True)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60, help="training steps per side")
    ap.add_argument("--scan-rounds", type=int, default=15, help="passes per side for the scan comparison")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--mlp-batch", type=int, default=256, help="batch size of the MLP training step")
    ap.add_argument("--prune-rounds", type=int, default=20, help="forwards per side for the pruning comparison")
    ap.add_argument("--only", default="monitor,scan,prune", help="comma-separated sections to run")
    ap.add_argument("--quick", action="store_true", help="a few steps only (smoke test)")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.scan_rounds, args.prune_rounds = 4, 2, 2
    only = set(args.only.split(","))
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    sizes = [1024, 784, 1024, 10]
    if "monitor" in only:
        x = torch.randn(args.mlp_batch, sizes[0], generator=g)
        y = torch.randint(0, 10, (args.mlp_batch,), generator=g)
        bench_monitor(f"MLP {sizes}, batch {args.mlp_batch}", seeded(lambda: mlp(sizes)), x, y, args.steps)
        xc = torch.randn(64, 3, 32, 32, generator=g)
        yc = torch.randint(0, 10, (64,), generator=g)
        bench_monitor("CNN conv32-conv64 on 3x32x32, batch 64", seeded(cnn), xc, yc, args.steps)

    if "scan" in only:
        data = torch.randn(8192, sizes[0], generator=g)
        bench_scan(
            f"scan MLP {sizes}", seeded(lambda: mlp(sizes)), list(data.split(512)), args.scan_rounds, positions=False
        )
        images = torch.randn(1024, 3, 32, 32, generator=g)
        bench_scan("scan CNN", seeded(cnn), list(images.split(128)), args.scan_rounds, positions=True)

    if "prune" in only:
        bench_prune_models(g, args.prune_rounds)


def bench_prune_models(g: torch.Generator, rounds: int) -> None:
    vgg = seeded(vgg11)
    for i in (0, 3):  # the two 4096-wide hidden layers of the classifier
        kill(vgg.classifier[i].bias)
    bench_prune("prune vgg11 (4096-wide classifier) on 3x32x32", vgg, torch.randn(32, 3, 32, 32, generator=g), rounds)
    del vgg
    enc = seeded(lambda: nn.TransformerEncoderLayer(256, 8, dim_feedforward=1024, dropout=0.0))
    kill(enc.linear1.bias)
    x = torch.randn(64, 16, 256, generator=g)  # (L, N, D): batch_first=False, the Python path
    bench_prune("prune transformer encoder layer d256 ff1024, L64", enc, x, rounds)
    gelu = seeded(lambda: nn.TransformerEncoderLayer(256, 8, dim_feedforward=1024, dropout=0.0, activation="gelu"))
    with torch.no_grad():  # dead GELU units near x = -2, where GELU is -0.045 and still varies: a real fold
        dead = (torch.arange(1024) % 10) < 4
        gelu.linear1.weight[dead] *= 0.05
        gelu.linear1.bias[dead] = -2.0
    bench_prune("prune transformer encoder layer, GELU (mean folded)", gelu, x, rounds)
    big = [1024, 2048, 2048, 10]
    net = seeded(lambda: mlp(big))
    kill(net[0].bias)
    kill(net[2].bias)
    bench_prune(f"prune MLP {big}", net, torch.randn(256, 1024, generator=g), rounds)
    conv = seeded(cnn)
    kill(conv[1].bias)
    kill(conv[4].bias)
    bench_prune("prune CNN conv32-BN-conv64-BN on 3x32x32", conv, torch.randn(64, 3, 32, 32, generator=g), rounds)


if __name__ == "__main__":
    main()
