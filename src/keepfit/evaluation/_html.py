"""Tiny HTML building blocks for self-contained reports (inline CSS, data-URI images)."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from typing import Any

__all__ = ["page", "table", "figure", "fmt", "fmt_interval", "esc", "text_cell", "thumbnail"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left}th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}
.note{color:#555;font-size:.85rem}figure{margin:1rem 0}img{max-width:100%}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def text_cell(value: Any, limit: int = 2000) -> tuple[str, str]:
    """A table cell for a longer text (a prompt, a generated answer): escaped, line breaks kept, cut after
    ``limit`` characters with a note saying how many were left out."""
    text = str(value)
    cut = f" [... {len(text) - limit} more characters]" if len(text) > limit else ""
    return "html", f'<span style="white-space:pre-wrap">{esc(text[:limit])}</span>{esc(cut)}'


def thumbnail(path: str, title: str = "", size: int = 96) -> str:
    """An <img> of the image at ``path`` shrunk to ``size`` pixels, inlined as a JPEG data URI (the report stays
    one self-contained file); a note in its place when the file cannot be read any more."""
    import base64
    import io

    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            small = ImageOps.exif_transpose(img).convert("RGB")
            small.thumbnail((size, size))
            buffer = io.BytesIO()
            small.save(buffer, format="JPEG", quality=80)
    except (OSError, ValueError) as err:
        return f'<span class="note">({esc(title or path)}: {esc(type(err).__name__)})</span>'
    uri = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="{uri}" alt="{esc(title)}" title="{esc(title)}" style="margin:2px">'


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table cell (blank for None/NaN)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.{digits}f}"
    return esc(value)


def fmt_interval(interval: Any, digits: int = 4) -> str:
    if not interval:
        return ""
    lo, hi = interval
    if lo is None or hi is None:
        return ""
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def table(header: list[str], rows: Iterable[list[Any]], numeric_from: int = 1) -> str:
    """An HTML table; cells at or after ``numeric_from`` are right-aligned. Cells are escaped unless given
    pre-formatted
    as ``("html", markup)``."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            css = ' class="num"' if i >= numeric_from else ""
            if isinstance(cell, tuple) and len(cell) == 2 and cell[0] == "html":
                text = cell[1]
            elif isinstance(cell, (int, float)) and not isinstance(cell, bool):
                text = fmt(cell)
            else:
                text = esc(cell)
            cells.append(f"<td{css}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def figure(data_uri: str, caption: str) -> str:
    cap = esc(caption)
    return f'<figure><img src="{data_uri}" alt="{cap}"><figcaption class="note">{cap}</figcaption></figure>'


def page(title: str, sections: list[str]) -> str:
    """A whole HTML document; everything it needs is inline."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1>" + "\n".join(sections) + "</body></html>\n"
    )
