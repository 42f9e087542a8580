"""The explanation as one self-contained HTML page: the circuit (inline SVG), every step, the gate, the column form,
the gradient check and the SGD step.

No scripts, no external stylesheets, fonts, images or URLs: the file opens offline. ``step=True`` shows one part at a
time; "previous"/"next" are plain in-page links (``#step-k``) and a CSS ``:target`` rule shows the part they point
at, so stepping needs no JavaScript. :func:`html_fragment` is the same content without ``<html>``/``<head>``, for a
Jupyter cell (``Explanation._repr_html_``). Everything shown comes from the :class:`Explanation`; nothing is
recomputed here.
"""

from __future__ import annotations

import html
import os
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from reluscope.explain._circuit import circuit, render_svg, scalar_fits
from reluscope.explain._render import (
    GATE_OFF_HEADER,
    GRADCHECK_HEADER,
    MAX_COLS,
    MAX_ROWS,
    _column_check,
    _column_rows,
    _gate_cell,
    _gate_off_rows,
    _gradcheck_line,
    _gradcheck_rows,
    _highlight,
    _row_label,
    _sgd_lines,
    _shape,
    _source_line,
    _title,
    _truncate,
    fmt,
)
from reluscope.io import atomic_write

if TYPE_CHECKING:  # the renderers read an Explanation; only _build makes one
    from reluscope.explain._build import Explanation

__all__ = ["html_fragment", "render_html", "write_html"]

_esc = html.escape

# Scoped under .rx so that the fragment does not restyle a notebook around it.
_CSS = """
.rx{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#222;line-height:1.45}
.rx h1{font-size:1.5rem;margin-bottom:.2rem}.rx h2{font-size:1.2rem;border-bottom:1px solid #ddd;
padding-bottom:.2rem;margin-top:1.6rem}.rx h3{font-size:1rem;margin:1rem 0 .3rem}.rx .sub{color:#666;margin-top:0}
.rx table{border-collapse:collapse;font-size:.85rem;margin:.4rem 0 .8rem}
.rx th,.rx td{border:1px solid #ddd;padding:.2rem .5rem;text-align:right;font-variant-numeric:tabular-nums}
.rx th{background:#f5f5f5}.rx td:first-child,.rx th:first-child{text-align:left}
.rx td.off{background:#fdecea;color:#b71c1c;font-weight:bold}.rx td.on{background:#e8f5e9}
.rx td.text{text-align:left;font-family:ui-monospace,Menlo,Consolas,monospace}
.rx pre,.rx code{font-family:ui-monospace,Menlo,Consolas,monospace}.rx pre{background:#f6f8fa;padding:.5rem .75rem;
border-radius:4px;overflow-x:auto;font-size:.9rem}.rx .warn{background:#fff8e1;border-left:4px solid #f9a825;
padding:.4rem .75rem}.rx .scroll{overflow-x:auto}.rx figure{margin:.5rem 0 1rem}
.rx figcaption{color:#555;font-size:.9rem}.rx .side{display:flex;gap:2rem;flex-wrap:wrap}
.rx nav.steps{display:flex;gap:1rem;align-items:center;font-size:.9rem;margin:.8rem 0;color:#666}
.rx nav.steps a{text-decoration:none;border:1px solid #bbb;border-radius:4px;padding:.1rem .6rem;color:#1565c0}
.rx .part{scroll-margin-top:1rem}
.rx.stepping .part{display:none}.rx.stepping .part:target{display:block}
.rx.stepping:not(:has(.part:target)) .part:first-of-type{display:block}
"""


def _table(header: list[str], rows: list[list[str]], classes: list[list[str]] | None = None) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, cell in enumerate(row):
            cls = classes[i][j] if classes is not None else ""
            cells.append(f'<td class="{cls}">{_esc(cell)}</td>' if cls else f"<td>{_esc(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _matrix(name: str, value: NDArray[Any], axes: tuple[str, ...], mark: NDArray[np.bool_] | None = None) -> str:
    if value.ndim == 0:
        return f'<p><code>{_esc(name)}</code> = <b data-value="{float(value)!r}">{_esc(fmt(float(value)))}</b></p>'
    shown, more_rows, more_cols = _truncate(np.asarray(value), MAX_ROWS, MAX_COLS)
    marks = None if mark is None else _truncate(np.asarray(mark), MAX_ROWS, MAX_COLS)[0]
    col_axis = axes[-1] if axes else ""
    header = [name] + [f"{col_axis} {j}" for j in range(shown.shape[1])] + (["…"] if more_cols else [])
    rows, classes = [], []
    for i, row in enumerate(shown):
        label = _row_label(axes, i) if value.ndim == 2 else ""
        rows.append([label, *[fmt(v) for v in row]] + (["…"] if more_cols else []))
        classes.append(["", *["off" if marks is not None and marks[i, j] else "" for j in range(len(row))]])
        classes[-1] += [""] if more_cols else []
    if more_rows:
        rows.append(["…"] * len(header))
        classes.append([""] * len(header))
    out = _table(header, rows, classes)
    if more_rows or more_cols:
        out += f"<p><i>showing {shown.shape[0]}×{shown.shape[1]} of {value.shape}; --format json has all</i></p>"
    return out


def _figure(ex: Explanation, level: str) -> str:
    c = circuit(ex, level=level)
    return (
        f'<figure class="circuit-figure" data-level="{level}"><div class="scroll">{render_svg(c)}</div>'
        f"<figcaption>{_esc(c.caption)}</figcaption></figure>"
    )


def _parts(ex: Explanation) -> list[tuple[str, str]]:
    """(title, inner HTML) of each part, in order: circuit, forward steps, backward steps, gate, column form, check,
    SGD step."""
    act = ex.activation["name"]
    parts: list[tuple[str, str]] = []
    circuit_html = _figure(ex, "matrix")
    if scalar_fits(ex):
        circuit_html += _figure(ex, "scalar")
    inputs = _matrix("X", ex.X, ("sample", "input"))
    inputs += f"<p><code>y</code> = {_esc(str([int(v) for v in ex.y]))} (the true class of each sample)</p>"
    for key, axes in (("W1", ("input", "unit")), ("b1", ("unit",)), ("W2", ("unit", "class")), ("b2", ("class",))):
        inputs += _matrix(key, ex.params[key], axes)
    parts.append(("The circuit", circuit_html + "<h3>Inputs and parameters</h3>" + inputs))
    for phase, steps in (("forward", ex.forward), ("backward", ex.backward)):
        for i, step in enumerate(steps, start=1):
            body = f"<pre>{_esc(step.formula)}</pre><p>shape {_esc(_shape(step.shape))}"
            body += f" — {_esc(step.note)}</p>" if step.note else "</p>"
            body += _matrix(step.key, step.value, step.axes, _highlight(ex, step))
            parts.append((f"{phase} {i}. {step.title}", f'<div data-step="{_esc(step.key)}">{body}</div>'))

    g = ex.gate
    n_samples, n_units = g.fired.shape
    gate = f"<p>{_esc(g.convention)}.</p>"
    if n_samples <= MAX_ROWS and n_units <= MAX_COLS:
        rows, classes = [], []
        for n in range(n_samples):
            cells, cls = [f"sample {n}"], [""]
            for j in range(n_units):
                status, z = _gate_cell(ex, n, j)
                cells.append(f"{status} ({z})")
                cls.append("on" if status == "fired" else "off")
            rows.append(cells)
            classes.append(cls)
        gate += _table(["z1", *[f"unit {j}" for j in range(n_units)]], rows, classes)
    if g.off:
        header = GATE_OFF_HEADER
        off_rows = _gate_off_rows(ex, MAX_ROWS * 2)
        gate += _table(header, off_rows)
    gate += "<ul>" + "".join(f"<li>{_esc(note)}.</li>" for note in g.notes) + "</ul>"
    gate += "<p>Changing the activation changes one line of backprop — the local derivative:</p>"
    alt_rows = [[a["activation"], a["f"], a["derivative"], a["dz1"]] for a in g.alternatives]
    alt_cls = [["on" if a["chosen"] else "", "text", "text", "text"] for a in g.alternatives]
    gate += _table(["activation", "f(z)", "f'(z)", "the line that changes"], alt_rows, alt_cls)
    parts.append((f"The {act} gate: which units fired", gate))

    c = ex.column
    col = _table(["", "batch form (rows)", f"column form (sample {c.sample})"], [list(r) for r in _column_rows(ex)])
    vec_header = ["unit", "W·x + b", "z", "f'" if act != "relu" else "z > 0", "upstream", "dz"]
    vec_rows = [
        [str(j), fmt(c.a[j]), fmt(c.z[j]), fmt(c.mask[j]), fmt(c.upstream[j]), fmt(c.dz[j])]
        for j in range(min(len(c.a), MAX_ROWS))
    ]
    col += _table(vec_header, vec_rows)
    col += '<div class="side"><div><h3>column form: dW = outer(dz, x)</h3>'
    col += _matrix("dW", c.dW, ("unit", "input")) + "</div>"
    col += f"<div><h3>batch form: sample {c.sample}'s part of dW1, transposed</h3>"
    col += _matrix("outer(X[n], dz1[n])ᵀ", c.batch_T, ("unit", "input")) + "</div></div>"
    col += f"<p>{_esc(_column_check(ex))}.</p>"
    parts.append((f"Sample {c.sample} in column-vector form, beside the batch form", col))

    check = f"<p>{_esc(_gradcheck_line(ex))}.</p>" + _table(GRADCHECK_HEADER, _gradcheck_rows(ex))
    parts.append(("Gradient check", check))
    sgd = "<ul>" + "".join(f"<li>{_esc(line)}.</li>" for line in _sgd_lines(ex)) + "</ul>"
    parts.append((f"One SGD step (lr = {ex.sgd.lr:g})", sgd))
    return parts


def html_fragment(ex: Explanation, *, step: bool = False) -> str:
    """The page's content as an HTML fragment (a ``<div>`` with its own scoped ``<style>``), for embedding, e.g. in
    a Jupyter cell. ``step=True`` shows one part at a time with previous/next links (see the module docstring)."""
    parts = _parts(ex)
    out = [f"<style>{_CSS}</style>", f'<div class="rx{" stepping" if step else ""}">']
    out.append(f'<h1>{_esc(_title(ex))}</h1><p class="sub">{_esc(_source_line(ex))}.</p>')
    out += [f'<p class="warn"><b>Warning:</b> {_esc(w)}.</p>' for w in ex.warnings]
    contents = "".join(f'<li><a href="#step-{k}">{_esc(t)}</a></li>' for k, (t, _) in enumerate(parts, start=1))
    out.append(f"<details><summary>Contents ({len(parts)} parts)</summary><ol>{contents}</ol></details>")
    for k, (title, inner) in enumerate(parts, start=1):
        prev = f'<a href="#step-{k - 1}" rel="prev">← previous</a>' if k > 1 else "<span></span>"
        nxt = f'<a href="#step-{k + 1}" rel="next">next →</a>' if k < len(parts) else "<span></span>"
        nav = f'<nav class="steps">{prev}<span>{k} / {len(parts)}</span>{nxt}</nav>'
        out.append(f'<section class="part" id="step-{k}"><h2>{_esc(title)}</h2>{inner}{nav if step else ""}</section>')
    out.append("</div>")
    return "\n".join(out)


def render_html(ex: Explanation, *, step: bool = False) -> str:
    """The whole page as a string: UTF-8, no scripts, no external resources. ``step=True``: one part at a time,
    stepped with in-page previous/next links (no JavaScript)."""
    title = _esc(_title(ex))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title></head>\n"
        '<body style="margin:1.5rem auto;max-width:1600px;padding:0 1rem">\n'
        f"{html_fragment(ex, step=step)}\n</body></html>\n"
    )


def write_html(path: str | os.PathLike[str], ex: Explanation, *, step: bool = False) -> None:
    """Write :func:`render_html` to ``path`` atomically (UTF-8): the file is whole or unchanged."""
    page = render_html(ex, step=step)
    with atomic_write(path, "wb") as f:
        f.write(page.encode("utf-8"))
