"""`engine knn` and `engine playlist`: thin click commands over index.byexample and index.playlist."""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli.lists import (M3U8_PATH, check_playlist_target, emit, list_rules_options, named,
                              note_empty_columns, output_options, playlist_tracks, shared_column, space_option,
                              write_playlist)
from engine.cli.options import store_option

def _key(key, scale) -> str | None:
    return " ".join(p for p in (key, scale) if p) or None


@click.command()
@click.option("--track", "-t", "tracks", required=True, multiple=True, metavar="X",
              help="Track id, file path, a unique part of a path, or a title; repeat for several seeds.")
@click.option("--not", "avoid", multiple=True, metavar="X",
              help="A track to steer away from: tracks closer to it than to the seeds are left out (repeatable).")
@space_option
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many neighbours.")
@click.option("--where", "where", metavar="SQL",
              help="Only tracks matching this SQL condition on `tracks` (applied before ranking).")
@click.option("--combine", type=click.Choice(["centroid", "fusion", "maxmin"]), default="centroid",
              show_default=True, help="How several seeds are combined (docs/playlists.md).")
@list_rules_options
@output_options
@store_option
def knn(tracks: tuple[str, ...], avoid: tuple[str, ...], space: str | None, k: int, where: str | None,
        combine: str, rules, fmt: str, m3u8: Path | None, relative: bool, force: bool, explain: bool,
        concepts: bool, store_dir: Path | None) -> None:
    """The K tracks most similar to one or more tracks (cosine similarity of embeddings).

    The seeds, the tracks to avoid and duplicates of them are left out, and a
    near-duplicate recording is listed once. A --where filter (SQL over the `tracks`
    table; style('Techno') is a style's activation) picks the candidates first, so K
    tracks come back whenever K match it. With several seeds, `similarity` is the mean
    cosine to them.

    Example: engine knn --track "Metal_madness" --track "War_of_freedom" --not "Feelings" -k 5 --where "bpm BETWEEN 120 AND 160"
    """
    from index.byexample import more_like, resolve_seeds
    from index.query import DEFAULT_SPACE, Searcher

    space = space or DEFAULT_SPACE
    check_playlist_target(m3u8, force, store_dir)
    with Searcher(store_dir) as searcher:
        refs = resolve_seeds(searcher, space, named("--track", tracks) + named("--not", avoid))
        seeds, avoided = refs[:len(tracks)], refs[len(tracks):]
        found = more_like(searcher, seeds, space, k, avoid=avoided, where=where, combine=combine, rules=rules)
        seed_ids = [s.track_id for s in seeds]
        extra: dict[str, list] = {}
        if explain:
            from index.explain import Explainer

            ex = Explainer(searcher.store)
            extra["why"] = [ex.why(n.track_id, seed_ids) for n in found]
        if concepts:
            extra["shared"] = shared_column(searcher, space, [n.track_id for n in found], [seed_ids] * len(found))
        listed = playlist_tracks(searcher, m3u8, [*(s.track_id for s in seeds), *(n.track_id for n in found)])
    note_empty_columns(store_dir, where)
    names = ", ".join(f"{r.track_id} {r.label} ({r.path})" for r in seeds)
    unlike = f", not like {', '.join(r.label for r in avoided)}" if avoided else ""
    how = f" ({combine})" if len(seeds) > 1 else ""
    click.echo(f"{len(found)} nearest to {names}{unlike} in {space}{how}", err=True)
    emit(found, ["rank", "similarity", "track", "path", "bpm", "key", "lufs", "dance", "voice",
                 "arousal", "valence", "top_style"],
         lambda n: (n.rank, round(n.similarity, 4), n.label, n.path, n.bpm, _key(n.key, n.scale),
                    n.loudness_lufs, n.danceability, n.voice, n.arousal, n.valence, n.top_style),
         fmt, extra, m3u8, relative, force, store_dir, listed)


@click.command()
@click.option("--where", "where", required=True, metavar="SQL",
              help="SQL condition on the `tracks` table, e.g. \"bpm BETWEEN 120 AND 130 AND voice < 0.5\".")
@click.option("--order-by", "order_by", metavar="SQL",
              help="SQL sort order, e.g. \"style('Techno') DESC\" or \"arousal DESC\" (default: path).")
@click.option("--limit", type=click.IntRange(min=0), help="At most this many tracks.")
@click.option("--m3u8", "m3u8", type=M3U8_PATH, required=True,
              help="Playlist file to write (UTF-8 M3U); - writes it to standard output.")
@click.option("--relative", is_flag=True, help="Paths relative to the playlist's folder.")
@click.option("--force", is_flag=True, help="Overwrite an existing playlist file.")
@list_rules_options
@store_option
def playlist(where: str, order_by: str | None, limit: int | None, m3u8: Path, relative: bool, force: bool,
             rules, store_dir: Path | None) -> None:
    """Write the tracks matching an SQL condition as an M3U8 playlist.

    Columns are those of the `tracks` table (docs/columns.md); style('Name') is the
    activation (0-1) of a Discogs style, for ranking or filtering. A near-duplicate
    recording is listed once (see `engine duplicates`); --max-per-artist and friends
    cap the list, which then fills up to --limit with the next tracks in order.

    Example: engine playlist --where "voice < 0.3 AND bpm BETWEEN 120 AND 130" --order-by "style('Techno') DESC" --limit 50 --max-per-artist 2 --m3u8 techno.m3u8
    """
    from index.lists import keep_rules
    from index.playlist import select_tracks
    from index.query import DEFAULT_SPACE, Searcher

    check_playlist_target(m3u8, force, store_dir)
    # Rules may drop tracks: ask for more than the limit first, everything if still short.
    ask = None if limit is None else 4 * limit + 100
    while True:
        tracks = select_tracks(store_dir, where, order_by, ask)
        with Searcher(store_dir) as searcher:
            kept = keep_rules(searcher, [t.track_id for t in tracks], DEFAULT_SPACE, rules, limit)
        if ask is None or len(tracks) < ask or len(kept) >= (limit or 0):
            break
        ask = None
    by_id = {t.track_id: t for t in tracks}
    note_empty_columns(store_dir, where, order_by)
    write_playlist([by_id[t] for t in kept], m3u8, relative, force, store_dir)
