"""Write a :class:`index.report_data.Report` into a folder: report.html, its figures (PNG) and TSV tables.

The three renderings have a module each: :mod:`index.report_tables`,
:mod:`index.report_figures` and :mod:`index.report_html`; this one only writes their
files and turns an unwritable folder into one line for the user.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.errors import EngineError
from index.report_data import Report
from index.report_figures import make_figures
from index.report_html import render_html
from index.report_tables import write_tables


class ReportWriteError(EngineError):
    """The report folder cannot be written."""


@dataclass(frozen=True)
class WrittenReport:
    """Where :func:`write_report` put the page, the figures and the tables."""

    folder: Path
    html: Path
    figures: tuple[Path, ...]
    tables: tuple[Path, ...]


def write_report(r: Report, out: Path) -> WrittenReport:
    """Write report.html, one PNG per figure and the TSV tables into ``out`` (created if needed).

    Files of an earlier report in ``out`` are overwritten; other files are left alone.
    """
    out = Path(out).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
        figs = make_figures(r)
        fig_paths = []
        for f in figs.values():
            p = out / f"{f.name}.png"
            p.write_bytes(f.png)
            fig_paths.append(p)
        tables = write_tables(r, out)
        page = out / "report.html"
        page.write_text(render_html(r, figs), encoding="utf-8")
    except OSError as e:
        raise ReportWriteError(f"cannot write the report into {out}: {e.strerror or e}") from None
    return WrittenReport(out, page, tuple(fig_paths), tuple(tables))
