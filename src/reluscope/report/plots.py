"""Figures (the only module of reluscope that imports matplotlib).

Every function draws on a fresh :class:`matplotlib.figure.Figure` attached to an Agg canvas (no pyplot, no global
backend switch, nothing shown on screen) and returns a :class:`Plot`: the figure **and the data behind it**, as
plain lists and dicts, so that callers (and tests) can check what is drawn, not only that something is.
:func:`to_png` renders a figure to PNG bytes.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from numpy.typing import NDArray

from reluscope.nn import get_spec

if TYPE_CHECKING:
    from reluscope.explain import Circuit

__all__ = [
    "Plot",
    "plot_accuracy_vs_lr",
    "plot_born_dead",
    "plot_circuit",
    "plot_continual",
    "plot_dead_fraction_history",
    "plot_dead_over_training",
    "plot_dead_vs_lr",
    "plot_fire_rate_heatmap",
    "plot_fire_rate_histogram",
    "plot_training_curves",
    "save_plots",
    "to_png",
]

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
_LINESTYLES = ("-", "--", ":", "-.")


def _activation_colour(name: str) -> str | None:
    """The registry's colour of activation ``name`` (one per activation across every figure: ReLU red, leaky
    blue), None for a name the registry does not know."""
    try:
        return get_spec(name).colour
    except (ValueError, TypeError):
        return None


def _style(groups: Sequence[Sequence[Mapping[str, Any]]], i: int) -> tuple[str, str]:
    """(colour, linestyle) of group i: the activation's colour, one linestyle per init and remedy variant
    (``relu+redo`` is drawn in ReLU's colour with the next linestyle)."""
    act, init = groups[i][0]["activation"], groups[i][0]["init"]
    base, _, remedy = str(act).partition("+")
    styles = list(dict.fromkeys((g[0]["init"], str(g[0]["activation"]).partition("+")[2]) for g in groups))
    color = _activation_colour(base) or _COLORS[i % len(_COLORS)]
    return color, _LINESTYLES[styles.index((init, remedy)) % len(_LINESTYLES)]


class Plot(NamedTuple):
    """A figure and the data it shows (JSON-ready)."""

    figure: Figure
    data: dict[str, Any]


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure, *, dpi: int = 100) -> bytes:
    """Render ``fig`` to PNG bytes (Agg)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _nan(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def _group_summary(
    summary: Sequence[Mapping[str, Any]], layer: str | None
) -> tuple[str, list[list[Mapping[str, Any]]]]:
    """Rows of one layer grouped by (activation, init), each sorted by lr."""
    if not summary:
        raise ValueError("the sweep summary is empty: no finished cells to plot; run (or finish) the sweep first")
    layers = list(dict.fromkeys(r["layer"] for r in summary))
    layer = layers[0] if layer is None else layer
    if layer not in layers:
        raise ValueError(f"no layer {layer!r} in the sweep summary; layers are {layers}")
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in summary:
        if r["layer"] == layer:
            groups.setdefault((r["activation"], r["init"]), []).append(r)
    return layer, [sorted(g, key=lambda r: r["lr"]) for g in groups.values()]


def _label(activation: str, init: str, several_inits: bool) -> str:
    return f"{activation} ({init} init)" if several_inits else activation


def _series_head(groups: Sequence[Sequence[Mapping[str, Any]]], i: int) -> dict[str, Any]:
    """The first keys of group i's series in the learning-rate figures: label, activation, init and lr."""
    g = groups[i]
    several = len({h[0]["init"] for h in groups}) > 1
    return {
        "label": _label(g[0]["activation"], g[0]["init"], several),
        "activation": g[0]["activation"],
        "init": g[0]["init"],
        "lr": [r["lr"] for r in g],
    }


def plot_dead_vs_lr(summary: Sequence[Mapping[str, Any]], layer: str | None = None) -> Plot:
    """Dead fraction vs learning rate, one line per activation (and init), error bars ±1 std over seeds.

    Two panels: units that **never fired** on the training set (dead by firing; the count ``diagnose`` reports)
    and units that **receive no gradient** on any sample (stuck for good: the same units for ReLU, none for leaky
    ReLU). Learning rates where some seed diverged are circled.

    ``summary`` are the rows of :func:`reluscope.experiments.summarize_sweep`; ``layer`` defaults to the first.
    Data: ``layer`` and ``series`` (label, activation, init, lr, dead_mean, dead_std, no_gradient_mean,
    no_gradient_std, n_diverged, n).
    """
    layer, groups = _group_summary(summary, layer)
    fig = _figure(10, 4)
    ax_dead, ax_grad = fig.subplots(1, 2, sharey=True)
    series = []
    for i, g in enumerate(groups):
        color, style = _style(groups, i)
        s = {
            **_series_head(groups, i),
            "dead_mean": [r["dead_fraction_mean"] for r in g],
            "dead_std": [r["dead_fraction_std"] for r in g],
            "no_gradient_mean": [r["no_gradient_fraction_mean"] for r in g],
            "no_gradient_std": [r["no_gradient_fraction_std"] for r in g],
            "n_diverged": [r["n_diverged"] for r in g],
            "n": [r["n"] for r in g],
        }
        series.append(s)
        for ax, key in ((ax_dead, "dead"), (ax_grad, "no_gradient")):
            mean, std = _nan(s[f"{key}_mean"]), _nan(s[f"{key}_std"])
            ax.errorbar(s["lr"], mean, yerr=std, color=color, ls=style, marker="o", ms=4, capsize=3, label=s["label"])
            div = [k for k, n in enumerate(s["n_diverged"]) if n]
            if div:
                ax.scatter(
                    [s["lr"][k] for k in div], [mean[k] for k in div], s=120, facecolors="none", edgecolors=color
                )
    for ax, title in (
        (ax_dead, f"never fired on the training set ({layer})"),
        (ax_grad, f"receive no gradient on any sample ({layer})"),
    ):
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    ax_dead.set_ylabel("fraction of units (mean ± std over seeds)")
    ax_dead.legend(fontsize=8, title="circled: a seed diverged", title_fontsize=7)
    return Plot(fig, {"layer": layer, "series": series})


def plot_accuracy_vs_lr(
    summary: Sequence[Mapping[str, Any]], layer: str | None = None, *, n_classes: int | None = None
) -> Plot:
    """Final training (solid markers) and validation (dashed, faded) accuracy vs learning rate, ±1 std over seeds.

    Accuracy is per cell, so ``layer`` only selects which rows to read (all layers carry the same accuracy).
    ``n_classes`` draws the chance level 1/C. Data: ``series`` (label, lr, train_mean, train_std, val_mean,
    val_std) and ``chance``.
    """
    _, groups = _group_summary(summary, layer)
    fig = _figure(6, 4)
    ax = fig.subplots()
    series = []
    for i, g in enumerate(groups):
        color, style = _style(groups, i)
        s = {
            **_series_head(groups, i),
            "train_mean": [r["train_accuracy_mean"] for r in g],
            "train_std": [r["train_accuracy_std"] for r in g],
            "val_mean": [r["val_accuracy_mean"] for r in g],
            "val_std": [r["val_accuracy_std"] for r in g],
        }
        series.append(s)
        ax.errorbar(
            s["lr"],
            _nan(s["train_mean"]),
            yerr=_nan(s["train_std"]),
            color=color,
            ls=style,
            marker="o",
            ms=4,
            capsize=3,
            label=f"{s['label']} train",
        )
        if any(v is not None for v in s["val_mean"]):
            ax.errorbar(
                s["lr"],
                _nan(s["val_mean"]),
                yerr=_nan(s["val_std"]),
                color=color,
                ls="--",
                alpha=0.6,
                marker="s",
                ms=3,
                capsize=3,
                label=f"{s['label']} validation",
            )
    chance = None if n_classes is None else 1.0 / n_classes
    if chance is not None:
        ax.axhline(chance, color="grey", lw=1, ls=":", label=f"chance (1/{n_classes})")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("accuracy (mean ± std over seeds)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("final accuracy", fontsize=10)
    return Plot(fig, {"series": series, "chance": chance})


def plot_dead_over_training(series: Sequence[Mapping[str, Any]], *, layer: str = "hidden1") -> Plot:
    """Dead fraction (never fired on the training set) over training: one panel per activation and init, one line
    per learning rate (darker = larger), averaged over seeds.

    ``series`` are the rows of :func:`reluscope.experiments.dead_over_training`. Data: ``panels`` (activation,
    init, lines: lr, epochs, mean).
    """
    if not series:
        raise ValueError("nothing to plot: no dead-fraction history in the sweep")
    keys = list(dict.fromkeys((s["activation"], s["init"]) for s in series))
    lrs = sorted({s["lr"] for s in series})
    fig = _figure(min(5.0 * len(keys), 15.0), 3.8)
    axes = np.atleast_1d(fig.subplots(1, len(keys), sharey=True, squeeze=False)[0])
    cmap = _colormap("viridis_r")
    panels = []
    for ax, (act, init) in zip(axes, keys, strict=True):
        lines = []
        for s in sorted((s for s in series if (s["activation"], s["init"]) == (act, init)), key=lambda s: s["lr"]):
            shade = lrs.index(s["lr"]) / max(len(lrs) - 1, 1)
            ax.plot(s["epochs"], s["mean"], color=cmap(0.1 + 0.85 * shade), lw=1.5, label=f"lr {s['lr']:g}")
            lines.append({"lr": s["lr"], "epochs": list(s["epochs"]), "mean": list(s["mean"])})
        panels.append({"activation": act, "init": init, "lines": lines})
        ax.set_title(f"{act}, {init} init ({layer})", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction never firing on the training set")
    axes[-1].legend(fontsize=7, loc="center right")
    return Plot(fig, {"layer": layer, "panels": panels})


def _colormap(name: str) -> Any:
    from matplotlib import colormaps

    return colormaps[name]


def plot_born_dead(rows: Sequence[Mapping[str, Any]]) -> Plot:
    """P(born dead) vs depth: one panel per init variant, one colour per width; the closed form as a line, the
    Monte Carlo estimate as points with their confidence interval.

    ``rows`` are from :func:`reluscope.experiments.born_dead_study`. Data: ``panels`` (init, bias, widths: width,
    depth, p_hat, lo, hi, closed_form).
    """
    if not rows:
        raise ValueError("nothing to plot: the born-dead study has no rows")
    inits = list(dict.fromkeys(r["init"] for r in rows))
    fig = _figure(min(4.5 * len(inits), 15.0), 3.8)
    axes = np.atleast_1d(fig.subplots(1, len(inits), sharey=True, squeeze=False)[0])
    panels = []
    for ax, init in zip(axes, inits, strict=True):
        mine = [r for r in rows if r["init"] == init]
        widths = list(dict.fromkeys(r["width"] for r in mine))
        entries = []
        for i, w in enumerate(widths):
            pts = sorted((r for r in mine if r["width"] == w), key=lambda r: r["depth"])
            color = _COLORS[i % len(_COLORS)]
            e = {
                "width": w,
                "depth": [r["depth"] for r in pts],
                "p_hat": [r["p_hat"] for r in pts],
                "lo": [r["lo"] for r in pts],
                "hi": [r["hi"] for r in pts],
                "closed_form": [r["closed_form"] for r in pts],
            }
            entries.append(e)
            # with a bias shift the closed form is only the zero-bias reference: draw it faint
            ref_alpha = 0.35 if mine[0]["bias"] else 1.0
            ax.plot(e["depth"], e["closed_form"], color=color, lw=1.2, ls="--", alpha=ref_alpha)
            err = np.array([np.subtract(e["p_hat"], e["lo"]), np.subtract(e["hi"], e["p_hat"])])
            ax.errorbar(e["depth"], e["p_hat"], yerr=err, color=color, fmt="o", ms=3.5, capsize=2, label=f"width {w}")
        bias = mine[0]["bias"]
        panels.append({"init": init, "bias": bias, "widths": entries})
        ax.set_title(
            f"{init}" + (f" (biases {bias:g}; faint: zero-bias closed form)" if bias else " (zero biases)"), fontsize=10
        )
        ax.set_xlabel("hidden layers (depth)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("P(born dead)")
    axes[0].legend(fontsize=8, title="points: Monte Carlo\ndashed: closed form", title_fontsize=7)
    return Plot(fig, {"panels": panels})


def _heatmap_order(rates: NDArray[np.float64]) -> NDArray[np.intp]:
    """Row order for a (U, R) fire-rate matrix: live units first (busiest at the end on top), then the units dead
    at the last record, ordered by when their final dead stretch began (so the dead block forms a staircase)."""
    dead_end = rates[:, -1] == 0
    # index of the first record of the trailing run of zeros
    alive_any = rates > 0
    last_alive = np.where(alive_any.any(axis=1), rates.shape[1] - 1 - np.argmax(alive_any[:, ::-1], axis=1), -1)
    live = np.flatnonzero(~dead_end)
    dead = np.flatnonzero(dead_end)
    live = live[np.argsort(-rates[live, -1], kind="stable")]
    dead = dead[np.argsort(-last_alive[dead], kind="stable")]
    return np.concatenate([live, dead]).astype(np.intp)


def plot_fire_rate_heatmap(
    epochs: Sequence[int], fire_counts: Mapping[str, Any], n_samples: int, *, title: str | None = None
) -> Plot:
    """Per layer, a unit x time heat map of the fire rate (fraction of training samples on which the unit fired).

    A unit that fired on no sample is drawn black, so a dead unit is a solid black row from the scan where it died.
    Rows are sorted: live units first, then the dead ones by when they died (a staircase).

    Parameters
    ----------
    epochs
        (R,) epochs of the scans.
    fire_counts
        Per layer, (R, U) fire counts (e.g. ``UnitHistory.fire_counts``).
    n_samples
        Samples per scan.

    Data: per layer (``layers``): ``order`` (unit ids top to bottom), ``rates`` (U, R) in that order,
    ``dead_at_end`` (units dead at the last scan), ``dead_rows`` (units dead at every scan: solid rows),
    ``died_at`` (per row, the epoch its final dead stretch began, None if alive at the end).
    """
    if not fire_counts:
        raise ValueError("no layers to plot: fire_counts is empty")
    if n_samples <= 0:
        raise ValueError(f"n_samples must be > 0, got {n_samples}")
    ep = np.asarray(epochs, dtype=np.float64)
    names = list(fire_counts)
    fig = _figure(7, 1.0 + 2.8 * len(names))
    axes = np.atleast_1d(fig.subplots(len(names), 1, squeeze=False)[:, 0])
    cmap = _colormap("viridis").with_extremes(under="black")
    norm = Normalize(vmin=0.5 / n_samples, vmax=1.0)  # a rate of exactly 0 falls "under": black
    edges = _cell_edges(ep)
    out: dict[str, Any] = {}
    mesh = None
    for ax, name in zip(axes, names, strict=True):
        counts = np.asarray(fire_counts[name], dtype=np.float64)
        if counts.ndim != 2 or counts.shape[0] != ep.size:
            raise ValueError(
                f"fire_counts[{name!r}] must be (records, units) = ({ep.size}, U), got shape {counts.shape}"
            )
        rates = (counts / n_samples).T  # (U, R)
        order = _heatmap_order(rates)
        rates = rates[order]
        alive = rates > 0
        last_alive = np.where(alive.any(axis=1), rates.shape[1] - 1 - np.argmax(alive[:, ::-1], axis=1), -1)
        died_at = [
            None if rates[u, -1] > 0 else int(ep[last_alive[u] + 1]) if last_alive[u] + 1 < ep.size else None
            for u in range(rates.shape[0])
        ]
        mesh = ax.pcolormesh(edges, np.arange(rates.shape[0] + 1), rates, cmap=cmap, norm=norm, shading="flat")
        ax.invert_yaxis()
        ax.set_ylabel(f"{name} units\n(sorted)")
        n_dead_end = int(np.count_nonzero(rates[:, -1] == 0))
        ax.set_title(f"{name}: {n_dead_end}/{rates.shape[0]} units dead at the end (black = never fired)", fontsize=10)
        out[name] = {
            "order": order.tolist(),
            "rates": rates.tolist(),
            "dead_at_end": n_dead_end,
            "dead_rows": int(np.count_nonzero(~alive.any(axis=1))),
            "died_at": died_at,
        }
    axes[-1].set_xlabel("epoch")
    if title:
        fig.suptitle(title, fontsize=11)
    assert mesh is not None
    cbar = fig.colorbar(mesh, ax=list(axes), extend="min", shrink=0.9)
    cbar.set_label("fire rate on the training set")
    return Plot(fig, {"epochs": [int(e) for e in ep], "n_samples": int(n_samples), "layers": out})


def _cell_edges(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Edges of cells centred on sorted points x (R,) -> (R + 1,)."""
    if x.size == 1:
        return np.array([x[0] - 0.5, x[0] + 0.5])
    mid = (x[:-1] + x[1:]) / 2
    return np.concatenate([[x[0] - (mid[0] - x[0])], mid, [x[-1] + (x[-1] - mid[-1])]])


def plot_fire_rate_histogram(rates: Mapping[str, Any], *, bins: int = 20, title: str | None = None) -> Plot:
    """Per layer, a histogram of the units' fire rates; dead units (rate exactly 0) get their own red bar.

    ``rates`` maps a layer name to a (U,) array of fire rates in [0, 1] (``ActivationStats.frequency``).
    Data: per layer, ``edges`` (bins + 1,), ``counts`` (bins,) of the live units, ``n_dead`` and ``n_units``.
    """
    if not rates:
        raise ValueError("no layers to plot: rates is empty")
    names = list(rates)
    fig = _figure(min(4.2 * len(names), 14.0), 3.4)
    axes = np.atleast_1d(fig.subplots(1, len(names), squeeze=False)[0])
    edges = np.linspace(0.0, 1.0, bins + 1)
    out = {}
    for ax, name in zip(axes, names, strict=True):
        r = np.asarray(rates[name], dtype=np.float64)
        if r.ndim != 1 or ((r < 0) | (r > 1)).any():
            raise ValueError(f"rates[{name!r}] must be a (units,) array of fire rates in [0, 1]")
        dead = r == 0
        counts, _ = np.histogram(r[~dead], bins=edges)
        width = edges[1] - edges[0]
        ax.bar(edges[:-1], counts, width=width, align="edge", color=_COLORS[0], edgecolor="white", label="live units")
        ax.bar([-width], [int(dead.sum())], width=width * 0.9, align="edge", color="#d62728", label="dead (rate 0)")
        ax.set_xlim(-1.2 * width, 1.0)
        ax.set_xlabel("fire rate (fraction of samples with pre-activation > 0)")
        ax.set_title(f"{name}: {int(dead.sum())}/{r.size} dead", fontsize=10)
        ax.grid(alpha=0.3, axis="y")
        out[name] = {
            "edges": edges.tolist(),
            "counts": counts.tolist(),
            "n_dead": int(dead.sum()),
            "n_units": int(r.size),
        }
    axes[0].set_ylabel("units")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return Plot(fig, {"layers": out})


def plot_dead_fraction_history(epochs: Sequence[int], fractions: Mapping[str, Sequence[float]]) -> Plot:
    """Dead fraction of each layer over training, one line per layer (e.g. ``UnitHistory.dead_fraction``).

    Data: ``epochs`` and ``layers`` ({layer: fractions}).
    """
    if not fractions:
        raise ValueError("no layers to plot: fractions is empty")
    fig = _figure(6, 3.4)
    ax = fig.subplots()
    layers = {}
    for i, (name, values) in enumerate(fractions.items()):
        if len(values) != len(epochs):
            raise ValueError(f"{name}: {len(values)} dead fractions for {len(epochs)} epochs; give one per epoch")
        ax.plot(list(epochs), list(values), color=_COLORS[i % len(_COLORS)], marker=".", label=name)
        layers[name] = [float(v) for v in values]
    ax.set_xlabel("epoch")
    ax.set_ylabel("fraction never firing on the training set")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return Plot(fig, {"epochs": [int(e) for e in epochs], "layers": layers})


def plot_training_curves(history: Mapping[str, Any]) -> Plot:
    """Loss (left) and accuracy (right) per epoch from a :class:`reluscope.train.History` dict.

    Data: ``epoch``, ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy`` (the last two may be empty).
    """
    epoch = list(history.get("epoch", []))
    if not epoch:
        raise ValueError("the history has no epochs to plot (did training stop in the first epoch?)")
    data = {k: list(history.get(k, [])) for k in ("loss", "accuracy", "val_loss", "val_accuracy")}
    fig = _figure(9, 3.4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epoch, _nan(data["loss"]), label="train")
    if data["val_loss"]:
        ax_loss.plot(epoch[: len(data["val_loss"])], _nan(data["val_loss"]), ls="--", label="validation")
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_acc.plot(epoch, data["accuracy"], label="train")
    if data["val_accuracy"]:
        ax_acc.plot(epoch[: len(data["val_accuracy"])], data["val_accuracy"], ls="--", label="validation")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1.02)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return Plot(fig, {"epoch": epoch, **data})


# Continual learning (reluscope.continual) ---------------------------------------------------------------------------
_METHOD_COLORS = {
    "none": "#d62728",
    "l2": "#ff7f0e",
    "redo": "#9467bd",
    "cbp": "#2ca02c",
    "shrink": "#8c564b",
    "leaky": "#1f77b4",
}
_METHOD_LABELS = {
    "none": "plain backprop",
    "l2": "L2",
    "redo": "ReDo",
    "cbp": "Continual Backprop",
    "shrink": "Shrink & Perturb",
    "leaky": "leaky ReLU",
}


def plot_continual(
    series: Mapping[str, Mapping[str, Sequence[float]]], *, ylabel: str, title: str, fraction: bool = True
) -> Plot:
    """One metric after every task of a continual run, one line per method, shaded 95% interval over seeds.

    ``series`` is :func:`reluscope.continual.per_task_series` (``{method: {"task", "mean", "lo", "hi", ...}}``);
    ``fraction`` fixes the y axis to [0, 1]. Data: ``series`` as given (lists), ``ylabel``, ``title``.
    """
    if not series:
        raise ValueError("no continual cells to plot: run `reluscope continual` (or finish it) first")
    fig = _figure(7, 4)
    ax = fig.subplots()
    data: dict[str, dict[str, list[float]]] = {}
    for i, (method, s) in enumerate(series.items()):
        color = _METHOD_COLORS.get(method, _COLORS[i % len(_COLORS)])
        task = [float(t) for t in s["task"]]
        ax.plot(task, _nan(s["mean"]), color=color, lw=1.5, label=_METHOD_LABELS.get(method, method))
        ax.fill_between(task, _nan(s["lo"]), _nan(s["hi"]), color=color, alpha=0.2, lw=0)
        data[method] = {k: [float(v) for v in vals] for k, vals in s.items()}
    ax.set_xlabel("task")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if fraction:
        ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return Plot(fig, {"series": data, "ylabel": ylabel, "title": title})


def plot_circuit(circuit: Circuit) -> Plot:
    """Draw a laid-out backprop circuit (:func:`reluscope.explain.circuit`) with matplotlib, for a PNG.

    The same boxes, lines and labels as :func:`reluscope.explain.render_svg` (1 pixel of the layout = 1/100 inch,
    so ``to_png(fig, dpi=100)`` has the layout's size). Data: ``level``, ``sample``, ``width``, ``height`` and
    ``labels`` (every label's text, in drawing order).
    """
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
    from matplotlib.patheffects import withStroke

    from reluscope.explain import Box, Line

    fig = Figure(figsize=(circuit.width / 100, circuit.height / 100))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, circuit.width)
    ax.set_ylim(circuit.height, 0)
    ax.axis("off")
    halo = [withStroke(linewidth=3, foreground="white")]
    labels: list[str] = []
    for z, item in enumerate(circuit.items):
        if isinstance(item, Box):
            ax.add_patch(
                FancyBboxPatch(
                    (item.x, item.y),
                    item.w,
                    item.h,
                    boxstyle="round,pad=0,rounding_size=6",
                    facecolor=item.fill,
                    edgecolor=item.stroke,
                    linewidth=item.width * 0.75,
                    linestyle="--" if item.dashed else "-",
                    zorder=z,
                )
            )
        elif isinstance(item, Line):
            ax.add_patch(
                FancyArrowPatch(
                    (item.x1, item.y1),
                    (item.x2, item.y2),
                    arrowstyle="-|>,head_length=5,head_width=2.5" if item.arrow else "-",
                    color=item.color,
                    linewidth=item.width * 0.75,
                    linestyle="--" if item.dashed else "-",
                    shrinkA=0,
                    shrinkB=0,
                    zorder=z,
                )
            )
        else:
            labels.append(item.text)
            ax.text(
                item.x,
                item.y,
                item.text,
                color=item.color,
                fontsize=item.size * 0.72,
                family="monospace",
                fontweight="bold" if item.bold else "normal",
                ha={"start": "left", "middle": "center", "end": "right"}[item.anchor],
                va="baseline",
                path_effects=halo,
                zorder=z,
            )
    data = {
        "level": circuit.level,
        "sample": circuit.sample,
        "width": circuit.width,
        "height": circuit.height,
        "labels": labels,
    }
    return Plot(fig, data)


def save_plots(plots: Mapping[str, Plot], out: str | os.PathLike[str], *, dpi: int = 100) -> list[Path]:
    """Write each plot as ``out/<name>.png`` (atomically); returns the paths."""
    from reluscope.io import atomic_write

    paths = []
    for name, plot in plots.items():
        path = Path(out) / f"{name}.png"
        png = to_png(plot.figure, dpi=dpi)
        with atomic_write(path) as f:
            f.write(png)
        paths.append(path)
    return paths
