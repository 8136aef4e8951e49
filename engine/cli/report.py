"""``engine report``: the collection overview as HTML with figures, plus TSV tables."""

from __future__ import annotations

import time
from pathlib import Path

import click

from engine.cli.options import store_option


@click.command("report")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("music-report"), show_default=True,
              help="Folder to write report.html, the figures (PNG) and the tables (TSV) into.")
@store_option
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.1, show_default=True,
              help="Activation from which a Discogs style counts as present in a track.")
def report(out_dir: Path, store_dir: Path | None, threshold: float) -> None:
    """Write an overview of the collection: styles, tempo, keys, loudness, mood, vocals, your tags.

    report.html is self-contained (figures embedded) and opens offline in any
    browser; the same numbers are in TSV files beside it. Prints the page's path.

    Example: engine report --out ~/music-report && xdg-open ~/music-report/report.html
    """
    from index.report import compute_report
    from index.report_render import write_report
    from index.store import Store

    start = time.perf_counter()
    with Store.open_read_only(store_dir) as store:
        rep = compute_report(store, style_threshold=threshold)
    written = write_report(rep, out_dir)
    click.echo(
        f"report of {rep.facts.tracks:,} track{'' if rep.facts.tracks == 1 else 's'}: {len(written.figures)} figures, "
        f"{len(written.tables)} tables in {written.folder} ({time.perf_counter() - start:.1f} s)",
        err=True,
    )
    click.echo(str(written.html))
