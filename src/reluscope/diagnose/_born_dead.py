"""Networks born dead: the closed form for one input and a vectorised Monte Carlo over random initialisations.

A ReLU network is *born dead* on a set of inputs when, at initialisation, some hidden layer outputs zero for all
of them: every later layer then sees a constant, the output is constant, and no gradient reaches any weight
upstream of that layer (the biases after it can still learn a constant, which is all the net can ever output).
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reluscope._validate import (
    RNGLike,
    as_rng,
    check_finite_array,
    check_memory,
    check_positive,
    check_positive_int,
)
from reluscope.nn.init import check_init, init_weight

__all__ = ["BornDeadEstimate", "born_dead_monte_carlo", "born_dead_probability", "grid_inputs", "wilson_interval"]

# elements of one (inits, inputs, width) activation block processed at a time
_BLOCK_ELEMENTS = 1 << 22


def _check_finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _widths(depth: Any, width: Any) -> list[int]:
    depth = check_positive_int(depth, "depth")
    if isinstance(width, Sequence) and not isinstance(width, str):
        widths = [check_positive_int(w, "every width") for w in width]
        if len(widths) != depth:
            raise ValueError(f"width lists {len(widths)} layer widths but depth is {depth}; give one per layer")
        return widths
    return [check_positive_int(width, "width")] * depth


def born_dead_probability(depth: int, width: int | Sequence[int]) -> float:
    """Probability that a ReLU net with ``depth`` hidden layers of ``width`` units is born dead on one input.

    Assumptions (Lu, Shin, Su & Karniadakis 2019, "Dying ReLU and Initialization: Theory and Numerical Examples",
    arXiv:1903.06733, Theorem on symmetric initialisation): a fixed input x ≠ 0, zero biases, and weights drawn
    independently from any distribution symmetric about 0 with no atom at 0 (He, Xavier, normal(std), uniform:
    the scale does not matter because ReLU is positively homogeneous).

    Derivation: let h_{l-1} ≠ 0 be the input of layer l (h_0 = x). Unit j computes z_j = h_{l-1} · w_j with w_j
    independent of h_{l-1} and symmetric, so P(z_j > 0) = 1/2, independently over the N_l units; the layer's
    output is all zero with probability 2^-N_l, and otherwise it is a non-zero vector again. Once a layer is zero
    every later one is (zero bias). So P(alive after L layers) = ∏_l (1 - 2^-N_l), and

        P(born dead) = 1 - ∏_{l=1}^{L} (1 - 2^{-N_l})  =  1 - (1 - 2^{-N})^L  for equal widths N.

    (Lu et al. count the output layer in their depth, so their product runs to L - 1.) For a whole data set the
    probability is lower (a layer must be zero for every input); :func:`born_dead_monte_carlo` measures it.

    ``width`` is an int or one width per hidden layer. Example: depth 10, width 3 gives 1 - (7/8)^10 ≈ 0.737.
    """
    widths = _widths(depth, width)
    # log1p/expm1 keep precision when 2^-N is tiny (wide layers)
    log_alive = sum(math.log1p(-math.ldexp(1.0, -n)) for n in widths)
    return -math.expm1(log_alive) + 0.0  # + 0.0: never -0.0


def wilson_interval(k: int, n: int, z: float = 3.0) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n at ``z`` standard deviations (3 ≈ 99.7%).

    Unlike p ± z·se it has non-zero width at k = 0 and k = n, where most born-dead estimates live.
    """
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # the interval contains p exactly (at k = 0, centre - half is 0 up to rounding, e.g. 2.8e-17 at n = 10)
    return min(max(0.0, centre - half), p), max(min(1.0, centre + half), p)


@dataclass(frozen=True)
class BornDeadEstimate:
    """Monte Carlo estimate of the probability of being born dead.

    ``p_hat`` = n_dead / n; ``stderr`` = sqrt(p_hat (1 - p_hat) / n); ``interval`` is the 3-sigma Wilson score
    interval (:func:`wilson_interval`), which unlike p_hat ± 3 stderr keeps a non-zero width at p_hat = 0 or 1.
    ``first_dead_layer[l]`` counts the inits whose first all-zero layer is hidden layer l + 1.
    ``closed_form`` is :func:`born_dead_probability` (exact only for one input, zero bias).
    """

    depth: int
    widths: list[int]
    init: str
    bias: float
    n_inputs: int
    n: int
    n_dead: int
    p_hat: float
    stderr: float
    interval: tuple[float, float]
    first_dead_layer: list[int]
    closed_form: float

    def contains(self, p: float) -> bool:
        """True when ``p`` lies in the 3-sigma interval."""
        return self.interval[0] <= p <= self.interval[1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        d["interval"] = list(self.interval)
        return d


def grid_inputs(n_per_axis: int = 20, *, dim: int = 2, low: float = -1.0, high: float = 1.0) -> NDArray[np.float64]:
    """A dense regular grid over [low, high]^dim: (n_per_axis**dim, dim) float64."""
    n = check_positive_int(n_per_axis, "n_per_axis")
    d = check_positive_int(dim, "dim")
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"need finite low < high, got low={low}, high={high}")
    check_memory(float(n) ** d * d * 8 * 3, f"a grid of {n}^{d} points", fix="use fewer points per axis")
    axes = [np.linspace(low, high, n)] * d
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, d)


def born_dead_monte_carlo(
    depth: int,
    width: int | Sequence[int],
    *,
    n_inits: int,
    init: str = "he",
    std: float = 0.01,
    bias: float = 0.0,
    inputs: NDArray[Any] | None = None,
    input_dim: int = 2,
    seed: RNGLike = 0,
) -> BornDeadEstimate:
    """Estimate P(born dead) over ``n_inits`` random initialisations of a ReLU net on ``inputs``.

    Parameters
    ----------
    depth, width
        Hidden layers and their width (an int, or one width per layer).
    n_inits
        Number of independent initialisations (all simulated at once in blocks: batched matmuls).
    init, std
        ``he``, ``xavier``, ``xavier_uniform`` or ``normal`` (with ``std``), as in :class:`~reluscope.nn.MLP`.
    bias
        Every bias starts at this constant; > 0 shifts units towards firing (0 matches the closed form).
    inputs
        (M, D) inputs; a network is born dead when some hidden layer is zero on **all** of them. ``None`` uses one
        fixed random input x ~ N(0, I_input_dim) (the setting of :func:`born_dead_probability`). Use your data or
        :func:`grid_inputs` for a dense grid.
    seed
        Seed or Generator for the weights (and the default input).
    """
    widths = _widths(depth, width)
    n = check_positive_int(n_inits, "n_inits")
    init = check_init(init)
    std = check_positive(std, "std")
    bias = _check_finite(bias, "bias")
    rng = as_rng(seed)
    x: NDArray[np.floating[Any]]
    if inputs is None:
        x = rng.standard_normal((1, check_positive_int(input_dim, "input_dim")))
    else:
        x = check_finite_array(inputs, "inputs", ndim=2, dtype="float64")
    m, d = x.shape
    sizes = [d, *widths]
    block = max(1, _BLOCK_ELEMENTS // (m * max(sizes)))
    widest = max(a * b for a, b in itertools.pairwise(sizes))
    check_memory(
        n * 9 + min(block, n) * (m * max(sizes) * 8 * 3 + widest * 8 * 2),
        f"{n} random initialisations of widths {widths} on {m} input(s)",
        fix="use fewer initialisations (--n-inits), narrower layers or fewer inputs",
    )
    dead = np.zeros(n, dtype=bool)
    first = np.full(n, -1)
    for start in range(0, n, block):
        k = min(block, n - start)
        h: NDArray[np.floating[Any]] = np.broadcast_to(x, (k, m, d))
        alive = np.ones(k, dtype=bool)
        first_k = np.full(k, -1)
        for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            # drawn for every init so the stream is reproducible
            w = init_weight(init, fan_in, fan_out, rng=rng, std=std, count=k)
            z = np.matmul(h, w)
            if bias:
                z += bias
            fired = (z > 0).any(axis=(1, 2))
            newly = alive & ~fired
            first_k[newly] = layer
            alive &= fired
            h = np.maximum(z, 0.0, out=z)
        dead[start : start + k] = ~alive
        first[start : start + k] = first_k
    n_dead = int(np.count_nonzero(dead))
    p_hat = n_dead / n
    se = math.sqrt(p_hat * (1.0 - p_hat) / n)
    return BornDeadEstimate(
        depth=len(widths),
        widths=widths,
        init=init,
        bias=float(bias),
        n_inputs=m,
        n=n,
        n_dead=n_dead,
        p_hat=p_hat,
        stderr=se,
        interval=wilson_interval(n_dead, n, 3.0),
        first_dead_layer=np.bincount(first[first >= 0], minlength=len(widths)).tolist(),
        closed_form=born_dead_probability(len(widths), widths),
    )
