"""Watch dead units during training at ~1% of a step: a cheap "fired at least once" path, full counts on request."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import torch
from torch import nn

from reluscope.diagnose import ActivationStats
from reluscope.torch._batches import check_flag
from reluscope.torch._examples import remember_example
from reluscope.torch._locate import (
    Site,
    _MonitorLike,
    _Recorder,
    check_model,
    is_compiled,
    seen_functions,
    stats_from_accs,
)

__all__ = ["Monitor", "monitor"]


def _check_every(value: Any, name: str, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        none = " or None" if allow_none else ""
        raise ValueError(f"{name} must be a positive integer{none}, got {value!r}; e.g. {name}=1 (every step)")
    return int(value)


class Monitor(_MonitorLike):
    """Records rectifier sites on the model's training forward passes; see :func:`monitor`.

    Attributes
    ----------
    steps : int
        Forward passes counted so far (training-mode passes only, unless ``train_only=False``).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        every: int = 1,
        full_every: int | None = None,
        per_position: bool = False,
        channels_last: bool = False,
        unit_axis: Mapping[str, int] | None = None,
        train_only: bool = True,
    ) -> None:
        self.compiled = is_compiled(check_model(model, unwrap=False))
        eager = check_model(model)  # the compiled wrapper's _orig_mod, or the model itself
        if isinstance(model, torch.jit.ScriptModule):
            raise TypeError(
                "monitor needs an eager nn.Module: TorchScript modules run outside Python, where hooks cannot see "
                "their activations; monitor the Python model before scripting it"
            )
        self.every: int = _check_every(every, "every") or 1
        self.full_every = _check_every(full_every, "full_every", allow_none=True)
        self.train_only = check_flag(train_only, "train_only")
        self._rec = _Recorder(
            eager,
            per_position=check_flag(per_position, "per_position"),
            channels_last=check_flag(channels_last, "channels_last"),
            unit_axis=unit_axis,
        )
        self._eager = eager
        # a compiled model's unrecorded steps run compiled code: no hooks inside it, only the mode
        self._rec.allow_plan = not self.compiled
        self._prior_stance: Any = None
        self.steps = 0
        self._depth = 0
        self._active = False
        self._removed = False
        self._handles = [
            model.register_forward_pre_hook(self._before),
            model.register_forward_hook(self._after, always_call=True),
        ]

    # hooks (run on every forward of the root model: keep them short)
    def _before(self, module: nn.Module, args: Any) -> None:
        self._depth += 1
        if self._depth > 1 or (self.train_only and not self._eager.training):
            return
        t = self.steps
        self.steps += 1
        if t == 0:  # redo/prune_dead map the structure from it later
            remember_example(module, tuple(args))
        full = self.full_every is not None and t % self.full_every == 0
        if not full and t % self.every:
            return
        if self.compiled:  # a recorded pass runs the original module eagerly (modes cannot enter compiled code)
            from torch._dynamo.eval_frame import DynamoStance, _set_stance

            self._prior_stance = _set_stance(DynamoStance("force_eager"))
        self._rec.start(full=full)
        self._active = True

    def _after(self, module: nn.Module, args: Any, output: Any) -> None:
        self._depth -= 1
        if self._depth == 0 and self._active:
            self._active = False
            self._rec.stop(learn=output is not None)
            self._restore_stance()

    def _restore_stance(self) -> None:
        if self._prior_stance is not None:
            from torch._dynamo.eval_frame import _set_stance

            _set_stance(self._prior_stance)
            self._prior_stance = None

    # results
    @property
    def stats(self) -> ActivationStats:
        """Every recorded pass of the current window (one host transfer per read).

        Exact: ``n_samples``, ``dead_mask``/``dead_fraction`` (fired at least once) and
        ``max_preactivation``. Fire counts and |activation| sums come from the fully counted passes only, so with
        ``full_every`` > 1 (or None) ``frequency`` is a lower bound (a unit that fired only in cheap passes counts
        1) and dormant scores need :attr:`full_stats`. With ``full_every=1`` everything is exact.
        """
        self._rec.flush()
        return stats_from_accs(list(self._rec.accs.values()), window=True)

    @property
    def full_stats(self) -> ActivationStats:
        """Exact statistics of the fully counted passes of the window only (a sample of it): fire rates, dormant
        scores. Empty when ``full_every`` is None."""
        self._rec.flush()
        return stats_from_accs(list(self._rec.accs.values()), window=False)

    @property
    def sites(self) -> list[Site]:
        """The sites seen so far, in order of first execution."""
        return self._rec.sites()

    @property
    def functions_seen(self) -> list[str]:
        """Names of the torch functions executed in the recorded passes, in order of first call: what was looked
        at when :attr:`sites` is empty (register a custom rectifier with
        :func:`reluscope.torch.register_rectifier`)."""
        return seen_functions(self._rec)

    def dead_fractions(self) -> dict[str, float]:
        """``{site: fraction of its units that never fired in this window}`` (exact, from the cheap path)."""
        stats = self.stats
        return {name: stats.dead_fraction(name) for name in stats.names}

    def reset_window(self) -> ActivationStats:
        """Start a new window (e.g. each epoch): counters go to zero, sites are kept. Returns the closed window's
        :attr:`stats`."""
        closed = self.stats
        for acc in self._rec.accs.values():
            acc.reset()
        return closed

    # lifetime
    def remove(self) -> None:
        """Detach from the model (idempotent). The statistics stay readable."""
        if self._removed:
            return
        self._removed = True
        for handle in self._handles:
            handle.remove()
        self._handles = []
        # a forward interrupted by a BaseException (KeyboardInterrupt) skips the always-call hook
        if self._active:
            self._rec.stop(learn=False, interrupted=True)
            self._active = False
            self._restore_stance()
        self._rec.flush()
        self._depth = 0
        self._rec.forget_model()

    @property
    def removed(self) -> bool:
        return self._removed

    def __enter__(self) -> Monitor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "removed" if self._removed else "attached"
        return f"Monitor({len(self._rec.accs)} sites, {self.steps} steps, every={self.every}, " + (
            f"full_every={self.full_every}, {state})"
        )


def monitor(
    model: nn.Module,
    every: int = 1,
    *,
    full_every: int | None = None,
    per_position: bool = False,
    channels_last: bool = False,
    unit_axis: Mapping[str, int] | None = None,
    train_only: bool = True,
) -> Monitor:
    """Record every rectifier site of ``model`` during training; returns a removable handle.

    Every ``every``-th training forward pass takes the cheap path: per unit, the running maximum of the
    pre-activation (one reduction per site, kept on the device, no host sync), which answers "fired at least once
    in this window?" exactly. Every ``full_every``-th pass counts fires exactly, like :func:`scan` (a few more
    reductions). Autograd, the outputs and the random state are untouched, so training gives bit-identical
    results with and without the monitor; only detached reductions are kept, never a graph.

    Parameters
    ----------
    model
        The ``nn.Module`` being trained (hooks go on it; submodules' own calls are seen through it), or what
        ``torch.compile(module)`` returned: then the recorded passes (one in ``every``) run the original module
        eagerly (``torch.compiler`` stance ``force_eager`` for that call), so their statistics equal the eager
        model's; the other steps run compiled. Recorded steps cost an eager forward, and their outputs may differ
        from the compiled ones by float rounding (compiled kernels fuse differently); use ``every`` > 1 to keep most
        steps compiled.
    every
        Record one forward pass in ``every`` (1: all).
    full_every
        Full fire counts one pass in ``full_every`` (None: never; 1: every recorded pass, ~5% cost).
    per_position
        Keep per-position counts of conv sites in the full passes (fixed spatial size needed).
    channels_last
        Sugar for the fallback rule (sites with no Linear/Conv producer): rank >= 3 activations along the last dim.
    unit_axis
        ``{site name: axis}`` overrides of the unit axis (see :func:`reluscope.torch.scan`); a name that no recorded
        pass has run yet is not an error here (a branch may run later): check ``m.sites``.
    train_only
        Ignore forward passes in eval mode (validation), so the window covers training data only.

    Returns
    -------
    Monitor
        Use as ``with monitor(model) as m: ...`` (removed on exit, also on error) or call ``m.remove()``
        (idempotent). ``m.stats`` / ``m.full_stats`` read the window; ``m.reset_window()`` starts a new one.

    Notes
    -----
    A model that calls itself recursively counts one step per outermost call; the inner calls' sites are part
    of it. Not supported: ``nn.DataParallel`` replicas (monitor each rank's module under DDP instead), and a
    module compiled *inside* another compiled region (pass the outermost ``torch.compile`` result).
    """
    return Monitor(
        model,
        every=every,
        full_every=full_every,
        per_position=per_position,
        channels_last=channels_last,
        unit_axis=unit_axis,
        train_only=train_only,
    )
