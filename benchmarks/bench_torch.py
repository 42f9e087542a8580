"""Cost of the PyTorch adapter on real architectures: scan vs a bare forward, monitor vs a bare training step.

Run: ``python benchmarks/bench_torch.py [--device cpu|cuda] [--threads 2] [--rounds 9] [--steps 21]
[--prune-rounds 20] [--only scan,monitor,prune,mlp,cnn,...] [--json PATH] [--quick]``

Workloads (random init, seeded; issue 16):

- ``mlp``: ``MLP [1024, 784, 1024, 10]`` (Linear-ReLU x2 + Linear); scan 8192 samples in batches of 512, training
  step at batch 256;
- ``cnn``: the small CNN (conv-BN-ReLU x2 + max-pool + Linear on 3x32x32), batch 32; also scanned with
  ``per_position=True``;
- ``mobilenet_v2`` and ``resnet18`` (torchvision, 1000 classes) on 3x64x64, batch 32 (scans of 8 batches);
- ``transformer``: a 2-layer ``nn.TransformerEncoder`` (d 128, 4 heads, FFN 512, GELU, batch_first) on 32 x 64
  tokens. PyTorch runs its eval-mode ``no_grad`` forward through a fused C++ kernel ("fast path") in which the GELU
  cannot be seen from Python; any ``TorchFunctionMode`` (ours included) turns that path off, so the scan is
  compared with both the fast-path forward (what a bare loop costs) and the Python-path forward
  (``torch.backends.mha.set_fastpath_enabled(False)``, what the scan runs).

Measures, each against its bare side, alternating the sides in rotating order every round (a round is one pass over
the scan batches, or one training step), so machine load drifts hit all sides alike:

1. **scan**: ``reluscope.torch.scan`` over the batches vs a ``no_grad`` eval forward loop over the same batches
   (target <= 1.10; per-position counts <= 1.20);
2. **monitor (cheap)**: ``monitor(model)`` vs the bare training step (zero_grad, forward, loss, backward, SGD step)
   on an identical copy of the model (target <= 1.01);
3. **monitor (full)**: ``monitor(model, full_every=1)`` (target <= 1.05).

4. **Pruning dead units** (``--only prune``): ``reluscope.torch.prune_dead`` on models with ~40% of their
   prunable units dead (negative biases: torchvision's vgg11 at random init, 4096-wide classifier, on 3x32x32; a
   transformer encoder layer's ReLU MLP; an MLP; a Conv-BN-ReLU CNN). Forward time of the pruned model over the
   original's, one ``no_grad`` eval forward each per round in alternating order; the ratio of medians and the
   min/max of the per-round ratios, with the parameters saved and the max |output change| measured by
   ``prune_dead``.

The ratio of each round is side time / bare time of that round; printed are its min/median/max over the rounds
(wall clock), and the ratio of the median process CPU times (on a shared machine CPU time is the steadier number:
time spent descheduled does not count; with several threads it includes their spinning). On CUDA the timed region
ends with ``torch.cuda.synchronize()`` and only wall time is meaningful.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tv import import_torchvision

from reluscope.io import save_json
from reluscope.torch import monitor, prune_dead, scan

TARGETS = {"scan": 1.10, "scan per_position": 1.20, "monitor (cheap)": 1.01, "monitor (full)": 1.05}


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


def transformer() -> nn.Module:
    layer = nn.TransformerEncoderLayer(128, 4, 512, dropout=0.1, activation="gelu", batch_first=True)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)


@dataclass
class Workload:
    name: str
    build: Callable[[], nn.Module]
    sample: tuple[int, ...]  # one input sample's shape
    scan_batch: int
    scan_batches: int
    train_batch: int
    classes: int = 10  # 0: the loss is the mean square of the output (the transformer)
    per_position: bool = False
    slow_path_baseline: bool = False


def workloads() -> list[Workload]:
    tv = import_torchvision()
    return [
        Workload("mlp", lambda: mlp([1024, 784, 1024, 10]), (1024,), 512, 16, 256),
        Workload("cnn", cnn, (3, 32, 32), 32, 16, 32, per_position=True),
        Workload("mobilenet_v2", lambda: tv.models.mobilenet_v2(), (3, 64, 64), 32, 8, 32, classes=1000),
        Workload("resnet18", lambda: tv.models.resnet18(), (3, 64, 64), 32, 8, 32, classes=1000),
        Workload("transformer", transformer, (64, 128), 32, 8, 32, classes=0, slow_path_baseline=True),
    ]


@dataclass
class Row:
    workload: str
    measure: str
    rounds: int
    bare_ms: float
    side_ms: float
    ratio_min: float
    ratio_median: float
    ratio_max: float
    cpu_ratio: float | None
    target: float | None
    baseline: str = "bare"
    notes: list[str] = field(default_factory=list)

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.ratio_median <= self.target


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(
    sides: dict[str, Callable[[], None]], rounds: int, device: torch.device
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Run every side once per round, in an order rotating each round; wall and CPU seconds per side and round."""
    keys = list(sides)
    wall: dict[str, list[float]] = {k: [] for k in keys}
    cpu: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(rounds):
        for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
            sync(device)
            w0, c0 = time.perf_counter(), time.process_time()
            sides[k]()
            sync(device)
            cpu[k].append(time.process_time() - c0)
            wall[k].append(time.perf_counter() - w0)
    return wall, cpu


def rows_of(
    name: str, wall: dict[str, list[float]], cpu: dict[str, list[float]], base: str, device: torch.device
) -> list[Row]:
    out = []
    for k in wall:
        if k == base or k.startswith("bare"):
            continue
        ratios = [s / b for s, b in zip(wall[k], wall[base], strict=True)]
        cpu_ratio = None if device.type == "cuda" else statistics.median(cpu[k]) / statistics.median(cpu[base])
        out.append(
            Row(
                name,
                k,
                len(ratios),
                statistics.median(wall[base]) * 1e3,
                statistics.median(wall[k]) * 1e3,
                min(ratios),
                statistics.median(ratios),
                max(ratios),
                cpu_ratio,
                TARGETS.get(k),
                base,
            )
        )
    return out


def bench_scan(w: Workload, rounds: int, device: torch.device, g: torch.Generator) -> list[Row]:
    model = seeded(w.build).to(device).eval()
    batches = [torch.randn(w.scan_batch, *w.sample, generator=g).to(device) for _ in range(w.scan_batches)]

    def bare() -> None:
        with torch.no_grad():
            for xb in batches:
                model(xb)

    def bare_slow() -> None:
        prior = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            bare()
        finally:
            torch.backends.mha.set_fastpath_enabled(prior)

    def scanned() -> None:
        scan(model, batches)

    def scanned_positions() -> None:
        scan(model, batches, per_position=True)

    sides: dict[str, Callable[[], None]] = {"bare": bare, "scan": scanned}
    if w.per_position:
        sides["scan per_position"] = scanned_positions
    if w.slow_path_baseline:
        sides["bare (no fast path)"] = bare_slow
    for fn in sides.values():  # warm-up: allocator, thread pools, first-call paths
        fn()
    wall, cpu = alternate(sides, rounds, device)
    rows = rows_of(w.name, wall, cpu, "bare", device)
    if w.slow_path_baseline:
        slow = rows_of(w.name, {k: wall[k] for k in wall if k != "bare"}, cpu, "bare (no fast path)", device)
        for row in slow:
            row.target = None
        rows += slow
    return rows


def bench_monitor(w: Workload, steps: int, device: torch.device, g: torch.Generator) -> list[Row]:
    base = seeded(w.build).to(device).train()
    x = torch.randn(w.train_batch, *w.sample, generator=g).to(device)
    y = torch.randint(0, max(w.classes, 1), (w.train_batch,), generator=g).to(device)
    models = {k: copy.deepcopy(base) for k in ("bare", "monitor (cheap)", "monitor (full)")}
    handles = [monitor(models["monitor (cheap)"]), monitor(models["monitor (full)"], full_every=1)]

    def stepper(model: nn.Module) -> Callable[[], None]:
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            out = model(x)
            loss = F.cross_entropy(out, y) if w.classes else out.square().mean()
            loss.backward()
            opt.step()

        return step

    sides = {k: stepper(m) for k, m in models.items()}
    for fn in sides.values():
        for _ in range(2):
            fn()
    wall, cpu = alternate(sides, steps, device)
    n_sites = len(handles[0].sites)
    for h in handles:
        h.remove()
    rows = rows_of(w.name, wall, cpu, "bare", device)
    for row in rows:
        row.notes.append(f"{n_sites} sites")
    return rows


def timed(fn: Callable[[], None], wall: list[float], cpu: list[float]) -> None:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    cpu.append(time.process_time() - c0)
    wall.append(time.perf_counter() - w0)


def report(label: str, wall: list[float], cpu: list[float], base: tuple[float, float] | None, target: str) -> None:
    w, c = statistics.median(wall), statistics.median(cpu)
    ratio = "" if base is None else f"   ratio wall {w / base[0]:.3f}  cpu {c / base[1]:.3f}  (target <= {target})"
    print(f"  {label:24s} wall {w * 1e3:8.2f} ms  cpu {c * 1e3:8.2f} ms{ratio}")


def kill(bias: torch.Tensor, fraction: float = 0.4) -> None:
    """Every unit whose index falls in the first ``fraction`` of each block of 10 gets a bias of -100: dead."""
    with torch.no_grad():
        idx = torch.arange(bias.numel())
        bias[(idx % 10) < round(10 * fraction)] = -100.0


def vgg11() -> nn.Module:
    model: nn.Module = import_torchvision().models.vgg11(num_classes=10)
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


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def fmt(row: Row) -> str:
    cpu = "   -  " if row.cpu_ratio is None else f"{row.cpu_ratio:6.3f}"
    target = "" if row.target is None else f"<= {row.target:.2f} {'met' if row.met else 'MISSED'}"
    vs = "" if row.baseline == "bare" else f" (vs {row.baseline})"
    return (
        f"{row.workload:13s} {row.measure + vs:40s} {row.bare_ms:9.2f} {row.side_ms:9.2f}  "
        f"{row.ratio_min:6.3f} {row.ratio_median:6.3f} {row.ratio_max:6.3f}  {cpu}  {target}"
    )


def main(argv: list[str] | None = None) -> int:
    if hasattr(sys.stdout, "reconfigure"):  # a log (stdout not a terminal) shows each row as it is measured
        sys.stdout.reconfigure(line_buffering=True)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for every side (default 2)")
    ap.add_argument("--rounds", type=int, default=9, help="alternated scan passes per side (default 9)")
    ap.add_argument("--steps", type=int, default=21, help="alternated training steps per side (default 21)")
    ap.add_argument("--prune-rounds", type=int, default=20, help="forwards per side for the pruning comparison")
    ap.add_argument(
        "--only",
        action="append",
        help="comma-separated sections (scan, monitor, prune) and/or workloads (mlp, cnn, mobilenet_v2, resnet18, "
        "transformer) to run; repeatable; default: all",
    )
    ap.add_argument("--json", type=Path, help="also write the rows and the machine description here")
    ap.add_argument("--quick", action="store_true", help="2 rounds and 3 steps (smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.prune_rounds = 2, 3, 2
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device here", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    tokens = {t for item in args.only or [] for t in item.split(",") if t}
    all_sections = {"scan", "monitor", "prune"}
    all_workloads = workloads()
    names = {w.name for w in all_workloads}
    unknown = tokens - all_sections - names
    if unknown:
        print(f"--only: unknown {sorted(unknown)}; choose from {sorted(all_sections)} and {sorted(names)}")
        return 2
    sections = (tokens & all_sections) or ({"scan", "monitor"} if tokens & names else all_sections)
    chosen = [w for w in all_workloads if not (tokens & names) or w.name in tokens]
    machine = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "cpu": cpu_model(),
    }
    print(f"torch {machine['torch']}, {machine['threads']} threads, device {machine['device']}, CPU {machine['cpu']}")
    rows: list[Row] = []
    for i, w in enumerate(chosen if sections & {"scan", "monitor"} else [], 1):
        if "scan" in sections:
            print(f"[{i}/{len(chosen)}] {w.name}: scan, {args.rounds} rounds ...", file=sys.stderr, flush=True)
            rows += bench_scan(w, args.rounds, device, g)
        if "monitor" in sections:
            print(f"[{i}/{len(chosen)}] {w.name}: monitor, {args.steps} steps ...", file=sys.stderr, flush=True)
            rows += bench_monitor(w, args.steps, device, g)
    if rows:
        print(
            f"\n{'workload':13s} {'measure':40s} {'bare ms':>9s} {'side ms':>9s}  {'wall ratio min/med/max':>20s}  "
            f"{'cpu':>6s}  target"
        )
        for row in rows:
            print(fmt(row))
    if "prune" in sections:
        if device.type != "cpu":
            print("pruning rows: CPU only (skipped on", device, ")")
        else:
            print()
            bench_prune_models(g, args.prune_rounds)
    if args.json is not None:
        rec = {"machine": machine, "args": {k: str(v) for k, v in vars(args).items()}, "rows": []}
        for row in rows:
            d: dict[str, Any] = dict(row.__dict__)
            d["met"] = row.met
            rec["rows"].append(d)
        save_json(args.json, rec)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
