"""A multi-layer perceptron built from the forward/backward pairs in :mod:`reluscope.nn.functional`.

``MLP([D, H1, ..., C])`` is ``dense -> act -> dense -> act -> ... -> dense`` producing class scores. Parameters
live in one dict: ``W{l}`` (fan_in, fan_out), ``b{l}`` (fan_out,) for layers l = 1..L, plus ``a{l}`` (H_l,) for
the hidden layers when the activation is PReLU. ``grads`` has exactly the same keys.

Two paths compute the same numbers. Inference (:meth:`MLP.scores`, :meth:`MLP.hidden_outputs`, ...) runs the
readable reference pairs of :mod:`reluscope.nn.functional` and returns fresh arrays. Training
(:meth:`MLP.forward`, :meth:`MLP.backward`, :meth:`MLP.loss`, :meth:`MLP.loss_and_scores`) runs the fast path of
:mod:`reluscope.nn._fast`: work buffers allocated once per batch size and in-place kernels, so that after the first
step a training step allocates nothing as large as a layer's activations (tests check both paths agree).

**Buffer reuse.** The gradient arrays returned by ``backward``/``loss``/``loss_and_scores`` (and ``net.grads``) are
the network's gradient buffers: the next backward overwrites them in place, as PyTorch overwrites ``p.grad``.
Copy them to keep them (``{k: g.copy() for k, g in grads.items()}``). Scores are always returned as new arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reluscope._validate import (
    RNGLike,
    as_rng,
    check_finite_array,
    check_labels,
    check_memory,
    check_positive,
    resolve_dtype,
)
from reluscope.nn import functional as F
from reluscope.nn._fast import (
    Batch,
    Workspace,
    activation_backward,
    activation_forward,
    softmax_cross_entropy_into,
    sum_axis_into,
)
from reluscope.nn.activations import Activation, get_activation
from reluscope.nn.functional import Array
from reluscope.nn.init import check_init, init_bias, init_weight

__all__ = ["MLP"]


class MLP:
    """A fully connected classifier.

    Parameters
    ----------
    sizes
        Layer widths ``[D, H1, ..., C]``: input features, hidden widths, classes. At least two entries.
    activation
        ``relu`` (default), ``leaky``, ``prelu``, ``elu``, ``sigmoid`` or ``tanh`` — a one-line swap.
    init
        ``he`` (default), ``xavier``, ``xavier_uniform`` or ``normal`` (with ``init_std``, e.g. 0.01).
    bias_init
        Constant every bias starts at (0 by default; a small positive value keeps units from being born dead).
    slope, alpha
        Leaky/PReLU negative slope (0.01) and ELU's alpha (1.0).
    seed
        An int or a ``numpy.random.Generator`` (or a ``RandomState`` to continue an existing stream).
    dtype
        ``"float64"`` (default) or ``"float32"``; parameters, activations and gradients all stay in it.

    Examples
    --------
    >>> net = MLP([2, 100, 3], seed=0)
    >>> scores = net.forward(X)                        # (N, 3), caches kept for backward
    >>> loss, dscores = F.softmax_cross_entropy(scores, y)
    >>> grads = net.backward(dscores)                   # same keys as net.params
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str | Activation = "relu",
        *,
        init: str = "he",
        init_std: float = 0.01,
        bias_init: float = 0.0,
        slope: float = 0.01,
        alpha: float = 1.0,
        seed: RNGLike = 0,
        dtype: Any = "float64",
    ) -> None:
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes must list at least [inputs, classes], got {sizes}; e.g. sizes=[2, 100, 3]")
        for s in sizes:
            if isinstance(s, bool) or not isinstance(s, int | np.integer) or s <= 0:
                raise ValueError(f"every layer size must be a positive integer, got {sizes}")
        self.sizes: list[int] = [int(s) for s in sizes]
        self.activation = get_activation(activation, slope=slope, alpha=alpha)
        self.init = check_init(init)
        self.init_std = check_positive(init_std, "init_std")
        self.bias_init = float(bias_init)
        self.dtype = resolve_dtype(dtype)
        # weights are drawn in float64 and then cast: the draw and the parameters exist side by side
        n_params = self.n_parameters()
        check_memory(
            n_params * (8 + self.dtype.itemsize),
            f"building an MLP with sizes {self.sizes} ({n_params:.3g} parameters)",
            fix="use fewer or narrower layers (check --hidden and the number of classes)",
        )
        rng = as_rng(seed)
        self.params: dict[str, Array] = {}
        for layer, (fan_in, fan_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:], strict=True), start=1):
            self.params[f"W{layer}"] = init_weight(
                self.init, fan_in, fan_out, rng=rng, dtype=self.dtype, std=self.init_std
            )
            self.params[f"b{layer}"] = init_bias(fan_out, value=self.bias_init, dtype=self.dtype)
            if self.activation.learnable and layer < self.n_layers:
                self.params[f"a{layer}"] = np.full(fan_out, self.activation.slope, dtype=self.dtype)
        self.grads: dict[str, Array] = {}
        # (W, b, slope) keys per layer; the slope key is "" where there is none
        self._keys: list[tuple[str, str, str]] = [
            (f"W{layer}", f"b{layer}", f"a{layer}" if f"a{layer}" in self.params else "")
            for layer in range(1, self.n_layers + 1)
        ]
        self._ws: Workspace | None = None
        self._gbuf: dict[str, Array] | None = None
        self._l2_scratch: dict[str, Array] = {}

    # Structure ------------------------------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        """Number of dense layers (hidden layers + the output layer)."""
        return len(self.sizes) - 1

    @property
    def hidden_names(self) -> list[str]:
        """Names of the hidden layers, ``["hidden1", ...]``, as used by the dead-unit statistics."""
        return [f"hidden{layer}" for layer in range(1, self.n_layers)]

    def n_parameters(self) -> int:
        """The number of scalar parameters: weights and biases of every layer (plus PReLU slopes)."""
        pairs = zip(self.sizes[:-1], self.sizes[1:], strict=True)
        dense = sum(fan_in * fan_out + fan_out for fan_in, fan_out in pairs)
        slopes = sum(self.sizes[1:-1]) if self.activation.learnable else 0
        return int(dense + slopes)

    @property
    def n_classes(self) -> int:
        return self.sizes[-1]

    def config(self) -> dict[str, Any]:
        """JSON-ready constructor arguments (everything except the weights)."""
        return {
            "sizes": self.sizes,
            "activation": self.activation.name,
            "slope": self.activation.slope,
            "alpha": self.activation.alpha,
            "init": self.init,
            "init_std": self.init_std,
            "bias_init": self.bias_init,
            "dtype": self.dtype.name,
        }

    @classmethod
    def from_params(cls, config: dict[str, Any], params: dict[str, Array]) -> MLP:
        """Rebuild a network from :meth:`config` and a params dict (checked for keys, shapes and finiteness)."""
        net = cls(
            config["sizes"],
            config.get("activation", "relu"),
            init=config.get("init", "he"),
            init_std=config.get("init_std", 0.01),
            bias_init=config.get("bias_init", 0.0),
            slope=config.get("slope", 0.01),
            alpha=config.get("alpha", 1.0),
            dtype=config.get("dtype", "float64"),
        )
        net.set_params(params)
        return net

    def set_params(self, params: dict[str, Array]) -> None:
        """Replace every parameter (copied, cast to the net's dtype) after checking keys, shapes and NaN/inf."""
        missing = sorted(set(self.params) - set(params))
        extra = sorted(set(params) - set(self.params))
        if missing or extra:
            raise ValueError(
                f"parameters do not match an MLP{self.sizes} with {self.activation.name}: missing {missing}, "
                f"unexpected {extra}; was it saved from a network of another shape?"
            )
        for key, old in self.params.items():
            new = np.asarray(params[key])
            if new.shape != old.shape:
                raise ValueError(f"parameter {key} must have shape {old.shape}, got {new.shape}")
            check_finite_array(new, key, ndim=new.ndim)
            self.params[key] = new.astype(self.dtype, copy=True)

    def copy(self, dtype: Any = None) -> MLP:
        """A deep copy, optionally cast to another dtype."""
        cfg = self.config()
        if dtype is not None:
            cfg["dtype"] = resolve_dtype(dtype).name
        return MLP.from_params(cfg, self.params)

    def __repr__(self) -> str:
        return f"MLP({self.sizes}, activation={self.activation.name!r}, init={self.init!r}, dtype={self.dtype.name!r})"

    # Forward / backward ---------------------------------------------------------------------------------------
    def check_input(self, X: Any, name: str = "X") -> Array:
        """Validate X as (N, D) finite numbers matching the input layer; returns it in the net's dtype."""
        X = check_finite_array(X, name, ndim=2)
        if X.shape[1] != self.sizes[0]:
            raise ValueError(
                f"{name} has {X.shape[1]} features but the network expects {self.sizes[0]} "
                f"(sizes {self.sizes}); pass data with {self.sizes[0]} columns or build MLP([{X.shape[1]}, ...])"
            )
        out: Array = X.astype(self.dtype, copy=False)
        return out

    def _layers(self, X: Array, *, keep_caches: bool) -> tuple[Array, list[tuple[Array, Array]], list[Any]]:
        """The reference path: every layer through the pure pairs of :mod:`reluscope.nn.functional`.

        Returns scores, (pre, post) per hidden layer (fresh arrays), and the caches if asked. Inference
        (:meth:`scores`, :meth:`hidden_outputs`) runs here; training runs the equivalent fast path.
        """
        h = X
        hidden: list[tuple[Array, Array]] = []
        caches: list[Any] = []
        p = self.params
        for layer in range(1, self.n_layers + 1):
            z, dense_cache = F.dense_forward(h, p[f"W{layer}"], p[f"b{layer}"])
            if keep_caches:
                caches.append(dense_cache)
            if layer == self.n_layers:
                return z, hidden, caches
            h, act_cache = self.activation.forward(z, p.get(f"a{layer}"))
            hidden.append((z, h))
            if keep_caches:
                caches.append(act_cache)
        raise AssertionError("unreachable: an MLP has at least one layer")

    def forward(self, X: Array) -> Array:
        """X: (N, D) -> scores: (N, C), a new array. Keeps what :meth:`backward` needs in the work buffers."""
        return self._forward(self.check_input(X)).copy()

    def backward(self, dscores: Array) -> dict[str, Array]:
        """dscores: (N, C) -> grads, a dict with the same keys as ``params`` (also kept in ``self.grads``).

        The gradient arrays are the net's gradient buffers: the next ``backward`` (or ``loss``) overwrites them
        in place, like ``p.grad`` in PyTorch. Copy what you keep: ``{k: g.copy() for k, g in grads.items()}``.
        No gradient is computed for the input X.
        """
        b = None if self._ws is None else self._ws.last
        if b is None:
            raise RuntimeError("backward() needs a forward() first: call net.forward(X) on the same batch")
        dscores = np.asarray(dscores, dtype=self.dtype)
        if dscores.shape != b.scores.shape:
            raise ValueError(
                f"dscores must have the shape of the last forward's scores {b.scores.shape}, got {dscores.shape}; "
                "call backward with the gradient of the scores that forward returned"
            )
        return self._backward(b, dscores)

    def loss(self, X: Array, y: NDArray[np.integer[Any]], reg: float = 0.0) -> tuple[float, dict[str, Array]]:
        """Mean softmax cross-entropy + 0.5 * reg * sum(W**2) over weight matrices; returns (loss, grads).

        ``grads`` are the net's gradient buffers, overwritten by the next call (see :meth:`backward`).
        """
        loss, grads, _ = self.loss_and_scores(X, y, reg)
        return loss, grads

    def loss_and_scores(
        self, X: Array, y: NDArray[np.integer[Any]], reg: float = 0.0, *, validate: bool = True
    ) -> tuple[float, dict[str, Array], Array]:
        """One training step's arithmetic: forward, softmax cross-entropy, L2, backward.

        X: (N, D), y: (N,) -> (loss, grads, scores (N, C) of the forward, a new array). ``grads`` are the net's
        gradient buffers, overwritten in place by the next call (see :meth:`backward`).

        ``validate=False`` skips the O(N·D) checks of X (finite, right width) and y (integers in [0, C)) for a
        caller that has validated the whole dataset once, as :func:`reluscope.train.fit` does; X must then
        already be in the net's dtype (otherwise it is validated anyway).
        """
        if validate or not self._is_ready_input(X):
            X = self.check_input(X)
        n = X.shape[0]
        if validate or not (isinstance(y, np.ndarray) and y.shape == (n,) and y.dtype.kind in "iu"):
            y = check_labels(y, n, self.n_classes)
        scores = self._forward(X)
        b = self._ws.last if self._ws is not None else None
        assert b is not None
        loss = softmax_cross_entropy_into(b, y)  # b.probs now holds dscores
        grads = self._backward(b, b.probs)
        if reg:
            loss += self._add_l2(grads, reg)
        return loss, grads, scores.copy()

    # The fast path (see reluscope.nn._fast) ---------------------------------------------------------------------
    def _is_ready_input(self, X: Any) -> bool:
        return isinstance(X, np.ndarray) and X.dtype == self.dtype and X.ndim == 2 and X.shape[1] == self.sizes[0]

    def _workspace(self, n: int) -> Workspace:
        ws = self._ws
        if ws is None or n > ws.capacity:
            ws = self._ws = Workspace(self.sizes, self.dtype, self.activation.name, capacity=n)
        return ws

    def _forward(self, X: Array) -> Array:
        """X: (N, D), validated and in the net's dtype -> scores (N, C), a view of the work buffers."""
        ws = self._workspace(X.shape[0])
        ws.last = None  # until this forward completes
        b = ws.batch(X.shape[0])
        p, act, n_hidden = self.params, self.activation, len(b.hidden)
        b.x = h = X
        for layer, (w, bias, a) in enumerate(self._keys):
            W = b.weights[layer] = p[w]
            z = b.outs[layer]
            np.matmul(h, W, out=z)  # z = h @ W + b
            np.add(z, p[bias], out=z)
            if layer < n_hidden:
                slope = b.slopes[layer] = p[a] if a else None
                activation_forward(act, b.hidden[layer], slope)  # z -> f(z) in place, f'(z) kept
            h = z
        ws.last = b
        return h

    def _backward(self, b: Batch, dscores: Array) -> dict[str, Array]:
        """dscores: (N, C) -> every parameter's gradient, written into the gradient buffers."""
        g = self._grads_buffers()
        dz = dscores
        for layer in range(self.n_layers - 1, -1, -1):
            w, bias, _ = self._keys[layer]
            h_prev = b.x if layer == 0 else b.outs[layer - 1]
            assert h_prev is not None
            np.matmul(h_prev.T, dz, out=g[w])  # dW = h_prev.T @ dz
            sum_axis_into(dz, 0, b.ones, g[bias])  # db = dz.sum(axis=0)
            if layer == 0:
                break  # the input X needs no gradient
            W = b.weights[layer]
            assert W is not None
            below = b.hidden[layer - 1]
            np.matmul(dz, W.T, out=below.dh)  # dh = dz @ W.T
            a = self._keys[layer - 1][2]
            activation_backward(below, g[a] if a else None, b.ones)  # dh -> dz = dh * f'(z) in place
            dz = below.dh
        self.grads = g
        return g

    def _grads_buffers(self) -> dict[str, Array]:
        g = self._gbuf
        if g is None:
            g = self._gbuf = {key: np.empty_like(p) for key, p in self.params.items()}
        return g

    def _add_l2(self, grads: dict[str, Array], reg: float) -> float:
        """Add reg * W to every weight gradient in place; return 0.5 * reg * sum(W**2) over the weights."""
        total = 0.0
        for w, _, _ in self._keys:
            W = self.params[w]
            total += 0.5 * reg * float(np.vdot(W, W))
            scratch = self._l2_scratch.get(w)
            if scratch is None:
                scratch = self._l2_scratch[w] = np.empty_like(W)
            np.multiply(W, reg, out=scratch)
            np.add(grads[w], scratch, out=grads[w])
        return total

    def release_buffers(self) -> None:
        """Free the work and gradient buffers (they are reallocated by the next training step)."""
        self._ws = None
        self._gbuf = None
        self._l2_scratch = {}
        self.grads = {}

    # Inference (no caches kept) -------------------------------------------------------------------------------
    def scores(self, X: Array) -> Array:
        """X: (N, D) -> class scores (N, C), keeping no caches."""
        return self._layers(self.check_input(X), keep_caches=False)[0]

    def predict(self, X: Array) -> NDArray[np.intp]:
        """X: (N, D) -> predicted class (N,)."""
        pred: NDArray[np.intp] = np.argmax(self.scores(X), axis=1)
        return pred

    def accuracy(self, X: Array, y: NDArray[np.integer[Any]]) -> float:
        """Fraction of samples whose predicted class equals the label."""
        pred = self.predict(X)
        return float(np.mean(pred == check_labels(y, len(pred), self.n_classes)))

    def hidden_outputs(self, X: Array) -> list[tuple[Array, Array]]:
        """X: (N, D) -> per hidden layer, (pre-activation (N, H_l), activation (N, H_l)); no caches kept."""
        return self._layers(self.check_input(X), keep_caches=False)[1]

    def preactivations(self, X: Array) -> list[Array]:
        """X: (N, D) -> one pre-activation array (N, H_l) per hidden layer; a unit fires where it is > 0."""
        return [pre for pre, _ in self.hidden_outputs(X)]
