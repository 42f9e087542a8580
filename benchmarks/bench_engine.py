"""One SGD training step of reluscope's numpy MLP against its matrix-multiply floor and against PyTorch.

Run: ``python benchmarks/bench_engine.py [--json PATH] [--quick] [--reps 40] [--threads N] [--no-torch]
[--shape mnist-wide] [--dtype float32]``

For each shape (B, D, hidden, C) and dtype, three sides are timed in one run, interleaved in short groups of
steps (the order rotates every repetition, so slow spells of a shared machine hit every side alike; see below why
groups rather than single steps), and medians are taken:

- **reluscope**: one full training step as :func:`reluscope.train.fit` takes it: ``net.loss_and_scores(X, y,
  validate=False)`` (forward, softmax cross-entropy, backward) then ``SGD.step`` (the update, in place);
- **floor**: the step's unavoidable matrix products alone, ``np.matmul(..., out=...)`` into preallocated arrays:
  every forward product, every weight gradient ``h.T @ dz`` and every input gradient ``dz @ W.T`` except the
  first layer's (nothing needs the gradient of the data);
- **torch**: the same step in PyTorch (same weights, ``F.linear`` layers, ``cross_entropy``, ``backward``,
  ``torch.optim.SGD``), with ``torch.set_num_threads`` equal to the BLAS threads numpy uses (read with
  threadpoolctl).

Every group of timed steps (as many as make about 5 ms, at least one, per side) follows about 5 ms of untimed
steps of the same side (at least one), so that each side is timed in the steady state of a training loop: its
caches warm, and the other side's helper threads idle (PyTorch's OpenMP workers busy-wait after each parallel
region; on a 2-core machine a spinning worker takes the core numpy's BLAS thread needs). The sides alternate
group by group. Printed: the median time per step of each side, floor ratio = reluscope / floor, torch ratio =
reluscope / torch, achieved GFLOP/s of the products, the CPU model (lscpu) and the BLAS libraries with their
thread counts. ``--json PATH`` writes all of it.

On a machine shared with other jobs, two BLAS threads on two cores wait for each other whenever another process
holds a core (a product can then take 10x its time); ``--threads 1`` gives numbers that hold up under such load.

Targets (issue 10): (1024, 784, 1024, 10) float32 floor <= 1.10 and torch <= 1.0; (64, 2, 100, 3) float32
torch <= 0.20; the deep net float32 floor <= 1.15.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from reluscope.io import save_json
from reluscope.nn import MLP, SGD

Shape = tuple[int, int, list[int], int]
SHAPES: list[tuple[str, Shape]] = [
    ("tiny", (64, 2, [100], 3)),
    ("mnist-small", (128, 784, [256], 10)),
    ("mnist-wide", (1024, 784, [1024], 10)),
    ("deep", (256, 784, [512] * 4, 10)),
]
QUICK_SHAPES = SHAPES[:2]
# (shape name, dtype, ratio) -> bound
TARGETS = {
    ("mnist-wide", "float32", "floor"): 1.10,
    ("mnist-wide", "float32", "torch"): 1.0,
    ("tiny", "float32", "torch"): 0.20,
    ("deep", "float32", "floor"): 1.15,
}
GROUP_SECONDS = 5e-3  # tiny steps are timed in groups of about this long
# Untimed warm-up before every group: the side's own caches come back to the state of a training loop, and the
# other side's helper threads stop spinning (PyTorch's OpenMP workers busy-wait after each parallel region, and on
# a 2-core machine a spinning worker takes the core numpy's BLAS thread needs).
WARM_SECONDS = 5e-3
LR = 1e-3  # small, so that thousands of steps leave the weights well-scaled on both sides


@dataclass
class Row:
    shape: str
    sizes: list[int]
    batch: int
    dtype: str
    gflop: float  # per step, products only
    group: dict[str, int]  # steps per timed group, per side
    reps: int
    t_step: float  # seconds per step, median
    t_floor: float
    t_torch: float | None
    floor_ratio: float
    torch_ratio: float | None
    gflops_step: float
    gflops_floor: float
    gflops_torch: float | None
    targets: dict[str, float] = field(default_factory=dict)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    model = fields.get("Model name", "").strip() or platform.processor()
    extra = [f"{k.strip()} {fields[k].strip()}" for k in ("CPU family", "Model", "CPU(s)") if k in fields]
    return f"{model} ({', '.join(extra)})"


def blas_info() -> list[dict[str, Any]]:
    keys = ("user_api", "internal_api", "prefix", "version", "num_threads", "threading_layer", "architecture")
    return [{k: lib.get(k) for k in keys} for lib in threadpool_info()]


def numpy_blas_threads() -> int:
    threads = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    return int(threads[0]) if threads else 1


def flops(sizes: list[int], batch: int) -> float:
    """Products of one step: forward and dW for every layer, dX for every layer but the first."""
    per = [2.0 * batch * fan_in * fan_out for fan_in, fan_out in itertools.pairwise(sizes)]
    return 2 * sum(per) + sum(per[1:])


def make_reluscope(sizes: list[int], X: np.ndarray, y: np.ndarray, dtype: str) -> tuple[Callable[[], None], MLP]:
    net = MLP(sizes, seed=0, dtype=dtype)
    opt = SGD(LR)

    def step() -> None:
        _, grads, _ = net.loss_and_scores(X, y, validate=False)
        opt.step(net.params, grads)

    return step, net


def make_floor(net: MLP, X: np.ndarray) -> Callable[[], None]:
    sizes, n, dt = net.sizes, X.shape[0], net.dtype
    Ws = [net.params[f"W{i}"].copy() for i in range(1, len(sizes))]
    zs = [np.empty((n, s), dt) for s in sizes[1:]]
    dWs = [np.empty_like(W) for W in Ws]
    dhs = [np.empty((n, s), dt) for s in sizes[1:-1]]
    rng = np.random.default_rng(1)
    for z in zs:  # realistic values (not uninitialised memory) in the gradient-side operands
        z[...] = rng.standard_normal(z.shape)

    def floor() -> None:
        h = X
        for W, z in zip(Ws, zs, strict=True):
            np.matmul(h, W, out=z)
            h = z
        for i in range(len(Ws) - 1, -1, -1):
            h_prev = X if i == 0 else zs[i - 1]
            np.matmul(h_prev.T, zs[i], out=dWs[i])
            if i > 0:
                np.matmul(zs[i], Ws[i].T, out=dhs[i - 1])

    return floor


def make_torch(net: MLP, X: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    import torch

    tf = torch.nn.functional
    L = net.n_layers
    weights = [torch.tensor(net.params[f"W{i}"].T.copy(), requires_grad=True) for i in range(1, L + 1)]
    biases = [torch.tensor(net.params[f"b{i}"].copy(), requires_grad=True) for i in range(1, L + 1)]
    opt = torch.optim.SGD([*weights, *biases], lr=LR)
    tX, ty = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))

    def step() -> None:
        opt.zero_grad()
        h = tX
        for i in range(L):
            h = tf.linear(h, weights[i], biases[i])
            if i < L - 1:
                h = torch.relu(h)
        tf.cross_entropy(h, ty).backward()
        opt.step()

    return step


def time_group(fn: Callable[[], None], k: int, warm: int = 0) -> float:
    """Seconds per call of ``fn`` over k timed calls, after ``warm`` untimed ones."""
    for _ in range(warm):
        fn()
    t0 = time.perf_counter()
    for _ in range(k):
        fn()
    return (time.perf_counter() - t0) / k


def run_one(name: str, shape: Shape, dtype: str, reps: int, use_torch: bool) -> Row:
    batch, d, hidden, c = shape
    sizes = [d, *hidden, c]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch, d)).astype(dtype)
    y = rng.integers(0, c, size=batch)
    step, net = make_reluscope(sizes, X, y, dtype)
    sides: dict[str, Callable[[], None]] = {"step": step, "floor": make_floor(net, X)}
    if use_torch:
        sides["torch"] = make_torch(net, X, y)
    # warm-up (work buffers, BLAS threads, torch's allocator), then size each side's group to last GROUP_SECONDS
    for fn in sides.values():
        for _ in range(3):
            fn()
    per_step = {s: max(time_group(fn, 3), 1e-7) for s, fn in sides.items()}
    k = {s: max(1, min(1000, round(GROUP_SECONDS / t))) for s, t in per_step.items()}
    warm = {s: max(1, min(1000, round(WARM_SECONDS / t))) for s, t in per_step.items()}
    times: dict[str, list[float]] = {s: [] for s in sides}
    order = list(sides)
    for r in range(reps):
        rot = order[r % len(order) :] + order[: r % len(order)]
        for s in rot:
            times[s].append(time_group(sides[s], k[s], warm[s]))
    med = {s: statistics.median(v) for s, v in times.items()}
    gflop = flops(sizes, batch) / 1e9
    t_torch = med.get("torch")
    row = Row(
        shape=name,
        sizes=sizes,
        batch=batch,
        dtype=dtype,
        gflop=gflop,
        group=k,
        reps=reps,
        t_step=med["step"],
        t_floor=med["floor"],
        t_torch=t_torch,
        floor_ratio=med["step"] / med["floor"],
        torch_ratio=None if t_torch is None else med["step"] / t_torch,
        gflops_step=gflop / med["step"],
        gflops_floor=gflop / med["floor"],
        gflops_torch=None if t_torch is None else gflop / t_torch,
    )
    for (tname, tdtype, ratio), bound in TARGETS.items():
        if tname == name and tdtype == dtype:
            row.targets[ratio] = bound
    return row


def fmt_ratio(value: float | None, bound: float | None) -> str:
    if value is None:
        return "   -   "
    mark = "" if bound is None else (" ok" if value <= bound else f" >{bound:g}!")
    return f"{value:6.3f}{mark}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="write the results to this JSON file")
    ap.add_argument("--quick", action="store_true", help="smoke run: the two small shapes, few repetitions")
    ap.add_argument("--reps", type=int, default=None, help="timed groups per side (default 40, quick 5)")
    ap.add_argument("--threads", type=int, default=None, help="BLAS (and torch) threads; default numpy's")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch side")
    names = [name for name, _ in SHAPES]
    ap.add_argument("--shape", action="append", choices=names, help="run only this shape (repeatable)")
    ap.add_argument("--dtype", action="append", choices=["float32", "float64"], help="run only this dtype")
    args = ap.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):  # a log (stdout not a terminal) shows each row as it is measured
        sys.stdout.reconfigure(line_buffering=True)
    reps = args.reps or (5 if args.quick else 40)
    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.shape:
        shapes = [(name, shape) for name, shape in SHAPES if name in args.shape]
    dtypes = args.dtype or ["float32", "float64"]

    use_torch = not args.no_torch
    if use_torch:
        try:
            import torch
        except ImportError:
            print("torch is not installed: skipping the PyTorch side (pip install 'reluscope[torch]')")
            use_torch = False
    threads = args.threads or numpy_blas_threads()
    rows: list[Row] = []
    with threadpool_limits(threads, user_api="blas"):
        if use_torch:
            torch.set_num_threads(threads)
        machine = {
            "cpu": cpu_model(),
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "blas": blas_info(),
            "blas_threads": threads,
            "torch": torch.__version__ if use_torch else None,
            "torch_threads": torch.get_num_threads() if use_torch else None,
            "torch_blas": _torch_blas() if use_torch else None,
        }
        print(f"CPU: {machine['cpu']}")
        for lib in machine["blas"]:
            what = "BLAS" if lib["user_api"] == "blas" else f"{lib['user_api']} (torch's)"
            detail = ", ".join(str(lib[k]) for k in ("prefix", "version", "architecture") if lib[k])
            print(f"{what}: {lib['internal_api']} ({detail}), {lib['num_threads']} threads")
        if use_torch:
            print(f"torch {machine['torch']}: {machine['torch_threads']} threads, BLAS {machine['torch_blas']}")
        print(f"numpy {machine['numpy']}, python {machine['python']}; medians of {reps} interleaved groups\n")
        head = (
            f"{'shape':<12} {'sizes':<22} {'B':>5} {'dtype':<8} {'step ms':>9} {'floor ms':>9} {'torch ms':>9} "
            f"{'floor ratio':>12} {'torch ratio':>12} {'GFLOP/s':>8} {'floor':>7} {'torch':>7}"
        )
        print(head)
        print("-" * len(head))
        for name, shape in shapes:
            for dtype in dtypes:
                row = run_one(name, shape, dtype, reps, use_torch)
                rows.append(row)
                t_torch = "-" if row.t_torch is None else f"{row.t_torch * 1e3:9.3f}"
                g_torch = "-" if row.gflops_torch is None else f"{row.gflops_torch:7.1f}"
                print(
                    f"{name:<12} {','.join(map(str, row.sizes)):<22} {row.batch:>5} {dtype:<8} "
                    f"{row.t_step * 1e3:9.3f} {row.t_floor * 1e3:9.3f} {t_torch:>9} "
                    f"{fmt_ratio(row.floor_ratio, row.targets.get('floor')):>12} "
                    f"{fmt_ratio(row.torch_ratio, row.targets.get('torch')):>12} "
                    f"{row.gflops_step:8.1f} {row.gflops_floor:7.1f} {g_torch:>7}",
                    flush=True,
                )
    missed = [
        f"{r.shape} {r.dtype} {ratio} {value:.3f} > {bound}"
        for r in rows
        for ratio, bound in r.targets.items()
        if (value := (r.floor_ratio if ratio == "floor" else r.torch_ratio)) is not None and value > bound
    ]
    print("\ntargets: " + ("all met" if not missed else "missed: " + "; ".join(missed)))
    if args.json:
        payload = {"machine": machine, "reps": reps, "lr": LR, "rows": [asdict(r) for r in rows], "missed": missed}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        save_json(args.json, payload)  # atomic
        print(f"wrote {args.json}")
    return 0


def _torch_blas() -> str:
    import torch

    cfg = torch.__config__.show()
    for lib in ("MKL", "OpenBLAS", "BLIS", "Accelerate"):
        if f"BLAS_INFO={lib.lower()}" in cfg.replace(" ", "") or f"USE_{lib.upper()}=ON" in cfg:
            return lib
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
