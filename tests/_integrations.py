"""Helpers for the integration tests (Lightning, Hugging Face, TensorBoard, W&B, Dask): tiny models and readers."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any


def read_wandb_history(run_dir: Path) -> list[dict[str, Any]]:
    """The ``history`` records of an offline W&B run (``wandb/offline-run-*/run-*.wandb``), decoded.

    The file is a LevelDB-style log (7-byte file header ``:W&B`` + magic + version; 32 KiB blocks of records with
    a 7-byte header: crc32, length, type FULL/FIRST/MIDDLE/LAST) of ``wandb_internal_pb2.Record`` protobufs.
    """
    from wandb.proto import wandb_internal_pb2

    (path,) = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:8]
    block, pos, pending, rows = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        if length == 0 and kind == 0:
            pos += left - 7
            continue
        pending += data[pos : pos + length]
        pos += length
        if kind in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item})
    return rows


def read_tensorboard(log_dir: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, list[Any]]]:
    """Scalars ``{tag: [(step, value)]}`` and histograms ``{tag: [HistogramEvent]}`` of a TensorBoard log
    directory, read back with tensorboard's own ``EventAccumulator``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in tags["scalars"]}
    hists = {tag: list(acc.Histograms(tag)) for tag in tags["histograms"]}
    return scalars, hists
