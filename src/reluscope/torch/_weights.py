"""Read model weights without unpickling: ``.safetensors``, Lightning ``.ckpt``, ``torch.save`` files."""

from __future__ import annotations

import os
import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["STATE_DICT_KEYS", "read_state_dict"]

STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net")
"""Where checkpoints nest the state_dict (Lightning's ``.ckpt`` uses ``state_dict``)."""


def _load_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError as exc:
        raise ImportError(f"reading {path.name} needs safetensors: pip install 'reluscope[safetensors]'") from exc
    try:
        return dict(load_file(str(path), device="cpu"))
    except (SafetensorError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{path} is not a readable .safetensors file ({first}); write it with "
            "safetensors.torch.save_file(model.state_dict(), path)"
        ) from None


def _load_torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        ValueError,
        OSError,
        struct.error,
        zipfile.BadZipFile,
    ) as exc:
        # torch's message may carry terminal colour codes; a truncated or foreign file fails inside its unpickler
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise ValueError(
            f"{path} is not a state_dict loadable with torch.load(weights_only=True) ({first}); save the "
            "weights with torch.save(model.state_dict(), path) or safetensors, or pass a TorchScript file to "
            "--torch-model"
        ) from None


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def _unwrap(obj: Any, path: Path) -> dict[str, Tensor]:
    if _is_tensor_dict(obj):
        return dict(obj)
    if isinstance(obj, dict):
        for key in STATE_DICT_KEYS:
            if _is_tensor_dict(obj.get(key)):
                return dict(obj[key])
    raise ValueError(
        f"{path} holds a {type(obj).__name__}, not a state_dict (a dict of tensors, possibly under "
        f"{'/'.join(STATE_DICT_KEYS)}); save it with torch.save(model.state_dict(), path)"
    )


def _strip_prefix(state: dict[str, Tensor], own: set[str]) -> dict[str, Tensor]:
    """The part of ``state`` under the one attribute prefix (``net.``, ``model.module.``, ``_orig_mod.``) whose
    stripped keys are exactly the model's; ``state`` unchanged when its keys already match or none fits."""
    if set(state) == own or not own:
        return state
    prefixes: set[str] = set()
    for key in state:
        parts = key.split(".")
        prefixes.update(".".join(parts[:i]) + "." for i in range(1, len(parts)))
    fits = []
    for prefix in prefixes:
        sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if set(sub) == own:
            fits.append((len(prefix), prefix, sub))
    if not fits:
        return state
    return min(fits, key=lambda fit: (fit[0], fit[1]))[2]


def read_state_dict(path: str | os.PathLike[str], *, model: nn.Module | None = None) -> dict[str, Tensor]:
    """Read the weights in ``path`` as a state_dict, never unpickling arbitrary objects.

    Formats, by suffix:

    - ``.safetensors``: read with ``safetensors.torch.load_file`` (``pip install 'reluscope[safetensors]'``);
    - anything else (``.pt``, ``.pth``, a Lightning ``.ckpt``): ``torch.load(weights_only=True)``; a dict nesting
      the tensors under ``state_dict`` (Lightning), ``model_state_dict``, ``model`` or ``net`` is unwrapped.

    Parameters
    ----------
    path
        The weights file.
    model
        The module the weights are for. When the file's keys carry an attribute prefix (a LightningModule's
        ``self.net`` gives ``net.0.weight``; DDP's ``module.``; ``torch.compile``'s ``_orig_mod.``), the shortest
        prefix under which the keys are exactly the model's is stripped and other entries (a loss module's
        buffers) are dropped. Without a model, keys are returned as stored.

    Returns
    -------
    dict[str, Tensor]
        CPU tensors by parameter/buffer name.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The file cannot be read by these readers, or holds no dict of tensors.
    ImportError
        A ``.safetensors`` file and no ``safetensors`` package.
    """
    if model is not None and not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or None, got {type(model).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "weights file not found", str(path))
    if path.suffix.lower() == ".safetensors":
        state = _load_safetensors(path)
        if not state:
            raise ValueError(f"{path} holds no tensors; write it with safetensors.torch.save_file(state_dict, path)")
    else:
        state = _unwrap(_load_torch(path), path)
    if model is not None:
        state = _strip_prefix(state, set(model.state_dict()))
    return state
