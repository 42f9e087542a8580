"""One self-contained HTML page: text, tables, code blocks and PNG figures inlined as base64 ``data:`` URIs.

No scripts, no external stylesheets, fonts or URLs: the file opens offline, can be mailed or attached to a CI run.
Everything user-provided is escaped.
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reluscope.io import atomic_write

__all__ = ["Code", "Image", "Section", "Table", "Text", "render_html", "write_html"]


@dataclass(frozen=True)
class Text:
    """A paragraph of plain text (escaped)."""

    text: str


@dataclass(frozen=True)
class Code:
    """A preformatted block, e.g. the commands that reproduce the run."""

    text: str


@dataclass(frozen=True)
class Image:
    """A PNG figure inlined as base64; ``alt`` is required (accessibility and tests)."""

    png: bytes
    alt: str
    caption: str = ""

    def __post_init__(self) -> None:
        if not self.png.startswith(b"\x89PNG\r\n\x1a\n"):
            raise ValueError(f"Image {self.alt!r}: png must be PNG bytes (from reluscope.report.plots.to_png)")


@dataclass(frozen=True)
class Table:
    """Rows of dicts shown under ``columns`` (default: the keys of the first row). Floats get ``digits``
    significant digits; None shows as an empty cell."""

    rows: Sequence[dict[str, Any]]
    columns: Sequence[str] | None = None
    caption: str = ""
    digits: int = 4


Block = Text | Code | Image | Table


@dataclass
class Section:
    """A titled part of the report."""

    title: str
    blocks: list[Block] = field(default_factory=list)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2rem auto;
max-width:1100px;padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.25rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;
margin-top:2rem}.subtitle{color:#666;margin-top:0}figure{margin:1rem 0}figure img{max-width:100%;height:auto;
border:1px solid #eee}figcaption{color:#555;font-size:.9rem}table{border-collapse:collapse;font-size:.85rem;
margin:.5rem 0 1rem}th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}th{background:#f5f5f5}
td:first-child,th:first-child{text-align:left}p.caption{color:#555;font-size:.9rem;margin-bottom:.2rem}
pre{background:#f6f8fa;padding:.75rem;overflow-x:auto;font-size:.85rem;border-radius:4px}
.tablewrap{overflow-x:auto}
"""


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return f"{value:.{digits}g}"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v, digits) for v in value)
    return str(value)


def _render_block(block: Block) -> str:
    esc = html.escape
    if isinstance(block, Text):
        return f"<p>{esc(block.text)}</p>"
    if isinstance(block, Code):
        return f"<pre><code>{esc(block.text)}</code></pre>"
    if isinstance(block, Image):
        data = base64.b64encode(block.png).decode("ascii")
        cap = f"<figcaption>{esc(block.caption)}</figcaption>" if block.caption else ""
        return f'<figure><img src="data:image/png;base64,{data}" alt="{esc(block.alt, quote=True)}">{cap}</figure>'
    if isinstance(block, Table):
        columns = list(block.columns) if block.columns is not None else list(block.rows[0]) if block.rows else []
        head = "".join(f"<th>{esc(c)}</th>" for c in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{esc(_cell(row.get(c), block.digits))}</td>" for c in columns) + "</tr>"
            for row in block.rows
        )
        cap = f'<p class="caption">{esc(block.caption)}</p>' if block.caption else ""
        return f'{cap}<div class="tablewrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
    raise TypeError(f"unknown report block {type(block).__name__}; use Text, Code, Image or Table")


def render_html(title: str, sections: Sequence[Section], *, subtitle: str = "") -> str:
    """The whole page as a string (UTF-8, no external resources)."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    if subtitle:
        parts.append(f'<p class="subtitle">{esc(subtitle)}</p>')
    for section in sections:
        parts.append(f"<section><h2>{esc(section.title)}</h2>")
        parts.extend(_render_block(b) for b in section.blocks)
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html(path: str | os.PathLike[str], page: str) -> None:
    """Write the page atomically (UTF-8)."""
    with atomic_write(path, "wb") as f:
        f.write(page.encode("utf-8"))
