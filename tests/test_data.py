"""Tests for reluscope.data: generators, loaders (and their error messages), splitting, scaling, batching."""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from reluscope.data import (
    BUILTIN_DATASETS,
    Dataset,
    Standardizer,
    digits,
    load_csv,
    load_dataset,
    load_idx,
    load_npz,
    minibatches,
    spiral,
    standardize,
    train_val_split,
)


# -- helpers -------------------------------------------------------------------------------------------------
def cs231n_spiral(rs: np.random.RandomState, N: int, K: int) -> tuple[NDArray[Any], NDArray[Any]]:
    """The CS231n generator, transcribed line by line, with ``np.random`` replaced by a RandomState."""
    D = 2
    X = np.zeros((N * K, D))
    y = np.zeros(N * K, dtype="uint8")
    for j in range(K):
        ix = range(N * j, N * (j + 1))
        r = np.linspace(0.0, 1, N)  # radius
        t = np.linspace(j * 4, (j + 1) * 4, N) + rs.randn(N) * 0.2  # theta
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[ix] = j
    return X, y


def write_idx_images(path: Path, images: NDArray[np.uint8], *, compress: bool = False, magic: int = 0x803) -> Path:
    n, rows, cols = images.shape
    data = struct.pack(">IIII", magic, n, rows, cols) + images.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def write_idx_labels(path: Path, labels: NDArray[Any], *, compress: bool = False, magic: int = 0x801) -> Path:
    data = struct.pack(">II", magic, len(labels)) + np.asarray(labels, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.fixture
def idx_pair(tmp_path: Path) -> tuple[Path, Path, NDArray[np.uint8], NDArray[np.uint8]]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 3, 4), dtype=np.uint8)
    labels = np.array([0, 9, 3, 3, 1], dtype=np.uint8)
    img = write_idx_images(tmp_path / "images-idx3-ubyte", images)
    lab = write_idx_labels(tmp_path / "labels-idx1-ubyte", labels)
    return img, lab, images, labels


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- spiral --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("seed", "n", "k"), [(0, 100, 3), (1, 100, 3), (42, 7, 5), (123, 1, 1), (2**32 - 1, 50, 2)])
def test_spiral_bit_identical_to_cs231n(seed: int, n: int, k: int) -> None:
    X, y = spiral(n, k, seed=seed)
    X_ref, y_ref = cs231n_spiral(np.random.RandomState(seed), n, k)
    assert X.dtype == np.float64 and X.shape == (n * k, 2)
    assert y.dtype == np.int64 and y.shape == (n * k,)
    assert X.tobytes() == X_ref.tobytes()
    np.testing.assert_array_equal(y, y_ref)


def test_spiral_shared_stream_matches_case_study() -> None:
    rs = np.random.RandomState(0)
    X, _ = spiral(rng=rs)
    W = 0.01 * rs.randn(2, 100)
    ref = np.random.RandomState(0)
    X_ref, _ = cs231n_spiral(ref, 100, 3)
    assert X.tobytes() == X_ref.tobytes()
    assert W.tobytes() == (0.01 * ref.randn(2, 100)).tobytes()


def test_spiral_leaves_global_rng_alone() -> None:
    # reading (never seeding) the global state is the point of this test
    before = np.random.get_state()[1].copy()  # type: ignore[index]  # noqa: NPY002
    spiral(10, 3, seed=5)
    after = np.random.get_state()[1]  # type: ignore[index]  # noqa: NPY002
    np.testing.assert_array_equal(before, after)


def test_spiral_generator_rng_is_seeded() -> None:
    a, _ = spiral(20, 2, rng=np.random.default_rng(3))
    b, _ = spiral(20, 2, rng=np.random.default_rng(3))
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"n_per_class": 0}, ValueError, "n_per_class must be >= 1, got 0"),
        ({"n_classes": 2.5}, TypeError, "n_classes must be an int, got float"),
        ({"seed": -1}, ValueError, "seed must be >= 0"),
        ({"rng": 3}, TypeError, "rng must be a numpy RandomState or Generator"),
    ],
)
def test_spiral_bad_arguments(kwargs: dict[str, Any], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        spiral(**kwargs)


# -- digits --------------------------------------------------------------------------------------------------
def test_digits_shape_and_range() -> None:
    X, y = digits()
    assert X.shape == (1797, 64) and X.dtype == np.float64
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert set(np.unique(y)) == set(range(10))
    X_raw, _ = digits(scale=False)
    np.testing.assert_array_equal(X_raw / 16.0, X)


def test_import_does_not_import_sklearn() -> None:
    code = "import sys, reluscope.data; sys.exit('sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# -- IDX -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path: Path, compress: bool) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10
    labels = np.array([7, 2], dtype=np.uint8)
    # names without .gz: gzip is detected by content, not by name
    img = write_idx_images(tmp_path / "img", images, compress=compress)
    lab = write_idx_labels(tmp_path / "lab", labels, compress=compress)
    X, y = load_idx(img, lab)
    assert X.dtype == np.float64 and X.shape == (2, 12)
    np.testing.assert_array_equal(X, images.reshape(2, 12) / 255.0)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, [7, 2])


def test_idx_wrong_magic_says_which_was_found(idx_pair: tuple[Path, Path, Any, Any]) -> None:
    img, lab, _, _ = idx_pair
    with pytest.raises(ValueError, match=r"expected IDX images magic number 0x00000803, found 0x00000801"):
        load_idx(lab, img)
    with pytest.raises(ValueError, match="did you swap the images and labels"):
        load_idx(lab, img)


def test_idx_garbage_magic(tmp_path: Path, idx_pair: tuple[Path, Path, Any, Any]) -> None:
    _, lab, images, _ = idx_pair
    bad = write_idx_images(tmp_path / "bad", images, magic=0x12345678)
    with pytest.raises(ValueError, match="found 0x12345678, which is not an IDX header"):
        load_idx(bad, lab)


def test_idx_truncated_payload(tmp_path: Path, idx_pair: tuple[Path, Path, Any, Any]) -> None:
    img, lab, _, _ = idx_pair
    cut = tmp_path / "cut"
    cut.write_bytes(img.read_bytes()[:-7])
    with pytest.raises(ValueError, match=r"is truncated: the header promises 5 x 3 x 4 = 60 bytes of images.*only 53"):
        load_idx(cut, lab)


def test_idx_truncated_header(tmp_path: Path, idx_pair: tuple[Path, Path, Any, Any]) -> None:
    img, lab, _, _ = idx_pair
    (tmp_path / "h").write_bytes(img.read_bytes()[:10])
    with pytest.raises(ValueError, match="header needs 16 bytes, the file has 10"):
        load_idx(tmp_path / "h", lab)
    (tmp_path / "tiny").write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="too short for an IDX header"):
        load_idx(img, tmp_path / "tiny")


def test_idx_extra_bytes(tmp_path: Path, idx_pair: tuple[Path, Path, Any, Any]) -> None:
    img, lab, _, _ = idx_pair
    (tmp_path / "long").write_bytes(lab.read_bytes() + b"\x01\x02")
    with pytest.raises(ValueError, match="2 byte\\(s\\) more than its header promises"):
        load_idx(img, tmp_path / "long")


def test_idx_truncated_gzip(tmp_path: Path, idx_pair: tuple[Path, Path, Any, Any]) -> None:
    img, lab, _, _ = idx_pair
    gz = gzip.compress(img.read_bytes())
    (tmp_path / "img.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(ValueError, match="gzip magic bytes 1f 8b but does not decompress"):
        load_idx(tmp_path / "img.gz", lab)


def test_idx_count_mismatch(tmp_path: Path, idx_pair: tuple[Path, Path, Any, Any]) -> None:
    img, _, _, labels = idx_pair
    lab = write_idx_labels(tmp_path / "short-labels", labels[:4])
    with pytest.raises(ValueError, match=r"holds 5 images but .* holds 4 labels"):
        load_idx(img, lab)


def test_idx_missing_file(tmp_path: Path, idx_pair: tuple[Path, Path, Any, Any]) -> None:
    img, _, _, _ = idx_pair
    with pytest.raises(FileNotFoundError, match=r"IDX labels file not found: .*nope"):
        load_idx(img, tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="is a directory"):
        load_idx(tmp_path, img)


# -- npz -----------------------------------------------------------------------------------------------------
def test_npz_round_trip_and_flatten(tmp_path: Path) -> None:
    X = np.arange(24, dtype=np.float32).reshape(3, 2, 4)
    y = np.array([0, 2, 1], dtype=np.uint8)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    X2, y2 = load_npz(tmp_path / "d.npz")
    assert X2.dtype == np.float64 and X2.shape == (3, 8)
    np.testing.assert_array_equal(X2, X.reshape(3, 8))
    assert y2.dtype == np.int64
    np.testing.assert_array_equal(y2, y)


def save_npz(tmp_path: Path, **arrays: Any) -> Path:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"X": np.ones((2, 2))}, r"missing array\(s\) y; found \['X'\]"),
        ({"features": np.ones((2, 2)), "labels": np.zeros(2, int)}, r"missing array\(s\) X, y; found"),
        ({"X": np.ones((3, 2)), "y": np.zeros(2, int)}, "y has 2 labels but there are 3 samples"),
        (
            {"X": np.ones((2, 2)), "y": np.array([0.0, 1.0])},
            "integer class labels, got dtype float64.*astype",
        ),
        ({"X": np.ones((2, 2)), "y": np.array([0.5, 1.0])}, "integer class labels, got dtype float64"),
        ({"X": np.ones((2, 2)), "y": np.array([0, -1])}, "y must be >= 0, got min label -1"),
        ({"X": np.array([[1.0, np.nan], [0, 0]]), "y": np.array([0, 1])}, "X contains 1 NaN/inf"),
        ({"X": np.array([[1.0, np.inf], [0, 0]]), "y": np.array([0, 1])}, "X contains 1 NaN/inf"),
        ({"X": np.ones(3), "y": np.zeros(3, int)}, r"shape \(N, D\), got shape \(3,\)"),
        ({"X": np.array([["a", "b"]]), "y": np.zeros(1, int)}, "X must hold numbers, got dtype <U1"),
        ({"X": np.ones((2, 2)), "y": np.zeros((2, 3), int)}, "one-hot"),
    ],
)
def test_npz_bad_content(tmp_path: Path, arrays: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_npz(save_npz(tmp_path, **arrays))


def test_npz_object_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    path = save_npz(tmp_path, X=np.array([[1.0, 2.0]], dtype=object), y=np.array([0]))
    with pytest.raises(ValueError, match=r"array X is an object array.*never unpickles"):
        load_npz(path)


def test_npz_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "a.npz").write_text("x,y\n1,2\n")
    with pytest.raises(ValueError, match=r"not a readable \.npz archive"):
        load_npz(tmp_path / "a.npz")
    np.save(tmp_path / "single.npy", np.ones(3))
    with pytest.raises(ValueError, match=r"single \.npy array"):
        load_npz(tmp_path / "single.npy")
    with pytest.raises(FileNotFoundError, match=r"\.npz file not found"):
        load_npz(tmp_path / "missing.npz")


# -- csv -----------------------------------------------------------------------------------------------------
def test_csv_round_trip(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "a, label ,b\n0.5,1,2\n\n-1e-3,0.0,4\n")
    X, y = load_csv(path)
    assert X.dtype == np.float64 and y.dtype == np.int64
    np.testing.assert_array_equal(X, [[0.5, 2.0], [-1e-3, 4.0]])
    np.testing.assert_array_equal(y, [1, 0])


def test_csv_custom_label_column_and_gzip(tmp_path: Path) -> None:
    path = tmp_path / "d.csv.gz"
    path.write_bytes(gzip.compress(b"\xef\xbb\xbfcls,x\n2,3.5\n0,1\n"))  # with a UTF-8 BOM
    X, y = load_csv(path, label_column="cls")
    np.testing.assert_array_equal(X, [[3.5], [1.0]])
    np.testing.assert_array_equal(y, [2, 0])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("x0,x1,label\n1,2,0\n3,abc,1\n", r"row 2 \(line 3\), column 'x1': 'abc' is not a number"),
        ("x0,x1,label\n1,,0\n", r"row 1 \(line 2\), column 'x1': an empty cell is not a number"),
        ("x0,x1,label\n1,2,0\n1,nan,1\n", r"row 2 \(line 3\), column 'x1': 'nan' is not finite"),
        (
            "x0,x1,label\n1,2,0.5\n",
            r"row 1 \(line 2\), column 'label': label '0.5' is not a non-negative integer",
        ),
        ("x0,x1,label\n1,2,-1\n", r"column 'label': label '-1' is not a non-negative integer"),
        ("x0,x1,y\n1,2,0\n", r"no column named 'label'; columns found: \['x0', 'x1', 'y'\]"),
        ("1,2,0\n3,4,1\n", "is all numbers, expected a header row"),
        ("x0,x1,label\n1,2\n", r"row 1 \(line 2\) has 2 cells, the header has 3 columns"),
        ("x0,x1,label\n", "has a header but no data rows"),
        ("", "is empty; expected a header row"),
        ("label\n1\n", "has only the label column"),
        ("label,x,label\n1,2,3\n", "has 2 columns named 'label'"),
    ],
)
def test_csv_bad_content(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_csv(write_csv(tmp_path / "bad.csv", text))


# -- Dataset / load_dataset ----------------------------------------------------------------------------------
def test_dataset_properties_and_validation() -> None:
    ds = Dataset(np.zeros((4, 3)), np.array([0, 1, 1, 0]), name="toy")
    assert (ds.n_samples, ds.n_features, ds.n_classes, ds.name) == (4, 3, 2, "toy")
    assert ds.y.dtype == np.int64
    assert "n_samples=4" in repr(ds)
    assert Dataset(np.zeros((2, 1)), np.array([0, 1]), n_classes=5).n_classes == 5
    with pytest.raises(ValueError, match=r"labels must be integers in \[0, 2\), got max label 3"):
        Dataset(np.zeros((2, 1)), np.array([0, 3]), n_classes=2)
    with pytest.raises(AttributeError):
        ds.name = "other"  # type: ignore[misc]


def test_load_dataset_builtin() -> None:
    ds = load_dataset("spiral", n_per_class=10, n_classes=4, seed=3)
    X, y = spiral(10, 4, seed=3)
    assert ds.name == "spiral" and ds.n_classes == 4
    assert ds.X.tobytes() == X.tobytes()
    np.testing.assert_array_equal(ds.y, y)
    dg = load_dataset("digits")
    assert (dg.n_samples, dg.n_features, dg.n_classes) == (1797, 64, 10)
    assert set(BUILTIN_DATASETS) == {"spiral", "digits"}


def test_load_dataset_files(tmp_path: Path, idx_pair: tuple[Path, Path, Any, Any]) -> None:
    np.savez(tmp_path / "d.npz", X=np.ones((3, 2)), y=np.array([0, 1, 2]))
    ds = load_dataset(tmp_path / "d.npz")
    assert (ds.n_samples, ds.n_classes, ds.name) == (3, 3, str(tmp_path / "d.npz"))
    csv_path = write_csv(tmp_path / "d.CSV", "x,target\n1,0\n2,1\n")
    assert load_dataset(str(csv_path), label_column="target").n_features == 1
    img, lab, images, _ = idx_pair
    gz = write_idx_images(tmp_path / "train-images-idx3-ubyte.gz", images, compress=True)
    assert load_dataset(gz, labels_path=lab).n_features == 12
    assert load_dataset(str(img), labels_path=str(lab)).n_samples == 5


def test_load_dataset_errors(tmp_path: Path, idx_pair: tuple[Path, Path, Any, Any]) -> None:
    img, lab, _, _ = idx_pair
    with pytest.raises(ValueError, match="pass --labels FILE for IDX images"):
        load_dataset(img)
    with pytest.raises(ValueError, match=r"unknown dataset 'spirals'; choose 'spiral' or 'digits'"):
        load_dataset("spirals")
    with pytest.raises(FileNotFoundError, match="dataset file not found"):
        load_dataset(tmp_path / "nope.npz")
    np.savez(tmp_path / "d.npz", X=np.ones((1, 1)), y=np.array([0]))
    with pytest.raises(ValueError, match="carries its own labels; drop --labels"):
        load_dataset(tmp_path / "d.npz", labels_path=lab)
    with pytest.raises(ValueError, match="drop --labels"):
        load_dataset("spiral", labels_path=lab)


# -- train_val_split -----------------------------------------------------------------------------------------
def test_split_is_stratified_and_reproducible() -> None:
    y = np.repeat([0, 1, 2], [50, 30, 20])
    X = np.arange(100, dtype=np.float64)[:, None]
    Xt, yt, Xv, yv = train_val_split(X, y, 0.2, seed=1)
    np.testing.assert_array_equal(np.bincount(yv), [10, 6, 4])
    np.testing.assert_array_equal(np.bincount(yt), [40, 24, 16])
    # rows stay paired with their labels and nothing is lost or duplicated
    np.testing.assert_array_equal(y[Xt[:, 0].astype(int)], yt)
    assert sorted(np.concatenate([Xt[:, 0], Xv[:, 0]]).tolist()) == list(range(100))
    again = train_val_split(X, y, 0.2, seed=1)
    other = train_val_split(X, y, 0.2, seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(again, (Xt, yt, Xv, yv), strict=True))
    assert not np.array_equal(other[2], Xv)


def test_split_keeps_one_per_class_in_train_and_handles_zero() -> None:
    X = np.zeros((5, 2), dtype=np.float32)
    y = np.array([0, 1, 1, 2, 2])
    Xt, yt, Xv, yv = train_val_split(X, y, 0.9, seed=0)
    assert set(yt.tolist()) == {0, 1, 2}
    Xt, yt, Xv, yv = train_val_split(X, y, 0.0)
    assert Xt.shape == (5, 2) and Xt.dtype == np.float32
    assert Xv.shape == (0, 2) and Xv.dtype == np.float32
    assert yv.shape == (0,) and yv.dtype == np.int64


def test_split_unstratified() -> None:
    X = np.zeros((10, 1))
    y = np.array([0] * 9 + [1])
    _, yt, _, yv = train_val_split(X, y, 0.3, seed=0, stratify=False)
    assert len(yv) == 3 and len(yt) == 7


@pytest.mark.parametrize(
    ("args", "exc", "match"),
    [
        (
            (np.zeros((3, 2)), np.zeros(3, int), 1.0),
            ValueError,
            r"val_fraction must be a fraction in \[0, 1\), got 1.0",
        ),
        (
            (np.zeros((3, 2)), np.zeros(3, int), -0.1),
            ValueError,
            r"val_fraction must be a fraction in \[0, 1\), got -0.1; e.g. 0.2 keeps",
        ),
        (
            (np.zeros((3, 2)), np.zeros(3, int), "0.2"),
            TypeError,
            r"val_fraction must be a fraction in \[0, 1\), got str",
        ),
        ((np.zeros((3, 2)), np.zeros(4, int), 0.2), ValueError, "4 labels but there are 3 samples"),
        ((np.zeros(3), np.zeros(3, int), 0.2), ValueError, "X must be 2-D"),
    ],
)
def test_split_bad_input(args: tuple[Any, ...], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        train_val_split(*args)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 60),
    d=st.integers(1, 4),
    k=st.integers(1, 5),
    frac=st.floats(0.0, 0.99),
    seed=st.integers(0, 2**16),
    stratify=st.booleans(),
)
def test_split_shapes_property(n: int, d: int, k: int, frac: float, seed: int, stratify: bool) -> None:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = rng.integers(0, k, n)
    try:
        Xt, yt, Xv, yv = train_val_split(X, y, frac, seed=seed, stratify=stratify)
    except ValueError as exc:  # a positive fraction that rounds to no validation sample at all is refused
        assert frac > 0 and "puts no sample in the validation set" in str(exc)
        return
    assert frac == 0 or len(yv) > 0
    assert Xt.shape[0] + Xv.shape[0] == n and Xt.shape[1:] == Xv.shape[1:] == (d,)
    assert Xt.dtype == Xv.dtype == np.float32 and yt.dtype == yv.dtype == np.int64
    assert len(yt) == len(Xt) >= 1 and len(yv) == len(Xv)
    if stratify:
        assert set(yt.tolist()) == set(y.tolist())
    np.testing.assert_array_equal(np.bincount(np.concatenate([yt, yv]), minlength=k), np.bincount(y, minlength=k))


# -- Standardizer --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_standardizer(dtype: type[np.floating[Any]]) -> None:
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((50, 3)) * [1.0, 5.0, 0.0] + [0.0, 3.0, 0.1]).astype(dtype)
    s = Standardizer.fit(X)
    assert s.mean.dtype == dtype and s.std.dtype == dtype and s.std[2] == 1.0
    Z = s.transform(X)
    assert Z.dtype == dtype
    assert np.all(Z[:, 2] == 0.0)  # constant feature maps to exactly 0, not NaN
    np.testing.assert_allclose(Z[:, :2].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(Z[:, :2].std(axis=0), 1.0, rtol=1e-5)
    np.testing.assert_allclose(s.inverse_transform(Z), X, rtol=1e-5, atol=1e-6)
    assert s.transform(X.astype(np.float64 if dtype == np.float32 else np.float32)).dtype != dtype


def test_standardize_convenience_and_errors() -> None:
    X_train = np.array([[0.0, 1.0], [2.0, 1.0]])
    X_val = np.array([[1.0, 5.0]])
    Zt, Zv, Ze = standardize(X_train, X_val, np.zeros((0, 2)))
    np.testing.assert_array_equal(Zt, [[-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_array_equal(Zv, [[0.0, 4.0]])
    assert Ze.shape == (0, 2)
    s = Standardizer.fit(X_train)
    with pytest.raises(ValueError, match="has 3 features but the Standardizer was fitted on 2"):
        s.transform(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="NaN/inf"):
        Standardizer.fit(np.array([[np.nan]]))
    with pytest.raises(ValueError, match="std must be a finite float array > 0"):
        Standardizer(mean=np.zeros(2), std=np.array([1.0, 0.0]))


# -- minibatches ---------------------------------------------------------------------------------------------
def test_minibatches_sequential_and_shuffled() -> None:
    batches = list(minibatches(10, 4))
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [len(b) for b in minibatches(3, 100)] == [3]
    assert list(minibatches(0, 5)) == []
    rng = np.random.default_rng(0)
    epoch1 = np.concatenate(list(minibatches(10, 3, rng=rng)))
    epoch2 = np.concatenate(list(minibatches(10, 3, rng=rng)))
    assert sorted(epoch1.tolist()) == sorted(epoch2.tolist()) == list(range(10))
    assert not np.array_equal(epoch1, epoch2)  # a fresh permutation per call


@pytest.mark.parametrize(
    ("args", "exc", "match"),
    [
        ((10, 0), ValueError, "batch_size must be >= 1, got 0"),
        ((10, 2.0), TypeError, "batch_size must be an int"),
    ],
)
def test_minibatches_validates_eagerly(args: tuple[Any, ...], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        minibatches(*args)  # raises at the call, not at the first next()


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 200), b=st.integers(1, 64), shuffle=st.booleans(), seed=st.integers(0, 2**16))
def test_minibatches_cover_every_index_once(n: int, b: int, shuffle: bool, seed: int) -> None:
    batches = list(minibatches(n, b, rng=np.random.default_rng(seed) if shuffle else None))
    assert all(batch.dtype == np.intp and batch.ndim == 1 for batch in batches)
    assert all(len(batch) == b for batch in batches[:-1])
    assert len(batches) == -(-n // b)
    flat = np.concatenate(batches) if batches else np.array([], dtype=np.intp)
    np.testing.assert_array_equal(np.sort(flat), np.arange(n))
