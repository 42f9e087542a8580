"""Datasets and data preparation.

Built in (no download): :func:`spiral` (the CS231n spiral, bit-identical to its generator) and
:func:`digits` (scikit-learn's 8x8 digits). Files: :func:`load_idx` (MNIST IDX, raw or gzip),
:func:`load_npz`, :func:`load_csv`. :func:`load_dataset` resolves a name or path to a :class:`Dataset`.
Preparation: :func:`train_val_split`, :class:`Standardizer` / :func:`standardize`, :func:`minibatches`.

Every loader returns X float64 (N, D) and y int64 (N,); bad input raises ``ValueError`` (``FileNotFoundError``
for a missing file) with a message that says what was expected, what was found, and the fix.
"""

from __future__ import annotations

from reluscope.data._dataset import BUILTIN_DATASETS, Dataset, load_dataset
from reluscope.data._loaders import load_csv, load_idx, load_npz
from reluscope.data._prep import Standardizer, minibatches, standardize, train_val_split
from reluscope.data._synthetic import digits, spiral

__all__ = [
    "BUILTIN_DATASETS",
    "Dataset",
    "Standardizer",
    "digits",
    "load_csv",
    "load_dataset",
    "load_idx",
    "load_npz",
    "minibatches",
    "spiral",
    "standardize",
    "train_val_split",
]
