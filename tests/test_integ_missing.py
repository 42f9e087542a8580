"""Each integration names its extra when its library is missing (the library hidden in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HIDE = """
import sys
for name in {hidden!r}:
    sys.modules[name] = None  # `import name` now raises ImportError
try:
{body}
except ImportError as exc:
    print("IMPORTERROR:", exc)
"""


def message(hidden: list[str], body: str) -> str:
    code = HIDE.format(hidden=hidden, body="\n".join("    " + line for line in body.strip().splitlines()))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


@pytest.mark.parametrize(
    ("hidden", "body", "extra"),
    [
        (["lightning", "lightning.pytorch"], "import reluscope.integrations.lightning", "reluscope[lightning]"),
        (["transformers"], "import reluscope.integrations.hf", "reluscope[hf]"),
        (
            ["safetensors", "safetensors.numpy"],
            "from reluscope.io import save_model\nfrom reluscope.nn import MLP\n"
            "save_model('/nonexistent/m.safetensors', MLP([2, 3, 2], seed=0))",
            "reluscope[safetensors]",
        ),
        (
            ["distributed"],
            "from reluscope._cluster import map_on_dask\nlist(map_on_dask(abs, [1], scheduler='tcp://x:1'))",
            "reluscope[dask]",
        ),
    ],
)
def test_missing_library_names_the_extra(hidden: list[str], body: str, extra: str) -> None:
    pytest.importorskip("torch")
    out = message(hidden, body)
    assert "IMPORTERROR:" in out and f"pip install '{extra}'" in out, out
