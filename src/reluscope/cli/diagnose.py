"""``reluscope diagnose``: scan a dataset through a saved model and report the hidden units that never fire."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reluscope.cli._common import (
    ClassesOpt,
    LabelColumnOpt,
    LabelsOpt,
    PerClassOpt,
    console,
    echo_json,
    fail,
    friendly_errors,
    load_data,
)
from reluscope.cli._torch_opts import InputShapeOpt, TorchModelOpt, UnitAxisOpt, WeightsOpt

if TYPE_CHECKING:
    from rich.table import Table

    from reluscope.diagnose import ActivationStats
    from reluscope.remedies import PruneReport

__all__ = ["dead_layer_message", "diagnose", "render_dead_table", "render_worst_units"]


def _colour(fraction: float) -> str:
    return "red" if fraction > 0.5 else ("yellow" if fraction > 0 else "green")


def render_dead_table(
    stats: ActivationStats,
    tau: float = 0.1,
    nearly_dead_threshold: float = 0.01,
    *,
    title: str | None = "hidden units over the dataset",
) -> Table:
    """A rich table, one row per layer: units, dead, dead %, nearly dead, median fire rate, dormant at τ.

    Shared by ``diagnose`` and ``train`` (print it with any rich console).
    """
    from rich.table import Table

    table = Table(
        title=title,
        title_justify="left",
        caption=f"dead: fired on no sample; nearly dead: fired on < {nearly_dead_threshold:g} of samples; "
        f"dormant: mean |activation| <= {tau:g} x the layer's mean",
        caption_justify="left",
    )
    table.add_column("layer")
    for col in ("units", "dead", "dead %", "nearly dead", "median fire rate", "dormant"):
        table.add_column(col, justify="right")
    for row in stats.summary(tau, nearly_dead_threshold):
        c = _colour(row["dead_fraction"])
        table.add_row(
            row["name"],
            str(row["units"]),
            f"[{c}]{row['dead']}[/{c}]",
            f"[{c}]{row['dead_fraction']:.1%}[/{c}]",
            str(row["nearly_dead"]),
            f"{row['median_fire_rate']:.3f}",
            str(row["dormant"]),
        )
    return table


def render_worst_units(worst: list[dict[str, Any]]) -> Table:
    """A rich table of :meth:`ActivationStats.worst_units` rows."""
    from rich.table import Table

    table = Table(title=f"{len(worst)} least active units", title_justify="left")
    for col in ("layer", "unit", "fire rate", "max pre-activation", "dormant score"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for w in worst:
        max_pre = "-" if w["max_pre"] is None else f"{w['max_pre']:.4g}"
        table.add_row(w["layer"], str(w["unit"]), f"{w['fire_rate']:.4f}", max_pre, f"{w['dormant_score']:.3f}")
    return table


def dead_layer_message(stats: ActivationStats, activation: str = "relu", *, torch_model: bool = False) -> str | None:
    """Plain words for the first layer that never fires on any sample, or None if every layer fires somewhere.

    ``torch_model=True`` gives advice a PyTorch user can act on (reluscope.torch remedies, their own init code)
    instead of ``reluscope train`` options."""
    for i, name in enumerate(stats.names):
        if not stats.all_dead(name):
            continue
        if activation != "relu":
            return (
                f"layer {name} has no positive pre-activation on any sample; with {activation} gradient still flows "
                "through the negative side, so it can recover"
            )
        upstream = ", ".join(stats.names[:i]) if i else "the input layer"
        if torch_model:
            return (
                f"site {name} is zero for every sample: nothing upstream of it gets a gradient through it "
                f"({upstream}). If the model is untrained it was born dead: initialise the producing layer's bias "
                "positive in your model code, or swap ReLU for LeakyReLU (reluscope.torch.swap_relu_to_leaky); "
                "if it died in training, recycle its units with reluscope.torch.redo(model, optimizer, stats)"
            )
        return (
            f"layer {name} is zero for every sample: the output is constant and nothing upstream can learn "
            f"(no gradient reaches {name} or {upstream}). If the network is untrained it was born dead: use a "
            "positive --bias-init, fewer/wider layers, or --activation leaky"
        )
    return None


def _torch_pruning(res: Any, stats: ActivationStats, spec: str, prune_out: Path | None) -> PruneReport | str:
    """The torch model's prune report (measured on the example rows the scan kept), written to ``prune_out`` if
    given; without ``prune_out`` a model prune_dead cannot handle gives the reason (a str) instead of an error."""
    from reluscope.cli._torch_diagnose import save_pruned
    from reluscope.torch import prune_dead

    try:
        report = prune_dead(res.module, stats)
    except (ValueError, TypeError) as exc:
        if prune_out is not None:
            raise
        return str(exc)
    if prune_out is not None:
        save_pruned(prune_out, report, spec)
    return report


@friendly_errors
def diagnose(
    model: Annotated[
        Path | None,
        typer.Argument(
            help="Model file (model.npz) written by `reluscope train --out DIR`; for a PyTorch model use "
            "--torch-model instead.",
            show_default=False,
        ),
    ] = None,
    torch_model: TorchModelOpt = None,
    weights: WeightsOpt = None,
    input_shape: InputShapeOpt = None,
    unit_axis: UnitAxisOpt = None,
    device: Annotated[
        str, typer.Option("--device", help="torch device for --torch-model, e.g. cpu or cuda:0.")
    ] = "cpu",
    data: Annotated[
        str,
        typer.Option(
            "--data",
            "-d",
            help="Dataset: 'spiral' (generated), 'digits', a .npz/.csv/IDX file, or (with --torch-model) "
            "pkg.module:loader_factory returning an iterable of batches such as a DataLoader.",
        ),
    ] = "spiral",
    labels: LabelsOpt = None,
    label_column: LabelColumnOpt = "label",
    n_per_class: PerClassOpt = 100,
    n_classes: ClassesOpt = 3,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the generated spiral (use the one given to train).")] = 0,
    standardize: Annotated[
        bool,
        typer.Option(
            help="Standardise features with this dataset's own mean/std. Not needed for models saved by "
            "`reluscope train --standardize`: the training-set statistics stored in model.npz are applied."
        ),
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Samples per forward pass.")] = 1024,
    tau: Annotated[float, typer.Option(min=0.0, help="Dormant threshold τ (Sokar et al. 2023).")] = 0.1,
    nearly_dead: Annotated[
        float, typer.Option("--nearly-dead", min=0.0, max=1.0, help="Fire rate below which a live unit is nearly dead.")
    ] = 0.01,
    max_dead: Annotated[
        float | None,
        typer.Option(
            "--max-dead",
            min=0.0,
            max=1.0,
            help="Exit with code 1 if any layer has a larger dead fraction (a CI gate), e.g. 0.2.",
        ),
    ] = None,
    top: Annotated[int, typer.Option("--top", min=0, help="Show the K least active units.")] = 10,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or tables; exit code only.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the diagnosis as JSON on stdout.")] = False,
    prune_out: Annotated[
        Path | None,
        typer.Option(
            "--prune-out",
            help="Write the model without its dead units (each one's mean output folded into the next layer's "
            "bias, so the outputs stay the same for ReLU): a model.npz for a numpy model; for --torch-model a state "
            "dict of tensors (torch.save, or safetensors if FILE ends in .safetensors) plus FILE.arch.json with the "
            "new layer sizes and the prune report.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Find the hidden units of a trained model that never fire on a dataset (dead), or rarely do.

    Scans the dataset in batches (memory independent of its size) and prints, per layer, the dead and nearly dead
    units, the median fire rate and the τ-dormant units, then the least active units, and what removing the dead
    units would save (units, parameters, multiply-adds per sample); --prune-out writes that smaller model.
    Exit codes: 0 ok, 1 a layer exceeds --max-dead, 2 bad input (model file, data, options).
    """
    from reluscope.cli._progress import make_progress
    from reluscope.data import Standardizer
    from reluscope.diagnose import scan
    from reluscope.io import load_model, load_standardizer

    if prune_out is not None:  # before any work, naming the real path
        from reluscope.io import check_writable

        check_writable(prune_out.parent, option="--prune-out's directory")
    out = console(quiet=quiet or as_json)
    extra: dict[str, Any] = {}
    pruning: PruneReport | str
    if torch_model is not None:
        if model is not None:
            raise ValueError("pass either MODEL (model.npz) or --torch-model, not both")
        try:
            import torch  # noqa: F401
        except ImportError:
            raise ValueError(
                "--torch-model needs PyTorch, which is not installed here: pip install 'reluscope[torch]'"
            ) from None
        from reluscope.cli._torch_diagnose import is_import_string, parse_input_shape, parse_unit_axis, torch_diagnosis

        loader = data if is_import_string(data) else None
        X, name = None, data
        if loader is None:
            ds = load_data(
                data, labels=labels, label_column=label_column, n_per_class=n_per_class, n_classes=n_classes, seed=seed
            )
            X, name = (Standardizer.fit(ds.X).transform(ds.X) if standardize else ds.X), ds.name
        with make_progress(out) as bar:
            task = bar.add_task(f"scanning {name}", total=None, info="")
            res = torch_diagnosis(
                torch_model,
                weights=weights,
                data=loader,
                X=X,
                data_name=name,
                input_shape=parse_input_shape(input_shape),
                batch_size=batch_size,
                device=device,
                unit_axis=parse_unit_axis(unit_axis),
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        stats, activation, title, n_samples = res.stats, res.activation, res.model, res.n_samples
        extra["uninstrumented_sites"] = res.uninstrumented
        pruning = _torch_pruning(res, stats, torch_model, prune_out)
        extra["unit_axes"] = res.axes
    else:
        if model is None:
            raise ValueError(
                "pass MODEL (a model.npz from `reluscope train --out`) or --torch-model pkg.module:factory"
            )
        if weights is not None or input_shape is not None or unit_axis:
            raise ValueError("--weights, --input-shape and --unit-axis go with --torch-model")
        net = load_model(model)
        scaler = load_standardizer(model)
        ds = load_data(
            data, labels=labels, label_column=label_column, n_per_class=n_per_class, n_classes=n_classes, seed=seed
        )
        if ds.n_features != net.sizes[0]:
            raise ValueError(
                f"the model {model} expects {net.sizes[0]} input features but dataset {ds.name} has "
                f"{ds.n_features}; pass the data the model was trained on (--data)"
            )
        if ds.n_classes > net.n_classes:
            raise ValueError(
                f"dataset {ds.name} has {ds.n_classes} classes but the model {model} outputs {net.n_classes}; "
                "was it trained on other data?"
            )
        if scaler is None and standardize:
            scaler = Standardizer.fit(ds.X)
        X = ds.X if scaler is None else scaler.transform(ds.X)
        name, title, activation, n_samples = ds.name, repr(net), net.activation.name, len(X)
        with make_progress(out) as bar:
            task = bar.add_task(f"scanning {name}", total=len(X), info="")
            stats = scan(net, X, batch_size, progress=lambda done, _total: bar.update(task, completed=done))
        from reluscope.io import save_model
        from reluscope.remedies import prune_dead

        pruning = prune_dead(net, stats, X=X[:4096])  # the output change, measured on up to 4096 samples
        if prune_out is not None:
            save_model(prune_out, pruning.model, standardizer=scaler)

    summary = stats.summary(tau, nearly_dead)
    worst = stats.worst_units(top)
    verdict = dead_layer_message(stats, activation, torch_model=torch_model is not None)
    over = [row for row in summary if max_dead is not None and row["dead_fraction"] > max_dead]
    if as_json:
        report = {
            "model": title if model is None else str(model),
            "data": name,
            "n_samples": n_samples,
            "activation": activation,
            **extra,
            "layers": summary,
            "worst_units": worst,
            "fully_dead_layer": next((row["name"] for row in summary if row["all_dead"]), None),
            "message": verdict,
            "max_dead": max_dead,
            "passed": not over,
            "prune": pruning if isinstance(pruning, str) else pruning.to_dict(),
        }
        echo_json(report)
    else:
        out.print(f"{title} on {name}: {n_samples} samples")
        out.print(render_dead_table(stats, tau, nearly_dead))
        for site, where in extra.get("unit_axes", {}).items():
            out.print(f"  {site}: {stats.n_units(site)} units on {where}")
        if worst:
            out.print(render_worst_units(worst))
        if verdict is not None:
            out.print(f"[bold red]{verdict}[/bold red]")
        out.print(f"pruning not estimated: {pruning}" if isinstance(pruning, str) else pruning.summary())
        if prune_out is not None and not isinstance(pruning, str):
            out.print(f"pruned model written to {prune_out}")
    if over:
        names = ", ".join(f"{row['name']} {row['dead_fraction']:.1%}" for row in over)
        assert max_dead is not None
        raise fail(f"dead fraction above --max-dead {max_dead:g}: {names}", code=1)
