"""Run by test_integ_lightning: a 2-rank gloo DDP fit (strategy "ddp", CPU) with DeadUnitCallback. Lightning runs
this script again as rank 1. Each rank writes what it logged to OUT.rank<r>.json; rank 0 then adds a
single-process scan of all the data to OUT."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

from conftest import import_torchvision

import_torchvision()

import lightning.pytorch as L  # noqa: E402
import numpy as np  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from reluscope.integrations.lightning import DeadUnitCallback  # noqa: E402
from reluscope.integrations.loggers import dead_unit_metrics  # noqa: E402
from reluscope.torch import scan  # noqa: E402
from test_integ_lightning import Memory, Tiny, data  # noqa: E402


class Report(L.Callback):  # type: ignore[misc]
    """In each spawned rank, after the fit: the rows its logger received and the merged window's sample count."""

    def __init__(self, out: str, dead: DeadUnitCallback, mem: Memory) -> None:
        self.out, self.dead, self.mem = out, dead, mem

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        rows = [m for _, m in self.mem.rows if any(k.startswith("dead_fraction/") for k in m)]
        window = self.dead.last_window
        payload = {"rows": rows, "window_samples": None if window is None else window.n_samples("net.1")}
        Path(f"{self.out}.rank{trainer.global_rank}.json").write_text(json.dumps(payload))
        trainer.strategy.barrier()  # both files are written before rank 0 goes on and exits


def main(out: str) -> None:
    warnings.simplefilter("ignore")  # Lightning's advice on workers and CPUs: not what this run checks
    ds = data()
    model = Tiny(lr=0.0)
    mem = Memory()
    dead = DeadUnitCallback(full_every=1, log_every_n_steps=1000)
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        logger=mem,
        callbacks=[dead, Report(out, dead, mem)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        precision="64-true",
    )
    trainer.fit(model, DataLoader(ds, batch_size=16, shuffle=False))
    if trainer.global_rank != 0:
        return
    stats = scan(model, DataLoader(ds, batch_size=16))
    for name in stats.names:  # fire decisions and dormant flags far from their thresholds: batch-independent
        assert np.all(np.abs(stats.max_preactivation(name)) > 1e-6)
        assert np.all(np.abs(stats.dormant_scores(name) - 0.1) > 1e-6)
    Path(out).write_text(json.dumps(dead_unit_metrics(stats, tau=0.1)))


if __name__ == "__main__":
    main(sys.argv[1])
