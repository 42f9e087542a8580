"""PyTorch adapter: find every ReLU-family unit in a real model, scan a dataset, monitor training, merge ranks.

Needs PyTorch (``pip install 'reluscope[torch]'``). See ``docs/torch.md``.

Every rectifier call that ``model(x)`` executes is a *site*: modules (``nn.ReLU``, ``nn.GELU``, ...), functional
calls (``F.relu``, ``torch.relu``) and tensor methods (``x.relu_()``), in-place or not, seen by a
``TorchFunctionMode`` (no tracing: data-dependent control flow is fine). A site is named by the executing module's
path (``features.2``), plus the function for calls in a module's own code (``block.relu``, ``gelu`` at the top),
plus ``#k`` for the k-th call of that name in one forward pass (a reused ``act`` module gives ``act``, ``act#2``).
Rectifiers are found by what they compute (``clamp(min=0)``, ``maximum(x, 0)``, ``threshold(x, 0, 0)``,
``hardtanh(0, 6)`` too; your own with :func:`register_rectifier`). A unit fires when its pre-activation is > 0, for
GELU/SiLU too. The unit axis comes from the layer producing the values: a Linear's last dimension (tokens are
samples), a Conv's channels (``per_position=True`` keeps per-position counts); ``unit_axis={site: axis}``
overrides it. ``torch.compile``d modules are scanned and monitored through their eager ``_orig_mod``.

>>> from reluscope.torch import scan, monitor, all_reduce
>>> stats = scan(model, loader)                     # exact per-unit counts over the whole dataset
>>> stats.summary()                                 # the same ActivationStats as the numpy engine
>>> with monitor(model, full_every=100) as m:       # ~1% per training step
...     train(model)
...     print({name: m.stats.dead_fraction(name) for name in m.stats.names})
"""

try:
    import torch as _torch  # noqa: F401
except ImportError as _exc:  # pragma: no cover - exercised by a test that hides torch
    raise ImportError("reluscope.torch needs PyTorch: pip install 'reluscope[torch]'") from _exc

from reluscope.torch._batches import total_samples
from reluscope.torch._cbp import ContinualBackprop
from reluscope.torch._dist import all_reduce
from reluscope.torch._locate import (
    AXIS_SOURCES,
    RECTIFIER_FUNCTIONS,
    RECTIFIER_MODULES,
    NoRectifierError,
    RectifierRegistration,
    Site,
    find_sites,
    is_compiled,
    register_rectifier,
)
from reluscope.torch._models import from_mlp
from reluscope.torch._monitor import Monitor, monitor
from reluscope.torch._prune import load_pruned, prune_dead
from reluscope.torch._redo import ReDoPlan, ReDoSchedule, SitePlan, StructureError, redo, redo_plan
from reluscope.torch._scan import Progress, scan, scan_with_sites
from reluscope.torch._script import uninstrumented_sites
from reluscope.torch._shrink import ShrinkPerturb, shrink_perturb
from reluscope.torch._swap import SwapReport, swap_relu_to_leaky
from reluscope.torch._weights import read_state_dict

__all__ = [
    "AXIS_SOURCES",
    "RECTIFIER_FUNCTIONS",
    "RECTIFIER_MODULES",
    "ContinualBackprop",
    "Monitor",
    "NoRectifierError",
    "Progress",
    "ReDoPlan",
    "ReDoSchedule",
    "RectifierRegistration",
    "ShrinkPerturb",
    "Site",
    "SitePlan",
    "StructureError",
    "SwapReport",
    "all_reduce",
    "find_sites",
    "from_mlp",
    "is_compiled",
    "load_pruned",
    "monitor",
    "prune_dead",
    "read_state_dict",
    "redo",
    "redo_plan",
    "register_rectifier",
    "scan",
    "scan_with_sites",
    "shrink_perturb",
    "swap_relu_to_leaky",
    "total_samples",
    "uninstrumented_sites",
]
