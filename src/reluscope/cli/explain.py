"""``reluscope explain``: backprop through input -> hidden -> activation -> softmax, step by step, on real numbers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from reluscope.cli._common import console, friendly_errors

__all__ = ["CIRCUITS", "FORMATS", "explain", "parse_labels", "parse_matrix"]

FORMATS = ("rich", "markdown", "json", "html", "png")
CIRCUITS = ("auto", "matrix", "scalar")


def parse_matrix(text: str, name: str = "--x") -> list[list[float]]:
    """``"1,2,3; 4,5,6"`` -> ``[[1, 2, 3], [4, 5, 6]]``: samples separated by ``;``, features by ``,``."""
    rows: list[list[float]] = []
    for i, row in enumerate(text.split(";")):
        if not row.strip():
            raise ValueError(f"{name}: sample {i} is empty in {text!r}; write samples like '1,2,3;4,5,6'")
        try:
            rows.append([float(v) for v in row.split(",")])
        except ValueError:
            raise ValueError(
                f"{name}: sample {i} ({row.strip()!r}) is not a list of numbers; write samples like '1,2,3;4,5,6'"
            ) from None
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise ValueError(
            f"{name}: every sample needs the same number of features, got {[len(r) for r in rows]} in {text!r}"
        )
    return rows


def parse_labels(text: str, name: str = "--y") -> list[int]:
    """``"0,2"`` -> ``[0, 2]``: one integer class label per sample."""
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated integer class labels such as 0,2, got {text!r}") from None


def _load_inputs(input_file: Path | None, x: str | None, y: str | None) -> tuple[Any, Any]:
    if input_file is not None and (x is not None or y is not None):
        raise ValueError("pass either --input FILE.npz or --x/--y, not both")
    if input_file is not None:
        from reluscope.data import load_npz

        return load_npz(input_file)
    if (x is None) != (y is None):
        given, missing = ("--x", "--y") if y is None else ("--y", "--x")
        raise ValueError(f"{given} needs {missing} too: pass inputs and labels together, e.g. --x '1,2,3' --y 0")
    if x is None or y is None:
        return None, None
    return parse_matrix(x), parse_labels(y)


@friendly_errors
def explain(
    inputs: Annotated[
        int | None, typer.Option("--inputs", "-D", help="Input features D [default: 3, or what the data implies].")
    ] = None,
    hidden: Annotated[
        int | None, typer.Option("--hidden", "-H", help="Hidden units H [default: 4, or what --weights implies].")
    ] = None,
    classes: Annotated[
        int | None,
        typer.Option("--classes", "-C", help="Classes C [default: 3, or what --weights or the labels imply]."),
    ] = None,
    samples: Annotated[
        int | None, typer.Option("--samples", "-N", help="Samples N [default: 2, or the rows of the data].")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for the inputs, labels and weights that are not given.")] = 0,
    activation: Annotated[
        str | None,
        typer.Option(
            "--activation",
            "-a",
            help="relu, leaky, elu, sigmoid, tanh, softplus, ...: any registered activation without a learned "
            "parameter (reluscope.explain.SUPPORTED_ACTIVATIONS) [default: relu, or the one a model file given to "
            "--weights was trained with].",
            show_default=False,
        ),
    ] = None,
    slope: Annotated[
        float | None,
        typer.Option(
            help="Negative slope of --activation leaky [default: 0.01, or the model file's].", show_default=False
        ),
    ] = None,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate of the SGD step shown at the end.")] = 0.5,
    reg: Annotated[float, typer.Option(help="L2 strength: the loss adds 0.5*reg*(sum(W1**2) + sum(W2**2)).")] = 0.0,
    weights: Annotated[
        Path | None,
        typer.Option(
            help="Your weights: an .npz with W1 (D,H), b1 (H,), W2 (H,C), b2 (C,), e.g. "
            "np.savez('w.npz', W1=W1, b1=b1, W2=W2, b2=b2), or a one-hidden-layer model.npz from train --out.",
            show_default=False,
        ),
    ] = None,
    input_file: Annotated[
        Path | None,
        typer.Option(
            "--input", help="Your inputs: an .npz with X (N,D) and integer labels y (N,).", show_default=False
        ),
    ] = None,
    x: Annotated[
        str | None,
        typer.Option(
            "--x", help="Your inputs inline: samples separated by ';', features by ',', e.g. --x '1,2,3;4,5,6'."
        ),
    ] = None,
    y: Annotated[
        str | None, typer.Option("--y", help="Labels for --x, one per sample, e.g. --y 0,2 (classes from 0).")
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option(help="Sample shown in column-vector form [default: the first with a unit at z <= 0]."),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="rich (terminal), markdown, json, html (one self-contained page: circuit, every step, gate, "
            "column form, gradient check, SGD step; needs --out) or png (the circuit picture; needs --out).",
        ),
    ] = "rich",
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Write the output to this file (written whole, atomically) instead of the terminal; "
            "required by --format html and png.",
            show_default=False,
        ),
    ] = None,
    circuit_level: Annotated[
        str,
        typer.Option(
            "--circuit",
            help="Circuit of --format png: matrix (any size), scalar (one sample unrolled, one node per input, "
            "unit and class; tiny nets such as --inputs 2 --hidden 3) or auto (scalar when it fits).",
        ),
    ] = "auto",
    step: Annotated[
        bool,
        typer.Option(
            "--step",
            help="Pause for Enter between steps (rich format in a terminal); with --format html, show one step "
            "at a time with previous/next links.",
        ),
    ] = False,
) -> None:
    """Backprop through input -> hidden -> activation -> output -> softmax, step by step, on real numbers.

    Shows every forward value and every gradient with its formula and shape, which units the ReLU gate closed
    (and that exactly no gradient passed there), one sample in column-vector form, a numerical gradient check
    and one SGD step. The default seed 0 gives 3 inputs, 4 hidden ReLUs, 3 classes and 2 samples where
    two units fire on neither sample. Use --weights/--input (or --x/--y) to explain your own numbers.
    """
    from reluscope.explain import explain as build
    from reluscope.explain import load_weights, render_json, render_markdown, rich_sections

    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt in ("html", "png") and out_file is None:
        raise ValueError(f"--format {fmt} writes a file: add --out FILE, e.g. --out explain.{fmt}")
    if fmt == "rich" and out_file is not None:
        raise ValueError("--out writes markdown, json, html or png; add --format html (or markdown, json, png)")
    if out_file is not None:  # before any work, naming the real path
        from reluscope.io import check_writable

        if out_file.is_dir():
            raise ValueError(f"--out must be a file, got the directory {out_file}; e.g. --out {out_file / 'explain'}")
        check_writable(out_file.parent, option="--out's directory")
    if circuit_level not in CIRCUITS:
        raise ValueError(f"--circuit must be one of {', '.join(CIRCUITS)}, got {circuit_level!r}")
    if circuit_level != "auto" and fmt != "png":
        raise ValueError(
            "--circuit chooses the picture of --format png; the html page shows the matrix circuit and, for a tiny "
            "net, the scalar one"
        )
    X, labels = _load_inputs(input_file, x, y)
    params = load_weights(weights) if weights is not None else None
    activation, slope = _activation(weights, activation, slope)
    ex = build(
        X,
        labels,
        params=params,
        inputs=inputs,
        hidden=hidden,
        classes=classes,
        samples=samples,
        activation=activation,
        slope=slope,
        lr=lr,
        reg=reg,
        seed=seed,
        sample=sample,
        source={
            **({"weights": str(weights)} if weights is not None else {}),
            **({"inputs": str(input_file)} if input_file is not None else {}),
        },
    )
    if fmt == "png":
        from reluscope.explain import circuit
        from reluscope.io import atomic_write
        from reluscope.report.plots import plot_circuit, to_png

        assert out_file is not None
        png = to_png(plot_circuit(circuit(ex, level=circuit_level)).figure)
        with atomic_write(out_file, "wb") as f:
            f.write(png)
        typer.echo(f"wrote {out_file}")
        return
    if fmt == "html":
        from reluscope.explain import write_html

        assert out_file is not None
        write_html(out_file, ex, step=step)
        typer.echo(f"wrote {out_file}")
        return
    if fmt in ("json", "markdown"):
        text = render_json(ex) if fmt == "json" else render_markdown(ex)
        if out_file is None:
            typer.echo(text)
            return
        from reluscope.io import atomic_write

        with atomic_write(out_file, "w") as f:
            f.write(text + "\n")
        typer.echo(f"wrote {out_file}")
        return
    out = console()
    sections = rich_sections(ex)
    interactive = step and sys.stdin.isatty() and out.is_terminal
    for i, (_title, renderable) in enumerate(sections):
        out.print(renderable)
        if interactive and i < len(sections) - 1:
            out.input("[dim]Enter: next step (Ctrl-C to stop)[/dim] ")


def _activation(weights: Path | None, activation: str | None, slope: float | None) -> tuple[str, float]:
    """--activation and --slope, defaulting to what a reluscope model file was trained with (a file of bare arrays
    has no activation: ReLU unless told). A model file and a different --activation is a contradiction: refused."""
    from reluscope.io import model_config

    config = model_config(weights) if weights is not None else None
    if config is None:
        return activation or "relu", 0.01 if slope is None else slope
    saved = str(config.get("activation", "relu"))
    if activation is not None and activation != saved:
        raise ValueError(
            f"--weights {weights} is a model trained with activation {saved!r}, but --activation {activation} was "
            f"given; drop --activation (or pass --activation {saved}) to explain the model as it is"
        )
    return saved, float(config.get("slope", 0.01)) if slope is None else slope
