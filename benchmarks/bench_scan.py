"""Cost of a whole-dataset dead-unit scan relative to a bare forward pass over the same batches.

Run: ``python benchmarks/bench_scan.py [--n 20000] [--sizes 784,1024,1024,10] [--batch-size 256] [--dtype float32]``

Both sides process the same batches of the same data with the same net: the bare side computes the class scores
(``net.scores``), the scan side computes every hidden layer (``net.hidden_outputs``, which also runs the output
layer) and streams it into :class:`reluscope.diagnose.ActivationStats`. The two are timed in alternation, batch by
batch, so drifts in machine load hit both equally; the ratio of the summed per-batch medians is printed.
Target: <= 1.10.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from reluscope.diagnose import ActivationStats
from reluscope.nn import MLP


def main() -> None:
    if hasattr(sys.stdout, "reconfigure"):  # a log (stdout not a terminal) shows each row as it is measured
        sys.stdout.reconfigure(line_buffering=True)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--sizes", default="784,1024,1024,10")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--rounds", type=int, default=5, help="passes over the data per side")
    args = ap.parse_args()

    sizes = [int(s) for s in args.sizes.split(",")]
    net = MLP(sizes, seed=0, dtype=args.dtype)
    X = np.random.default_rng(0).standard_normal((args.n, sizes[0])).astype(args.dtype)
    starts = range(0, args.n, args.batch_size)
    names = net.hidden_names
    bare: dict[int, list[float]] = {s: [] for s in starts}
    scan: dict[int, list[float]] = {s: [] for s in starts}

    def run_bare(xb: np.ndarray) -> None:
        net.scores(xb)

    def run_scan(xb: np.ndarray, stats: ActivationStats) -> None:
        for name, (pre, act) in zip(names, net.hidden_outputs(xb), strict=True):
            stats.update(name, pre, act, assume_nonnegative=True)

    # warm-up: BLAS threads, work buffers
    warm = ActivationStats()
    run_bare(X[: args.batch_size])
    run_scan(X[: args.batch_size], warm)

    for r in range(args.rounds):
        stats = ActivationStats()
        for s in starts:
            xb = X[s : s + args.batch_size]
            # alternate which side goes first so neither always gets the warmer cache
            order = ("bare", "scan") if (r + s // args.batch_size) % 2 == 0 else ("scan", "bare")
            for side in order:
                t0 = time.perf_counter()
                if side == "bare":
                    run_bare(xb)
                    bare[s].append(time.perf_counter() - t0)
                else:
                    run_scan(xb, stats)
                    scan[s].append(time.perf_counter() - t0)
        assert stats.n_samples(names[0]) == args.n
        print(
            f"round {r + 1}/{args.rounds}: bare {sum(v[-1] for v in bare.values()) * 1e3:.1f} ms, "
            f"scan {sum(v[-1] for v in scan.values()) * 1e3:.1f} ms"
        )

    t_bare = sum(statistics.median(v) for v in bare.values())
    t_scan = sum(statistics.median(v) for v in scan.values())
    print(
        f"MLP{sizes} {args.dtype}, N={args.n}, batch {args.batch_size}, {args.rounds} rounds, "
        f"dead fraction {[round(stats.dead_fraction(n), 3) for n in names]}"
    )
    print(f"bare forward   {t_bare * 1e3:9.1f} ms per pass (sum of per-batch medians)")
    print(f"scan + stats   {t_scan * 1e3:9.1f} ms per pass")
    print(f"ratio          {t_scan / t_bare:9.3f}   (target <= 1.10)")


if __name__ == "__main__":
    main()
