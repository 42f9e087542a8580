"""Renderers for an :class:`~reluscope.explain.Explanation`: JSON, markdown and rich terminal output.

All three return values (strings, or rich renderables); none prints. rich is imported inside
:func:`rich_sections` only, so ``import reluscope.explain`` stays free of it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from reluscope.explain._format import fmt

if TYPE_CHECKING:  # the renderers read an Explanation; only _build makes one
    from rich.console import RenderableType
    from rich.table import Table

    from reluscope.explain._build import Explanation, Step

__all__ = ["fmt", "render_json", "render_markdown", "rich_sections"]

MAX_ROWS = 12
MAX_COLS = 12


# Shared text ------------------------------------------------------------------------------------------------------
def _shape(shape: tuple[int, ...]) -> str:
    return "scalar" if not shape else str(tuple(shape))


def _title(ex: Explanation) -> str:
    D, H, C = ex.sizes
    act = ex.activation["name"]
    units = "unit" if H == 1 else "units"
    return (
        f"Backprop step by step: {D} inputs → {H} {act} hidden {units} → {C} classes, "
        f"N = {ex.n_samples} sample{'s' if ex.n_samples != 1 else ''}"
    )


def _source_line(ex: Explanation) -> str:
    parts = [f"{k}: {v}" for k, v in ex.source.items()]
    parts.append("indices start at 0")
    if ex.reg:
        parts.append(f"L2 reg = {ex.reg:g}")
    return "; ".join(parts)


def _highlight(ex: Explanation, step: Step) -> NDArray[np.bool_] | None:
    """Entries to mark: units that did not fire (z1 <= 0) in (sample, unit) steps, dead units elsewhere."""
    fired = ex.gate.fired
    dead = np.asarray(~fired.any(axis=0), dtype=bool)
    if step.axes == ("sample", "unit"):
        return ~fired
    if step.axes == ("input", "unit"):
        return np.broadcast_to(dead[None, :], step.value.shape)
    if step.axes == ("unit", "class"):
        return np.broadcast_to(dead[:, None], step.value.shape)
    if step.axes == ("unit",):
        return dead
    return None


def _column_rows(ex: Explanation) -> list[tuple[str, str, str]]:
    s = ex.column.sample
    relu = ex.activation["name"] == "relu"
    f = "max(0, {})" if relu else "f({})"
    gate_b = "[z1 > 0]" if relu else "f'(z1)"
    gate_c = "(z > 0)" if relu else "f'(W·x + b)"
    return [
        ("input", "X (N×D), one sample per row", f"x = X[{s}] as a column (D)"),
        ("weights", "W1 (D×H)", "W = W1ᵀ (H×D)"),
        ("pre-activation", "z1 = X · W1 + b1 (N×H)", f"W·x + b = z1[{s}]ᵀ (H)"),
        ("activation", "h = " + f.format("z1"), "z = " + f.format("W·x + b")),
        ("local gradient", f"{gate_b} (N×H)", ("outer(z > 0, x)" if relu else "outer(f'(W·x + b), x)") + " (H×D)"),
        ("upstream", "dh (N×H)", f"upstream = dh[{s}] (H)"),
        ("through the gate", f"dz1 = dh ⊙ {gate_b}", f"dz = upstream ⊙ {gate_c}"),
        ("weight gradient", "dW1 = Xᵀ · dz1 (D×H), all samples", "dW = outer(dz, x) (H×D), this sample"),
        ("relation", f"sample {s}'s part of dW1: outer(X[{s}], dz1[{s}])", "dW = that part, transposed"),
    ]


def _column_check(ex: Explanation) -> str:
    c = ex.column
    ok = "equal" if c.matches else "DIFFERENT"
    return (
        f"check: dW and the batch form's contribution of sample {c.sample} transposed are {ok} "
        f"(max |difference| {fmt(c.max_abs_diff)}); summed over all samples, Σ_n outer(dz_n, x_n) = "
        f"(Xᵀ · dz1)ᵀ (max |difference| {fmt(c.sum_max_abs_diff)})"
    )


def _gradcheck_line(ex: Explanation) -> str:
    g = ex.gradcheck
    unchecked = g.get("unchecked", [])
    agreeing = all(p["rel_error"] < g["tol"] or p["max_abs_error"] <= g["abs_tol"] for p in g["params"].values())
    verdict = "passed" if g["ok"] else ("INCOMPLETE" if unchecked and agreeing else "FAILED")
    kinks = g["total_kinks"]
    kink_text = (
        f"; {kinks} entr{'y' if kinks == 1 else 'ies'} sat on a kink (a ±h nudge changes which units fire) and "
        "are reported apart, not checked"
        if kinks
        else ""
    )
    skipped_text = "".join(
        f"; {k} was not checked at all: all {g['params'][k]['kinks']} of its sampled entries sat on a kink, so "
        "nothing vouches for its gradient (move the inputs off z1 = 0 to check it)"
        for k in unchecked
    )
    near_zero = [k for k, p in g["params"].items() if p["ok"] and p["rel_error"] >= g["tol"]]
    zero_text = (
        f"; {', '.join(near_zero)}: both gradients are 0 up to rounding (absolute error <= {g['abs_tol']:g}), where a "
        "relative error means nothing"
        if near_zero
        else ""
    )
    return (
        f"numerical gradient check {verdict}: max relative error {g['max_rel_error']:.2e} "
        f"(tolerance {g['tol']:g}, centred differences with h = {g['h']:g}){kink_text}{skipped_text}{zero_text}; "
        f"the step-by-step gradients equal MLP.backward's to {fmt(ex.engine_max_abs_diff)}"
    )


GRADCHECK_HEADER = ["parameter", "entries checked", "kinks", "relative error", "max abs error", "at kinks (rel.)"]


def _gradcheck_rows(ex: Explanation) -> list[list[str]]:
    rows = []
    for key, p in ex.gradcheck["params"].items():
        kink = "-" if p["kink_rel_error"] is None else f"{p['kink_rel_error']:.2e}"
        rows.append(
            [key, str(p["checked"]), str(p["kinks"]), f"{p['rel_error']:.2e}", f"{p['max_abs_error']:.1e}", kink]
        )
    return rows


def _sgd_lines(ex: Explanation) -> list[str]:
    s = ex.sgd
    change = s.loss_after - s.loss_before
    lines = [
        f"p ← p − lr · dp for every parameter, lr = {s.lr:g}: loss {s.loss_before:.6f} → {s.loss_after:.6f} "
        f"({'+' if change >= 0 else '−'}{abs(change):.6f})"
    ]
    if change >= 0:
        lines.append("the loss went up: the step was too large for this curvature; try a smaller --lr")
    if s.frozen_units:
        lines.append(
            f"unit{'s' if len(s.frozen_units) > 1 else ''} {', '.join(map(str, s.frozen_units))}: incoming weights "
            "and bias did not move at all (zero gradient from every sample)"
        )
    before, after = ex.gate.fired, s.fired_after
    for n, j in zip(*np.nonzero(before != after), strict=True):
        now = "fires" if after[n, j] else "no longer fires"
        lines.append(f"after the step unit {j} {now} on sample {n}")
    return lines


def _gate_cell(ex: Explanation, n: int, j: int) -> tuple[str, str]:
    """(status, z1 text) of unit j on sample n."""
    z = ex.step("z1").value[n, j]
    if ex.gate.fired[n, j]:
        return "fired", fmt(z)
    return ("at 0" if ex.gate.at_zero[n, j] else "off"), fmt(z)


def _truncate(value: NDArray[Any], max_rows: int, max_cols: int) -> tuple[NDArray[Any], bool, bool]:
    v = value if value.ndim == 2 else value.reshape(1, -1)
    more_rows = v.shape[0] > max_rows
    more_cols = v.shape[1] > max_cols
    return v[:max_rows, :max_cols], more_rows, more_cols


def _row_label(axes: tuple[str, ...], i: int) -> str:
    return f"{axes[0]} {i}" if axes else str(i)


# JSON ---------------------------------------------------------------------------------------------------------
def _dumps(obj: Any, indent: int = 0) -> str:
    """JSON with dicts indented and numeric (nested) lists kept on one line each row."""
    pad = "  " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{pad}  {json.dumps(k)}: {_dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list):
        if all(not isinstance(v, dict | list) for v in obj):
            return json.dumps(obj, allow_nan=False)
        if all(isinstance(v, list) and all(not isinstance(w, dict | list) for w in v) for v in obj):
            rows = [f"{pad}  {json.dumps(v, allow_nan=False)}" for v in obj]
            return "[\n" + ",\n".join(rows) + "\n" + pad + "]"
        items = [f"{pad}  {_dumps(v, indent + 1)}" for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj, allow_nan=False)


GATE_OFF_HEADER = ["sample", "unit", "z1", "f'(z1)", "dh", "dz1", "this sample's part of dW1[:, unit]", "of db1[unit]"]


def _gate_off_rows(ex: Explanation, limit: int) -> list[list[str]]:
    """The first ``limit`` (sample, unit) pairs that did not fire, as table rows under :data:`GATE_OFF_HEADER`."""
    return [
        [
            str(e.sample),
            str(e.unit),
            fmt(e.z),
            fmt(e.local_grad),
            fmt(e.upstream),
            fmt(e.dz),
            "[" + ", ".join(fmt(v) for v in e.dW1) + "]",
            fmt(e.db1),
        ]
        for e in ex.gate.off[:limit]
    ]


def render_json(ex: Explanation) -> str:
    """The explanation as JSON (every array as nested lists); ``json.loads`` gives back ``ex.to_dict()``."""
    return _dumps(ex.to_dict())


# Markdown -----------------------------------------------------------------------------------------------------
def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> list[str]:
    align = align or ["---"] * len(header)
    out = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return out


def _md_matrix(
    name: str,
    value: NDArray[Any],
    axes: tuple[str, ...],
    mark: NDArray[np.bool_] | None = None,
    *,
    max_rows: int = MAX_ROWS,
    max_cols: int = MAX_COLS,
) -> list[str]:
    if value.ndim == 0:
        return [f"`{name}` = **{fmt(float(value))}**"]
    shown, more_rows, more_cols = _truncate(np.asarray(value), max_rows, max_cols)
    marks = None if mark is None else _truncate(np.asarray(mark), max_rows, max_cols)[0]
    col_axis = axes[-1] if axes else ""
    header = [name] + [f"{col_axis} {j}" for j in range(shown.shape[1])] + (["…"] if more_cols else [])
    rows = []
    for i, row in enumerate(shown):
        label = _row_label(axes, i) if value.ndim == 2 else ""
        cells = [f"**{fmt(v)}**" if marks is not None and marks[i, j] else fmt(v) for j, v in enumerate(row)]
        rows.append([label, *cells] + (["…"] if more_cols else []))
    if more_rows:
        rows.append(["…"] * len(header))
    lines = _md_table(header, rows, ["---"] + ["---:"] * (len(header) - 1))
    if more_rows or more_cols:
        lines.append("")
        lines.append(f"*(showing {shown.shape[0]}×{shown.shape[1]} of {value.shape}; `--format json` has all)*")
    return lines


def render_markdown(ex: Explanation, *, max_rows: int = MAX_ROWS, max_cols: int = MAX_COLS) -> str:
    """The explanation as GitHub-flavoured markdown (headings, pipe tables, fenced code): paste it into notes.

    Matrices larger than ``max_rows`` × ``max_cols`` are cut with an ellipsis (the JSON output is never cut).
    """

    def matrix(name: str, value: NDArray[Any], axes: tuple[str, ...], mark: NDArray[np.bool_] | None = None) -> None:
        lines.extend(_md_matrix(name, value, axes, mark, max_rows=max_rows, max_cols=max_cols))
        lines.append("")

    lines: list[str] = [f"# {_title(ex)}", "", _source_line(ex) + ".", ""]
    for w in ex.warnings:
        lines += [f"> **Warning:** {w}.", ""]

    lines += ["## Inputs and parameters", ""]
    matrix("X", ex.X, ("sample", "input"))
    lines += [f"`y` = `{[int(v) for v in ex.y]}` (the true class of each sample)", ""]
    for key, axes in (("W1", ("input", "unit")), ("b1", ("unit",)), ("W2", ("unit", "class")), ("b2", ("class",))):
        matrix(key, ex.params[key], axes)

    act = ex.activation["name"]
    lines += [
        "**Bold** marks hidden units that did not fire (z1 ≤ 0) or, in per-unit gradients, units that fired "
        "on no sample.",
        "",
    ]
    for phase, steps in (("Forward pass", ex.forward), ("Backward pass", ex.backward)):
        lines += [f"## {phase}", ""]
        for i, step in enumerate(steps, start=1):
            lines += [f"### {i}. {step.title}", "", "```text", step.formula, "```", ""]
            lines += [f"shape {_shape(step.shape)}" + (f" — {step.note}" if step.note else ""), ""]
            matrix(step.key, step.value, step.axes, _highlight(ex, step))

    g = ex.gate
    lines += [f"## The {act} gate: which units fired", "", g.convention + ".", ""]
    n_samples, n_units = g.fired.shape
    if n_samples <= max_rows and n_units <= max_cols:
        rows = []
        for n in range(n_samples):
            cells = []
            for j in range(n_units):
                status, z = _gate_cell(ex, n, j)
                cells.append(f"fired ({z})" if status == "fired" else f"**{status}** ({z})")
            rows.append([f"sample {n}", *cells])
        lines += [*_md_table(["z1", *[f"unit {j}" for j in range(n_units)]], rows), ""]
    if g.off:
        rows = _gate_off_rows(ex, max_rows * 2)
        header = GATE_OFF_HEADER
        lines += [*_md_table(header, rows), ""]
        if len(g.off) > len(rows):
            lines += [f"*(first {len(rows)} of {len(g.off)} units that did not fire; `--format json` has all)*", ""]
    lines += [f"- {note}." for note in g.notes] + [""]
    lines += ["Changing the activation changes one line of backprop — the local derivative:", ""]
    rows = [
        [
            ("**" + a["activation"] + "**") if a["chosen"] else a["activation"],
            f"`{a['f']}`",
            f"`{a['derivative']}`",
            f"`{a['dz1']}`",
        ]
        for a in g.alternatives
    ]
    lines += [*_md_table(["activation", "f(z)", "f'(z)", "the line that changes"], rows), ""]

    c = ex.column
    lines += [f"## Sample {c.sample} in column-vector form (the seed's notation), side by side", ""]
    lines += _md_table(
        ["", "batch form (rows)", f"column form (sample {c.sample})"], [list(r) for r in _column_rows(ex)]
    )
    lines += [""]
    vec_header = ["unit", "W·x + b", "z", "f'" if act != "relu" else "z > 0", "upstream", "dz"]
    vec_rows = [
        [str(j), fmt(c.a[j]), fmt(c.z[j]), fmt(c.mask[j]), fmt(c.upstream[j]), fmt(c.dz[j])]
        for j in range(min(len(c.a), max_rows))
    ]
    lines += [*_md_table(vec_header, vec_rows, ["---"] + ["---:"] * 5), ""]
    matrix("outer(f', x)" if act != "relu" else "outer(z > 0, x)", c.local, ("unit", "input"))
    matrix("dW = outer(dz, x)", c.dW, ("unit", "input"))
    lines += [_column_check(ex) + ".", ""]

    lines += ["## Gradient check", "", _gradcheck_line(ex) + ".", ""]
    lines += [*_md_table(GRADCHECK_HEADER, _gradcheck_rows(ex)), ""]

    lines += [f"## One SGD step (lr = {ex.sgd.lr:g})", ""]
    lines += [f"- {line}." for line in _sgd_lines(ex)] + [""]
    return "\n".join(lines)


# Rich ---------------------------------------------------------------------------------------------------------
def _rich_matrix(
    name: str,
    value: NDArray[Any],
    axes: tuple[str, ...],
    mark: NDArray[np.bool_] | None = None,
    *,
    max_rows: int = MAX_ROWS,
    max_cols: int = MAX_COLS,
) -> Table:
    from rich import box
    from rich.table import Table

    shown, more_rows, more_cols = _truncate(np.asarray(value), max_rows, max_cols)
    marks = None if mark is None else _truncate(np.asarray(mark), max_rows, max_cols)[0]
    caption = f"showing {shown.shape[0]}×{shown.shape[1]} of {value.shape}" if more_rows or more_cols else None
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, caption=caption, caption_justify="left")
    table.add_column(name, style="bold")
    col_axis = axes[-1] if axes else ""
    for j in range(shown.shape[1]):
        table.add_column(f"{col_axis} {j}", justify="right")
    if more_cols:
        table.add_column("…")
    for i, row in enumerate(shown):
        cells = []
        for j, v in enumerate(row):
            text = fmt(v)
            if marks is not None and marks[i, j]:
                text = f"[bold red]{text}[/bold red]"
            elif v < 0:
                text = f"[magenta]{text}[/magenta]"
            cells.append(text)
        label = _row_label(axes, i) if value.ndim == 2 else ""
        table.add_row(label, *cells, *(["…"] if more_cols else []))
    if more_rows:
        table.add_row("…", *["…"] * (shown.shape[1] + more_cols))
    return table


def rich_sections(
    ex: Explanation, *, max_rows: int = MAX_ROWS, max_cols: int = MAX_COLS
) -> list[tuple[str, RenderableType]]:
    """The explanation as a list of ``(title, renderable)``: setup, each forward and backward step, the gate,
    the column-vector form, the gradient check and the SGD step. Print them with a rich console (the CLI pauses
    between them with ``--step``)."""
    from rich.console import Group
    from rich.markup import escape
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    def matrix(name: str, value: NDArray[Any], axes: tuple[str, ...], mark: NDArray[np.bool_] | None = None) -> Any:
        if value.ndim == 0:
            return Text.from_markup(f"[bold]{escape(name)}[/bold] = [bold yellow]{fmt(float(value))}[/bold yellow]")
        return _rich_matrix(name, value, axes, mark, max_rows=max_rows, max_cols=max_cols)

    def simple_table(header: list[str], rows: list[list[str]], **kw: Any) -> Table:
        from rich import box

        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, **kw)
        for h in header:
            table.add_column(Text(h))
        for row in rows:
            table.add_row(*row)
        return table

    sections: list[tuple[str, RenderableType]] = []
    act = ex.activation["name"]

    setup: list[Any] = [
        Text(_title(ex), style="bold"),
        Text(_source_line(ex), style="dim"),
    ]
    setup += [Text.from_markup(f"[bold yellow]warning:[/bold yellow] {escape(w)}") for w in ex.warnings]
    setup += [
        matrix("X", ex.X, ("sample", "input")),
        Text.from_markup(f"[bold]y[/bold] = {[int(v) for v in ex.y]}  (the true class of each sample)"),
    ]
    for key, axes in (("W1", ("input", "unit")), ("b1", ("unit",)), ("W2", ("unit", "class")), ("b2", ("class",))):
        setup.append(matrix(key, ex.params[key], axes))
    setup.append(Text("red: a hidden unit that did not fire (z1 <= 0), or a unit that fired on no sample", style="dim"))
    sections.append(("inputs and parameters", Panel(Group(*setup), title="setup", title_align="left")))

    for phase, steps in (("forward", ex.forward), ("backward", ex.backward)):
        for i, step in enumerate(steps, start=1):
            body: list[Any] = [
                Text(step.formula, style="bold cyan"),
                Text(f"shape {_shape(step.shape)}", style="dim"),
                matrix(step.key, step.value, step.axes, _highlight(ex, step)),
            ]
            if step.note:
                body.append(Text(step.note, style="italic"))
            style = "green" if phase == "forward" else "blue"
            if step.key == "dz1":
                style = "bold red"
            sections.append(
                (
                    step.key,
                    Panel(Group(*body), title=f"{phase} {i}. {step.title}", title_align="left", border_style=style),
                )
            )

    g = ex.gate
    gate_body: list[Any] = [Text(g.convention, style="bold")]
    n_samples, n_units = g.fired.shape
    if n_samples <= max_rows and n_units <= max_cols:
        colours = {"fired": "green", "off": "bold red", "at 0": "bold yellow"}
        rows = []
        for n in range(n_samples):
            cells = []
            for j in range(n_units):
                status, z = _gate_cell(ex, n, j)
                cells.append(f"[{colours[status]}]{status}[/{colours[status]}] ({z})")
            rows.append([f"sample {n}", *cells])
        gate_body.append(simple_table(["z1", *[f"unit {j}" for j in range(n_units)]], rows))
    if g.off:
        rows = [
            [
                str(e.sample),
                str(e.unit),
                fmt(e.z),
                fmt(e.local_grad),
                fmt(e.upstream),
                f"[bold red]{fmt(e.dz)}[/bold red]" if e.exactly_zero else fmt(e.dz),
                escape("[" + ", ".join(fmt(v) for v in e.dW1) + "]"),
                fmt(e.db1),
            ]
            for e in g.off[: max_rows * 2]
        ]
        header = ["sample", "unit", "z1", "f'(z1)", "dh", "dz1", "part of dW1[:, unit]", "of db1[unit]"]
        gate_body.append(
            simple_table(
                header,
                rows,
                title="units that did not fire, and what reached them",
                title_justify="left",
                caption=f"first {len(rows)} of {len(g.off)}" if len(g.off) > len(rows) else None,
                caption_justify="left",
            )
        )
    gate_body += [Text("• " + note, style="yellow" if "dead" in note else "") for note in g.notes]
    alt_rows = [
        [
            f"[bold]{a['activation']}[/bold]" if a["chosen"] else a["activation"],
            escape(a["derivative"]),
            f"[bold cyan]{escape(a['dz1'])}[/bold cyan]" if a["chosen"] else escape(a["dz1"]),
        ]
        for a in g.alternatives
    ]
    gate_body.append(simple_table(["activation", "f'(z)", "the one line of backprop that changes"], alt_rows))
    sections.append(("gate", Panel(Group(*gate_body), title=f"the {act} gate", title_align="left", border_style="red")))

    c = ex.column
    side = simple_table(
        ["", "batch form (rows)", f"column form (sample {c.sample}, seed notation)"],
        [[f"[bold]{escape(a)}[/bold]", escape(b), escape(col)] for a, b, col in _column_rows(ex)],
    )
    vec_rows = [
        [str(j), fmt(c.a[j]), fmt(c.z[j]), fmt(c.mask[j]), fmt(c.upstream[j]), fmt(c.dz[j])]
        for j in range(min(len(c.a), max_rows))
    ]
    vectors = simple_table(["unit", "W·x + b", "z", "f'" if act != "relu" else "z > 0", "upstream", "dz"], vec_rows)
    check_style = "green" if c.matches else "bold red"
    col_body = [
        side,
        vectors,
        matrix("outer(f', x)" if act != "relu" else "outer(z > 0, x)", c.local, ("unit", "input")),
        matrix("dW = outer(dz, x)", c.dW, ("unit", "input")),
        Text(_column_check(ex), style=check_style),
    ]
    sections.append(
        ("column form", Panel(Group(*col_body), title=f"sample {c.sample} in column-vector form", title_align="left"))
    )

    gc_style = "green" if ex.gradcheck["ok"] else "bold red"
    gc_table = simple_table(GRADCHECK_HEADER, _gradcheck_rows(ex))
    sections.append(
        (
            "gradient check",
            Panel(
                Group(Text(_gradcheck_line(ex), style=gc_style), gc_table), title="gradient check", title_align="left"
            ),
        )
    )
    sections.append(
        (
            "sgd",
            Panel(
                Group(*[Text(line) for line in _sgd_lines(ex)]),
                title=f"one SGD step (lr = {ex.sgd.lr:g})",
                title_align="left",
            ),
        )
    )
    return sections
