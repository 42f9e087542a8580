"""Reading ``.npz`` archives safely, for every loader in the package (datasets, models, explain's weights).

Never unpickles (``allow_pickle=False``), never leaves a file handle open when the archive is corrupt (``np.load``
on a path leaks it), never allocates what a member's header claims before checking it (a 1 KB file whose header
says 30 GB), and turns each way a file can be wrong into a ``ValueError`` that ends with how to write a good one.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["read_npz"]

# The most bytes a compressed member can expand to per stored byte: deflate's limit is about 1032:1
# (RFC 1951 blocks of 258-byte matches coded in 2 bits); a stored member expands 1:1.
_EXPANSION = {zipfile.ZIP_STORED: 1, zipfile.ZIP_DEFLATED: 1032}


def _header(f: Any) -> tuple[tuple[int, ...], np.dtype[Any], int] | None:
    """(shape, dtype, header length) of the .npy stream ``f``, or None when it is not a readable .npy header (the
    reader below then says why)."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(f)
        else:  # version 3 (utf-8 field names) has no public reader
            shape, _, dtype = getattr(fmt, "_read_array_header")(f, version)  # noqa: B009
        header_len = int(f.tell())
    except (ValueError, OSError, EOFError, SyntaxError, TypeError, AttributeError, zipfile.BadZipFile):
        return None
    return tuple(int(n) for n in shape), np.dtype(dtype), header_len


def _check_claimed_sizes(p: Path, archive: zipfile.ZipFile, fix: str) -> None:
    """Refuse a member whose header claims more bytes than its data can hold, or than this machine's memory,
    before numpy allocates the array the header describes (which ``np.load`` does before reading the data)."""
    from reluscope._validate import check_memory

    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            continue
        with archive.open(info) as f:
            header = _header(f)
        if header is None:
            continue
        shape, dtype, header_len = header
        if dtype.hasobject:
            continue  # refused below without reading it: reluscope never unpickles
        claimed = math.prod(shape) * dtype.itemsize
        key = info.filename[: -len(".npy")]
        expand = _EXPANSION.get(info.compress_type)
        holds = info.file_size if expand is None else min(info.file_size, info.compress_size * expand)
        if claimed > max(0, holds - header_len):
            raise ValueError(
                f"{p}: array {key}'s header claims shape {shape} of {dtype} ({claimed} bytes), but the archive holds "
                f"at most {max(0, holds - header_len)} bytes of data for it: the file is truncated or was not "
                f"written by numpy; write it again with {fix}"
            )
        check_memory(
            claimed,
            f"{p}: array {key} (shape {shape}, {dtype})",
            fix=f"pass a smaller array, or split it into files that fit ({fix})",
        )


def read_npz(path: str | os.PathLike[str], *, what: str, fix: str) -> dict[str, NDArray[Any]]:
    """All arrays of the ``.npz`` archive at ``path``, by name.

    ``what`` names the file when it is missing (e.g. "weights file"); ``fix`` says how to write a good one
    (e.g. "np.savez('d.npz', X=X, y=y)"). Raises FileNotFoundError for a missing file and ValueError for a file
    that is not an archive, holds a single .npy array, holds object arrays (which would need unpickling), or holds a
    member that is not a .npy array at all (``np.load`` would hand it over as raw ``bytes``), or a member whose header
    claims more data than the archive holds or than this machine's memory (checked before anything is allocated).
    """
    p = Path(path)
    if p.is_dir():
        inside = sorted(q.name for q in p.glob("*.npz"))
        hint = f"; it holds {', '.join(inside)}: pass e.g. {p / inside[0]}" if inside else ""
        raise ValueError(f"{p} is a directory, expected a {what} (.npz){hint}")
    if not p.is_file():
        raise FileNotFoundError(f"{what} not found: {p}")
    raw = p.read_bytes()
    if zipfile.is_zipfile(io.BytesIO(raw)):
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                _check_claimed_sizes(p, archive, fix)
        except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError):
            pass  # np.load below names what is wrong with the archive
    try:
        loaded = np.load(io.BytesIO(raw), allow_pickle=False)
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
