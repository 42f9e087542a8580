"""The backprop circuit of an :class:`~reluscope.explain.Explanation` as a drawing: boxes, lines and labels.

Two levels, after CS231n's circuit diagrams (forward values in green, gradients in red):

* ``"matrix"`` (any size): ``X, W1 → matmul → +b1 → activation → matmul → +b2 → softmax → cross-entropy → loss``
  drawn top to bottom; every wire is labelled with its name and shape and, while the array is small
  (:data:`SMALL_ENTRIES`), its values and its gradient.
* ``"scalar"`` (tiny nets, :data:`SCALAR_LIMITS`): the unrolled circuit of one sample, one node per input, hidden
  unit and class. Each connection carries its weight and this sample's share of the weight's gradient; each
  hidden unit passes through a gate drawn *passed* or *blocked*. A blocked (ReLU, ``z <= 0``) unit's incoming
  and outgoing connections are drawn dashed and grey with a red cut on its wire: no gradient crosses it.

:func:`circuit` lays the drawing out from the numbers already in the record (it never recomputes one) and returns a
:class:`Circuit` of plain primitives; :func:`render_svg` writes it as standalone SVG with no dependency, and
``reluscope.report.plots.plot_circuit`` draws the same primitives with matplotlib for a PNG. Every primitive that
shows a number also carries it at full precision in ``attrs`` (``data-*`` attributes in the SVG), so tests and
tools can read the drawing's numbers back.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from reluscope.explain._format import fmt

if TYPE_CHECKING:  # the renderers read an Explanation; only _build makes one
    from reluscope.explain._build import Explanation

__all__ = [
    "COLORS",
    "SCALAR_LIMITS",
    "SMALL_ENTRIES",
    "Box",
    "Circuit",
    "Label",
    "Line",
    "circuit",
    "render_svg",
    "scalar_fits",
]

#: Largest (inputs, hidden, classes) drawn as an unrolled scalar circuit.
SCALAR_LIMITS = (4, 5, 4)
#: Arrays with at most this many entries (and at most 6 columns) show their values on the matrix circuit.
SMALL_ENTRIES = 24
_SMALL_COLS = 6
#: CS231n's convention: forward values green, gradients red; a blocked path grey.
COLORS = {
    "value": "#2ca02c",
    "grad": "#d62728",
    "blocked": "#9e9e9e",
    "wire": "#444444",
    "text": "#222222",
    "muted": "#666666",
    "node": "#f5f5f5",
    "passed": "#e8f5e9",
    "closed": "#fdecea",
    "param": "#e3f2fd",
}
_FONT = 12.0
_CHAR = 0.62  # width of a monospace character, in font sizes (SVG has no text metrics; keep labels monospace)
_LINE = 15.0

Attrs = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Box:
    """A rectangle: top-left corner ``(x, y)``, size ``(w, h)``, in pixels (y grows downwards)."""

    x: float
    y: float
    w: float
    h: float
    fill: str = COLORS["node"]
    stroke: str = COLORS["wire"]
    dashed: bool = False
    width: float = 1.2
    attrs: Attrs = ()


@dataclass(frozen=True)
class Line:
    """A straight line from ``(x1, y1)`` to ``(x2, y2)``; ``arrow`` draws a head at the end."""

    x1: float
    y1: float
    x2: float
    y2: float
    color: str = COLORS["wire"]
    width: float = 1.2
    dashed: bool = False
    arrow: bool = False
    attrs: Attrs = ()


@dataclass(frozen=True)
class Label:
    """Text anchored at ``(x, y)`` (its baseline); ``anchor`` is ``"start"``, ``"middle"`` or ``"end"``."""

    x: float
    y: float
    text: str
    color: str = COLORS["text"]
    size: float = _FONT
    anchor: Literal["start", "middle", "end"] = "start"
    bold: bool = False
    attrs: Attrs = ()


Item = Box | Line | Label


@dataclass(frozen=True)
class Circuit:
    """A laid-out circuit: ``width`` × ``height`` pixels of ``items`` drawn in order.

    ``level`` is ``"matrix"`` or ``"scalar"``; ``sample`` is the sample a scalar circuit shows (None for matrix).
    """

    level: str
    title: str
    width: float
    height: float
    items: tuple[Item, ...]
    sample: int | None = None
    caption: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def scalar_fits(ex: Explanation) -> bool:
    """True when the net is small enough (:data:`SCALAR_LIMITS`) for the unrolled scalar circuit."""
    return all(s <= limit for s, limit in zip(ex.sizes, SCALAR_LIMITS, strict=True))


def circuit(ex: Explanation, *, level: str = "matrix", sample: int | None = None) -> Circuit:
    """Lay out the circuit of ``ex`` at ``level`` (``"matrix"``, ``"scalar"`` or ``"auto"``: scalar when it fits).

    ``sample`` is ignored at matrix level; the scalar circuit shows the sample of the column form
    (``ex.column.sample``), whose per-sample weight gradients the record holds; another sample raises ValueError.
    Raises ValueError for an unknown level or a net too large for the scalar circuit.
    """
    if level == "auto":
        level = "scalar" if scalar_fits(ex) else "matrix"
    if level == "matrix":
        return _matrix(ex)
    if level == "scalar":
        if not scalar_fits(ex):
            D, H, C = SCALAR_LIMITS
            raise ValueError(
                f"the scalar circuit draws one node per input, hidden unit and class, so it needs at most {D} "
                f"inputs, {H} hidden units and {C} classes; got {ex.sizes}. Use --circuit matrix (any size), or "
                "--inputs 2 --hidden 3 for a tiny net"
            )
        if sample is not None and sample != ex.column.sample:
            raise ValueError(
                f"the scalar circuit shows the column-form sample {ex.column.sample}, got sample={sample}; "
                f"explain with --sample {sample} to draw that one"
            )
        return _scalar(ex)
    raise ValueError(f"circuit level must be 'matrix', 'scalar' or 'auto', got {level!r}")


# Helpers ------------------------------------------------------------------------------------------------------
def _num(v: float) -> str:
    return repr(float(v))


def _text_width(text: str, size: float = _FONT) -> float:
    return len(text) * size * _CHAR


def _matrix_lines(value: Any) -> list[str]:
    """Rows of a small array as right-aligned text; a vector is one row, a scalar one number."""
    arr = np.asarray(value, dtype=np.float64)
    rows = arr.reshape(1, -1) if arr.ndim < 2 else arr
    cells = [[fmt(v) for v in row] for row in rows]
    width = max((len(c) for row in cells for c in row), default=1)
    return ["[" + "  ".join(c.rjust(width) for c in row) + "]" for row in cells]


def _small(value: Any) -> bool:
    arr = np.asarray(value)
    return arr.size <= SMALL_ENTRIES and (arr.ndim < 2 or arr.shape[1] <= _SMALL_COLS)


def _shape_text(value: Any) -> str:
    shape = tuple(int(s) for s in np.asarray(value).shape)
    return "scalar" if not shape else "(" + ", ".join(map(str, shape)) + ")"


def _values_attr(value: Any) -> str:
    return " ".join(_num(v) for v in np.asarray(value, dtype=np.float64).ravel())


# Matrix level -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Block:
    """A labelled array shown beside a wire: a header line and (for small arrays) one line per row."""

    name: str
    value: Any  # array, or None when the record does not hold this value (shape-only wires)
    shape: str
    color: str
    role: str
    note: str = ""

    def lines(self) -> list[str]:
        head = " ".join(t for t in (self.name, self.shape, self.note) if t)
        if self.value is None or not _small(self.value):
            return [head]
        return [head, *_matrix_lines(self.value)]

    def width(self) -> float:
        return max(_text_width(t) for t in self.lines())

    def height(self) -> float:
        return len(self.lines()) * _LINE

    def draw(self, x: float, y: float) -> list[Item]:
        attrs: Attrs = (("role", self.role), ("name", self.name))
        if self.value is not None and _small(self.value):  # the numbers drawn, at full precision
            attrs += (("values", _values_attr(self.value)),)
        out: list[Item] = []
        for i, text in enumerate(self.lines()):
            out.append(Label(x, y + (i + 1) * _LINE - 3, text, self.color, bold=i == 0, attrs=attrs if i == 0 else ()))
        return out


def _matrix(ex: Explanation) -> Circuit:
    D, H, C = ex.sizes
    N = ex.n_samples
    act = ex.activation["name"]
    s = {st.key: st.value for st in ex.steps}
    g = ex.gate
    blocked = int((~g.fired & (g.local_grad == 0)).sum())
    gate_text = act if act != "relu" else "ReLU"
    if g.dead_units and g.closes:
        gate_note = f"blocked {blocked} of {N * H}; dead for the batch: unit{'s' if len(g.dead_units) > 1 else ''} " + (
            ", ".join(map(str, g.dead_units))
        )
    elif g.closes:
        gate_note = f"blocked {blocked} of {N * H} (sample, unit) entries"
    else:
        gate_note = f"{act} passes f'(z1) everywhere: nothing blocked"
    V, G = COLORS["value"], COLORS["grad"]
    # (node label, kind, side input blocks (value, gradient), the wire below it as (value block, gradient block))
    NodeSpec = tuple[str, str, list[_Block], list[_Block]]
    chain: list[NodeSpec] = [
        (
            "X",
            "input",
            [],
            [
                _Block("X", ex.X, _shape_text(ex.X), V, "value"),
                _Block("dX", None, "", G, "grad", "(not needed: X is data)"),
            ],
        ),
        (
            "matmul ·",
            "op",
            [_Block("W1", ex.params["W1"], _shape_text(ex.params["W1"]), V, "value"), _grad_block("dW1", s["dW1"])],
            [
                _Block("X·W1", None, f"({N}, {H})", V, "value"),
                _Block("dz1", s["dz1"], _shape_text(s["dz1"]), G, "grad", "(+ passes it on)"),
            ],
        ),
        (
            "+",
            "op",
            [_Block("b1", ex.params["b1"], _shape_text(ex.params["b1"]), V, "value"), _grad_block("db1", s["db1"])],
            [_Block("z1", s["z1"], _shape_text(s["z1"]), V, "value"), _grad_block("dz1", s["dz1"])],
        ),
        (
            gate_text,
            "gate",
            [],
            [_Block("h", s["h"], _shape_text(s["h"]), V, "value"), _grad_block("dh", s["dh"])],
        ),
        (
            "matmul ·",
            "op",
            [_Block("W2", ex.params["W2"], _shape_text(ex.params["W2"]), V, "value"), _grad_block("dW2", s["dW2"])],
            [
                _Block("h·W2", None, f"({N}, {C})", V, "value"),
                _Block("dscores", s["dscores"], _shape_text(s["dscores"]), G, "grad", "(+ passes it on)"),
            ],
        ),
        (
            "+",
            "op",
            [_Block("b2", ex.params["b2"], _shape_text(ex.params["b2"]), V, "value"), _grad_block("db2", s["db2"])],
            [_Block("scores", s["scores"], _shape_text(s["scores"]), V, "value"), _grad_block("dscores", s["dscores"])],
        ),
        (
            "softmax",
            "op",
            [],
            [
                _Block("p", s["p"], _shape_text(s["p"]), V, "value"),
                _Block("", None, "", G, "grad", "softmax and cross-entropy: dscores = (p − onehot(y)) / N"),
            ],
        ),
        (
            "cross-entropy",
            "op",
            [_Block("y", ex.y.astype(np.float64), f"({N},)", V, "value")],
            [_Block("loss", s["loss"], "scalar", V, "value"), _Block("dloss", np.float64(1.0), "", G, "grad")],
        ),
        ("loss", "output", [], []),
    ]
    node_w, node_h, gap = 150.0, 34.0, 24.0
    param_w = 70.0
    side_value_w = max([b.width() for _, _, side, _ in chain for b in side[:1]] + [40.0])
    side_grad_w = max([b.width() for _, _, side, _ in chain for b in side[1:]] + [0.0])
    left = 20.0
    side_grad_x = left + side_value_w + gap
    param_x = side_grad_x + side_grad_w + gap
    chain_x = param_x + param_w + 60.0 + node_w / 2  # centre of the chain
    wire_value_x = chain_x + 16.0
    wire_value_w = max([b.width() for _, _, _, wire in chain for b in wire[:1]] + [40.0])
    wire_grad_x = wire_value_x + wire_value_w + gap
    wire_grad_w = max([b.width() for _, _, _, wire in chain for b in wire[1:]] + [40.0])
    width = wire_grad_x + wire_grad_w + 20.0

    items: list[Item] = [
        Label(left, 24, f"the circuit, matrix level: {N} sample{'s' if N > 1 else ''}, {D} → {H} → {C}", bold=True),
        Label(left, 42, "forward values", V),
        Label(left + _text_width("forward values ") + 6, 42, "gradients (d loss / d ·)", G),
    ]
    y = 60.0
    for label, kind, side, wire in chain:
        side_h = max([b.height() for b in side], default=0.0)
        slot = max(node_h, side_h) + 8.0
        cy = y + slot / 2
        fill = {"op": COLORS["node"], "input": COLORS["param"], "output": COLORS["param"], "gate": COLORS["passed"]}
        stroke = COLORS["wire"]
        if kind == "gate" and g.closes and blocked:
            fill["gate"], stroke = COLORS["closed"], COLORS["grad"]
        attrs: Attrs = (("node", label), ("kind", kind))
        if kind == "gate":
            attrs += (("blocked", str(blocked)), ("dead-units", " ".join(map(str, g.dead_units))))
        items.append(Box(chain_x - node_w / 2, cy - node_h / 2, node_w, node_h, fill[kind], stroke, attrs=attrs))
        items.append(Label(chain_x, cy + 4, label, anchor="middle", bold=kind != "op"))
        if kind == "gate":
            items.append(Label(chain_x + node_w / 2 + 8, cy + 4, gate_note, COLORS["grad"] if blocked else V))
        if side:
            px = param_x
            items.append(Box(px, cy - 13, param_w, 26, COLORS["param"], attrs=(("param", side[0].name),)))
            items.append(Label(px + param_w / 2, cy + 4, side[0].name, anchor="middle", bold=True))
            items.append(Line(px + param_w, cy, chain_x - node_w / 2, cy, arrow=True))
            items += side[0].draw(left, cy - side_h / 2)
            if len(side) > 1:
                items += side[1].draw(side_grad_x, cy - side_h / 2)
        y += slot
        if wire:
            wire_h = max(b.height() for b in wire) + 10.0
            items.append(Line(chain_x, y, chain_x, y + wire_h, arrow=True))
            items += wire[0].draw(wire_value_x, y + 4)
            items += wire[1].draw(wire_grad_x, y + 4)
            y += wire_h
    return Circuit(
        "matrix",
        "the circuit, matrix level",
        width,
        y + 16.0,
        tuple(items),
        caption=(
            "Each wire carries a forward value (green, above: name, shape and, for small arrays, the values) and the "
            "gradient of the loss with respect to it (red). Parameters enter from the left with their gradients."
        ),
    )


def _grad_block(name: str, value: Any) -> _Block:
    return _Block(name, value, _shape_text(value), COLORS["grad"], "grad")


# Scalar level -------------------------------------------------------------------------------------------------
def _gate_status(ex: Explanation, n: int, j: int) -> str:
    if ex.gate.fired[n, j]:
        return "passed"
    return "blocked" if ex.gate.local_grad[n, j] == 0 else "leaked"


def _scalar(ex: Explanation) -> Circuit:
    D, H, C = ex.sizes
    N = ex.n_samples
    n = ex.column.sample
    s = {st.key: st.value for st in ex.steps}
    V, G, B = COLORS["value"], COLORS["grad"], COLORS["blocked"]
    act = ex.activation["name"]
    row = 118.0
    top = 78.0
    rows = max(D, H, C)
    node_w, node_h = 150.0, 62.0
    cols = {"x": 90.0, "z": 520.0, "gate": 680.0, "h": 830.0, "s": 1250.0, "loss": 1490.0}
    width = 1580.0
    height = top + rows * row + 30.0

    def ys(count: int) -> list[float]:
        first = top + (rows - count) * row / 2 + row / 2
        return [first + i * row for i in range(count)]

    yx, yh, ys_ = ys(D), ys(H), ys(C)
    status = [_gate_status(ex, n, j) for j in range(H)]
    items: list[Item] = [
        Label(
            20,
            24,
            f"the circuit of sample {n}" + (f" (of N = {N}; gradients are this sample's share)" if N > 1 else ""),
            bold=True,
        ),
        Label(20, 44, "forward value", V),
        Label(20 + _text_width("forward value ") + 6, 44, "gradient d loss / d ·", G),
        Label(20 + _text_width("forward value gradient d loss / d · ") + 18, 44, "blocked: no gradient crosses", B),
    ]

    def node(
        cx: float, cy: float, name: str, lines: Sequence[tuple[str, str, str, float | None]], bias: str = "", **kw: Any
    ) -> None:
        """A node box; ``lines`` are (text, colour, role, number or None)."""
        attrs: Attrs = (("node", name),)
        items.append(Box(cx - node_w / 2, cy - node_h / 2, node_w, node_h, attrs=attrs, **kw))
        items.append(
            Label(cx, cy - node_h / 2 + 15, name + (f"  b = {bias}" if bias else ""), anchor="middle", bold=True)
        )
        for i, (text, color, role, number) in enumerate(lines):
            a: Attrs = (("node", name), ("role", role)) + ((("value", _num(number)),) if number is not None else ())
            items.append(Label(cx, cy - node_h / 2 + 31 + i * 14, text, color, anchor="middle", attrs=a))

    # Where edge labels may not go: the node boxes, then every label already placed (x0, y0, x1, y1).
    placed: list[tuple[float, float, float, float]] = [
        (cols[k] - node_w / 2, y - node_h / 2, cols[k] + node_w / 2, y + node_h / 2)
        for k, col_ys in (("x", yx), ("z", yh), ("h", yh), ("s", ys_))
        for y in col_ys
    ]

    def overlap(r: tuple[float, float, float, float]) -> float:
        return sum(
            max(0.0, min(r[2], q[2]) - max(r[0], q[0])) * max(0.0, min(r[3], q[3]) - max(r[1], q[1])) for q in placed
        )

    def spot(x1: float, y1: float, x2: float, y2: float, width: float) -> tuple[float, float]:
        """A point along the edge for a two-line label of ``width``: the first candidate (near the source, where
        edges fan out) that overlaps nothing placed, else the least overlapping one."""
        best: tuple[float, float, float] | None = None
        for t in (0.27, 0.4, 0.55, 0.7, 0.2, 0.33, 0.47, 0.62, 0.78):
            lx, ly = x1 + t * (x2 - x1), y1 + t * (y2 - y1)
            rect = (lx - width / 2 - 2, ly - 15, lx + width / 2 + 2, ly + 14)
            cost = overlap(rect)
            if best is None or cost < best[0]:
                best = (cost, lx, ly)
            if cost == 0:
                break
        assert best is not None
        _, lx, ly = best
        placed.append((lx - width / 2 - 2, ly - 15, lx + width / 2 + 2, ly + 14))
        return lx, ly

    def edge(x1: float, y1: float, x2: float, y2: float, w: float, dw: float, cut: bool, name: str) -> None:
        color = B if cut else COLORS["wire"]
        items.append(Line(x1, y1, x2, y2, color, dashed=cut, arrow=True, attrs=(("edge", name),)))
        width = max(_text_width(f"{name} = {fmt(w)}", 11), _text_width(f"∂ {fmt(dw)}", 11))
        lx, ly = spot(x1, y1, x2, y2, width)
        items.append(
            Label(
                lx,
                ly - 3,
                f"{name} = {fmt(w)}",
                V if not cut else B,
                11,
                "middle",
                attrs=(("edge", name), ("role", "value"), ("value", _num(w))),
            )
        )
        items.append(
            Label(
                lx,
                ly + 11,
                f"∂ {fmt(dw)}",
                G,
                11,
                "middle",
                attrs=(("edge", name), ("role", "grad"), ("value", _num(dw))),
            )
        )

    # Edges first, nodes on top.
    for i in range(D):
        for j in range(H):
            edge(
                cols["x"] + node_w / 2,
                yx[i],
                cols["z"] - node_w / 2,
                yh[j],
                ex.params["W1"][i, j],
                ex.column.dW[j, i],
                status[j] == "blocked",
                f"W1[{i},{j}]",
            )
    for j in range(H):
        for c in range(C):
            edge(
                cols["h"] + node_w / 2,
                yh[j],
                cols["s"] - node_w / 2,
                ys_[c],
                ex.params["W2"][j, c],
                ex.column.dW2[j, c],
                status[j] == "blocked",
                f"W2[{j},{c}]",
            )
    loss_y = top + rows * row / 2
    for c in range(C):
        items.append(Line(cols["s"] + node_w / 2, ys_[c], cols["loss"] - 50, loss_y, arrow=True))
        lx = cols["s"] + node_w / 2 + 0.35 * (cols["loss"] - 50 - cols["s"] - node_w / 2)
        ly = ys_[c] + 0.35 * (loss_y - ys_[c])
        items.append(
            Label(
                lx,
                ly - 3,
                f"p = {fmt(s['p'][n, c])}",
                V,
                11,
                "middle",
                attrs=(("edge", f"p[{c}]"), ("role", "value"), ("value", _num(s["p"][n, c]))),
            )
        )

    for i in range(D):
        node(cols["x"], yx[i], f"x{i}", [(f"{fmt(ex.X[n, i])}", V, "value", ex.X[n, i])], fill=COLORS["param"])
    for j in range(H):
        cy = yh[j]
        cut = status[j] == "blocked"
        node(
            cols["z"],
            cy,
            f"z{j}",
            [
                (f"z = {fmt(s['z1'][n, j])}", V, "value", s["z1"][n, j]),
                (f"∂ {fmt(s['dz1'][n, j])}", G, "grad", s["dz1"][n, j]),
            ],
            bias=fmt(ex.params["b1"][j]),
        )
        # the wire through the gate
        gx = cols["gate"]
        wire_color = B if cut else COLORS["wire"]
        items.append(Line(cols["z"] + node_w / 2, cy, gx - 42, cy, wire_color, dashed=cut))
        items.append(Line(gx + 42, cy, cols["h"] - node_w / 2, cy, wire_color, dashed=cut, arrow=True))
        fill = {"passed": COLORS["passed"], "blocked": COLORS["closed"], "leaked": COLORS["node"]}[status[j]]
        stroke = {"passed": V, "blocked": G, "leaked": COLORS["wire"]}[status[j]]
        gate_attrs: Attrs = (
            ("gate", str(j)),
            ("sample", str(n)),
            ("status", status[j]),
            ("local-grad", _num(ex.gate.local_grad[n, j])),
        )
        items.append(Box(gx - 42, cy - 20, 84, 40, fill, stroke, width=2.0, attrs=gate_attrs))
        items.append(Label(gx, cy - 4, act if act != "relu" else "ReLU", anchor="middle", bold=True))
        word = status[j] if act == "relu" or status[j] != "leaked" else f"×{fmt(ex.gate.local_grad[n, j])}"
        items.append(Label(gx, cy + 12, word, stroke, 11, "middle", attrs=(("gate", str(j)), ("role", "status"))))
        if cut:  # the cut: a red ✕ on the wire between the node and the gate, where the gradient stops
            mx = (cols["z"] + node_w / 2 + gx - 42) / 2
            items.append(Line(mx - 7, cy - 7, mx + 7, cy + 7, G, 2.5, attrs=(("cut", str(j)),)))
            items.append(Line(mx - 7, cy + 7, mx + 7, cy - 7, G, 2.5))
        node(
            cols["h"],
            cy,
            f"h{j}",
            [
                (f"h = {fmt(s['h'][n, j])}", B if cut else V, "value", s["h"][n, j]),
                (f"∂ {fmt(s['dh'][n, j])}", G, "grad", s["dh"][n, j]),
            ],
        )
    for c in range(C):
        true = int(ex.y[n]) == c
        node(
            cols["s"],
            ys_[c],
            f"s{c}" + (" (y)" if true else ""),
            [
                (f"s = {fmt(s['scores'][n, c])}", V, "value", s["scores"][n, c]),
                (f"∂ {fmt(s['dscores'][n, c])}", G, "grad", s["dscores"][n, c]),
            ],
            bias=fmt(ex.params["b2"][c]),
        )
    loss = float(s["loss"])
    items.append(Box(cols["loss"] - 50, loss_y - 30, 100, 60, COLORS["param"], attrs=(("node", "loss"),)))
    items.append(
        Label(cols["loss"], loss_y - 12, "softmax + CE" if N == 1 else "mean loss", anchor="middle", bold=True)
    )
    items.append(
        Label(
            cols["loss"],
            loss_y + 4,
            fmt(loss),
            V,
            anchor="middle",
            attrs=(("node", "loss"), ("role", "value"), ("value", _num(loss))),
        )
    )
    items.append(Label(cols["loss"], loss_y + 20, "∂ 1", G, anchor="middle"))
    blocked = [j for j in range(H) if status[j] == "blocked"]
    caption = (
        f"Sample {n} through {D} inputs, {H} hidden units and {C} classes. Each connection is labelled with its weight "
        "(green) and this sample's share of that weight's gradient (red); each node with its value and gradient."
    )
    if blocked:
        caption += (
            f" The {act if act != 'relu' else 'ReLU'} gate of unit{'s' if len(blocked) > 1 else ''} "
            f"{', '.join(map(str, blocked))} is blocked (z ≤ 0): the red ✕ cuts the wire, so the gradients of "
            "its incoming and outgoing weights from this sample are exactly 0 (dashed grey)."
        )
    return Circuit("scalar", f"the circuit of sample {n}", width, height, tuple(items), sample=n, caption=caption)


# SVG ----------------------------------------------------------------------------------------------------------
def _svg_attrs(attrs: Attrs) -> str:
    return "".join(f' data-{k}="{html.escape(v, quote=True)}"' for k, v in attrs)


def render_svg(c: Circuit) -> str:
    """``c`` as a standalone SVG document string (no external references; embeddable inline in HTML)."""
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="circuit" data-level="{c.level}" '
        f'width="{c.width:.0f}" height="{c.height:.0f}" viewBox="0 0 {c.width:.0f} {c.height:.0f}" '
        f'role="img" aria-label="{html.escape(c.title, quote=True)}" '
        'font-family="DejaVu Sans Mono, Menlo, Consolas, monospace">',
        f'<defs><marker id="arrow-{c.level}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        f'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{COLORS["wire"]}"/></marker></defs>',
        f'<rect width="{c.width:.0f}" height="{c.height:.0f}" fill="white"/>',
    ]
    for it in c.items:
        extra = _svg_attrs(it.attrs)
        if isinstance(it, Box):
            dash = ' stroke-dasharray="5,4"' if it.dashed else ""
            out.append(
                f'<rect x="{it.x:.1f}" y="{it.y:.1f}" width="{it.w:.1f}" height="{it.h:.1f}" rx="6" '
                f'fill="{it.fill}" stroke="{it.stroke}" stroke-width="{it.width}"{dash}{extra}/>'
            )
        elif isinstance(it, Line):
            dash = ' stroke-dasharray="6,4"' if it.dashed else ""
            head = f' marker-end="url(#arrow-{c.level})"' if it.arrow else ""
            out.append(
                f'<line x1="{it.x1:.1f}" y1="{it.y1:.1f}" x2="{it.x2:.1f}" y2="{it.y2:.1f}" stroke="{it.color}" '
                f'stroke-width="{it.width}"{dash}{head}{extra}/>'
            )
        else:
            weight = ' font-weight="bold"' if it.bold else ""
            out.append(
                f'<text x="{it.x:.1f}" y="{it.y:.1f}" font-size="{it.size:g}" fill="{it.color}" '
                f'text-anchor="{it.anchor}" xml:space="preserve" paint-order="stroke" stroke="white" '
                f'stroke-width="3"{weight}{extra}>{html.escape(it.text)}</text>'
            )
    out.append("</svg>")
    return "\n".join(out)
