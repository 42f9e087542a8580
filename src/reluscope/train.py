"""The training loop: full-batch or minibatch SGD/momentum/Adam over an :class:`~reluscope.nn.MLP`.

:func:`fit` records a :class:`History` of plain lists (one entry per epoch), calls :class:`Callback` hooks, and
stops on divergence, raising :class:`DivergenceError` after restoring the last good parameters, with advice to
lower the learning rate (and to standardise inputs of a large scale). A run has diverged when

* the loss, a gradient or a parameter becomes NaN or inf, or a callback's scan finds the activations overflowing
  (:class:`~reluscope._validate.NonFiniteError`); or
* it blows up while staying finite: the minibatch loss stays above ``BLOWUP_FACTOR`` (1000) times
  ``max(first loss, ln C)`` for ``BLOWUP_STEPS`` (5) optimizer steps in a row.

Why this criterion: ``ln C`` is the loss of a network that predicts uniformly, and the first loss is where this
network started; a loss three orders of magnitude above both means the network is confidently wrong by margins that
training is not undoing (on 0..255 pixel inputs at lr 1.0 the loss climbs 175 -> 1e7 -> 2e8 and stays there). The
factor is 1000 rather than 100 because runs that overshoot and then recover do reach a few hundred times ln C: the
spiral at lr 30 peaks near 390 x ln 3 and falls back as L2 shrinks the weights. A single step over the line is
allowed (a noisy minibatch, a spike that the next steps repair); five in a row are not. The restored parameters are
those of the end of the last epoch whose steps all stayed under the line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reluscope._validate import (
    NonFiniteError,
    RNGLike,
    as_rng,
    check_int,
    check_labels,
    check_memory,
    check_positive,
)
from reluscope.data import minibatches
from reluscope.nn import functional as F
from reluscope.nn.functional import Array
from reluscope.nn.model import MLP
from reluscope.nn.optim import Optimizer, get_optimizer

__all__ = ["BLOWUP_FACTOR", "BLOWUP_STEPS", "Callback", "DivergenceError", "History", "TrainState", "fit"]

BLOWUP_FACTOR = 1000.0  # a finite loss this many times above max(first loss, ln C) ...
BLOWUP_STEPS = 5  # ... for this many optimizer steps in a row is a divergence (see the module docstring)


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss or parameter. ``history`` holds what was recorded before it."""

    def __init__(self, message: str, *, epoch: int, step: int, lr: float, history: History) -> None:
        super().__init__(message)
        self.epoch, self.step, self.lr, self.history = epoch, step, lr, history


@dataclass
class History:
    """Per-epoch records as plain lists (JSON-ready). ``extra`` is where callbacks add their own series."""

    epoch: list[int] = field(default_factory=list)
    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    extra: dict[str, list[Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        return cls(**d)


@dataclass
class TrainState:
    """What callbacks see. ``epoch`` counts completed epochs (0 before the first), ``step`` optimizer steps."""

    net: MLP
    optimizer: Optimizer
    X: Array
    y: NDArray[np.intp]
    history: History
    epoch: int = 0
    step: int = 0
    loss: float = math.nan
    stop_training: bool = False


class Callback:
    """Hooks called by :func:`fit`; override what you need. Set ``state.stop_training`` to stop early."""

    def on_train_begin(self, state: TrainState) -> None:
        """Before the first step (the network is at its initialisation)."""

    def on_step_end(self, state: TrainState) -> None:
        """After every optimizer step."""

    def on_epoch_end(self, state: TrainState) -> None:
        """After every epoch, once the history row for it is recorded."""

    def on_train_end(self, state: TrainState) -> None:
        """After the last step (also when stopped early, not after a divergence)."""


def _all_finite(params: dict[str, Array]) -> bool:
    return all(np.isfinite(p).all() for p in params.values())


def _divergence_message(epoch: int, step: int, lr: float, *, what: str, restored: int, input_scale: float) -> str:
    """The one message of every divergence: where, what happened, what to do, what was kept."""
    scale = (
        f" The inputs reach |x| = {input_scale:.3g}: standardise them (--standardize, or "
        "reluscope.data.Standardizer) so that a step of this size does not overshoot."
        if input_scale > _LARGE_INPUT
        else ""
    )
    kept = "its initial weights" if restored == 0 else f"its weights at the end of epoch {restored}"
    return (
        f"training diverged at epoch {epoch}, step {step}: {what} with lr={lr:g}; lower the learning rate "
        f"(try lr={lr / 10:g}) or add L2 regularisation (reg).{scale} The network was restored to {kept}, the last "
        "before the divergence."
    )


_LARGE_INPUT = 10.0  # features beyond this magnitude suggest unscaled data (e.g. 0..255 pixels)


def fit(
    net: MLP,
    X: Array,
    y: NDArray[np.integer[Any]],
    *,
    optimizer: str | Optimizer = "sgd",
    lr: float = 1.0,
    reg: float = 0.0,
    epochs: int | None = None,
    iterations: int | None = None,
    batch_size: int | None = None,
    seed: RNGLike = 0,
    X_val: Array | None = None,
    y_val: NDArray[np.integer[Any]] | None = None,
    callbacks: Sequence[Callback] = (),
) -> History:
    """Train ``net`` in place; returns the :class:`History`.

    Parameters
    ----------
    X, y
        Training data (N, D) and integer labels (N,) in [0, C).
    optimizer, lr
        An :class:`~reluscope.nn.Optimizer` or a name (sgd, momentum, nesterov, adam, adamw) built with ``lr``.
    reg
        L2 strength: the loss gains 0.5 * reg * sum(W**2) over weight matrices (not biases).
    epochs, iterations
        How long to train: a number of passes over X, or of optimizer steps (give one; default 1 epoch).
    batch_size
        Samples per step; ``None`` (or ≥ N) is full batch. Minibatches are reshuffled every epoch with ``seed``.
    X_val, y_val
        Optional validation data, evaluated at the end of every epoch.
    """
    X = net.check_input(X)
    y = check_labels(y, X.shape[0], net.n_classes)
    if y.min() == y.max():
        raise ValueError(
            f"y holds a single class ({int(y[0])}) in all {y.shape[0]} samples: a classifier trained on one class "
            "learns nothing (its training accuracy is trivially 100%); pass samples of at least two classes"
        )
    if (X_val is None) != (y_val is None):
        raise ValueError("pass both X_val and y_val, or neither")
    if X_val is not None:
        X_val = net.check_input(X_val, "X_val")
        y_val = check_labels(y_val, X_val.shape[0], net.n_classes, name="y_val")
    reg = check_positive(reg, "reg", allow_zero=True)
    n = X.shape[0]
    bs = n if batch_size is None else check_int(batch_size, "batch_size", 1, example=32)
    bs = min(bs, n)
    steps_per_epoch = math.ceil(n / bs)
    if epochs is not None and iterations is not None:
        raise ValueError("give epochs or iterations, not both")
    if iterations is not None:
        total_steps = check_int(iterations, "iterations", 1, example=1000)
        n_epochs = math.ceil(total_steps / steps_per_epoch)
    else:
        n_epochs = 1 if epochs is None else check_int(epochs, "epochs", 1, example=10)
        total_steps = n_epochs * steps_per_epoch
    opt = get_optimizer(optimizer, lr)
    rng = as_rng(seed)
    itemsize = net.dtype.itemsize
    # gradients, the last finite copy and up to two optimizer moments per parameter; per step, a few (batch, width)
    # arrays per layer (pre-activations, activations, their gradients)
    check_memory(
        net.n_parameters() * itemsize * 4 + bs * sum(net.sizes[1:]) * itemsize * 4,
        f"training an MLP with sizes {net.sizes} on batches of {bs} samples",
        fix="use fewer or narrower layers, or a smaller batch_size",
    )

    history = History()
    state = TrainState(net=net, optimizer=opt, X=X, y=y, history=history)
    input_scale = float(np.max(np.abs(X)))
    last_good = {k: p.copy() for k, p in net.params.items()}
    good_epoch = 0  # the epoch whose end last_good is (0: the initialisation)

    def diverged(epoch: int, step: int, what: str) -> DivergenceError:
        net.set_params(last_good)
        message = _divergence_message(epoch, step, opt.lr, what=what, restored=good_epoch, input_scale=input_scale)
        return DivergenceError(message, epoch=epoch, step=step, lr=opt.lr, history=history)

    def call(hook: str, epoch: int) -> None:
        for cb in callbacks:
            try:
                getattr(cb, hook)(state)
            except NonFiniteError as exc:  # a scan of the network found its activations overflowing
                where = f"the activations of {exc.site}" if exc.site is not None else "the activations"
                raise diverged(epoch, state.step, f"{where} overflowed to NaN/inf") from None

    call("on_train_begin", 0)
    blowup_line = math.inf  # set from the first loss
    over_line = 0  # consecutive steps above it
    for epoch in range(1, n_epochs + 1):
        loss_sum, correct, seen, grad_norm = 0.0, 0, 0, 0.0
        epoch_clean = True  # no step of this epoch went over the line
        for idx in minibatches(n, bs, rng=rng if bs < n else None):
            if state.step >= total_steps:
                break
            Xb, yb = (X, y) if bs >= n else (X[idx], y[idx])
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                # X and y were validated (and X cast to the net's dtype) once, above
                loss, grads, scores = net.loss_and_scores(Xb, yb, reg, validate=False)
                grad_norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
                finite = math.isfinite(loss) and math.isfinite(grad_norm)
                if finite:
                    opt.step(net.params, grads)
            if not finite:
                raise diverged(epoch, state.step + 1, "the loss or the gradients became NaN/inf")
            if state.step == 0:
                blowup_line = BLOWUP_FACTOR * max(loss, math.log(net.n_classes))
            over_line = over_line + 1 if loss > blowup_line else 0
            epoch_clean = epoch_clean and over_line == 0
            state.step += 1
            if over_line >= BLOWUP_STEPS:
                raise diverged(
                    epoch,
                    state.step,
                    f"the loss rose to {loss:.4g}, above {BLOWUP_FACTOR:g} x max(first loss, ln C) = "
                    f"{blowup_line:.4g} for {BLOWUP_STEPS} steps in a row",
                )
            state.loss = loss
            loss_sum += loss * len(yb)
            correct += int(np.count_nonzero(np.argmax(scores, axis=1) == yb))
            seen += len(yb)
            call("on_step_end", epoch)
        state.epoch = epoch
        history.epoch.append(epoch)
        history.step.append(state.step)
        history.loss.append(loss_sum / seen)
        history.lr.append(opt.lr)
        history.accuracy.append(correct / seen)
        history.grad_norm.append(grad_norm)
        if X_val is not None and y_val is not None:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                val_scores = net.scores(X_val)
                history.val_loss.append(F.softmax_cross_entropy(val_scores, y_val)[0])
                history.val_accuracy.append(float(np.mean(np.argmax(val_scores, axis=1) == y_val)))
        # Parameters that overflowed in the last update show up as a non-finite loss at the next step; the end of
        # the epoch is checked here so that the snapshot below is always finite.
        with np.errstate(over="ignore", invalid="ignore"):
            params_finite = _all_finite(net.params)
        if not params_finite:
            raise diverged(epoch, state.step, "the weights became NaN/inf")
        # the snapshot becomes the last good one only once the epoch's callbacks (scans) found nothing wrong
        snapshot = {k: p.copy() for k, p in net.params.items()} if epoch_clean else None
        call("on_epoch_end", epoch)
        if snapshot is not None:
            last_good, good_epoch = snapshot, epoch
        if state.stop_training or state.step >= total_steps:
            break
    call("on_train_end", state.epoch)
    return history
