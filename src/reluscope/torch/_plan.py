"""When later passes may skip the TorchFunctionMode: a static check that a model's structure cannot change.

After a first pass under the mode has found every site, later passes can be recorded with forward hooks on the
rectifier modules alone, which is exact only if no pass can run a site the first pass did not: no rectifier
*function* call anywhere in the model's own code (those need the mode to be seen), and control flow that depends
on configuration only (``if self.downsample is not None``, ``for block in self.blocks``), never on values, shapes
or anything else a batch carries. :func:`fixed_structure` checks that from the source of every module's ``forward``
(and of the methods and module-level functions it calls); anything it cannot read or prove is a "no", and the
caller keeps the mode.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import textwrap
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["SUSPECT_NAMES", "fixed_structure", "has_foreign_hooks"]

# Every name under which a rectifier function (or a clamp/maximum/threshold spelling of one) can be called
SUSPECT_NAMES = frozenset(
    {
        "relu",
        "relu_",
        "relu6",
        "relu6_",
        "hardtanh",
        "hardtanh_",
        "leaky_relu",
        "leaky_relu_",
        "prelu",
        "_prelu_kernel",
        "rrelu",
        "rrelu_",
        "rrelu_with_noise",
        "rrelu_with_noise_",
        "elu",
        "elu_",
        "celu",
        "celu_",
        "selu",
        "selu_",
        "gelu",
        "gelu_",
        "silu",
        "silu_",
        "mish",
        "mish_",
        "hardswish",
        "hardswish_",
        "clamp",
        "clamp_",
        "clip",
        "clip_",
        "clamp_min",
        "clamp_min_",
        "maximum",
        "max",
        "fmax",
        "threshold",
        "threshold_",
        "activation",  # nn.Transformer*Layer keep their activation function under this name
        "forward",  # a module's forward called directly skips its hooks
        "__call__",
        "apply",
        "getattr",
        "eval",
        "exec",
    }
)
# container methods that iterate over configuration
_ITER_METHODS = frozenset({"values", "items", "keys", "children", "modules", "named_children", "parameters"})
_SAFE_BUILTINS = frozenset({"len", "range", "enumerate", "zip", "isinstance", "bool", "int", "float", "tuple", "list"})
# torch.nn classes whose forward we trust: every class defined in torch.nn.modules except these
_UNTRUSTED_BUILTINS = frozenset(
    {"TransformerEncoderLayer", "TransformerDecoderLayer", "TransformerEncoder", "TransformerDecoder", "Transformer"}
)
_TREES: dict[Any, ast.AST | None] = {}


def _tree(fn: Callable[..., Any]) -> ast.AST | None:
    """The AST of a function's source (cached), None when it cannot be read."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    if code not in _TREES:
        try:
            _TREES[code] = ast.parse(textwrap.dedent(inspect.getsource(fn)))
        except (OSError, TypeError, SyntaxError):
            _TREES[code] = None
    return _TREES[code]


class _Checker:
    """Walks one module instance's forward (and what it calls) and says whether its structure is fixed."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.done: set[Any] = set()
        self.module_vars: set[str] = set()  # loop variables bound to the submodules of a container

    def bind_loop(self, node: ast.For | ast.comprehension) -> None:
        """``for m in self.blocks`` / ``enumerate(self.blocks)`` / ``self.blocks.values()``: m is a submodule."""
        it = node.iter
        target: ast.AST = node.target
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "enumerate" and it.args:
            it = it.args[0]
            target = target.elts[1] if isinstance(target, ast.Tuple) and len(target.elts) == 2 else ast.Pass()
        elif isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) and it.func.attr in ("values", "items"):
            if it.func.attr == "items":
                target = target.elts[1] if isinstance(target, ast.Tuple) and len(target.elts) == 2 else ast.Pass()
            it = it.func.value
        ok, value = self.attr_of_self(it)
        if ok and isinstance(value, nn.ModuleList | nn.Sequential | nn.ModuleDict) and isinstance(target, ast.Name):
            self.module_vars.add(target.id)

    def function(self, fn: Callable[..., Any], depth: int = 0) -> bool:
        if fn in self.done:
            return True
        self.done.add(fn)
        tree = _tree(fn)
        if tree is None or depth > 8:
            return False
        body = tree.body[0] if isinstance(tree, ast.Module) and tree.body else None
        if not isinstance(body, ast.FunctionDef):
            return False
        glb = getattr(fn, "__globals__", {})
        return all(self.node(n, glb, depth) for stmt in body.body for n in ast.walk(stmt))

    def attr_of_self(self, node: ast.AST) -> tuple[bool, Any]:
        """(True, value) for ``self.a.b`` (value of the attribute chain on the instance), else (False, None)."""
        names: list[str] = []
        while isinstance(node, ast.Attribute):
            names.append(node.attr)
            node = node.value
        if not (isinstance(node, ast.Name) and node.id == "self") or not names:
            return False, None
        value: Any = self.module
        for name in reversed(names):
            try:
                value = getattr(value, name)
            except AttributeError:
                return False, None
        return True, value

    def config(self, node: ast.AST) -> bool:
        """True when an expression depends on the module's configuration only (not on any tensor value)."""
        if isinstance(node, ast.Constant):
            return True
        if isinstance(node, ast.Attribute):
            ok, value = self.attr_of_self(node)
            return ok and not isinstance(value, torch.Tensor)
        if isinstance(node, ast.BoolOp):
            return all(self.config(v) for v in node.values)
        if isinstance(node, ast.UnaryOp):
            return self.config(node.operand)
        if isinstance(node, ast.Compare):
            return self.config(node.left) and all(self.config(c) for c in node.comparators)
        if isinstance(node, ast.BinOp):
            return self.config(node.left) and self.config(node.right)
        if isinstance(node, ast.Call) and not node.keywords:
            f = node.func
            if isinstance(f, ast.Name) and f.id in _SAFE_BUILTINS:
                return all(self.config(a) for a in node.args)
            if isinstance(f, ast.Attribute) and f.attr in _ITER_METHODS and not node.args:
                return self.config(f.value)
        return False

    def node(self, node: ast.AST, glb: dict[str, Any], depth: int) -> bool:
        if isinstance(node, ast.If | ast.IfExp | ast.Assert):
            return self.config(node.test)
        if isinstance(node, ast.For | ast.comprehension):
            self.bind_loop(node)
            return self.config(node.iter) and all(self.config(c) for c in getattr(node, "ifs", []))
        if isinstance(
            node,
            ast.While
            | ast.Try
            | ast.Match
            | ast.Lambda
            | ast.FunctionDef
            | ast.AsyncFunctionDef
            | ast.ClassDef
            | ast.Global
            | ast.Nonlocal
            | ast.Await
            | ast.Yield
            | ast.YieldFrom,
        ):
            return False
        if isinstance(node, ast.BoolOp):  # `a or b` on tensors branches on a value
            return self.config(node)
        if isinstance(node, ast.Name):
            return node.id not in SUSPECT_NAMES
        if isinstance(node, ast.Attribute):
            if node.attr not in SUSPECT_NAMES:
                return True
            ok, value = self.attr_of_self(node)  # self.relu: a submodule (hooked), not a function
            return ok and isinstance(value, nn.Module)
        if isinstance(node, ast.Call):
            return self.call(node, glb, depth)
        return True

    def call(self, node: ast.Call, glb: dict[str, Any], depth: int) -> bool:
        f = node.func
        if isinstance(f, ast.Attribute):
            ok, value = self.attr_of_self(f)
            if ok:
                if isinstance(value, nn.Module) or value is None:
                    return True  # a submodule: checked on its own (None: a branch this instance never takes)
                fn = getattr(value, "__func__", None)
                if isinstance(fn, types.FunctionType) and isinstance(value, types.MethodType):
                    return self.function(fn, depth + 1)  # a method of this module
                return False  # a function kept as an attribute: unknown
            if isinstance(f.value, ast.Name) and f.value.id == "self":
                return False  # self.<something missing>
            return f.attr not in SUSPECT_NAMES  # torch.flatten, F.interpolate, x.view, ...
        if isinstance(f, ast.Name):
            if f.id in SUSPECT_NAMES:
                return False
            if f.id in self.module_vars:
                return True  # a submodule taken from a container by a loop over configuration
            target = glb.get(f.id, getattr(builtins, f.id, None))
            if target is None:
                return False  # a local variable holding a callable
            if isinstance(target, types.FunctionType):
                mod = getattr(target, "__module__", "") or ""
                return mod.startswith("torch.") or self.function(target, depth + 1)
            if isinstance(target, types.BuiltinFunctionType):
                return True
            if isinstance(target, type):
                return target.__module__ == "builtins" or target.__module__.startswith("torch")
            return False
        if isinstance(f, ast.Subscript):
            ok, value = self.attr_of_self(f.value)
            return ok and isinstance(value, nn.ModuleList | nn.Sequential | nn.ModuleDict)
        return False


def _trusted(module: nn.Module) -> bool:
    """A torch.nn class whose own forward (and __call__) we know calls no rectifier function."""
    cls = type(module)
    fwd = getattr(cls, "forward", None)
    return (
        (getattr(fwd, "__module__", "") or "").startswith("torch.nn.modules")
        and cls.__call__ is nn.Module.__call__
        and cls.__name__ not in _UNTRUSTED_BUILTINS
        and not any(c.__name__ in _UNTRUSTED_BUILTINS for c in cls.__mro__)
    )


def fixed_structure(model: nn.Module) -> bool:
    """True when no forward pass of ``model`` can run a rectifier site other than through a rectifier module,
    and which modules run (how often) depends on configuration only (see the module docs). Conservative: a model
    whose source cannot be read or whose code does anything unproven is False."""
    for module in model.modules():
        if _trusted(module):
            continue
        if type(module).__call__ is not nn.Module.__call__:
            return False
        forward = getattr(type(module), "forward", None)
        if not isinstance(forward, types.FunctionType) or not _Checker(module).function(forward):
            return False
    return True


def has_foreign_hooks(model: nn.Module, ours: Callable[[Any], bool]) -> bool:
    """True when a module (or torch globally) has forward hooks that ``ours`` does not claim: such a hook may call
    a rectifier function or replace a module's output."""
    from torch.nn.modules import module as module_mod

    for name in ("_global_forward_hooks", "_global_forward_pre_hooks"):
        if getattr(module_mod, name, None):
            return True
    for m in model.modules():
        for hooks in (m._forward_hooks, m._forward_pre_hooks):
            if any(not ours(h) for h in hooks.values()):
                return True
    return False
