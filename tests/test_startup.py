"""Start-up stays light: ``import reluscope``, the CLI app and ``--help`` import no heavy library.

Each check runs in a fresh interpreter (this test process has long imported everything) and reports the
top-level modules it ended up with; nothing is timed.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "matplotlib", "sklearn", "scipy", "pandas", "pydantic")
RICH_HEAVY = ("rich.console", "rich.progress", "rich.table", "rich.syntax", "rich.traceback", "rich.markdown")

REPORT = """
import json, sys
{body}
print(json.dumps(sorted(sys.modules)))
"""


def modules_after(body: str) -> set[str]:
    res = subprocess.run(
        [sys.executable, "-c", REPORT.format(body=body)], capture_output=True, text=True, timeout=120, check=False
    )
    assert res.returncode == 0, res.stderr
    return set(json.loads(res.stdout.strip().splitlines()[-1]))


def heavy_in(modules: set[str], extra: tuple[str, ...] = ()) -> list[str]:
    tops = {m.split(".")[0] for m in modules}
    return sorted({m for m in HEAVY + extra if m in tops} | {m for m in RICH_HEAVY if m in modules})


def test_import_reluscope_is_light():
    modules = modules_after("import reluscope")
    assert heavy_in(modules, ("numpy", "typer", "rich")) == []


def test_importing_the_cli_app_is_light():
    modules = modules_after("from reluscope.cli import app")
    assert "typer" in modules
    assert heavy_in(modules, ("numpy", "rich")) == []


HELP = """
from reluscope.cli import app
argv = {argv!r}
try:
    app(argv, prog_name="reluscope")
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
"""


def test_root_help_is_light():
    modules = modules_after(HELP.format(argv=["--help"]))
    assert heavy_in(modules, ("numpy", "rich")) == []


def test_every_command_help_skips_the_heavy_libraries():
    from typer.main import get_command

    from reluscope.cli import app

    commands = sorted(get_command(app).commands)  # type: ignore[attr-defined]
    assert "train" in commands
    for name in commands:
        modules = modules_after(HELP.format(argv=[name, "--help"]))
        # typer builds each option's converter (pydantic) for a command's help; the library stays unimported
        bad = [m for m in heavy_in(modules) if m != "pydantic"]
        assert bad == [], f"`reluscope {name} --help` imports {bad}; import them inside the command body"


@pytest.mark.parametrize("module", ["reluscope.nn", "reluscope.train", "reluscope.data", "reluscope.diagnose"])
def test_the_numpy_core_needs_no_torch_or_matplotlib(module):
    modules = modules_after(f"import {module}")
    tops = {m.split(".")[0] for m in modules}
    assert not tops & {"torch", "matplotlib"}, module
