"""The --torch-model options of ``reluscope diagnose``, kept apart from :mod:`._torch_diagnose` so that defining the
command (and ``reluscope --help``) never imports torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["InputShapeOpt", "TorchModelOpt", "UnitAxisOpt", "WeightsOpt"]

# ---------------------------------------------------------------------------------
TorchModelOpt = Annotated[
    str | None,
    typer.Option(
        "--torch-model",
        help="A PyTorch model instead of MODEL: 'pkg.module:factory' or 'path/to/file.py:factory' (a callable "
        "returning the nn.Module; use --weights for its state_dict), or a TorchScript file (torch.jit.save).",
        show_default=False,
    ),
]
WeightsOpt = Annotated[
    Path | None,
    typer.Option(
        "--weights",
        help="Weights for --torch-model: a torch.save state_dict, a .safetensors file or a Lightning .ckpt "
        "(prefixes such as 'net.' stripped); never unpickled (torch.load weights_only=True).",
        show_default=False,
    ),
]
InputShapeOpt = Annotated[
    str | None,
    typer.Option(
        "--input-shape",
        help="Per-sample input shape for --torch-model, e.g. 1,8,8: reshapes the dataset's flat feature rows.",
        show_default=False,
    ),
]
UnitAxisOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--unit-axis",
        help="SITE=AXIS: the dimension holding the units at a site of --torch-model (repeatable), e.g. "
        "--unit-axis mlp.1=-1. Without it the axis comes from the layer producing the values (Linear: last dim, "
        "Conv: channels); the table's 'axis' column says which.",
        show_default=False,
    ),
]
