"""Backprop through ``D -> H -> C`` step by step, on real numbers: ``reluscope explain`` as a library.

>>> from reluscope.explain import explain, render_markdown
>>> ex = explain()                       # 3 inputs, 4 hidden ReLUs, 3 classes, 2 samples, seed 0
>>> ex.step("dz1").value                 # (N, H): dh ⊙ [z1 > 0]
>>> ex.gate.dead_units                   # units that fired on no sample
>>> print(render_markdown(ex))

:func:`explain` builds an :class:`Explanation` (plain data: numpy arrays and text) from the reference
forward/backward pairs of :mod:`reluscope.nn.functional`; :func:`render_json`, :func:`render_markdown` and
:func:`rich_sections` turn it into output. Nothing here prints, and rich is imported only by
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
from reluscope.explain._render import fmt, render_json, render_markdown, rich_sections

__all__ = [
    "DEFAULTS",
    "PARAM_KEYS",
    "SUPPORTED_ACTIVATIONS",
    "ColumnForm",
    "Explanation",
    "Gate",
    "GateEntry",
    "SGDStep",
    "Step",
    "check_params",
    "explain",
    "explain_net",
    "fmt",
    "load_weights",
    "render_json",
    "render_markdown",
    "rich_sections",
]
