"""Files: atomic writes (temp file + rename, so a crash never leaves half a file), model checkpoints as ``.npz``
loaded without unpickling, and JSON run records."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from reluscope._npz import read_npz
from reluscope.data import Standardizer
from reluscope.nn.model import MLP

__all__ = ["atomic_write", "load_json", "load_model", "load_standardizer", "save_json", "save_model"]

_CONFIG_KEY = "__reluscope_config__"


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import: os.umask can only be read by setting it, process-wide
_MEAN_KEY, _STD_KEY = "__standardize_mean__", "__standardize_std__"


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file next to ``path``; on success it is flushed, fsynced and renamed over ``path``.

    If the body raises, the temp file is removed and ``path`` keeps its old content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, allow_nan=True)
    with atomic_write(path, "w") as f:
        f.write(text + "\n")


def load_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file; a ValueError names the file when it is not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); was the file truncated?") from None


def save_model(path: str | os.PathLike[str], net: MLP, *, standardizer: Standardizer | None = None) -> None:
    """Save ``net`` (config + params) to an ``.npz`` file, atomically.

    A ``standardizer`` the network was trained behind is stored with it, so ``diagnose`` can apply it.
    """
    arrays: dict[str, Any] = dict(net.params)
    arrays[_CONFIG_KEY] = np.array(json.dumps(net.config()))
    if standardizer is not None:
        arrays[_MEAN_KEY], arrays[_STD_KEY] = standardizer.mean, standardizer.std
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def _load_arrays(path: str | os.PathLike[str]) -> dict[str, Any]:
    arrays = read_npz(path, what="model file", fix="`reluscope train --out DIR` or reluscope.io.save_model")
    if _CONFIG_KEY not in arrays:
        raise ValueError(
            f"{path} has no reluscope config (keys: {sorted(arrays)}); save models with reluscope.io.save_model"
        )
    return arrays


def load_model(path: str | os.PathLike[str]) -> MLP:
    """Load an :class:`MLP` saved by :func:`save_model` (never unpickles: ``allow_pickle=False``)."""
    arrays = _load_arrays(path)
    try:
        config = json.loads(str(arrays.pop(_CONFIG_KEY)))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: the stored config is not valid JSON ({exc})") from None
    if not isinstance(config, dict) or "sizes" not in config:
        raise ValueError(f"{path}: the stored config is not a reluscope MLP config (no 'sizes'); save the model again")
    arrays.pop(_MEAN_KEY, None)
    arrays.pop(_STD_KEY, None)
    return MLP.from_params(config, arrays)


def load_standardizer(path: str | os.PathLike[str]) -> Standardizer | None:
    """The :class:`~reluscope.data.Standardizer` saved with a model, or None if it was trained on raw features."""
    arrays = _load_arrays(path)
    if (_MEAN_KEY in arrays) != (_STD_KEY in arrays):
        raise ValueError(f"{path} holds only half of a standardizer (mean or std); save the model again")
    if _MEAN_KEY not in arrays:
        return None
    try:
        return Standardizer(arrays[_MEAN_KEY], arrays[_STD_KEY])
    except ValueError as exc:
        raise ValueError(f"{path}: the stored standardizer is invalid ({exc}); save the model again") from None
