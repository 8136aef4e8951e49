"""`engine knn` and `engine playlist`: thin click commands over index.query and index.playlist."""

from __future__ import annotations

from pathlib import Path

import click

from engine.options import store_option
from engine.output import format_option, render

_M3U8 = click.Path(dir_okay=False, writable=True, allow_dash=True, path_type=Path)
STDOUT = Path("-")  # --m3u8 -: the playlist goes to standard output


def _write_playlist(tracks, m3u8: Path, relative: bool) -> None:
    """The playlist to ``m3u8``, or to stdout for ``-`` (paths then relative to the cwd)."""
    from index.playlist import m3u8_text, write_m3u8

    if m3u8 == STDOUT:
        tracks = list(tracks)
        click.echo(m3u8_text(tracks, Path.cwd() if relative else None), nl=False)
        count = len(tracks)
        where = "standard output"
    else:
        count = write_m3u8(tracks, m3u8, relative=relative)
        where = str(m3u8)
    click.echo(f"wrote {count} track{'s' if count != 1 else ''} to {where}", err=True)


def _note_empty_columns(store_dir: Path | None, where: str | None, order_by: str | None = None) -> None:
    """On stderr: which columns the user's SQL names are empty in this store, and why."""
    from index.sql import empty_columns_note

    if not (where or order_by):
        return
    sql = f"SELECT 1 FROM tracks WHERE ({where or 'TRUE'})" + (f" ORDER BY {order_by}" if order_by else "")
    note = empty_columns_note(store_dir, sql)
    if note:
        click.echo(note, err=True)


def _key(key, scale) -> str | None:
    return " ".join(p for p in (key, scale) if p) or None


@click.command()
@click.option("--track", "-t", "track", required=True, metavar="X",
              help="Track id, file path, or a unique part of a path.")
@click.option("--space", "-s", required=True, metavar="effnet|musicnn|mtt",
              help="Embedding space: effnet (Discogs-EffNet, 1280-d), musicnn (MSD-MusiCNN, 200-d) "
              "or mtt (MagnaTagATune MusiCNN, 200-d).")
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many neighbours.")
@click.option("--where", "where", metavar="SQL",
              help="Only tracks matching this SQL condition on `tracks` (applied before ranking).")
@format_option
@click.option("--m3u8", "m3u8", type=_M3U8,
              help="Also write the track and its neighbours as a playlist (- : to stdout, instead of the table).")
@click.option("--relative", is_flag=True, help="Playlist paths relative to the playlist's folder.")
@store_option
def knn(track: str, space: str, k: int, where: str | None, fmt: str, m3u8: Path | None,
        relative: bool, store_dir: Path | None) -> None:
    """The K tracks most similar to a track (cosine similarity of embeddings).

    The track itself and exact duplicates of it are left out. A --where filter
    (SQL over the `tracks` table; style('Techno') is a style's activation) picks the
    candidates first, so K tracks come back whenever K match it.

    Example: engine knn --track "Metal_madness" --space effnet -k 5 --where "bpm BETWEEN 120 AND 160"
    """
    from index.query import Searcher, check_space, resolve_track

    check_space(space)
    with Searcher(store_dir) as searcher:
        ref = resolve_track(searcher.store, track)
        found = searcher.knn(ref, space, k, where)
    _note_empty_columns(store_dir, where)
    click.echo(f"{len(found)} nearest to {ref.track_id} {ref.label} ({ref.path}) in {space}", err=True)
    if fmt == "table":
        columns = ["rank", "similarity", "track", "path", "bpm", "key", "lufs", "dance", "voice",
                   "arousal", "valence", "top_style"]
        rows = [(n.rank, round(n.similarity, 4), n.label, n.path, n.bpm, _key(n.key, n.scale),
                 n.loudness_lufs, n.danceability, n.voice, n.arousal, n.valence, n.top_style)
                for n in found]
    else:
        from dataclasses import asdict, fields

        from index.query import Neighbour

        columns = [f.name for f in fields(Neighbour)]
        rows = [tuple(asdict(n).values()) for n in found]
    if m3u8 != STDOUT:
        click.echo(render(columns, rows, fmt))
    if m3u8 is not None:
        _write_playlist([ref, *found], m3u8, relative)


@click.command()
@click.option("--where", "where", required=True, metavar="SQL",
              help="SQL condition on the `tracks` table, e.g. \"bpm BETWEEN 120 AND 130 AND voice < 0.5\".")
@click.option("--order-by", "order_by", metavar="SQL",
              help="SQL sort order, e.g. \"style('Techno') DESC\" or \"arousal DESC\" (default: path).")
@click.option("--limit", type=click.IntRange(min=0), help="At most this many tracks.")
@click.option("--m3u8", "m3u8", type=_M3U8, required=True,
              help="Playlist file to write (UTF-8 M3U); - writes it to standard output.")
@click.option("--relative", is_flag=True, help="Paths relative to the playlist's folder.")
@store_option
def playlist(where: str, order_by: str | None, limit: int | None, m3u8: Path, relative: bool,
             store_dir: Path | None) -> None:
    """Write the tracks matching an SQL condition as an M3U8 playlist.

    Columns are those of the `tracks` table (docs/columns.md); style('Name') is the
    activation (0-1) of a Discogs style, for ranking or filtering.

    Example: engine playlist --where "voice < 0.3 AND bpm BETWEEN 120 AND 130" --order-by "style('Techno') DESC" --limit 50 --m3u8 techno.m3u8
    """
    from index.playlist import select_tracks

    tracks = select_tracks(store_dir, where, order_by, limit)
    _note_empty_columns(store_dir, where, order_by)
    _write_playlist(tracks, m3u8, relative)
