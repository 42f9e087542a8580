"""Cost of ``reluscope.torch.monitor`` on a ``torch.compile``d model, per training step.

Run: ``python benchmarks/bench_torch_compile.py [--steps 40] [--backend inductor] [--threads 2] [--batch 256]``

Four copies of an MLP ``[784, 512, 512, 10]`` (ReLU) are compiled with the same backend and trained side by side on
the same batches: bare, and under ``monitor(compiled, every=k)`` for k = 1, 10, 100. A recorded step runs the
original module eagerly (a ``TorchFunctionMode`` cannot enter compiled code), so ``every=1`` costs about an eager
step and ``every=k`` amortises that over k steps. The sides run one step each in rotating order after a warm-up
(compilation) phase; each side's time is the median over steps. Prints the ratios to the bare compiled step and
to a bare eager step.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from reluscope.torch import monitor


def build() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))


def step_fn(model: nn.Module, params: nn.Module) -> Callable[[torch.Tensor, torch.Tensor], None]:
    opt = torch.optim.SGD(params.parameters(), lr=0.01)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--backend", default="inductor")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 784, generator=g)
    y = torch.randint(0, 10, (args.batch,), generator=g)
    base = build()
    eager = copy.deepcopy(base)
    sides: dict[str, Callable[[torch.Tensor, torch.Tensor], None]] = {"eager (no compile)": step_fn(eager, eager)}
    monitors = []
    for label, every in (("compiled", None), ("monitor every=1", 1), ("monitor every=10", 10), ("every=100", 100)):
        model = copy.deepcopy(base)
        compiled = torch.compile(model, backend=args.backend)
        if every is not None:
            monitors.append(monitor(compiled, every=every))
        sides[label] = step_fn(compiled, model)
    for _ in range(args.warmup):  # compile (and recompile after the first monitored step) outside the timing
        for step in sides.values():
            step(x, y)
    wall: dict[str, list[float]] = {k: [] for k in sides}
    cpu: dict[str, list[float]] = {k: [] for k in sides}
    names = list(sides)
    for i in range(args.steps):
        for k in names[i % len(names) :] + names[: i % len(names)]:
            t0, c0 = time.perf_counter(), time.process_time()
            sides[k](x, y)
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    for m in monitors:
        m.remove()
    print(f"backend={args.backend} batch={args.batch} threads={args.threads} steps={args.steps}")
    for clock, times in (("wall", wall), ("cpu", cpu)):
        ref = statistics.median(times["compiled"])
        eager_t = statistics.median(times["eager (no compile)"])
        for k in names:
            med = statistics.median(times[k])
            print(
                f"{clock:>4} {k:>20}: median {med * 1e3:7.2f} ms (min {min(times[k]) * 1e3:.2f}, max "
                f"{max(times[k]) * 1e3:.2f})  x{med / ref:5.2f} vs compiled, x{med / eager_t:5.2f} vs eager"
            )


if __name__ == "__main__":
    main()
