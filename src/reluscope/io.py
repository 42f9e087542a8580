"""Files: atomic writes (temp file + rename, so a crash never leaves half a file), model checkpoints as ``.npz``
loaded without unpickling, and JSON run records."""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from reluscope._npz import read_npz
from reluscope.data import Standardizer
from reluscope.nn.model import MLP

__all__ = [
    "LOCK_FILE",
    "atomic_write",
    "check_path_given",
    "check_writable",
    "directory_lock",
    "json_writer",
    "load_json",
    "load_model",
    "load_standardizer",
    "model_config",
    "model_writer",
    "save_json",
    "save_model",
    "strict_json",
    "write_together",
]

_CONFIG_KEY = "__reluscope_config__"
LOCK_FILE = ".reluscope.lock"  # held by the process writing a run or sweep directory


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import: os.umask can only be read by setting it, process-wide
_MEAN_KEY, _STD_KEY = "__standardize_mean__", "__standardize_std__"


def _mode_for(path: Path) -> int:
    """An overwrite keeps the file's mode (a user's ``chmod 600`` stays); a new file follows the umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_UMASK


def _named(exc: OSError, path: Path) -> OSError:
    """The same OSError, naming the file the user asked for rather than our temp file (or nothing)."""
    if exc.strerror and exc.strerror.startswith("could not write "):  # named already (a nested staging)
        return exc
    return type(exc)(exc.errno, f"could not write {path}: {exc.strerror}", str(path))


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file next to ``path``; on success it is flushed, fsynced and renamed over ``path``.

    If the body raises, the temp file is removed and ``path`` keeps its old content. An overwrite keeps the file's
    permissions; a new file gets the umask's. An OSError (disk full, read-only directory) names ``path``.
    """
    path = Path(path)
    with _staged(path, mode) as (f, tmp):
        yield f
    try:
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise _named(exc, path) from None


@contextlib.contextmanager
def _staged(path: Path, mode: str) -> Iterator[tuple[IO[Any], str]]:
    """A flushed, fsynced temp file beside ``path`` with ``path``'s future mode; removed if anything raises."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, _mode_for(path))  # mkstemp creates 0600
        with os.fdopen(fd, mode) as f:
            yield f, tmp
            f.flush()
            os.fsync(f.fileno())
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, FileExistsError):
            raise _named(exc, path) from None
        raise


def write_together(directory: str | os.PathLike[str], files: dict[str, Callable[[IO[Any]], None]]) -> None:
    """Write several files of one directory as a whole: every file is written to a temp file first (where a full
    disk or a failing writer stops everything, leaving the old files as they were), and only then are all renamed
    into place. ``files`` maps a file name to a function writing its content to a binary file object.

    Raises OSError naming the file that could not be written. The renames need no space and follow each other
    within microseconds; only a crash of the machine between them could leave old and new files side by side.
    """
    directory = Path(directory)
    staged: list[tuple[str, Path]] = []
    try:
        with contextlib.ExitStack() as stack:
            for name, write in files.items():
                f, tmp = stack.enter_context(_staged(directory / name, "wb"))
                write(f)
                staged.append((tmp, directory / name))
            # leaving the stack flushes, fsyncs and closes every file; a failure there removes them all
        for tmp, target in staged:
            os.replace(tmp, target)
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


def check_path_given(path: str | os.PathLike[str], option: str = "--out") -> None:
    """Refuse an empty or blank output path (a ValueError naming ``option``): ``Path("")`` is the current directory,
    and writing there would replace what is in it."""
    if not str(os.fspath(path)).strip():
        raise ValueError(
            f"{option} is empty ({os.fspath(path)!r}); pass the path to write to, e.g. {option} runs/exp1 (an empty "
            f"path would mean the current directory: write {option} . if that is what you want)"
        )


def check_writable(directory: str | os.PathLike[str], *, option: str = "--out") -> Path:
    """Create ``directory`` if needed and prove a file can be written there, before any work is done.

    Raises ValueError naming the directory and ``option`` when it is empty (``""`` would be the current
    directory), a file, a dangling symbolic link, cannot be created or is read-only.
    """
    check_path_given(directory, option)
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{option} must be a directory, got the file {directory}; choose another path")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise ValueError(
            f"{option} {directory} is not writable ({exc.strerror}); choose a directory you can write to"
        ) from None
    return directory


@contextlib.contextmanager
def directory_lock(directory: str | os.PathLike[str], *, what: str = "run") -> Iterator[Path]:
    """Hold an exclusive lock on ``directory`` (a ``.reluscope.lock`` file in it, ``fcntl.flock``) while writing.

    A second process asking for the same directory gets a ValueError at once instead of mixing its files into the
    first one's. The lock is released when the block ends or the process dies (the kernel drops flocks).
    """
    import fcntl

    directory = check_writable(directory)
    lock_path = directory / LOCK_FILE
    with open(lock_path, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise ValueError(
                f"{directory} is in use by another reluscope {what} ({holder}); wait for it to finish or choose "
                "another --out"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        try:
            yield directory
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def strict_json(obj: Any) -> tuple[Any, list[str]]:
    """``obj`` with every non-finite float replaced by None, and the JSON paths replaced (``history.val_loss[3]``).

    JSON has no NaN or Infinity; writers that call this record the paths as the reason a value is null.
    """
    replaced: list[str] = []

    def clean(x: Any, where: str) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            replaced.append(where)
            return None
        if isinstance(x, dict):
            return {k: clean(v, f"{where}.{k}" if where else str(k)) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v, f"{where}[{i}]") for i, v in enumerate(x)]
        return x

    return clean(obj, ""), replaced


def save_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, strict JSON (``allow_nan=False``), atomically.

    Non-finite floats are written as null, and a dict gets the key ``"non_finite"`` listing where and why.
    """
    with atomic_write(path) as f:
        json_writer(obj)(f)


def json_writer(obj: Any) -> Callable[[IO[Any]], None]:
    """A writer for :func:`write_together`: ``obj`` as indented strict JSON, as :func:`save_json` writes it."""
    clean, replaced = strict_json(obj)
    if replaced and isinstance(clean, dict):
        clean["non_finite"] = {
            "paths": replaced,
            "reason": "not a finite number, which strict JSON cannot hold: written as null",
        }
    data = (json.dumps(clean, indent=2, allow_nan=False) + "\n").encode()

    def write(f: IO[Any]) -> None:
        f.write(data)

    return write


def load_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file; a ValueError names the file when it is not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); was the file truncated?") from None


def save_model(path: str | os.PathLike[str], net: MLP, *, standardizer: Standardizer | None = None) -> None:
    """Save ``net`` (config + params) to an ``.npz`` file, or a ``.safetensors`` file when ``path`` ends so
    (the config goes in its metadata; needs ``pip install 'reluscope[safetensors]'``), atomically.

    A ``standardizer`` the network was trained behind is stored with it, so ``diagnose`` can apply it.
    """
    arrays: dict[str, Any] = dict(net.params)
    if standardizer is not None:
        arrays[_MEAN_KEY], arrays[_STD_KEY] = standardizer.mean, standardizer.std
    if _is_safetensors(path):
        _save_safetensors(path, arrays, json.dumps(net.config()))
        return
    with atomic_write(path) as f:
        model_writer(net, standardizer=standardizer)(f)


def model_writer(net: MLP, *, standardizer: Standardizer | None = None) -> Callable[[IO[Any]], None]:
    """A writer for :func:`write_together`: ``net`` as the ``.npz`` :func:`save_model` writes."""
    arrays: dict[str, Any] = dict(net.params)
    arrays[_CONFIG_KEY] = np.array(json.dumps(net.config()))
    if standardizer is not None:
        arrays[_MEAN_KEY], arrays[_STD_KEY] = standardizer.mean, standardizer.std

    def write(f: IO[Any]) -> None:
        np.savez(f, **arrays)

    return write


def _is_safetensors(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() == ".safetensors"


def _import_safetensors_numpy() -> Any:
    try:
        import safetensors.numpy
    except ImportError as exc:
        raise ImportError(
            "reading/writing .safetensors needs safetensors: pip install 'reluscope[safetensors]'"
        ) from exc
    return safetensors.numpy


def _save_safetensors(path: str | os.PathLike[str], arrays: dict[str, Any], config: str) -> None:
    st = _import_safetensors_numpy()
    payload = st.save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata={_CONFIG_KEY: config})
    with atomic_write(path) as f:
        f.write(payload)


def _read_safetensors(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The arrays of a ``.safetensors`` model file, with its metadata config under ``_CONFIG_KEY`` (no pickle)."""
    st = _import_safetensors_numpy()
    from safetensors import SafetensorError, safe_open

    if not Path(path).is_file():
        raise FileNotFoundError(2, "model file not found", str(path))
    try:
        arrays: dict[str, Any] = dict(st.load_file(str(path)))
        with safe_open(str(path), framework="np") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(
            f"{path} is not a readable .safetensors file ({exc}); save models with reluscope.io.save_model"
        ) from None
    if _CONFIG_KEY in metadata:
        arrays[_CONFIG_KEY] = np.array(metadata[_CONFIG_KEY])
    return arrays


def _load_arrays(path: str | os.PathLike[str]) -> dict[str, Any]:
    if _is_safetensors(path):
        arrays = _read_safetensors(path)
    else:
        arrays = read_npz(path, what="model file", fix="`reluscope train --out DIR` or reluscope.io.save_model")
    if _CONFIG_KEY not in arrays:
        raise ValueError(
            f"{path} has no reluscope config (keys: {sorted(arrays)}); save models with reluscope.io.save_model"
        )
    return arrays


def model_config(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The config a model file was saved with by :func:`save_model` (sizes, activation, slope, ...), or None for
    a file of bare arrays (e.g. ``np.savez("w.npz", W1=..., b1=..., ...)``). Raises ValueError for a broken file."""
    arrays = _read_safetensors(path) if _is_safetensors(path) else read_npz(path, what="model file", fix="")
    if _CONFIG_KEY not in arrays:
        return None
    try:
        config = json.loads(str(arrays[_CONFIG_KEY]))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: the stored config is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: the stored config is not a reluscope MLP config; save the model again")
    return config


def load_model(path: str | os.PathLike[str]) -> MLP:
    """Load an :class:`MLP` saved by :func:`save_model`, ``.npz`` or ``.safetensors`` (never unpickles:
    ``allow_pickle=False``; safetensors holds raw tensors and a JSON header)."""
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
