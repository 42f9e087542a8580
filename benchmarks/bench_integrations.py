"""Overhead of DeadUnitCallback inside a Lightning fit: callback on vs off, alternated, medians.

Run: ``python benchmarks/bench_integrations.py [--rounds 7] [--batches 40] [--threads 1]``

A small MLP (``[256, 512, 512, 10]``, ReLU, batch 128, SGD) trains for one epoch of ``--batches`` batches in a
fresh ``Trainer`` (CPU, no logger output, no checkpoints, no progress bar). Sides, run in rotating order every
round so machine-load drift hits all of them:

- ``off``: no callback;
- ``cheap``: ``DeadUnitCallback(full_every=None)`` (the "fired at least once" reduction every pass);
- ``full10``: ``DeadUnitCallback(full_every=10)`` (the default: exact counts one pass in 10);
- ``full1``: ``DeadUnitCallback(full_every=1)`` (exact counts every pass).

The time is the training epoch only (``on_train_epoch_start`` to ``on_train_epoch_end`` of a timing callback
registered first, so it includes the epoch-end merge and log), wall clock and process CPU; the Trainer's setup is
excluded. Prints min/median/max per side and the ratio of medians to ``off``.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import statistics
import sys
import time
import types
import warnings
from typing import Any


def _import_torchvision() -> None:
    """PyPI's torchvision wheel cannot register its C ops beside a CPU torch; Lightning imports it (torchmetrics)."""
    try:
        import torchvision  # noqa: F401
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
        for k in [k for k in sys.modules if k.startswith("torchvision")]:
            del sys.modules[k]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    _import_torchvision()
    warnings.simplefilter("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # its per-fit banners
    import lightning.pytorch as L
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from reluscope.integrations.lightning import DeadUnitCallback

    torch.set_num_threads(args.threads)

    class Net(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))

        def forward(self, x: Any) -> Any:
            return self.net(x)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    class Timer(L.Callback):
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self.wall, self.cpu = time.perf_counter() - self.t0, time.process_time() - self.c0

    g = torch.Generator().manual_seed(0)
    n = 128 * args.batches
    data = TensorDataset(torch.randn(n, 256, generator=g), torch.randint(0, 10, (n,), generator=g))
    sides = {
        "off": lambda: [],
        "cheap": lambda: [DeadUnitCallback(full_every=None)],
        "full10": lambda: [DeadUnitCallback(full_every=10)],
        "full1": lambda: [DeadUnitCallback(full_every=1)],
    }
    names = list(sides)
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    order = itertools.cycle(itertools.permutations(names))
    for _ in range(args.rounds + 1):  # round 0 warms up
        for name in next(order):
            timer = Timer()
            trainer = L.Trainer(
                max_epochs=1,
                accelerator="cpu",
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                callbacks=[timer, *sides[name]()],
            )
            trainer.fit(Net(), DataLoader(data, batch_size=128))
            wall[name].append(timer.wall)
            cpu[name].append(timer.cpu)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.batches} batches of 128, {args.rounds} rounds")
    for label, table in (("wall", wall), ("cpu", cpu)):
        base = statistics.median(table["off"][1:])
        for name in names:
            t = table[name][1:]
            med = statistics.median(t)
            print(
                f"{label:4s} {name:7s} min {min(t) * 1e3:8.1f} ms  median {med * 1e3:8.1f} ms  "
                f"max {max(t) * 1e3:8.1f} ms  ratio {med / base:.3f}"
            )


if __name__ == "__main__":
    main()
