"""The circuit drawing, the HTML page, the notebook representation and `explain --format html|png --out`.

The numbers drawn are read back from the drawing (``data-*`` attributes carry them at full precision) and compared
with the record and the JSON output. Both come from the same computation in the same process (or the same command
run twice), so they are compared exactly; the displayed text is compared with ``fmt`` of the same value.
"""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from reluscope.cli import app
from reluscope.explain import (
    Box,
    Label,
    Line,
    circuit,
    explain,
    fmt,
    html_fragment,
    render_html,
    render_markdown,
    render_svg,
    scalar_fits,
    write_html,
)

runner = CliRunner()
SVG = "{http://www.w3.org/2000/svg}"
TINY = {"inputs": 2, "hidden": 3, "samples": 1, "seed": 3}  # unit 2 does not fire on the one sample


def run(*args: str):
    return runner.invoke(app, ["explain", *args])


def labels(c, **want: str) -> list[Label]:
    """Labels of circuit c whose data attributes include all of ``want``."""
    return [it for it in c.items if isinstance(it, Label) and want.items() <= dict(it.attrs).items()]


def one_value(c, **want: str) -> float:
    found = labels(c, **want)
    assert len(found) == 1, (want, found)
    return float(dict(found[0].attrs)["value"])


# The scalar circuit ---------------------------------------------------------------------------------------------
def test_tiny_case_has_an_off_unit():
    ex = explain(**TINY)
    assert ex.gate.fired.tolist() == [[True, True, False]]
    assert scalar_fits(ex)


@pytest.mark.parametrize("seed", [0, 3, 7])
def test_scalar_circuit_shows_the_records_numbers(seed):
    ex = explain(inputs=2, hidden=3, samples=2, seed=seed)
    c = circuit(ex, level="scalar")
    n = ex.column.sample
    assert c.level == "scalar" and c.sample == n
    s = {st.key: st.value for st in ex.steps}
    D, H, C = ex.sizes
    for j in range(H):
        assert one_value(c, node=f"z{j}", role="value") == s["z1"][n, j]
        assert one_value(c, node=f"z{j}", role="grad") == s["dz1"][n, j]
        assert one_value(c, node=f"h{j}", role="grad") == s["dh"][n, j]
        for i in range(D):
            assert one_value(c, edge=f"W1[{i},{j}]", role="value") == ex.params["W1"][i, j]
            assert one_value(c, edge=f"W1[{i},{j}]", role="grad") == ex.column.dW[j, i]
        for k in range(C):
            assert one_value(c, edge=f"W2[{j},{k}]", role="grad") == ex.column.dW2[j, k]
    for k in range(C):
        assert one_value(c, node=f"s{k}" + (" (y)" if ex.y[n] == k else ""), role="grad") == s["dscores"][n, k]
    # the shown text is the formatted number
    assert f"∂ {fmt(s['dz1'][n, 0])}" in [it.text for it in labels(c, node="z0", role="grad")]


def test_per_sample_weight_gradients_add_up_to_the_batch_gradient():
    """The scalar circuit's edge gradients are each sample's share: summed over samples they give dW1 and dW2."""
    kw = {"inputs": 3, "hidden": 4, "samples": 3, "seed": 5}
    full = explain(**kw)
    parts = [explain(**kw, sample=n).column for n in range(3)]
    for got, want, terms in (
        (sum(p.dW.T for p in parts), full.step("dW1").value, [np.abs(p.dW.T) for p in parts]),
        (sum(p.dW2 for p in parts), full.step("dW2").value, [np.abs(p.dW2) for p in parts]),
    ):
        # a 3-term sum in another order than the matmul's: apart by at most 2·3·eps·Σ|terms| (Higham eq. 3.5)
        bound = 6 * np.finfo(np.float64).eps * sum(terms)
        assert (np.abs(got - want) <= bound).all()


def test_an_off_relu_unit_is_drawn_blocked_and_cuts_its_wires():
    ex = explain(**TINY)
    c = circuit(ex, level="scalar")
    gates = {
        dict(it.attrs)["gate"]: dict(it.attrs) for it in c.items if isinstance(it, Box) and "gate" in dict(it.attrs)
    }
    assert {k: v["status"] for k, v in gates.items()} == {"0": "passed", "1": "passed", "2": "blocked"}
    assert [dict(it.attrs)["cut"] for it in c.items if isinstance(it, Line) and "cut" in dict(it.attrs)] == ["2"]
    edges = {dict(it.attrs)["edge"]: it for it in c.items if isinstance(it, Line) and "edge" in dict(it.attrs)}
    for name, line in edges.items():
        cut = (name.startswith("W1[") and name.endswith(",2]")) or name.startswith("W2[2,")
        assert line.dashed == cut, name
        if cut:
            assert one_value(c, edge=name, role="grad") == 0.0
    assert "blocked (z ≤ 0)" in c.caption


def test_leaky_gate_leaks_instead_of_blocking():
    ex = explain(**TINY, activation="leaky")
    c = circuit(ex, level="scalar")
    statuses = [dict(it.attrs)["status"] for it in c.items if isinstance(it, Box) and "status" in dict(it.attrs)]
    assert statuses == ["passed", "passed", "leaked"]
    assert not any(isinstance(it, Line) and "cut" in dict(it.attrs) for it in c.items)
    assert "×0.01" in [it.text for it in c.items if isinstance(it, Label)]


def test_scalar_circuit_refuses_what_it_cannot_draw():
    big = explain(hidden=9)
    assert not scalar_fits(big)
    with pytest.raises(ValueError, match=r"at most 4 inputs, 5 hidden units.*--circuit matrix"):
        circuit(big, level="scalar")
    assert circuit(big, level="auto").level == "matrix"
    ex = explain(samples=3)
    with pytest.raises(ValueError, match="--sample 2"):
        circuit(ex, level="scalar", sample=2 if ex.column.sample != 2 else 1)
    with pytest.raises(ValueError, match="'matrix', 'scalar' or 'auto'"):
        circuit(ex, level="unrolled")


# The matrix circuit ---------------------------------------------------------------------------------------------
def test_matrix_circuit_labels_every_wire_with_the_records_values():
    ex = explain()
    c = circuit(ex, level="matrix")
    for name, value in [("X", ex.X), ("z1", ex.step("z1").value), ("h", ex.step("h").value), *ex.params.items()]:
        (lab,) = labels(c, role="value", name=name)
        assert [float(v) for v in dict(lab.attrs)["values"].split()] == np.ravel(value).tolist(), name
    for key in ("dz1", "dh", "dW1", "db1", "dW2", "db2", "dscores"):
        found = labels(c, role="grad", name=key)
        assert found, key
        assert [float(v) for v in dict(found[-1].attrs)["values"].split()] == np.ravel(ex.step(key).value).tolist()
    gate = next(dict(it.attrs) for it in c.items if isinstance(it, Box) and dict(it.attrs).get("kind") == "gate")
    assert gate["dead-units"] == "0 2" and gate["blocked"] == str(int((~ex.gate.fired).sum()))
    texts = [it.text for it in c.items if isinstance(it, Label)]
    assert "[-0.2878  -0.1087  -0.2769   0.2839]" in texts  # the z1 row of the default run, as drawn


def test_matrix_circuit_of_a_large_net_shows_shapes_not_values():
    ex = explain(hidden=40, samples=10)
    texts = [it.text for it in circuit(ex, level="matrix").items if isinstance(it, Label)]
    assert "z1 (10, 40)" in texts and "W1 (3, 40)" in texts
    assert not any(t.startswith("[") and t.count(" ") > 30 for t in texts)
    carried = {dict(it.attrs)["name"] for it in circuit(ex, level="matrix").items if "values" in dict(it.attrs)}
    assert carried.isdisjoint({"X", "W1", "z1", "dz1", "h", "dh", "dW1", "b1", "W2"}) and "b2" in carried


@pytest.mark.parametrize("level", ["matrix", "scalar"])
def test_svg_is_well_formed_and_self_contained(level):
    svg = render_svg(circuit(explain(**TINY), level=level))
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg" and root.get("data-level") == level
    assert not re.search(r"(href|src)=\"(?!#)", svg.replace('xmlns="http://www.w3.org/2000/svg"', ""))
    attr = "data-value" if level == "scalar" else "data-values"
    values = [t.get(attr) for t in root.iter(f"{SVG}text") if t.get(attr) is not None]
    assert values and all(float(v) == float(v) for vs in values for v in vs.split())  # numbers read back


# The page and the notebook --------------------------------------------------------------------------------------
class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if "href" in a:
            self.hrefs.append(a["href"])


@pytest.mark.parametrize("step", [False, True])
def test_page_is_self_contained_and_its_links_land(step):
    page = render_html(explain(), step=step)
    p = _Collect()
    p.feed(page)
    assert "script" not in p.tags and "link" not in p.tags and "img" not in p.tags
    assert p.hrefs and all(h.startswith("#") for h in p.hrefs)
    assert {h[1:] for h in p.hrefs if not h.startswith("#arrow")} <= p.ids
    assert ('class="rx stepping"' in page) == step
    if step:  # every part but the last links to the next one
        assert len([h for h in p.hrefs if h.startswith("#step-")]) >= 2 * len(p.ids & {f"step-{k}" for k in range(99)})
    for title in (
        "The circuit",
        "forward 1. hidden pre-activations",
        "backward 5.",
        "gate: which units fired",
        "column-vector form, beside the batch form",
        "Gradient check",
        "One SGD step",
    ):
        assert title in html.unescape(page), title
    assert page.count("<svg") == 2  # matrix and scalar circuits (the default net is small enough for both)


def _table_after(fragment: str, marker: str) -> list[list[str]]:
    """Cells of the first table after ``marker``."""
    start = fragment.index(marker)
    table = fragment[start : fragment.index("</table>", start)]
    return [
        [html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", table)
    ]


def test_notebook_representations_hold_the_same_values():
    ex = explain()
    d = json.loads(json.dumps(ex.to_dict()))
    frag = ex._repr_html_()
    assert frag == html_fragment(ex) and "<html" not in frag and "<svg" in frag
    for key in ("z1", "dz1", "dW1"):
        value = next(s["value"] for s in d["steps"] if s["key"] == key)
        rows = _table_after(frag, f'data-step="{key}"')
        assert [r[1:] for r in rows[1:]] == [[fmt(v) for v in row] for row in value], key
    loss = next(s["value"] for s in d["steps"] if s["key"] == "loss")
    assert f'data-value="{loss!r}"' in frag
    md = ex._repr_markdown_()
    assert md == render_markdown(ex)
    for v in next(s["value"] for s in d["steps"] if s["key"] == "dz1")[1]:
        assert fmt(v) in md


def test_jupyter_display_formatter_picks_the_reprs():
    """What a notebook cell does with the returned object: IPython's formatter calls the _repr_*_ methods."""
    formatters = pytest.importorskip("IPython.core.formatters")
    ex = explain(**TINY)
    data, _ = formatters.DisplayFormatter().format(ex)
    assert data["text/html"] == html_fragment(ex)
    assert data["text/markdown"] == render_markdown(ex)
    z = ex.step("z1").value[0]
    assert all(f'data-value="{float(v)!r}"' in data["text/html"] for v in z)


def test_write_html_is_atomic(tmp_path, monkeypatch):
    """A failure at the last moment (the rename) leaves the old file whole and no temp file behind."""
    out = tmp_path / "page.html"
    out.write_text("old")
    ex = explain()

    def fail(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", fail)
    with pytest.raises(OSError, match="No space left on device"):
        write_html(out, ex)
    assert out.read_text() == "old" and list(tmp_path.iterdir()) == [out]
    monkeypatch.undo()
    write_html(out, ex)
    assert out.read_text(encoding="utf-8") == render_html(ex)


# The command ----------------------------------------------------------------------------------------------------
def test_cli_html_page_holds_the_json_numbers(tmp_path):
    out = tmp_path / "explain.html"
    res = run("--inputs", "2", "--hidden", "3", "--samples", "1", "--seed", "3", "--format", "html", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert str(out) in res.output
    d = json.loads(run("--inputs", "2", "--hidden", "3", "--samples", "1", "--seed", "3", "-f", "json").stdout)
    page = out.read_text(encoding="utf-8")
    z1 = next(s["value"] for s in d["steps"] if s["key"] == "z1")[0]
    for j, z in enumerate(z1):
        assert re.search(rf'data-node="z{j}" data-role="value" data-value="{re.escape(repr(z))}"', page)
    assert 'data-gate="2" data-sample="0" data-status="blocked"' in page
    assert 'class="rx stepping"' not in page


def test_cli_html_step_and_png(tmp_path):
    res = run("--format", "html", "--out", str(tmp_path / "s.html"), "--step")
    assert res.exit_code == 0, res.output
    assert 'class="rx stepping"' in (tmp_path / "s.html").read_text(encoding="utf-8")
    for level, size in (("scalar", None), ("matrix", None), ("auto", None)):
        png = tmp_path / f"{level}.png"
        res = run(*[f"--{k}={v}" for k, v in TINY.items()], "-f", "png", "-o", str(png), "--circuit", level)
        assert res.exit_code == 0, res.output
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        c = circuit(explain(**TINY), level=level)
        assert (width, height) == (round(c.width), round(c.height)), size


def test_cli_out_writes_json_and_markdown(tmp_path):
    res = run("-f", "json", "-o", str(tmp_path / "e.json"))
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "e.json").read_text()) == json.loads(run("-f", "json").stdout)
    res = run("-f", "markdown", "-o", str(tmp_path / "e.md"))
    assert (tmp_path / "e.md").read_text().startswith("# Backprop step by step")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-f", "html"], "add --out FILE"),
        (["-f", "png"], "add --out FILE"),
        (["-o", "x.html"], "--out writes markdown, json, html or png"),
        (["-f", "png", "-o", "x.png", "--circuit", "graph"], "--circuit must be one of auto, matrix, scalar"),
        (["-f", "html", "-o", "x.html", "--circuit", "scalar"], "--circuit chooses the picture of --format png"),
        (["-f", "png", "-o", "x.png", "--circuit", "scalar", "--hidden", "9"], "at most 4 inputs"),
        (["-f", "pdf"], "--format must be one of rich, markdown, json, html, png"),
    ],
)
def test_cli_errors_are_one_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = run(*args)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output
    assert list(Path(tmp_path).iterdir()) == []  # nothing written on error


def test_plot_circuit_draws_the_same_labels():
    from reluscope.report.plots import plot_circuit

    c = circuit(explain(**TINY), level="scalar")
    plot = plot_circuit(c)
    assert plot.data["labels"] == [it.text for it in c.items if isinstance(it, Label)]
    assert plot.data["level"] == "scalar" and plot.data["sample"] == 0
    assert len(plot.figure.axes[0].patches) == sum(isinstance(it, Box | Line) for it in c.items)


# The tutorial ---------------------------------------------------------------------------------------------------
def test_tutorial_is_generated_from_the_commands_and_current(tmp_path):
    """docs/tutorial.md is what docs/_tutorial_gen.py writes today (numbers to 4 significant digits of float64
    work on 2-4 element vectors, so the text does not depend on the BLAS kernel); the figures exist."""
    import importlib.util

    docs = Path(__file__).resolve().parent.parent / "docs"
    spec = importlib.util.spec_from_file_location("_tutorial_gen", docs / "_tutorial_gen.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    text = gen.tutorial(tmp_path)
    assert (tmp_path / "tutorial.md").read_text(encoding="utf-8") == text
    for png in ("tutorial_circuit.png", "tutorial_matrix.png"):
        assert (tmp_path / "images" / png).read_bytes().startswith(b"\x89PNG")
        assert f"](images/{png})" in text
    assert text == (docs / "tutorial.md").read_text(encoding="utf-8"), "run: python docs/_tutorial_gen.py"
    d = explain().to_dict()
    assert f"Columns {', '.join(map(str, d['gate']['dead_units']))}: exactly 0" in text
    for cmd in re.findall(r"^\$ (reluscope .*)$", text, flags=re.M):  # every command shown parses
        assert cmd.split()[1] in {"explain", "born-dead"}


@pytest.mark.parametrize("activation", ["relu", "leaky", "elu", "sigmoid", "tanh"])
@pytest.mark.parametrize(("inputs", "hidden", "classes", "samples"), [(1, 1, 2, 1), (4, 5, 4, 3), (2, 2, 2, 5)])
def test_every_activation_and_tiny_shape_draws(activation, inputs, hidden, classes, samples):
    ex = explain(inputs=inputs, hidden=hidden, classes=classes, samples=samples, activation=activation, reg=0.01)
    c = circuit(ex, level="scalar")
    statuses = [dict(it.attrs)["status"] for it in c.items if isinstance(it, Box) and "status" in dict(it.attrs)]
    fired = ex.gate.fired[ex.column.sample]
    closed = ex.gate.local_grad[ex.column.sample] == 0
    assert statuses == ["passed" if f else "blocked" if z else "leaked" for f, z in zip(fired, closed, strict=True)]
    if activation != "relu":
        assert "blocked" not in statuses  # only ReLU closes the gate
    for level in ("matrix", "scalar"):
        ET.fromstring(render_svg(circuit(ex, level=level)))
    assert render_html(ex).count("<svg") == 2
