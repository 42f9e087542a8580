"""Watch ReLU units die while a PyTorch model trains, with reluscope's monitor. CPU only, well under a minute.

    python examples/torch_dead_units.py            # needs: pip install 'reluscope[torch]'

Part 1 trains a small CNN on scikit-learn's 8x8 digits (bundled, no download) with a monitor attached and prints,
after every epoch, the fraction of units (conv channels, dense features) of every ReLU site that did not fire on
any training batch of that epoch. The sites are found automatically: ``nn.ReLU(inplace=True)`` modules and the
``F.relu`` call inside ``forward`` alike.

Part 2 trains the same MLP twice, with a sensible learning rate and with one that is too high: the big steps push
the hidden units' biases and weights to where their pre-activation is negative for every input, and a unit that
never fires gets no gradient, so it stays dead. The final line of each run is an exact whole-dataset scan.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from reluscope.data import digits, train_val_split
from reluscope.torch import monitor, scan


class SmallCNN(nn.Module):
    """conv-BN-ReLU(inplace) -> conv-ReLU -> max-pool -> linear + F.relu -> linear, for 1x8x8 digits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.fc = nn.Linear(32 * 4 * 4, 64)
        self.out = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x).flatten(1)
        return self.out(F.relu(self.fc(h)))  # a functional ReLU: found too, as site "relu"


def mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
    )  # fmt: skip


def train(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    lr: float,
    epochs: int,
    batch_size: int = 64,
    seed: int = 0,
) -> None:
    """Plain SGD with the monitor on: cheap "fired at least once" every step, exact counts every 10th step."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    with monitor(model, full_every=10) as m:
        for epoch in range(1, epochs + 1):
            model.train()
            for idx in torch.randperm(len(X), generator=gen).split(batch_size):
                loss = F.cross_entropy(model(X[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            window = m.reset_window()  # this epoch's training batches, exact dead masks
            with torch.no_grad():
                acc = (model.eval()(X).argmax(1) == y).float().mean().item()  # eval passes are not recorded
            dead = "  ".join(f"{name} {window.dead_fraction(name):6.1%}" for name in window.names)
            print(f"  epoch {epoch:2d}  loss {loss.item():7.4f}  train acc {acc:6.1%}  dead: {dead}")
    final = scan(model, X.split(512))  # exact, eval mode, whole training set, final weights
    dead = "  ".join(f"{name} {final.dead_fraction(name):6.1%}" for name in final.names)
    print(f"  scan of the {len(X)} training images after training:  dead: {dead}")


def seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a model whose default init is drawn from a seeded stream, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def main() -> None:
    start = time.perf_counter()
    torch.set_num_threads(1)  # tiny models: one thread is fastest and the runs are reproducible
    X_np, y_np = digits()
    X_tr, y_tr, _, _ = train_val_split(X_np, y_np, 0.2, seed=0)
    X = torch.from_numpy(X_tr).float()
    y = torch.from_numpy(y_tr)

    print("1. small CNN on 8x8 digits, SGD lr 0.05")
    train(seeded(SmallCNN, 0), X.reshape(-1, 1, 8, 8), y, lr=0.05, epochs=8)

    for section, lr in enumerate((0.05, 2.0), start=2):
        print(
            f"\n{section}. MLP [64, 128, 128, 10] on the same digits, SGD lr {lr}" + ("  (too high)" if lr > 1 else "")
        )
        train(seeded(mlp, 0), X, y, lr=lr, epochs=8)
    print(f"\ndone in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
