"""reluscope: backprop through ReLU networks, step by step, and dead-unit diagnosis.

The numpy engine is :mod:`reluscope.nn`; datasets :mod:`reluscope.data`; training :mod:`reluscope.train`;
statistics :mod:`reluscope.diagnose`. The PyTorch adapter :mod:`reluscope.torch` needs ``reluscope[torch]``.
Importing this package imports numpy only.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
