"""Backprop through ``D -> H -> C`` step by step, on real numbers: ``reluscope explain`` as a library.

>>> from reluscope.explain import explain, render_markdown
>>> ex = explain()                       # 3 inputs, 4 hidden ReLUs, 3 classes, 2 samples, seed 0
>>> ex.step("dz1").value                 # (N, H): dh ⊙ [z1 > 0]
>>> ex.gate.dead_units                   # units that fired on no sample
>>> print(render_markdown(ex))

:func:`explain` builds an :class:`Explanation` (plain data: numpy arrays and text) from the reference
forward/backward pairs of :mod:`reluscope.nn.functional`; :func:`render_json`, :func:`render_markdown` and
:func:`rich_sections` turn it into output; :func:`circuit` lays out the backprop circuit (matrix level, or
the unrolled scalar circuit of a tiny net) and :func:`render_svg` draws it; :func:`render_html` /
:func:`write_html` make one self-contained page of it all, which is also what an :class:`Explanation` shows in
Jupyter. Nothing here prints, and rich is imported only by
:func:`rich_sections`.
"""

from reluscope.explain._build import (
    DEFAULTS,
    PARAM_KEYS,
    SUPPORTED_ACTIVATIONS,
    ColumnForm,
    Explanation,
    Gate,
    GateEntry,
    SGDStep,
    Step,
    check_params,
    explain,
    explain_net,
    load_weights,
)
from reluscope.explain._circuit import SCALAR_LIMITS, Box, Circuit, Label, Line, circuit, render_svg, scalar_fits
from reluscope.explain._format import fmt as fmt  # not in __all__: a display helper, kept for docs/_tutorial_gen.py
from reluscope.explain._html import html_fragment, render_html, write_html
from reluscope.explain._render import render_json, render_markdown, rich_sections

__all__ = [
    "DEFAULTS",
    "PARAM_KEYS",
    "SCALAR_LIMITS",
    "SUPPORTED_ACTIVATIONS",
    "Box",
    "Circuit",
    "ColumnForm",
    "Explanation",
    "Gate",
    "GateEntry",
    "Label",
    "Line",
    "SGDStep",
    "Step",
    "check_params",
    "circuit",
    "explain",
    "explain_net",
    "html_fragment",
    "load_weights",
    "render_html",
    "render_json",
    "render_markdown",
    "render_svg",
    "rich_sections",
    "scalar_fits",
    "write_html",
]
