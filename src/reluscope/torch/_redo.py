"""ReDo (Sokar et al. 2023) for PyTorch models: recycle dead or dormant units, with the ``torch.optim`` optimizers.

For every recycled unit ``u`` of a site (a rectifier call found by :func:`reluscope.torch.find_sites`):

* the producing layer's incoming weights for ``u`` (``Linear.weight[u, :]``, ``Conv.weight[u]``) are redrawn with
  the layer's initialiser (PyTorch's default ``kaiming_uniform_(a=sqrt(5))``, or ``init=``), its bias is zeroed;
  a BatchNorm between the layer and the activation gets ``weight[u] = 1``, ``bias[u] = 0``,
  ``running_mean[u] = 0``, ``running_var[u] = 1``; a per-unit PReLU slope goes back to its initial value;
* the consuming layer's weights from ``u`` are zeroed (``Linear.weight[:, u]``; after a flatten, the block of
  ``H*W`` features channel ``u`` became; ``Conv.weight[:, u]``), so the output does not change at the reset;
* exactly those entries of the optimizer state are reset to a fresh optimizer's value: moments and momentum
  buffers to 0 (Adam/AdamW ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``; SGD ``momentum_buffer``; RMSprop
  ``square_avg`` ...), Rprop's ``step_size`` to the group's ``lr``, Adagrad's ``sum`` to
  ``initial_accumulator_value``, ASGD's ``ax`` to the new weights. ``step`` and every other entry are kept; an
  optimizer with an unknown per-parameter entry is refused before anything changes.

How the structure is found
--------------------------
One example batch runs through the model in eval mode under ``no_grad`` while a ``TorchFunctionMode`` records
which tensor every call consumed and produced (no tracing: data-dependent control flow is fine). A site is mapped
when its pre-activation comes straight from a ``Linear``/``Conv{1,2,3}d`` (optionally through a ``BatchNorm``)
used once, and its output reaches exactly one ``Linear``/``Conv`` (``groups=1``) through nothing but dropout,
pooling and a flatten. Anything else (a residual add, a concatenation, a LayerNorm, a layer called twice, a
grouped conv) is refused with the reason; a site whose output is the model's output is the output layer and is
never touched. The plan is cached per model, so later calls need no example; nor does a first call after
``scan``/``monitor`` ran the model (they keep two rows of the first input they saw, see ``remember_example``).
A ``Linear`` applied to ``(..., F)`` (a transformer's MLP: ``Linear -> act -> dropout -> Linear``) is mapped with
its units along the last dimension (where ``scan`` puts the units of a Linear's output).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from reluscope._validate import check_positive_int, check_tau
from reluscope.diagnose import ActivationStats
from reluscope.remedies import ReDoReport, recycle_mask
from reluscope.torch._examples import recorded_example, remember_example
from reluscope.torch._locate import Site, check_model, eval_mode, find_sites, iter_tensors, rectifier_call

__all__ = ["ReDoPlan", "ReDoSchedule", "SitePlan", "StructureError", "consumer_shift", "redo", "redo_plan"]

Init = Callable[[Tensor, torch.Generator], Any]
"""``init(weight, generator)`` fills ``weight`` in place, e.g. ``lambda w, g: nn.init.kaiming_normal_(w, generator=g)``.
"""


class StructureError(ValueError):
    """ReDo cannot map a site to the layers that produce and consume its units (the message says why)."""


# Tracing ----------------------------------------------------------------------------------------------------------
_LINEAR = frozenset({"linear"})
_CONV = frozenset({"conv1d", "conv2d", "conv3d"})
_BN = frozenset({"batch_norm"})
_PASS = frozenset(
    {
        "dropout",
        "dropout1d",
        "dropout2d",
        "dropout3d",
        "alpha_dropout",
        "feature_alpha_dropout",
        "max_pool1d",
        "max_pool2d",
        "max_pool3d",
        "max_pool1d_with_indices",
        "max_pool2d_with_indices",
        "max_pool3d_with_indices",
        "avg_pool1d",
        "avg_pool2d",
        "avg_pool3d",
        "adaptive_avg_pool1d",
        "adaptive_avg_pool2d",
        "adaptive_avg_pool3d",
        "adaptive_max_pool1d",
        "adaptive_max_pool2d",
        "adaptive_max_pool3d",
        "adaptive_max_pool1d_with_indices",
        "adaptive_max_pool2d_with_indices",
        "adaptive_max_pool3d_with_indices",
        "contiguous",
        "clone",
    }
)
_FLATTEN = frozenset({"flatten", "view", "reshape"})
_ZERO_FACTORIES = frozenset({"zeros", "zeros_like", "new_zeros"})  # read only the shape of their argument


@dataclass
class _Node:
    """One traced call: what it is, which module's parameters it used, where its tensor inputs came from."""

    kind: str  # linear, conv, bn, act, pass, flatten, other
    op: str  # the function name
    module: str | None  # path of the module owning a parameter/buffer argument
    inputs: list[int | None]  # per tensor argument: producing node index, None if not produced by the trace
    in_shape: tuple[int, ...] | None  # shape of the first tensor argument
    out_shape: tuple[int, ...] | None
    label: str = ""  # rectifier label for act nodes


class _FlowTracer(TorchFunctionMode):
    """Records every call that returns a tensor: its kind, the module owning its parameters, its input nodes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.owner: dict[int, tuple[Tensor, str]] = {}
        for path, module in model.named_modules():
            for t in list(module.parameters(recurse=False)) + list(module.buffers(recurse=False)):
                self.owner[id(t)] = (t, path)
        self.nodes: list[_Node] = []
        self._producer: dict[int, tuple[Tensor, int]] = {}

    def _source(self, t: Tensor) -> int | None:
        entry = self._producer.get(id(t))
        return entry[1] if entry is not None and entry[0] is t else None

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        op = getattr(func, "__name__", "")
        arg_tensors = [*iter_tensors(args), *iter_tensors(kwargs)]
        module = None
        data_inputs: list[Tensor] = []
        for t in arg_tensors:
            entry = self.owner.get(id(t))
            if entry is not None and entry[0] is t:
                module = module or entry[1]
            else:
                data_inputs.append(t)
        if op in _ZERO_FACTORIES:
            data_inputs = []  # zeros_like(h) reads h's shape, not its values: not a use of h
        found = rectifier_call(func, args, kwargs)  # the same decision as find_sites'
        label = None
        if found is not None:
            label, pre = found  # the pre-activation goes first: maximum(zeros, h) reads h
            data_inputs = [pre] + [t for t in data_inputs if t is not pre]
        inputs = [self._source(t) for t in data_inputs]
        first = data_inputs[0] if data_inputs else None
        in_shape = tuple(first.shape) if first is not None else None
        out = func(*args, **kwargs)
        outs = list(iter_tensors(out))
        if not outs:
            return out  # sizes, shapes, bools: not a data flow
        if label is not None:
            kind = "act"
        elif op in _LINEAR:
            kind = "linear"
        elif op in _CONV:
            kind = "conv"
        elif op in _BN:
            kind = "bn"
        elif op in _PASS:
            kind = "pass"
        elif op in _FLATTEN:
            kind = "flatten"
        else:
            kind = "other"
        index = len(self.nodes)
        self.nodes.append(_Node(kind, op, module, inputs, in_shape, tuple(outs[0].shape), label or ""))
        for t in outs:
            self._producer[id(t)] = (t, index)  # keeps the tensor alive, so ids are not reused during the trace
        return out


# The plan -----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SitePlan:
    """How one site's units map to parameters.

    Attributes
    ----------
    site : str
        The adapter's site name.
    units : int
        Units (features or channels).
    producer : str
        Path of the Linear/Conv producing the pre-activation.
    batch_norm : str or None
        Path of a BatchNorm between producer and activation.
    prelu : str or None
        Path of a per-unit PReLU module applying the activation.
    consumer : str
        Path of the Linear/Conv consuming the activation.
    block : int
        Consumer input features per unit (H*W after a flatten, else 1).
    function : str
        The rectifier (``"relu"``, ``"gelu"``, ...).
    last_dim : bool
        Units along the last dimension: a ``Linear`` applied to ``(..., F)`` (a transformer MLP), as ``scan``
        counts them.
    positions : int
        Positions per sample of each unit in the mapped example (``H*W`` of a conv site, ``L`` of a ``(N, L, F)``
        Linear): the scan's per-channel |activation| sums run over them.
    """

    site: str
    units: int
    producer: str
    batch_norm: str | None
    prelu: str | None
    consumer: str
    block: int
    function: str = ""
    last_dim: bool = False
    positions: int = 1


@dataclass(frozen=True)
class ReDoPlan:
    """The mapping of every site of a model (see :func:`redo_plan`).

    Attributes
    ----------
    sites : dict[str, SitePlan]
        Mappable sites, in order of execution.
    output_sites : list[str]
        Sites whose output is the model's output: the output layer, never recycled.
    refused : dict[str, str]
        Sites that cannot be mapped, with the reason.
    """

    sites: dict[str, SitePlan]
    output_sites: list[str]
    refused: dict[str, str]
    signature: tuple[tuple[str, int, tuple[int, ...]], ...] = field(repr=False, compare=False)


def _signature(model: nn.Module) -> tuple[tuple[str, int, tuple[int, ...]], ...]:
    return tuple((name, id(p), tuple(p.shape)) for name, p in model.named_parameters())


def _run_example(model: nn.Module, example: Any, mode: TorchFunctionMode | None) -> None:
    args = example if isinstance(example, tuple) else (example,)
    if mode is None:
        model(*args)
        return
    with mode:
        model(*args)


def _map_site(
    site: Site,
    a: int,
    nodes: list[_Node],
    uses: dict[int, list[int]],
    modules: dict[str, nn.Module],
    calls: dict[str, int],
) -> SitePlan | str | None:
    """A SitePlan, a refusal reason (str), or None for an output-layer site."""
    name = site.name
    act = nodes[a]
    src = act.inputs[0] if act.inputs else None
    if src is None:
        return "its pre-activation is not computed by a layer of the model (it comes from the input or a constant)"
    bn_path = None
    if nodes[src].kind == "bn":
        bn_node = src
        if uses.get(bn_node, []) != [a]:
            return f"the output of BatchNorm {nodes[bn_node].module!r} is also used elsewhere"
        bn_path = nodes[bn_node].module
        src = nodes[bn_node].inputs[0] if nodes[bn_node].inputs else None
        if src is None:
            return "the BatchNorm before it does not follow a layer of the model"
        expected_use = bn_node
    else:
        expected_use = a
    prod = nodes[src]
    if prod.kind not in ("linear", "conv"):
        return (
            f"its pre-activation comes from {prod.op!r}, not from a Linear/Conv (optionally through a BatchNorm); "
            "residual adds, norms other than BatchNorm and attention cannot be recycled unit by unit"
        )
    if uses.get(src, []) != [expected_use]:
        return f"the output of {prod.module!r} is also used by another operation (e.g. a skip connection)"
    if prod.module is None:
        return f"its {prod.op} call uses weights that are not parameters of the model"
    producer = modules[prod.module]
    if not isinstance(producer, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
        return f"{prod.module!r} is a {type(producer).__name__}, not an nn.Linear or nn.Conv1d/2d/3d"
    for path in (prod.module, bn_path):
        if path is not None and calls[path] > 1:
            return f"module {path!r} is called {calls[path]} times per forward pass (its weights are shared)"
    if bn_path is not None and not isinstance(modules[bn_path], nn.modules.batchnorm._BatchNorm):
        return f"{bn_path!r} is a {type(modules[bn_path]).__name__}, not a BatchNorm"
    units = producer.out_features if isinstance(producer, nn.Linear) else producer.out_channels
    # the units are where the site's statistics have them (find_sites: the producer's axis, or an override)
    shape = act.in_shape
    if shape is None or len(shape) < 2:
        return f"its input has shape {shape}: expected a batch of (N, {units}, ...) or (N, ..., {units}) values"
    axis = site.unit_axis % len(shape)
    last_dim = len(shape) > 2 and axis == len(shape) - 1
    if axis not in (1, len(shape) - 1) or shape[axis] != units:
        return (
            f"its units are on dim {axis} of its input of shape {shape} (unit_axis, from {site.axis_source!r}), "
            f"but {prod.module!r} produces {units} units on dim {'-1' if isinstance(producer, nn.Linear) else '1'}"
        )
    if last_dim and not isinstance(producer, nn.Linear):
        return f"its units are on the last dimension, but {prod.module!r} is a conv (units on dim 1)"
    if last_dim and bn_path is not None:
        return f"BatchNorm {bn_path!r} normalises dim 1 of {shape}, not the Linear's units on the last dimension"
    if not last_dim and isinstance(producer, nn.Linear) and len(shape) > 2:
        return f"its units are read on dim 1 of {shape}, but nn.Linear {prod.module!r} produces them on the last dim"
    prelu = None
    if act.label == "prelu" and act.module is not None:
        mod = modules[act.module]
        if isinstance(mod, nn.PReLU) and mod.num_parameters == units:
            prelu = act.module
    # follow the output to its one consumer
    block = 1
    node = a
    while True:
        nxt = uses.get(node, [])
        if not nxt:
            return None  # reaches the model output: the output layer
        if len(nxt) > 1:
            return f"its output is used by {len(nxt)} operations ({', '.join(nodes[i].op for i in nxt)}), not one layer"
        prev, node = node, nxt[0]
        n = nodes[node]
        if n.kind in ("pass", "flatten", "linear", "conv") and n.inputs[0] != prev:
            return f"its output enters {n.op!r} as a secondary argument"
        if n.kind == "pass":
            if last_dim and not n.op.startswith("dropout") and n.op not in ("contiguous", "clone"):
                return f"{n.op} after a Linear over the last dimension is not a per-unit pass-through"
            if n.out_shape is None or n.in_shape is None or n.out_shape[1:2] != n.in_shape[1:2]:
                return f"{n.op} changes the number of units"
            continue
        if n.kind == "flatten" and last_dim:
            return f"{n.op} reshapes a Linear's (..., {units}) output"
        if n.kind == "flatten":
            assert n.in_shape is not None and n.out_shape is not None
            if n.in_shape == n.out_shape:
                continue
            if len(n.out_shape) != 2 or n.out_shape[0] != n.in_shape[0] or block != 1:
                return f"{n.op} to shape {n.out_shape} is not a flatten of (N, C, ...) into (N, C*...)"
            block = math.prod(n.in_shape[2:])
            continue
        if n.kind in ("linear", "conv"):
            if n.module is None:
                return f"its consumer {n.op} uses weights that are not parameters of the model"
            consumer = modules[n.module]
            if calls[n.module] > 1:
                return f"its consumer {n.module!r} is called {calls[n.module]} times per forward pass"
            assert n.in_shape is not None
            if isinstance(consumer, nn.Linear) and last_dim:
                if consumer.in_features != units or n.in_shape[-1] != units:
                    return f"nn.Linear {n.module!r} has {consumer.in_features} inputs, expected {units}"
            elif last_dim:
                return f"its consumer {n.module!r} is not an nn.Linear over the last dimension"
            elif isinstance(consumer, nn.Linear):
                if len(n.in_shape) != 2:
                    return f"nn.Linear {n.module!r} is applied to a {len(n.in_shape)}-D tensor; flatten it first"
                if consumer.in_features != units * block:
                    return f"nn.Linear {n.module!r} has {consumer.in_features} inputs, expected {units * block}"
            elif isinstance(consumer, nn.Conv1d | nn.Conv2d | nn.Conv3d):
                if consumer.groups != 1:
                    return f"its consumer {n.module!r} is a grouped/depthwise conv (groups={consumer.groups})"
                if block != 1 or consumer.in_channels != units:
                    return f"conv {n.module!r} has {consumer.in_channels} input channels, expected {units}"
            else:
                return f"its consumer {n.module!r} is a {type(consumer).__name__}, not nn.Linear/Conv"
            positions = math.prod(shape[1:-1]) if last_dim else math.prod(shape[2:])
            return SitePlan(name, units, prod.module, bn_path, prelu, n.module, block, act.label, last_dim, positions)
        return f"its output goes into {n.op!r}, not into a Linear/Conv (through dropout, pooling or a flatten)"


_PLANS: weakref.WeakKeyDictionary[nn.Module, ReDoPlan] = weakref.WeakKeyDictionary()


def redo_plan(model: nn.Module, example: Any) -> ReDoPlan:
    """Map every site of ``model`` to the layers producing and consuming its units (and cache it for :func:`redo`).

    Parameters
    ----------
    model
        An eager ``nn.Module``.
    example
        One input batch (a tensor, or a tuple of positional arguments). It runs once in eval mode under
        ``no_grad``; train/eval flags are restored, nothing else changes.
    """
    model = check_model(model)
    if isinstance(model, torch.jit.ScriptModule):
        raise TypeError("redo needs an eager nn.Module, not TorchScript: recycle the Python model before scripting")
    tracer = _FlowTracer(model)
    sites = find_sites(model, *(example if isinstance(example, tuple) else (example,)))
    with eval_mode(model):
        _run_example(model, example, tracer)
    nodes = tracer.nodes
    acts = [i for i, n in enumerate(nodes) if n.kind == "act"]
    if [s.function for s in sites] != [nodes[i].label for i in acts]:
        raise StructureError(
            f"could not match the rectifier calls of the model ({[nodes[i].label for i in acts]}) to the sites "
            f"reluscope.torch finds ({[s.name for s in sites]}); please report this model"
        )
    uses: dict[int, list[int]] = {}
    for i, n in enumerate(nodes):
        for src in dict.fromkeys(n.inputs):
            if src is not None:
                uses.setdefault(src, []).append(i)
    calls: dict[str, int] = {}
    for n in nodes:
        if n.kind in ("linear", "conv", "bn") and n.module is not None:
            calls[n.module] = calls.get(n.module, 0) + 1
    modules = dict(model.named_modules())
    plans: dict[str, SitePlan] = {}
    output_sites: list[str] = []
    refused: dict[str, str] = {}
    for site, a in zip(sites, acts, strict=True):
        result = _map_site(site, a, nodes, uses, modules, calls)
        if result is None:
            output_sites.append(site.name)
        elif isinstance(result, str):
            refused[site.name] = result
        else:
            plans[site.name] = result
    plan = ReDoPlan(plans, output_sites, refused, _signature(model))
    _PLANS[model] = plan
    remember_example(model, example if isinstance(example, tuple) else (example,))
    return plan


# Applying it --------------------------------------------------------------------------------------------------------
def _default_init(weight: Tensor, generator: torch.Generator) -> None:
    """What ``nn.Linear``/``nn.Conv*d.reset_parameters`` draw for the weight."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)


# What each torch.optim state entry shaped like its parameter is reset to for a recycled unit: the value a fresh
# optimizer would start from. ``step`` (and other scalar entries) are left alone.
_STATE_RESET: dict[str, str] = {
    "exp_avg": "zero",  # Adam, AdamW, NAdam, RAdam, Adamax's m
    "exp_avg_sq": "zero",
    "max_exp_avg_sq": "zero",  # amsgrad
    "exp_inf": "zero",  # Adamax
    "momentum_buffer": "zero",  # SGD, RMSprop
    "square_avg": "zero",  # RMSprop, Adadelta
    "grad_avg": "zero",  # RMSprop(centered)
    "acc_delta": "zero",  # Adadelta
    "prev": "zero",  # Rprop's previous gradient
    "step_size": "lr",  # Rprop: a fresh step size is the group's lr
    "sum": "initial_accumulator_value",  # Adagrad
    "ax": "param",  # ASGD's running average of the parameter: restart it at the new value
}


def check_optimizer(model: nn.Module, optimizer: Any) -> torch.optim.Optimizer | None:
    """Refuse, before anything changes, an optimizer that is not a ``torch.optim.Optimizer``, that holds none of
    ``model``'s parameters (it trains another model: resetting its state would miss this one's), or whose
    per-parameter state cannot be reset (:func:`check_optimizer_state`). ``None`` (no optimizer) is accepted."""
    if optimizer is None:
        return None
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}; "
            "for the numpy MLP use reluscope.remedies.redo"
        )
    own = {id(p) for p in model.parameters()}
    held = [p for g in optimizer.param_groups for p in g["params"]]
    if own and not any(id(p) in own for p in held):
        raise ValueError(
            f"the {type(optimizer).__name__} holds {len(held)} parameter(s), none of them the model's: it trains "
            "another model, so its state could not be reset for the recycled units; pass the optimizer built "
            "from this model's parameters, e.g. torch.optim.Adam(model.parameters())"
        )
    check_optimizer_state(optimizer)
    return optimizer


def check_optimizer_state(optimizer: torch.optim.Optimizer | None) -> None:
    """Refuse, before anything is changed, an optimizer whose per-parameter state ReDo does not know how to reset."""
    if optimizer is None:
        return
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if isinstance(value, Tensor) and value.shape == param.shape and key not in _STATE_RESET:
                raise ValueError(
                    f"{type(optimizer).__name__} keeps per-parameter state {key!r}, which redo does not know how to "
                    f"reset for single units; supported entries: {', '.join(sorted(_STATE_RESET))}"
                )


def _reset_state(optimizer: torch.optim.Optimizer | None, param: Tensor, index: tuple[Any, ...]) -> None:
    """Reset ``index`` of every optimizer state tensor shaped like ``param`` to a fresh optimizer's value (see
    ``_STATE_RESET``); ``param`` already holds its new values. ``step`` and other units are left alone."""
    if optimizer is None:
        return
    state = optimizer.state.get(param)
    if not state:
        return
    group = next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))
    for key, value in state.items():
        if key == "step" or not isinstance(value, Tensor) or value.shape != param.shape:
            continue
        how = _STATE_RESET[key]
        if how == "zero":
            value[index] = 0
        elif how == "param":
            value[index] = param[index].to(value.dtype)
        else:
            value[index] = float(group[how])


def _as_generator(seed: Any) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool) and int(seed) >= 0:
        return torch.Generator().manual_seed(int(seed))
    raise TypeError(f"seed must be a non-negative int or a torch.Generator, got {seed!r}; e.g. seed=0")


def _cached_plan(model: nn.Module, example: Any) -> ReDoPlan:
    """The model's structure map: the cached one while the model's parameters are unchanged, else mapped anew from
    ``example`` (two forward passes)."""
    plan = _PLANS.get(model)
    if plan is not None and plan.signature == _signature(model):
        return plan
    if example is None:
        example = recorded_example(model)  # what scan/monitor ran the model on
    if example is not None:
        return redo_plan(model, example)
    raise ValueError(
        "redo needs one example input the first time it sees a model (or after its parameters changed), to map "
        "which layers feed and read each site: run reluscope.torch.scan/monitor on it first, or pass "
        "redo(model, optimizer, stats, example=x[:2])"
    )


def redo(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    stats: ActivationStats,
    tau: float = 0.1,
    *,
    example: Any = None,
    sites: Iterable[str] | None = None,
    init: Init | None = None,
    seed: int | torch.Generator = 0,
    bias_correction: bool = False,
) -> ReDoReport:
    """Recycle the dead/τ-dormant units of a PyTorch model in place (ReDo, Sokar et al. 2023).

    Parameters
    ----------
    model
        The eager ``nn.Module`` (see the module docstring for the structures handled).
    optimizer
        Its ``torch.optim`` optimizer (``None`` for none): the state entries of the recycled units are reset to what
        a fresh optimizer starts from (zero moments and momentum, Rprop's step size to ``lr``, Adagrad's sum to
        ``initial_accumulator_value``, ASGD's average to the new weights); ``step`` counts are kept. An optimizer
        with per-parameter state redo does not know is refused before anything changes.
    stats
        Statistics keyed by the adapter's site names: ``reluscope.torch.scan(model, loader)`` or a monitor's
        ``m.stats`` (``tau=0``) / ``m.full_stats`` (``tau > 0`` needs |activation| sums).
    tau
        Units that never fired are recycled, and for ``tau > 0`` also those whose dormant score is <= ``tau``.
    example
        An input batch (tensor or tuple of positional arguments) to map the model's structure; needed on the first
        call for a model unless ``scan``/``monitor`` already ran it (they keep two rows of their first input),
        cached afterwards (see :func:`redo_plan`).
    sites
        Recycle only these sites (default: every site in ``stats``). A named site that cannot be mapped raises;
        with the default, output-layer sites are skipped and unmappable ones raise.
    init
        ``init(weight, generator)`` redraws a full weight tensor in place; default PyTorch's Linear/Conv
        initialiser ``kaiming_uniform_(a=sqrt(5))``. Only the recycled units' slices are used.
    seed
        An int or a ``torch.Generator`` (pass a Generator when calling repeatedly, for fresh draws).
    bias_correction
        Before zeroing a recycled unit's outgoing weights, fold its mean activation over the stats' data into the
        consumer's bias (``bias += W[:, u] * mean|h_u|``, summed over a Conv kernel), as Continual Backprop does
        (Dohare et al. 2024), so that with ``tau > 0`` the output moves only by the unit's deviation from its mean.
        Uses mean |activation|: exact for ReLU; after a flatten each feature gets its channel's mean.

    Returns
    -------
    ReDoReport
        Recycled unit indices per site, each site's unit count and what its statistics counted as a sample
        (``print(report)``: ``"mlp.act: 12 of 32 units recycled (dead over 40×9 positions)"``).

    Raises
    ------
    StructureError
        A site in ``stats`` (or ``sites``) cannot be mapped; the message says why.
    ValueError
        ``stats`` do not match the model (unknown site, wrong unit count), ``tau`` is invalid, or no example
        was given on the first call.

    Notes
    -----
    Right after the reset the model's output is bit-identical (in eval mode) on data where the recycled units
    were 0: dead ReLU units, since their outgoing weights are now zero.
    """
    model = check_model(model)
    tau = check_tau(tau)
    if not isinstance(stats, ActivationStats):
        raise TypeError(
            f"stats must be an ActivationStats, got {type(stats).__name__}; "
            "use reluscope.torch.scan(model, loader) or a monitor's m.stats"
        )
    check_optimizer(model, optimizer)
    gen = _as_generator(seed)
    fill = _default_init if init is None else init
    plan = _cached_plan(model, example)
    names = list(stats.names) if sites is None else list(sites)
    known = set(plan.sites) | set(plan.output_sites) | set(plan.refused)
    chosen: list[SitePlan] = []
    for name in names:
        if name not in stats:
            raise ValueError(f"stats have no site {name!r}; they have {stats.names}")
        if name not in known:
            raise ValueError(
                f"stats site {name!r} is not a site of this model (its sites: {sorted(known)}); were the stats "
                "computed on another model, or with channels_last?"
            )
        if name in plan.refused:
            raise StructureError(
                f"cannot recycle site {name!r}: {plan.refused[name]}. Pass sites=[...] to recycle only the others "
                f"(mappable: {list(plan.sites)})"
            )
        if name in plan.output_sites:
            if sites is not None:
                raise StructureError(f"site {name!r} is the output layer (its output is the model's output)")
            continue
        sp = plan.sites[name]
        if stats.n_units(name) != sp.units:
            raise ValueError(
                f"stats site {name!r} has {stats.n_units(name)} units but {sp.producer!r} produces {sp.units}; "
                "were the stats computed on another model, or with channels_last?"
            )
        chosen.append(sp)

    modules = dict(model.named_modules())
    units: dict[str, list[int]] = {}
    sizes: dict[str, int] = {}
    selected: list[tuple[SitePlan, Tensor]] = []
    for sp in chosen:
        mask = recycle_mask(stats, sp.site, tau)
        idx_list = [int(i) for i in mask.nonzero()[0]]
        units[sp.site] = idx_list
        sizes[sp.site] = sp.units
        if idx_list:
            selected.append((sp, torch.tensor(idx_list, dtype=torch.long)))
    with torch.no_grad():
        # 1) incoming weights, bias, BatchNorm, PReLU slope
        for sp, idx in selected:
            prod = modules[sp.producer]
            w = prod.weight
            fresh = torch.empty(w.shape, dtype=w.dtype)
            fill(fresh, gen)
            i = idx.to(w.device)
            w[i] = fresh[idx].to(w.device)
            _reset_state(optimizer, w, (i,))
            if prod.bias is not None:
                prod.bias[i] = 0
                _reset_state(optimizer, prod.bias, (i,))
            if sp.batch_norm is not None:
                bn = modules[sp.batch_norm]
                assert isinstance(bn, nn.modules.batchnorm._BatchNorm)
                if bn.weight is not None:
                    bn.weight[i] = 1
                    _reset_state(optimizer, bn.weight, (i,))
                if bn.bias is not None:
                    bn.bias[i] = 0
                    _reset_state(optimizer, bn.bias, (i,))
                if bn.running_mean is not None:
                    bn.running_mean[i] = 0
                if bn.running_var is not None:
                    bn.running_var[i] = 1
            if sp.prelu is not None:
                prelu = modules[sp.prelu]
                assert isinstance(prelu, nn.PReLU)
                prelu.weight[i] = prelu.init
                _reset_state(optimizer, prelu.weight, (i,))
        # 2) outgoing weights last, so every recycled unit ends with zero outgoing weights
        for sp, idx in selected:
            cons = modules[sp.consumer]
            w = cons.weight
            i = idx.to(w.device)
            if sp.block > 1:
                i = (i[:, None] * sp.block + torch.arange(sp.block, device=w.device)[None, :]).reshape(-1)
            if bias_correction and cons.bias is not None:
                mean_h = torch.as_tensor(stats.mean_abs_activation(sp.site)[idx.numpy()], dtype=w.dtype)
                cons.bias += consumer_shift(cons, sp, idx, mean_h)
            w[:, i] = 0
            _reset_state(optimizer, w, (slice(None), i))
    samples = {name: stats.describe_samples(name) for name in units}
    return ReDoReport(units=units, sizes=sizes, tau=tau, samples=samples)


def consumer_shift(consumer: nn.Module, sp: SitePlan, idx: Tensor, means: Tensor) -> Tensor:
    """(out,) tensor in ``means``' dtype: how far the consumer's pre-bias output moves when the units ``idx`` of site
    ``sp`` output ``means`` instead of 0 -- what to fold into its bias when their outgoing weights are zeroed (ReDo's
    bias correction, Continual Backprop) or the units removed (``prune_dead``).

    ``means`` holds one value per unit (``(len(idx),)``, spread over the ``sp.block`` features a unit became after
    a flatten) or one per consumer input feature (``(len(idx) * sp.block,)``). A Linear consumer gives
    ``W[:, cols] @ means``; a Conv consumer sums its kernel: ``sum_k W[:, u, k] * means[u]`` (exact away from
    zero-padded borders).
    """
    weight = consumer.weight
    assert isinstance(weight, Tensor)
    w = weight.detach().to(means.dtype)
    i = idx.to(w.device)
    cols = (
        i if sp.block == 1 else (i[:, None] * sp.block + torch.arange(sp.block, device=w.device)[None, :]).reshape(-1)
    )
    m = means.to(w.device)
    if sp.block > 1 and m.numel() == i.numel():
        m = m.repeat_interleave(sp.block)
    wc = w[:, cols]
    return (wc.flatten(2).sum(2) if wc.dim() > 2 else wc) @ m


# Schedule -----------------------------------------------------------------------------------------------------------
class ReDoSchedule:
    """Recycle every ``every`` optimizer steps from a :func:`reluscope.torch.monitor`'s window, then reset it.

    Call :meth:`step` after each ``optimizer.step()``. With ``tau=0`` the monitor's cheap "fired at least once"
    window is enough (``m.stats``); ``tau > 0`` uses the fully counted passes (``m.full_stats``), so the monitor
    needs ``full_every``. The first training batch is kept (two rows, cloned) as the example that maps the
    model's structure, unless ``example`` is given.

    Examples
    --------
    >>> with monitor(model) as m:
    ...     sched = ReDoSchedule(model, opt, m, every=200, tau=0.0)
    ...     for x, y in loader:
    ...         opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
    ...         sched.step()
    >>> [r.total for r in sched.reports]
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        monitor: Any,
        *,
        every: int,
        tau: float = 0.1,
        example: Any = None,
        sites: Iterable[str] | None = None,
        init: Init | None = None,
        seed: int | torch.Generator = 0,
    ) -> None:
        from reluscope.torch._monitor import Monitor

        if not isinstance(monitor, Monitor):
            raise TypeError(f"monitor must be a reluscope.torch.monitor(model) handle, got {type(monitor).__name__}")
        self.every: int = check_positive_int(every, "every", example=200)
        self.tau: float = check_tau(tau)
        if self.tau > 0 and monitor.full_every is None:
            raise ValueError(
                "tau > 0 needs dormant scores, which come from the monitor's fully counted passes: "
                "use monitor(model, full_every=...) or tau=0 (dead units only)"
            )
        self.model: nn.Module = check_model(model)
        self.optimizer: torch.optim.Optimizer | None = check_optimizer(self.model, optimizer)
        self.monitor: Monitor = monitor
        self.sites: list[str] | None = None if sites is None else list(sites)
        self.init: Init | None = init
        self.generator: torch.Generator = _as_generator(seed)
        self.example: Any = example
        self.steps: int = 0
        self.reports: list[ReDoReport] = []
        self.history: list[dict[str, Any]] = []
        self._hook: Any = None
        if example is None:
            self._hook = model.register_forward_pre_hook(self._capture)

    def _capture(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if self.example is None and args:
            self.example = tuple(a[:2].detach().clone() if isinstance(a, Tensor) else a for a in args)
        self.remove()

    def remove(self) -> None:
        """Remove the example-capturing hook (idempotent; it also removes itself after the first forward)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def step(self) -> ReDoReport | None:
        """Count one optimizer step; every ``every`` steps recycle, reset the monitor's window, return the report."""
        self.steps += 1
        if self.steps % self.every:
            return None
        if self.example is None:
            raise ValueError(
                "ReDoSchedule has no example input to map the model with: step() came before any forward pass, or "
                "the model is called with keyword arguments only; pass example=(x[:2],) to ReDoSchedule"
            )
        stats = self.monitor.stats if self.tau == 0 else self.monitor.full_stats
        report = redo(
            self.model,
            self.optimizer,
            stats,
            self.tau,
            example=self.example,
            sites=self.sites,
            init=self.init,
            seed=self.generator,
        )
        self.monitor.reset_window()
        self.reports.append(report)
        self.history.append({"step": self.steps, "counts": dict(report.counts), "total": report.total})
        return report
