"""`engine search`: a thin click command over index.search."""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli.options import store_option
from engine.cli.output import format_option, render

_M3U8 = click.Path(dir_okay=False, writable=True, path_type=Path)


@click.command()
@click.argument("text")
@click.option("-k", "k", type=click.IntRange(min=1), default=20, show_default=True, help="How many tracks.")
@click.option("--where", "where", metavar="SQL",
              help="Only tracks matching this SQL condition on `tracks` (applied before ranking).")
@format_option
@click.option("--m3u8", "m3u8", type=_M3U8, help="Also write the results as a playlist.")
@click.option("--relative", is_flag=True, help="Playlist paths relative to the playlist's folder.")
@click.option("--explain", is_flag=True, help="Print how the query was read (to stderr).")
@click.option("--only", "mode", type=click.Choice(["combined", "tags", "text"]), default="combined",
              show_default=True,
              help="Rank by vocabulary words only (tags), by the sentence model only (text), or both.")
@click.option("--retrain", is_flag=True, help="Train the learned text-audio space again first.")
@store_option
def search(text: str, k: int, where: str | None, fmt: str, m3u8: Path | None, relative: bool,
           explain: bool, mode: str, retrain: bool, store_dir: Path | None) -> None:
    """Tracks that match words: tags, styles, descriptors and a learned text-audio space.

    Words that name a tag ("piano", "choir", "female vocal"), a Discogs style
    ("techno") or a descriptor ("fast", "120 bpm", "in D minor", "loud", "danceable",
    "instrumental", "calm", "sad") rank by the stored values; "no"/"not"/"without"
    negates the next one. Other words ("cinematic", "lullaby") go through a sentence
    model to the nearest tag and style names and to a text-audio space learned from
    the collection's own tags. Each result says why it matched.

    Example: engine search "calm piano, no vocals" -k 10 --where "duration < 300"
    """
    from index.playlist import write_m3u8
    from index.search import TextSearcher

    with TextSearcher(store_dir, retrain=retrain) as searcher:
        result = searcher.search(text, k, where, mode)
    if explain:
        for line in result.explain():
            click.echo(line, err=True)
    for note in result.notes:
        click.echo(note, err=True)
    click.echo(f"{len(result.hits)} tracks for {result.query.text!r}", err=True)
    hits = result.hits
    if fmt == "table":
        columns = ["rank", "score", "track", "why", "path"]
        rows = [(h.rank, round(h.score, 3), h.label, h.why, h.path) for h in hits]
    else:
        from dataclasses import asdict, fields

        from index.search import SearchHit

        columns = [f.name for f in fields(SearchHit)]
        rows = [tuple(asdict(h).values()) for h in hits]
    click.echo(render(columns, rows, fmt))
    if m3u8 is not None:
        written = write_m3u8(hits, m3u8, relative=relative)
        for line in written.skipped:
            click.echo(f"warning: {line}", err=True)
        click.echo(f"wrote {written.count} tracks to {written.path}", err=True)
