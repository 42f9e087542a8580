"""File loaders: MNIST IDX (raw or gzip), ``.npz`` with ``X``/``y``, ``.csv`` with header and label column.

Every loader returns ``(X, y)`` with X float64 ``(N, D)`` and y int64 ``(N,)``, and fails with an error that
names the file, what was expected, what was found, and how to fix it: ``FileNotFoundError`` for a missing
file, ``ValueError`` for bad content.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import zlib
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from numpy.typing import NDArray

from reluscope._npz import read_npz
from reluscope._validate import check_finite_array, check_labels

__all__ = ["load_csv", "load_idx", "load_npz"]

PathLike = str | os.PathLike[str]

_GZIP_MAGIC = b"\x1f\x8b"
_IDX_IMAGES_MAGIC = 0x00000803
_IDX_LABELS_MAGIC = 0x00000801
_IDX_DTYPES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}


# -- shared helpers ------------------------------------------------------------------------------------------
def _existing_file(path: PathLike, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(
            f"{what} not found: {p}; check the path (relative paths are resolved from {Path.cwd()})"
        )
    if not p.is_file():
        raise FileNotFoundError(f"{what} {p} is a directory, not a file; pass the path of the file itself")
    return p


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it starts with the gzip magic 1f 8b (whatever its name)."""
    if not _is_gzip(path):
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise ValueError(
            f"{path} starts with the gzip magic bytes 1f 8b but does not decompress ({err}); "
            "the download is probably truncated or corrupt, fetch the file again"
        ) from err


def _features(X: Any, source: str) -> NDArray[np.float64]:
    """Validate and convert a feature array read from ``source``: numeric, finite, (N, D) float64."""
    if X.dtype.kind not in "fiub":
        raise ValueError(f"{source}: X must hold numbers, got dtype {X.dtype}; save it with X.astype(np.float64)")
    if X.ndim < 2:
        raise ValueError(
            f"{source}: X must have one row per sample, shape (N, D), got shape {X.shape}; "
            "for a single feature save X.reshape(-1, 1)"
        )
    if X.ndim > 2:
        X = X.reshape(X.shape[0], -1)
    try:
        checked = check_finite_array(X, "X", dtype="float64")
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from err
    return checked.astype(np.float64, copy=False)


def _labels(y: Any, n_samples: int, source: str) -> NDArray[np.int64]:
    """Validate labels read from ``source``: 1-D non-negative integers, one per sample; int64.

    The shape is checked before the dtype: a float one-hot matrix is told to use argmax, not to cast to int first.
    """
    if y.ndim != 1:
        try:
            check_labels(y, n_samples, name="y")
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from err
    if y.dtype.kind not in "iu":
        if y.dtype.kind == "f" and y.size and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            hint = "the values are whole numbers, so save them with y.astype(np.int64)"
        else:
            hint = "labels are class indices 0, 1, ..., n_classes-1"
        raise ValueError(f"{source}: y must hold non-negative integer class labels, got dtype {y.dtype}; {hint}")
    try:
        checked = check_labels(y, n_samples, name="y")
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from err
    return checked.astype(np.int64, copy=False)


# -- IDX -----------------------------------------------------------------------------------------------------
def _describe_magic(magic: int) -> str:
    if magic >> 16 != 0:
        return f"0x{magic:08X}, which is not an IDX header (IDX files start with two zero bytes)"
    dtype = _IDX_DTYPES.get((magic >> 8) & 0xFF, "unknown type")
    ndim = magic & 0xFF
    kind = {1: " (IDX labels)", 3: " (IDX images)"}.get(ndim, "") if dtype == "unsigned byte" else ""
    return f"0x{magic:08X}{kind}: an IDX file of {dtype} with {ndim} dimension(s)"


def _parse_idx(data: bytes, path: Path, *, want_magic: int, what: str) -> tuple[tuple[int, ...], bytes]:
    """Check an IDX header; return (dims, payload) with payload exactly as long as the header promises."""
    ndim = want_magic & 0xFF
    header_len = 4 + 4 * ndim
    if len(data) < 4:
        raise ValueError(f"{path} is truncated: {len(data)} byte(s), too short for an IDX header; fetch it again")
    magic = int.from_bytes(data[:4], "big")
    if magic != want_magic:
        if magic in (_IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC):
            fix = f"did you swap the images and labels files? pass the {what} file here"
        else:
            fix = f"pass an MNIST-style IDX {what} file (e.g. train-{what}-idx{ndim}-ubyte or its .gz)"
        raise ValueError(
            f"{path}: expected IDX {what} magic number 0x{want_magic:08X}, found {_describe_magic(magic)}; {fix}"
        )
    if len(data) < header_len:
        raise ValueError(
            f"{path} is truncated: the IDX {what} header needs {header_len} bytes, the file has {len(data)}; "
            "fetch it again"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    promised = math.prod(dims)
    payload = data[header_len:]
    shape = " x ".join(str(d) for d in dims)
    if len(payload) < promised:
        raise ValueError(
            f"{path} is truncated: the header promises {shape} = {promised} bytes of {what}, "
            f"the file has only {len(payload)}; the download was probably cut short, fetch it again"
        )
    if len(payload) > promised:
        raise ValueError(
            f"{path} has {len(payload) - promised} byte(s) more than its header promises "
            f"({shape} = {promised} bytes of {what}); it is not a well-formed IDX {what} file"
        )
    return dims, payload


def load_idx(images_path: PathLike, labels_path: PathLike) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Load an MNIST-style pair of IDX files (raw, or gzip detected by the magic bytes 1f 8b, not the name).

    Parameters
    ----------
    images_path : str or PathLike
        IDX images file, magic 0x00000803 (unsigned bytes, dims N x rows x cols).
    labels_path : str or PathLike
        IDX labels file, magic 0x00000801 (unsigned bytes, dim N).

    Returns
    -------
    X : ndarray of float64, shape (N, rows*cols)
        Flattened images scaled to [0, 1] (pixel / 255).
    y : ndarray of int64, shape (N,)
        Labels.

    Raises
    ------
    FileNotFoundError
        A file does not exist.
    ValueError
        Wrong magic number (the message says which one was found), truncated or oversized file, corrupt gzip,
        or image and label counts that differ.
    """
    img_path = _existing_file(images_path, "IDX images file")
    lab_path = _existing_file(labels_path, "IDX labels file")
    (n_images, rows, cols), pixels = _parse_idx(
        _read_bytes(img_path), img_path, want_magic=_IDX_IMAGES_MAGIC, what="images"
    )
    (n_labels,), label_bytes = _parse_idx(_read_bytes(lab_path), lab_path, want_magic=_IDX_LABELS_MAGIC, what="labels")
    if n_images != n_labels:
        raise ValueError(
            f"{img_path} holds {n_images} images but {lab_path} holds {n_labels} labels; "
            "pass the labels file that belongs to these images (e.g. train-images with train-labels)"
        )
    if n_images == 0 or rows * cols == 0:
        raise ValueError(f"{img_path} holds no pixels (shape {n_images} x {rows} x {cols}); pass a non-empty file")
    X = np.frombuffer(pixels, dtype=np.uint8).reshape(n_images, rows * cols).astype(np.float64)
    X /= 255.0
    y = np.frombuffer(label_bytes, dtype=np.uint8).astype(np.int64)
    return X, y


# -- npz -----------------------------------------------------------------------------------------------------
def load_npz(path: PathLike) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Load arrays ``X`` and ``y`` from an ``.npz`` archive (always with ``allow_pickle=False``).

    Parameters
    ----------
    path : str or PathLike
        Archive written by e.g. ``np.savez(path, X=X, y=y)``.

    Returns
    -------
    X : ndarray of float64, shape (N, D)
        Features; an X with more than 2 dims, e.g. (N, 28, 28), is flattened per sample to (N, 784).
    y : ndarray of int64, shape (N,)
        Non-negative integer labels.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        Not an npz archive, missing ``X`` or ``y``, object arrays, NaN/inf in X, non-integer or negative
        labels, or a label count that differs from the number of samples.
    """
    p = _existing_file(path, ".npz file")
    fix = f"np.savez({p.name!r}, X=X, y=y)"
    arrays = read_npz(p, what=".npz file", fix=fix)
    missing = [k for k in ("X", "y") if k not in arrays]
    if missing:
        raise ValueError(
            f"{p} is missing array(s) {', '.join(missing)}; found {sorted(arrays) or 'no arrays'}. "
            f"Save features as X and labels as y: {fix}"
        )
    X = _features(arrays["X"], str(p))
    y = _labels(arrays["y"], X.shape[0], str(p))
    return X, y


# -- csv -----------------------------------------------------------------------------------------------------
def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def load_csv(path: PathLike, label_column: str = "label") -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Load a comma-separated file with a header row: one named label column, every other column a feature.

    Parameters
    ----------
    path : str or PathLike
        CSV file (UTF-8, optionally gzip-compressed, detected by the magic bytes). Blank lines are skipped.
    label_column : str
        Name of the column holding the integer class labels.

    Returns
    -------
    X : ndarray of float64, shape (N, D)
        The other columns, in file order.
    y : ndarray of int64, shape (N,)
        Non-negative integer labels (``3`` and ``3.0`` are both accepted).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        No header row, missing label column (the message lists the columns found), a non-numeric or NaN/inf
        cell (the message names its row and column), a row with the wrong number of cells, or bad labels.
    """
    p = _existing_file(path, ".csv file")
    try:
        text = _read_bytes(p).decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{p} is not UTF-8 text ({err}); save the CSV as UTF-8") from err
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for cells in reader:
            if not cells or all(not c.strip() for c in cells):
                continue
            if header is None:
                header = [c.strip() for c in cells]
            else:
                rows.append(cells)
                lines.append(reader.line_num)
    except csv.Error as err:  # e.g. a cell longer than the csv module's field limit, or a stray NUL byte
        raise ValueError(f"{p}: line {reader.line_num} is not valid CSV ({err}); check the file's format") from None
    if header is None:
        raise ValueError(f"{p} is empty; expected a header row (e.g. x0,x1,{label_column}) and data rows")
    if label_column not in header and all(_is_number(c) for c in header):
        raise ValueError(
            f"{p}: the first row ({','.join(header[:5])}{',...' if len(header) > 5 else ''}) is all numbers, "
            f"expected a header row naming the columns; add one, e.g. x0,x1,...,{label_column}"
        )
    if label_column not in header:
        raise ValueError(
            f"{p} has no column named {label_column!r}; columns found: {header}. "
            "Pass the name of the label column (--label-column NAME, or label_column=NAME)"
        )
    if header.count(label_column) > 1:
        raise ValueError(f"{p} has {header.count(label_column)} columns named {label_column!r}; rename all but one")
    if not rows:
        raise ValueError(f"{p} has a header but no data rows; add at least one sample")
    if len(header) < 2:
        raise ValueError(f"{p} has only the label column {label_column!r}; add at least one feature column")
    width = len(header)
    for i, (cells, line) in enumerate(zip(rows, lines, strict=True), start=1):
        if len(cells) != width:
            raise ValueError(
                f"{p}: row {i} (line {line}) has {len(cells)} cells, the header has {width} columns; "
                "every row needs one value per column"
            )
    label_idx = header.index(label_column)
    try:
        values = np.array(rows, dtype=np.float64)
    except ValueError:
        values = None
    if values is None or not np.isfinite(values).all():
        _raise_bad_cell(rows, lines, header, p)
    feature_idx = [j for j in range(width) if j != label_idx]
    X = np.ascontiguousarray(values[:, feature_idx])
    raw_labels = values[:, label_idx]
    bad = (raw_labels != np.round(raw_labels)) | (raw_labels < 0) | (raw_labels >= 2**31)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{p}: row {i + 1} (line {lines[i]}), column {label_column!r}: label "
            f"{rows[i][label_idx].strip()!r} is not a non-negative integer; "
            "labels are class indices 0, 1, ..."
        )
    y = raw_labels.astype(np.int64)
    return _features(X, str(p)), _labels(y, X.shape[0], str(p))


def _raise_bad_cell(rows: list[list[str]], lines: list[int], header: list[str], path: Path) -> NoReturn:
    """Find the first cell that is not a finite number and raise a ValueError naming its row and column."""
    for i, (cells, line) in enumerate(zip(rows, lines, strict=True), start=1):
        for name, cell in zip(header, cells, strict=True):
            try:
                value = float(cell)
            except ValueError:
                shown = repr(cell.strip()) if cell.strip() else "an empty cell"
                raise ValueError(
                    f"{path}: row {i} (line {line}), column {name!r}: {shown} is not a number; "
                    "every cell except the header must be numeric (encode categories as integers)"
                ) from None
            if not math.isfinite(value):
                raise ValueError(
                    f"{path}: row {i} (line {line}), column {name!r}: {cell.strip()!r} is not finite; "
                    "remove or impute NaN/inf values before loading"
                )
    raise AssertionError("unreachable: a non-numeric or non-finite cell was expected")  # pragma: no cover
