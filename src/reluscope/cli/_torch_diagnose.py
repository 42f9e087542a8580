"""``reluscope diagnose --torch-model ...``: build the ActivationStats of a PyTorch model over a dataset.

The diagnose command calls :func:`torch_diagnosis` and renders the result like a numpy model's. This module
imports only typer and the standard library at top level (torch is imported inside the functions), so the CLI
starts instantly and works without PyTorch until a torch option is used.

Importing user code: ``--torch-model pkg.module:factory`` and ``--data pkg.module:loader_factory`` import the
named module (the current directory is put on ``sys.path``, as ``python -m`` does) or execute
``path/to/file.py``. Weights are loaded with ``torch.load(weights_only=True)``, which never unpickles arbitrary
objects; a TorchScript file runs the TorchScript code it contains.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
    from torch import nn

    from reluscope.diagnose import ActivationStats

__all__ = [
    "InputShapeOpt",
    "TorchDiagnosis",
    "TorchModelOpt",
    "UnitAxisOpt",
    "WeightsOpt",
    "is_import_string",
    "load_torch_model",
    "parse_input_shape",
    "parse_unit_axis",
    "torch_diagnosis",
]

from reluscope.cli._torch_opts import InputShapeOpt, TorchModelOpt, UnitAxisOpt, WeightsOpt

_IMPORT_STRING = re.compile(r"^(?P<module>[^:]+):(?P<attr>[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*)$")


def is_import_string(value: str) -> bool:
    """True for ``pkg.module:attr`` or ``file.py:attr`` (and not an existing file such as ``C:data.csv``)."""
    return bool(_IMPORT_STRING.match(value)) and not Path(value).exists()


def parse_input_shape(value: str | None) -> tuple[int, ...] | None:
    """``"1,8,8"`` -> ``(1, 8, 8)``; None stays None. ValueError names the fix."""
    if value is None:
        return None
    try:
        shape = tuple(int(v) for v in value.replace("x", ",").split(",") if v.strip())
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise ValueError(f"--input-shape must be positive integers separated by commas, e.g. 1,8,8, got {value!r}")
    return shape


def parse_unit_axis(values: Sequence[str] | None) -> dict[str, int] | None:
    """``["mlp.1=-1"]`` -> ``{"mlp.1": -1}``; None/empty stays None. ValueError names the fix."""
    if not values:
        return None
    out: dict[str, int] = {}
    for value in values:
        site, sep, axis = value.rpartition("=")
        try:
            number = int(axis)
        except ValueError:
            number = None
        if not sep or not site or number is None:
            raise ValueError(f"--unit-axis must look like SITE=AXIS (e.g. mlp.1=-1), got {value!r}")
        out[site] = number
    return out


def _ours(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by reluscope's own code (its innermost frame is in the package), not the user's."""
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last is not None and Path(last.tb_frame.f_code.co_filename).resolve().is_relative_to(_PACKAGE_DIR)


_PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _user_error(where: str, exc: BaseException) -> ValueError:
    """One line for an exception raised by the user's code: where it happened and what it was. The original stays
    chained as the cause, so ``reluscope --debug`` (or RELUSCOPE_DEBUG=1) shows its traceback."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, SyntaxError) and exc.lineno is not None:
        text = f"{exc.msg} (line {exc.lineno})"
    err = ValueError(
        f"{where} raised {type(exc).__name__}" + (f": {text}" if text else "") + "; fix that code, or run "
        "`reluscope --debug ...` to see the traceback"
    )
    err.__cause__ = exc
    return err


def _takes_no_arguments(fn: Any) -> bool:
    """Whether ``fn()`` binds (True when its signature can't be read: then the TypeError came from inside)."""
    import inspect

    try:
        inspect.signature(fn).bind()
    except TypeError:
        return False
    except ValueError:  # no signature (a builtin)
        return True
    return True


def _import_attr(spec: str, option: str) -> Any:
    """Resolve ``pkg.module:attr`` / ``file.py:attr`` to the object."""
    match = _IMPORT_STRING.match(spec)
    if match is None:
        raise ValueError(
            f"{option} must look like pkg.module:factory or path/to/file.py:factory, got {spec!r}; "
            "the part after ':' names a callable in that module"
        )
    module_name, attr = match["module"], match["attr"]
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise FileNotFoundError(2, "Python file not found", str(path))
        mod_spec = importlib.util.spec_from_file_location(f"_reluscope_user_{path.stem}", path)
        if mod_spec is None or mod_spec.loader is None:  # pragma: no cover - a .py file always has a loader
            raise ValueError(f"{option}: cannot import {path}")
        module = importlib.util.module_from_spec(mod_spec)
        try:
            mod_spec.loader.exec_module(module)
        except Exception as exc:  # the user's file: a syntax error, or its own code failing at import
            raise _user_error(f"{option}: running {path}", exc) from exc
    else:
        cwd = os.getcwd()
        if cwd not in sys.path:
            sys.path.insert(0, cwd)  # like `python -m`: modules next to the user are importable
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise ValueError(
                f"{option}: cannot import {module_name!r} ({exc}); run from the directory that contains it, "
                "install the package, or pass path/to/file.py:factory"
            ) from None
        except Exception as exc:  # the user's module failing at import (its own code, or a syntax error)
            raise _user_error(f"{option}: importing {module_name}", exc) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{option}: {module_name} has no attribute {attr!r}") from None
    return obj


def _load_weights(model: nn.Module, weights: Path) -> None:
    from reluscope.torch import read_state_dict

    if not weights.is_file():
        raise FileNotFoundError(2, "weights file not found", str(weights))
    state = read_state_dict(weights, model=model)  # .safetensors, Lightning .ckpt, torch.save; never unpickles
    own = model.state_dict()
    if not (set(state) & set(own)) and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}  # saved from a DDP/DataParallel wrapper
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"{weights} does not match the model built by --torch-model: missing {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}"
            "; does the factory build the same architecture the weights were saved from?"
        )
    bad = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if state[k].shape != v.shape]
    if bad:
        raise ValueError(
            f"{weights}: tensor shapes differ from the model's (weights vs model): {'; '.join(bad[:3])}; "
            "does the factory take the same sizes the weights were trained with?"
        )
    model.load_state_dict(state)


def load_torch_model(spec: str, weights: Path | None = None) -> nn.Module:
    """The model named by ``--torch-model``: a TorchScript file, or ``factory()`` from an import string with
    ``weights`` (a state_dict) loaded into it."""
    import torch
    from torch import nn

    path = Path(spec)
    if path.is_file():
        if weights is not None:
            raise ValueError(
                f"{spec} is a file, so it is read as TorchScript, which carries its own weights; drop --weights "
                "(or pass pkg.module:factory to --torch-model)"
            )
        try:
            with warnings.catch_warnings():
                # TorchScript is deprecated for writing models; reading an existing file is what the user asked for
                warnings.simplefilter("ignore", DeprecationWarning)
                script: nn.Module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        except (RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(
                f"{spec} is not a TorchScript file ({first}); save one with torch.jit.save(torch.jit.script(model), "
                "path), or pass pkg.module:factory with --weights state_dict.pt"
            ) from None
        return script
    if not is_import_string(spec):
        if spec.endswith((".pt", ".pth", ".ptl")) or "/" in spec:
            raise FileNotFoundError(2, "TorchScript file not found", spec)
        raise ValueError(
            f"--torch-model must be a TorchScript file or pkg.module:factory (a callable returning an nn.Module), "
            f"got {spec!r}"
        )
    factory = _import_attr(spec, "--torch-model")
    if isinstance(factory, nn.Module):
        model = factory
    elif callable(factory):
        try:
            model = factory()
        except TypeError as exc:  # called with no arguments: the usual cause is a factory that needs some
            if not _takes_no_arguments(factory):
                raise ValueError(
                    f"--torch-model {spec}: reluscope calls the factory with no arguments, but it needs some "
                    f"({exc}); add a function that passes them, e.g. def make(): return Net(width=64), and "
                    "point --torch-model at it"
                ) from exc
            raise _user_error(f"--torch-model {spec}: the factory", exc) from exc
        except Exception as exc:  # the user's factory
            raise _user_error(f"--torch-model {spec}: the factory", exc) from exc
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"--torch-model {spec}: the factory must return a torch.nn.Module, got {type(model).__name__}"
            )
    else:
        raise TypeError(f"--torch-model {spec} names a {type(factory).__name__}; it must be a callable or nn.Module")
    if weights is not None:
        _load_weights(model, weights)
    return model


@dataclass
class TorchDiagnosis:
    """What ``diagnose`` prints for a torch model.

    Attributes
    ----------
    stats : ActivationStats
        One site per rectifier call site, over every sample.
    model : str
        A one-line description, e.g. ``"Net (pkg.mod:make, 12345 parameters)"``.
    data : str
        Where the samples came from.
    n_samples : int
        Samples scanned.
    activation : str
        ``"relu"`` when every site is ReLU-like (relu, relu6), else the first other function (``"gelu"``, ...):
        pass it to ``dead_layer_message``.
    functions : dict[str, str]
        Site name -> function name.
    uninstrumented : list[str]
        TorchScript sites inside control flow that could not be scanned (empty for eager models).
    axes : dict[str, str]
        Site name -> where its units are, e.g. ``"dim 2 (linear), 64×9 positions"``.
    """

    stats: ActivationStats
    model: str
    data: str
    n_samples: int
    activation: str
    functions: dict[str, str] = field(default_factory=dict)
    uninstrumented: list[str] = field(default_factory=list)
    module: Any = field(default=None, repr=False, compare=False)  # the scanned nn.Module (for prune_dead)
    axes: dict[str, str] = field(default_factory=dict)


def _array_batches(X: NDArray[Any], batch_size: int, shape: tuple[int, ...] | None, dtype: Any) -> Iterator[Any]:
    import torch

    t = torch.from_numpy(X).to(dtype)
    if shape is not None:
        per_sample = 1
        for s in shape:
            per_sample *= s
        if per_sample != t.shape[1]:
            raise ValueError(
                f"--input-shape {','.join(map(str, shape))} has {per_sample} values per sample but the data has "
                f"{t.shape[1]} features; pass a shape whose product is {t.shape[1]}"
            )
        t = t.reshape(t.shape[0], *shape)
    for start in range(0, t.shape[0], batch_size):
        yield t[start : start + batch_size]


def _float_dtype(model: nn.Module) -> Any:
    import itertools

    import torch

    for p in itertools.chain(model.parameters(), model.buffers()):
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def torch_diagnosis(
    torch_model: str,
    *,
    weights: Path | None = None,
    data: str | None = None,
    X: NDArray[np.floating[Any]] | None = None,
    data_name: str = "dataset",
    input_shape: Sequence[int] | None = None,
    batch_size: int = 1024,
    device: str = "cpu",
    unit_axis: dict[str, int] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> TorchDiagnosis:
    """Load the model named by ``--torch-model`` (+ ``--weights``), scan the data, return the statistics.

    Parameters
    ----------
    torch_model, weights
        See :func:`load_torch_model`.
    data
        ``pkg.module:loader_factory``: a callable returning an iterable of batches (tensors or ``(x, y)``
        tuples, e.g. a DataLoader). Takes precedence over ``X``.
    X
        (N, D) features from the usual dataset options; batched by ``batch_size``, cast to the model's float
        dtype and reshaped to ``(B, *input_shape)`` when given.
    data_name
        How to call ``X`` in the report (e.g. ``"digits"``).
    device
        Where the model and batches go (``"cpu"``, ``"cuda:0"``).
    unit_axis
        ``{site: axis}`` overrides (``--unit-axis``), see :func:`reluscope.torch.scan`.
    progress
        ``progress(n_done, n_total)`` in samples (``n_total`` None when the loader does not say).

    Raises
    ------
    ValueError, TypeError, FileNotFoundError
        Bad option values, files that cannot be read, weights that do not fit, a model that fails on the data
        (with the batch shape), or a model with no rectifier among the functions it ran (the message lists them).
    """
    import torch

    from reluscope.torch import NoRectifierError, scan_with_sites, total_samples, uninstrumented_sites

    model = load_torch_model(torch_model, weights)
    dev = check_device(device)
    model.to(dev)
    shape = tuple(input_shape) if input_shape is not None else None
    batches: Iterable[Any]
    if data is not None:
        loader = _import_attr(data, "--data")
        try:
            batches = loader() if callable(loader) else loader
        except Exception as exc:  # the user's loader factory
            raise _user_error(f"--data {data}: the loader factory", exc) from exc
        if not isinstance(batches, Iterable):
            raise TypeError(f"--data {data} must return an iterable of batches, got {type(batches).__name__}")
        source = data
    elif X is not None:
        batches = _array_batches(X, batch_size, shape, _float_dtype(model))
        source = data_name
    else:
        raise ValueError("no data: pass a dataset (--data digits, a file) or --data pkg.module:loader_factory")
    try:
        total = total_samples(batches) if data is not None else len(X)  # type: ignore[arg-type]
    except Exception as exc:
        if _ours(exc):
            raise
        raise _user_error(f"--data {data}: asking the loader for its length", exc) from exc
    shown: list[tuple[int, ...]] = []
    seen = [0]

    def report(done: int, _total: int | None) -> None:
        seen[0] = done
        if progress is not None:
            progress(done, total)

    n_batches = [0]

    def watch(it: Iterable[Any]) -> Iterator[Any]:
        iterator = iter(it)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except Exception as exc:  # the user's loader, while producing a batch
                raise _user_error(f"--data {data}: the loader (producing batch {n_batches[0] + 1})", exc) from exc
            n_batches[0] += 1
            first = batch[0] if isinstance(batch, list | tuple) and batch else batch
            shown[:] = [tuple(getattr(first, "shape", ()))]
            yield batch

    try:
        stats, sites = scan_with_sites(model, watch(batches), device=dev, progress=report, unit_axis=unit_axis)
    except NoRectifierError as exc:
        raise ValueError(f"{exc}; there is nothing reluscope can call dead") from None
    except Exception as exc:
        if _ours(exc) and not isinstance(exc, RuntimeError):
            raise  # reluscope's own checks (and the loader errors above) are already one clear line
        got = f" on batch {n_batches[0]} of shape {shown[0]}" if shown else ""
        if isinstance(exc, RuntimeError):  # torch's own errors, mostly shapes: the usual cause is the input layout
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(
                f"the model failed{got}: {first}; flat dataset rows may need --input-shape (e.g. 1,8,8), or pass "
                "the data the model was built for (--data)"
            ) from exc
        raise _user_error(f"the model's forward{got}", exc) from exc
    functions = {s.name: s.function for s in sites}
    relu_like = {"relu", "relu6", "hardtanh"}
    activation = next((f for f in functions.values() if f not in relu_like), "relu")
    uninstrumented: list[str] = []
    if isinstance(model, torch.jit.ScriptModule):
        uninstrumented = uninstrumented_sites(model)
    n_params = sum(p.numel() for p in model.parameters())
    origin = torch_model if not Path(torch_model).is_file() else f"TorchScript {torch_model}"
    description = f"{getattr(model, 'original_name', type(model).__name__)} ({origin}, {n_params} parameters)"
    return TorchDiagnosis(
        stats=stats,
        model=description,
        data=source,
        n_samples=seen[0],
        activation=activation,
        functions=functions,
        uninstrumented=uninstrumented,
        module=model,
        axes={
            s.name: f"dim {s.unit_axis} ({s.axis_source}), {stats.describe_samples(s.name)}"
            for s in sites
            if s.name in stats
        },
    )


def check_device(device: str) -> Any:
    """``torch.device(device)`` if this torch can put a tensor there; else a ValueError naming the devices that
    exist (a CPU-only torch asked for ``cuda:0`` says so, instead of torch's AssertionError)."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device must be a torch device such as cpu or cuda:0, got {device!r}") from None
    try:
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError) as exc:
        have = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            have.append("mps")
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"--device {device} is not available to this torch ({first}); devices here: {', '.join(have)}"
        ) from None
    return dev


def save_pruned(path: Path, report: Any, spec: str) -> Path:
    """Write ``report.model``'s state dict (tensors only: ``torch.save``, or safetensors for a ``.safetensors``
    path) and, beside it, ``<path>.arch.json``: the resized layers' new sizes and the prune report, everything
    needed to build the pruned model from ``spec``'s factory before ``load_state_dict``. Both atomically."""
    import torch

    from reluscope.io import atomic_write, save_json

    model = report.model
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save

        with atomic_write(path) as f:
            f.write(save(state))
    else:
        with atomic_write(path) as f:
            torch.save(state, f)
    modules = dict(model.named_modules())
    layers: dict[str, dict[str, Any]] = {}
    for layer in report.layers:
        mod = modules[layer.name]
        sizes = {
            key: int(getattr(mod, key))
            for key in ("in_features", "out_features", "in_channels", "out_channels", "num_features", "num_parameters")
            if hasattr(mod, key)
        }
        layers[layer.name] = {"type": type(mod).__name__, **sizes, "bias": getattr(mod, "bias", None) is not None}
    note = path.with_name(path.name + ".arch.json")
    save_json(
        note,
        {
            "format": "reluscope.PrunedArchitecture",
            "version": 1,
            "model": spec,
            "weights": path.name,
            "layers": layers,
            "how_to_load": "reluscope.torch.load_pruned(fresh_model, weights_path); by hand: build the model from "
            "`model`, give each layer in `layers` these sizes, then load_state_dict(torch.load(weights, "
            "weights_only=True))",
            "prune": report.to_dict(),
        },
    )
    return note
