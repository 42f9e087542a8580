"""Scan a TorchScript model (``torch.jit.load``): its code runs in C++, out of reach of Python hooks and modes.

The model's inlined forward graph is copied, each rectifier node at the top level of the graph gets a clone of
its input (the pre-activation, before an in-place op overwrites it) and of its output, and those become extra
outputs of a probe function run on the module instead of ``forward``. Site names follow the eager rules (module
path from the graph's module hierarchy, call order in the graph). Nodes inside TorchScript ``if``/loops cannot be
returned from the graph and are listed by :func:`uninstrumented_sites` instead; traced models have none.

This relies on TorchScript's graph API (``torch._C``); if a PyTorch version changes it, scanning fails with a
ValueError that suggests scanning the eager model instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from reluscope.diagnose import ActivationStats
from reluscope.torch._batches import batch_rows, to_device, total_samples
from reluscope.torch._locate import (
    _AXIS_TAG,
    _CONV_PRODUCERS,
    _KEEP_AXIS,
    _LINEAR_PRODUCERS,
    RECTIFIER_MODULES,
    Site,
    _Recorder,
    eval_mode,
    stats_from_accs,
)

__all__ = ["scan_script", "uninstrumented_sites"]

_ATEN = {
    "relu": "relu",
    "relu_": "relu",
    "relu6": "relu6",
    "relu6_": "relu6",
    "hardtanh": "hardtanh",
    "hardtanh_": "hardtanh",
    "leaky_relu": "leaky_relu",
    "leaky_relu_": "leaky_relu",
    "prelu": "prelu",
    "_prelu_kernel": "prelu",
    "rrelu": "rrelu",
    "rrelu_": "rrelu",
    "rrelu_with_noise": "rrelu",
    "rrelu_with_noise_": "rrelu",
    "elu": "elu",
    "elu_": "elu",
    "celu": "celu",
    "celu_": "celu",
    "selu": "selu",
    "selu_": "selu",
    "gelu": "gelu",
    "gelu_": "gelu",
    "silu": "silu",
    "silu_": "silu",
    "mish": "mish",
    "mish_": "mish",
    "hardswish": "hardswish",
    "hardswish_": "hardswish",
}
_MODULE_TYPES = {cls.__name__ for cls in RECTIFIER_MODULES}
_SEGMENT = re.compile(r"([^.()]+)\(([^()]*)\)")


@dataclass(frozen=True)
class _ScriptSite:
    name: str
    label: str
    path: str
    call: int
    instrumented: bool
    producer: str | None = None


def _walk(block: Any, top: bool) -> Iterator[tuple[Any, bool]]:
    for node in block.nodes():
        yield node, top
        for sub in node.blocks():
            yield from _walk(sub, False)


def _module_of(node: Any) -> tuple[str, bool]:
    """(module path, whether the innermost module is an activation module) from the node's module hierarchy."""
    names: list[str] = []
    last_type = ""
    for name, type_name in _SEGMENT.findall(node.getModuleHierarchy()):
        if name == "UNKNOWN_INSTANCE":
            break
        names.append(name)
        last_type = type_name.rsplit(".", 1)[-1]
    return ".".join(names), last_type in _MODULE_TYPES


def _producer(value: Any, depth: int = 0) -> str | None:
    """ "linear"/"conv" when the graph value comes from a Linear/matmul/Conv, followed back through norms, dropout,
    residual adds, scaling, rectifiers and both branches of an ``if`` (the eager adapter's rule), else None."""
    while depth < 64:
        depth += 1
        node = value.node()
        kind = node.kind()
        if kind == "prim::If":
            found = {_producer(list(b.outputs())[value.offset()], depth) for b in node.blocks()}
            return found.pop() if len(found) == 1 else None
        if not kind.startswith("aten::"):
            return None
        op = kind[len("aten::") :]
        if op in _LINEAR_PRODUCERS:
            return "linear"
        if op in _CONV_PRODUCERS:
            return "conv"
        if (op not in _KEEP_AXIS and op not in _ATEN) or node.inputsSize() == 0:
            return None
        value = node.inputsAt(0)
    return None


def _label(node: Any) -> str | None:
    kind = node.kind()
    if not kind.startswith("aten::"):
        return None
    label = _ATEN.get(kind[len("aten::") :])
    if label == "hardtanh":
        lo = node.inputsAt(1).toIValue() if node.inputsSize() > 1 else None
        hi = node.inputsAt(2).toIValue() if node.inputsSize() > 2 else None
        if lo != 0:
            return None
        return "relu6" if hi == 6 else "hardtanh"
    return label


def _instrument(model: torch.jit.ScriptModule) -> tuple[Any, list[_ScriptSite]]:
    """A probe function ``probe(model._c, x) -> (out, pre1, act1, pre2, act2, ...)`` and the sites, in order."""
    graph = model.inlined_graph  # a copy
    # fold constant branches such as F.relu's `if inplace:`, so only real control flow stays nested
    torch._C._jit_pass_constant_propagation(graph)
    ret = graph.return_node()
    outputs = [ret.inputsAt(0)]
    sites: list[_ScriptSite] = []
    calls: dict[str, int] = {}
    for node, top in list(_walk(graph, True)):
        label = _label(node)
        if label is None:
            continue
        path, is_module = _module_of(node)
        base = path if (is_module and path) else (f"{path}.{label}" if path else label)
        k = calls[base] = calls.get(base, 0) + 1
        name = base if k == 1 else f"{base}#{k}"
        sites.append(_ScriptSite(name, label, path, k, top, _producer(node.inputsAt(0))))
        if not top:
            continue
        x = node.inputsAt(0)
        none = graph.create("prim::Constant", [], 1)
        none.output().setType(torch._C.NoneType.get())
        none.insertBefore(node)
        pre = graph.create("aten::clone", [x, none.output()], 1)
        pre.output().setType(x.type())
        pre.insertBefore(node)
        act = graph.create("aten::clone", [node.output(), none.output()], 1)
        act.output().setType(node.output().type())
        act.insertAfter(node)
        outputs += [pre.output(), act.output()]
    tup = graph.create("prim::TupleConstruct", outputs, 1)
    tup.output().setType(torch._C.TupleType([v.type() for v in outputs]))
    tup.insertBefore(ret)
    ret.replaceInput(0, tup.output())
    graph.lint()
    return torch._C._create_function_from_graph("reluscope_probe", graph), sites


def _safe_instrument(model: torch.jit.ScriptModule) -> tuple[Any, list[_ScriptSite]]:
    try:
        return _instrument(model)
    except (RuntimeError, AttributeError, TypeError) as exc:
        raise ValueError(
            f"could not instrument this TorchScript model ({exc}); scan the eager model instead "
            "(--torch-model pkg.module:factory --weights state_dict.pt)"
        ) from None


def uninstrumented_sites(model: torch.jit.ScriptModule) -> list[str]:
    """Names of rectifier sites inside TorchScript control flow (``if``/loops), which a scan cannot see."""
    return [s.name for s in _safe_instrument(model)[1] if not s.instrumented]


def _first_tensor(batch: Any) -> Tensor:
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, list | tuple) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise TypeError(f"a TorchScript model is scanned with tensors or (x, y, ...) tuples, got {type(batch).__name__}")


def scan_script(
    model: torch.jit.ScriptModule,
    batches: Iterable[Any],
    *,
    device: torch.device,
    progress: Any,
    per_position: bool,
    channels_last: bool,
    unit_axis: Mapping[str, int] | None = None,
) -> tuple[ActivationStats, list[Site]]:
    """The TorchScript branch of :func:`reluscope.torch.scan` (same contract, one-tensor inputs).

    Unit axes come from the graph node producing each pre-activation (``aten::linear``/``matmul`` or a
    convolution, through norms, dropout, adds), else the fallback rule, unless ``unit_axis`` overrides them.
    """
    probe, sites = _safe_instrument(model)
    live = [s for s in sites if s.instrumented]
    rec = _Recorder(nn.Module(), per_position=per_position, channels_last=channels_last, unit_axis=unit_axis)
    total = total_samples(batches)
    n_done = 0
    n_batches = 0
    with eval_mode(model):
        for batch in batches:
            batch = to_device(batch, device)
            outs = probe(model._c, _first_tensor(batch))
            for i, site in enumerate(live):
                pre, act = outs[1 + 2 * i], outs[2 + 2 * i]
                if site.producer is not None:
                    setattr(pre, _AXIS_TAG, site.producer)
                acc = rec.site_acc(site.name, site.label, site.path, site.call, pre)
                rec.commit(acc, site.label, rec.reduce_pre(acc, pre, site.label), act)
            rec.flush()
            n_batches += 1
            n_done += batch_rows(batch)
            if progress is not None:
                progress(n_done, total)
    if n_batches == 0:
        raise ValueError("batches yielded no batch; pass a non-empty iterable of tensors or (x, y) tuples")
    unknown = sorted(set(rec.unit_axis) - set(rec.accs))
    if unknown:
        raise ValueError(f"unit_axis names {unknown}, which ran as no site; the sites are {list(rec.accs) or 'none'}")
    return stats_from_accs(list(rec.accs.values())), rec.sites()
