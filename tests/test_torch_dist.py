"""reluscope.torch.all_reduce over 2 CPU processes (gloo): the merged stats equal one process scanning everything."""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from reluscope.diagnose import ActivationStats  # noqa: E402
from reluscope.io import save_json  # noqa: E402
from reluscope.torch import all_reduce, scan  # noqa: E402
from test_torch_models import Branchy, ConvBN, one_torch_thread, seeded  # noqa: E402, F401

pytestmark = pytest.mark.torch

WORLD = 2
TIMEOUT_S = 60.0


def _batches() -> dict[str, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(7)
    conv = [torch.randn(5 + i, 2, 6, 6, generator=g) for i in range(6)]
    # Branchy takes its second ReLU when the batch mean is > 0: batches 0 and 2 (rank 0's shard) only
    branchy = [torch.randn(8, 3, generator=g) + (2.0 if i in (0, 2) else -2.0) for i in range(6)]
    return {"conv": conv, "branchy": branchy}


def _models() -> dict[str, torch.nn.Module]:
    return {"conv": seeded(ConvBN, 1), "branchy": seeded(Branchy, 2)}


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD,
        timeout=timedelta(seconds=30),
    )
    try:
        result: dict[str, Any] = {}
        models, batches = _models(), _batches()
        for key, model in models.items():
            local = scan(model, batches[key][rank::WORLD])  # this rank's shard of the batches
            result[key] = all_reduce(local).to_dict()
            result[f"{key}_local"] = local.to_dict()
        # a site with a different width on each rank: every rank raises, none hangs
        clash = ActivationStats()
        clash.update("x", torch.zeros(2, 3 + rank).numpy())
        try:
            all_reduce(clash)
        except ValueError as exc:
            result["clash"] = str(exc)
        save_json(Path(out_dir) / f"rank{rank}.json", result)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_all_reduce_over_two_gloo_processes_equals_one_scan(tmp_path: Path) -> None:
    ctx = mp.start_processes(
        _worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not ctx.join(timeout=max(deadline - time.monotonic(), 0.1)):
            if time.monotonic() > deadline:
                pytest.fail(f"the {WORLD} gloo workers did not finish within {TIMEOUT_S:.0f} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
                p.join()
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    models, batches = _models(), _batches()
    for key, model in models.items():
        single = scan(model, batches[key])
        merged = [ActivationStats.from_dict(r[key]) for r in results]
        assert merged[0] == merged[1] == single  # exact: every count, maximum and double-double sum
        local = [ActivationStats.from_dict(r[f"{key}_local"]) for r in results]
        assert local[0] != single
        assert local[0].copy().merge(local[1]) == single
    assert results[1]["branchy_local"]["sites"][-1]["name"] == "relu"  # rank 1 never took the branch ...
    assert ActivationStats.from_dict(results[1]["branchy"]).names == ["relu", "relu#2"]  # ... but gets its site
    for r in results:
        assert "sites ['x'] have different shapes on different ranks" in r["clash"]


def test_all_reduce_needs_an_initialised_group() -> None:
    with pytest.raises(RuntimeError, match="init_process_group"):
        all_reduce(ActivationStats())
    with pytest.raises(TypeError, match="ActivationStats"):
        all_reduce({})  # type: ignore[arg-type]
