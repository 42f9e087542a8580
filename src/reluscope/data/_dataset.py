"""``Dataset`` (features, labels, class count, name) and ``load_dataset``, which resolves a name or a path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from reluscope._validate import check_finite_array, check_int, check_labels
from reluscope.data._loaders import PathLike, load_csv, load_idx, load_npz
from reluscope.data._synthetic import digits, spiral

__all__ = ["BUILTIN_DATASETS", "Dataset", "load_dataset"]

BUILTIN_DATASETS = ("spiral", "digits")


@dataclass(frozen=True, init=False, eq=False)
class Dataset:
    """A labelled dataset: features, integer labels, number of classes and a name.

    Attributes
    ----------
    X : ndarray of float, shape (N, D)
        Features (float32 or float64; integers are converted to float64).
    y : ndarray of int64, shape (N,)
        Labels in [0, n_classes).
    n_classes : int
        C >= 2. Defaults to ``max(y) + 1``; pass it when the last classes may be absent from this sample. Inferring
        more than ``2 * N`` classes is refused (a label far beyond the sample count is usually a typo): pass it
        explicitly then.
    name : str
        ``"spiral"``, ``"digits"``, or the file path the data came from.
    """

    X: NDArray[np.floating[Any]]
    y: NDArray[np.int64]
    n_classes: int
    name: str

    def __init__(
        self,
        X: NDArray[np.floating[Any]],
        y: NDArray[np.integer[Any]],
        n_classes: int | None = None,
        name: str = "dataset",
    ) -> None:
        X = check_finite_array(X, "X")
        y_checked = check_labels(y, X.shape[0]).astype(np.int64, copy=False)
        inferred = int(y_checked.max()) + 1
        n = int(X.shape[0])
        if n_classes is None and inferred > max(2 * n, 2):
            raise ValueError(
                f"{name}: the labels imply {inferred} classes (max label {inferred - 1}) but there are only {n} "
                f"samples, so most classes would have none; a label far beyond the sample count is usually a typo "
                f"or the wrong label column. If you mean it, pass the class count explicitly (n_classes={inferred}, "
                f"--n-classes {inferred})"
            )
        n_classes = inferred if n_classes is None else check_int(n_classes, "n_classes", 2, example=max(inferred, 2))
        if n_classes < inferred:
            raise ValueError(
                f"labels must be integers in [0, {n_classes}), got max label {inferred - 1}; "
                f"pass n_classes={inferred} or more (or None to infer it)"
            )
        if n_classes < 2:
            raise ValueError(
                f"{name}: every label is 0, so there is only one class; a classifier needs at least two (a softmax "
                "over one class is always 1 and every gradient is 0): check the label column, or pass n_classes=2 "
                "if the other class is just absent from this sample"
            )
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y_checked)
        object.__setattr__(self, "n_classes", int(n_classes))
        object.__setattr__(self, "name", str(name))

    @property
    def n_samples(self) -> int:
        """N, the number of samples."""
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        """D, the number of features per sample."""
        return int(self.X.shape[1])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, n_samples={self.n_samples}, n_features={self.n_features}, "
            f"n_classes={self.n_classes}, dtype={self.X.dtype})"
        )


def _file_kind(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    return {".npz": "npz", ".csv": "csv"}.get(last, "idx")


def load_dataset(
    source: str | Path,
    *,
    labels_path: PathLike | None = None,
    label_column: str = "label",
    n_per_class: int = 100,
    n_classes: int = 3,
    seed: int = 0,
    file_n_classes: int | None = None,
) -> Dataset:
    """Resolve a dataset name or file path to a :class:`Dataset`.

    Parameters
    ----------
    source : str or Path
        ``"spiral"`` (generated, :func:`spiral`), ``"digits"`` (scikit-learn, :func:`digits`), or a path:
        ``.npz`` (:func:`load_npz`), ``.csv`` (:func:`load_csv`, optionally ``.csv.gz``), anything else an IDX
        images file, raw or gzip (:func:`load_idx`, needs ``labels_path``). A ``Path`` is always a file.
    labels_path : str or PathLike, optional
        IDX labels file that goes with IDX images; not allowed for other sources.
    label_column : str
        Label column of a ``.csv`` file.
    n_per_class, n_classes, seed : int
        Spiral only: points per arm, number of arms, seed. Ignored for other sources.
    file_n_classes : int, optional
        A file's class count C, for labels that do not reach C - 1 or reach far beyond the number of samples
        (default: inferred as ``max(y) + 1``, see :class:`Dataset`). Ignored for the builtin datasets.

    Returns
    -------
    Dataset
        X float64 (N, D), y int64 (N,); ``name`` is the builtin name or the file path.

    Raises
    ------
    ValueError
        Unknown name, ``labels_path`` missing for IDX or given for a non-IDX source, or bad file content.
    FileNotFoundError
        A path that does not exist.
    """
    if isinstance(source, str) and source.strip().lower() in BUILTIN_DATASETS:
        name = source.strip().lower()
        if labels_path is not None:
            raise ValueError(
                f"labels_path is only for IDX image files, but the dataset is the builtin {name!r}; drop --labels"
            )
        if name == "spiral":
            X, y = spiral(n_per_class, n_classes, seed=seed)
            return Dataset(X, y, n_classes=n_classes, name=name)
        X, y = digits()
        return Dataset(X, y, n_classes=10, name=name)
    if not isinstance(source, str | Path):
        raise TypeError(f"source must be a dataset name or a path, got {type(source).__name__}")
    path = Path(source)
    if not path.exists():
        names = " or ".join(repr(b) for b in BUILTIN_DATASETS)
        choices = f"choose {names}, or a path to a .npz, .csv or IDX file"
        if isinstance(source, str) and not path.suffix and len(path.parts) == 1:
            raise ValueError(f"unknown dataset {source!r}; {choices}")
        raise FileNotFoundError(f"dataset file not found: {path}; {choices}")
    if path.is_dir():
        inside = sorted(
            q.name for q in path.iterdir() if q.is_file() and _file_kind(q) in ("npz", "csv") and q.suffix != ".gz"
        )[:3]
        hint = f"; it holds e.g. {', '.join(inside)}: pass one of them, e.g. {path / inside[0]}" if inside else ""
        raise ValueError(
            f"{path} is a directory, expected a dataset file (.npz with X and y, .csv with a label column, or MNIST "
            f"IDX images with --labels){hint}"
        )
    kind = _file_kind(path)
    if kind != "idx" and labels_path is not None:
        raise ValueError(
            f"labels_path is only for IDX image files, but {path} is a .{kind} file that carries its own "
            "labels; drop --labels"
        )
    if kind == "npz":
        X, y = load_npz(path)
    elif kind == "csv":
        X, y = load_csv(path, label_column=label_column)
    else:
        if labels_path is None:
            raise ValueError(
                f"{path} is read as MNIST IDX images (not .npz or .csv), which need a separate labels file; "
                "pass --labels FILE for IDX images (labels_path=FILE in Python)"
            )
        X, y = load_idx(path, labels_path)
    return Dataset(X, y, n_classes=file_n_classes, name=str(path))
