"""Rows to text: the one place that formats query results for the terminal.

``table`` is for people (aligned columns, long values shortened), ``json`` (a list of
objects) and ``csv`` are for programs. Every command that prints rows uses
:func:`render` and the ``format_option`` decorator, so they all behave alike.
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import date, datetime
from typing import Any, Sequence

import click
from rich.cells import cell_len

from tui.text import printable, shorten

FORMATS = ("table", "json", "csv")


def format_option(f):
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="Output format.",
    )(f)


def _plain(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if hasattr(v, "tolist"):
        return v.tolist()
    return v


def _cell(v: Any, width: int = 60) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        text = f"{v:.4g}" if abs(v) < 1e5 else f"{v:.0f}"
    elif isinstance(v, (list, tuple)):
        text = "[" + ", ".join(_cell(x, 12) for x in v[:4]) + (", …]" if len(v) > 4 else "]")
    else:
        text = printable(str(v))
    return shorten(text, width)


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str = "table") -> str:
    """Format ``rows`` (sequences in ``columns`` order) as ``table``, ``json`` or ``csv``."""
    if fmt == "json":
        return json.dumps([{c: _plain(v) for c, v in zip(columns, r)} for r in rows],
                          ensure_ascii=False, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            writer.writerow(["" if v is None else _plain(v) for v in r])
        return buf.getvalue().rstrip("\n")
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [max([cell_len(c)] + [cell_len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    right = [all(isinstance(r[i], (int, float)) or r[i] is None for r in rows) and rows
             for i in range(len(columns))]

    def line(values):
        pads = [" " * (w - cell_len(v)) for v, w in zip(values, widths)]
        return "  ".join(p + v if rj else v + p
                         for v, p, rj in zip(values, pads, right)).rstrip()
    out = [line(list(columns)), line(["─" * w for w in widths])]
    out += [line(r) for r in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)
