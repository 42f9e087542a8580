"""Reading ``.npz`` archives safely, for every loader in the package (datasets, models, explain's weights).

Never unpickles (``allow_pickle=False``), never leaves a file handle open when the archive is corrupt (``np.load``
on a path leaks it), and turns each way a file can be wrong into a ``ValueError`` that ends with how to write a
good one.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["read_npz"]


def read_npz(path: str | os.PathLike[str], *, what: str, fix: str) -> dict[str, NDArray[Any]]:
    """All arrays of the ``.npz`` archive at ``path``, by name.

    ``what`` names the file when it is missing (e.g. "weights file"); ``fix`` says how to write a good one
    (e.g. "np.savez('d.npz', X=X, y=y)"). Raises FileNotFoundError for a missing file and ValueError for a file
    that is not an archive, holds a single .npy array, holds object arrays (which would need unpickling), or holds a
    member that is not a .npy array at all (``np.load`` would hand it over as raw ``bytes``).
    """
    p = Path(path)
    if p.is_dir():
        inside = sorted(q.name for q in p.glob("*.npz"))
        hint = f"; it holds {', '.join(inside)}: pass e.g. {p / inside[0]}" if inside else ""
        raise ValueError(f"{p} is a directory, expected a {what} (.npz){hint}")
    if not p.is_file():
        raise FileNotFoundError(f"{what} not found: {p}")
    try:
        loaded = np.load(io.BytesIO(p.read_bytes()), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        reason = "not an .npz archive" if "pickle" in str(exc) else str(exc)
        raise ValueError(f"{p} is not a readable .npz archive ({reason}); write one with {fix}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{p} holds a single .npy array of shape {np.shape(loaded)}, not an .npz archive; write one with {fix}"
        )
    arrays: dict[str, NDArray[Any]] = {}
    with loaded:
        for key in loaded.files:
            try:
                arrays[key] = loaded[key]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                if "pickle" in str(exc):  # object arrays refuse to load without pickle
                    reason = "is an object array; reluscope never unpickles, save it as numbers"
                else:
                    reason = f"is corrupt ({exc})"
                raise ValueError(f"{p}: array {key} {reason}; write the file again with {fix}") from None
            if not isinstance(arrays[key], np.ndarray):
                # np.load hands back the raw bytes of a member that does not start with the .npy magic
                raise ValueError(
                    f"{p}: member {key!r} is not a numpy array (it does not start with the .npy header, "
                    f"{np.lib.format.MAGIC_PREFIX!r}); every member must be an array saved by numpy: write the file "
                    f"again with {fix}"
                )
    return arrays
