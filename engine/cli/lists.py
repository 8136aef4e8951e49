"""`engine path`, `engine radio`, `engine duplicates` and the options every list command shares:
thin click commands over index.paths, index.radio, index.duplicates and index.lists."""

from __future__ import annotations

import functools
from dataclasses import asdict, fields
from pathlib import Path
from typing import Sequence

import click

from engine.cli.options import store_option
from engine.cli.output import format_option, render

M3U8_PATH = click.Path(dir_okay=False, writable=True, allow_dash=True, path_type=Path)
STDOUT = Path("-")  # --m3u8 -: the playlist goes to standard output instead of the table
SHARED_WITH = "its nearest seed (knn, radio) or the track before (path)"


# -- shared options ------------------------------------------------------------------------

def space_option(f):
    """--space, defaulting to the best measured space (index.query.DEFAULT_SPACE)."""
    return click.option(
        "--space", "-s", default=None, metavar="musicnn|mtt|effnet",
        help="Embedding space: musicnn (MSD-MusiCNN, 200-d; the default, best measured), "
        "mtt (MagnaTagATune MusiCNN, 200-d) or effnet (Discogs-EffNet, 1280-d).")(f)


def list_rules_options(f):
    """--max-per-artist, --max-per-album, --artist-gap, --keep-duplicates, given to the
    command as one ``rules`` (index.lists.ListRules)."""

    @functools.wraps(f)
    def command(*args, max_per_artist, max_per_album, artist_gap, keep_duplicates, **kwargs):
        from index.lists import ListRules

        rules = ListRules(max_per_artist, max_per_album, artist_gap, keep_duplicates)
        return f(*args, rules=rules, **kwargs)

    options = (
        click.option("--max-per-artist", type=click.IntRange(min=1), metavar="N",
                     help="At most N tracks of one artist (artist tag)."),
        click.option("--max-per-album", type=click.IntRange(min=1), metavar="N",
                     help="At most N tracks of one album (album tag, else the file's folder)."),
        click.option("--artist-gap", type=click.IntRange(min=0), default=0, metavar="K",
                     help="No artist again within K tracks."),
        click.option("--keep-duplicates", is_flag=True,
                     help="List near-duplicate recordings (the same audio in two files) each time."),
    )
    for option in reversed(options):
        command = option(command)
    return command


def output_options(f):
    """--format, --m3u8 (- for standard output), --relative, --force, --explain, --concepts."""
    for option in reversed((
        format_option,
        click.option("--m3u8", "m3u8", type=M3U8_PATH,
                     help="Also write the list as an M3U8 playlist (- : to standard output, instead of the table)."),
        click.option("--relative", is_flag=True, help="Playlist paths relative to the playlist's folder."),
        click.option("--force", is_flag=True, help="Overwrite an existing playlist file."),
        click.option("--explain", is_flag=True,
                     help="Say why each track is there: the tags and descriptors it shares."),
        click.option("--concepts", is_flag=True,
                     help="Add a column `shared`: the concepts (tags, descriptor words, your tags) each "
                     f"track shares with {SHARED_WITH}; learning the concepts takes seconds (docs/tags.md)."),
    )):
        f = option(f)
    return f


def length_options(f):
    f = click.option("--minutes", type=click.FloatRange(min=0, min_open=True), metavar="M",
                     help="About M minutes of music instead of a number of tracks.")(f)
    return click.option("--length", "-n", "length", type=click.IntRange(min=1), metavar="N",
                        help="Tracks in the playlist, the given ones included.")(f)


def named(option: str, texts: Sequence[str]):
    from index.byexample import Named

    return [Named(option, t) for t in texts]


# -- output -----------------------------------------------------------------------------------

def check_playlist_target(m3u8: Path | None, force: bool, store_dir: Path | None) -> None:
    """Refuse a playlist target before the work (index.playlist.check_target)."""
    from index.playlist import check_target

    if m3u8 not in (None, STDOUT):
        check_target(m3u8.expanduser().absolute(), force=force, store_dir=store_dir)


def playlist_tracks(searcher, m3u8: Path | None, track_ids: Sequence[int]):
    """The tracks to write as a playlist (index.tracks.tracks_by_id), or None without --m3u8."""
    from index.tracks import tracks_by_id

    return None if m3u8 is None else tracks_by_id(searcher.store, track_ids)


def write_playlist(tracks, m3u8: Path, relative: bool, force: bool, store_dir: Path | None) -> None:
    """The playlist to ``m3u8``, or to standard output for ``-`` (paths then relative to
    the working folder when ``relative``); a track left out is a warning on stderr."""
    from index.playlist import m3u8_lines, write_m3u8

    if m3u8 == STDOUT:
        tracks = list(tracks)
        text, skipped = m3u8_lines(tracks, Path.cwd() if relative else None)
        click.echo(text, nl=False)
        count, where = len(tracks) - len(skipped), "standard output"
    else:
        written = write_m3u8(tracks, m3u8, relative=relative, force=force, store_dir=store_dir)
        skipped, count, where = written.skipped, written.count, str(written.path)
    for line in skipped:
        click.echo(f"warning: {line}", err=True)
    click.echo(f"wrote {count} track{'s' if count != 1 else ''} to {where}", err=True)


def note_empty_columns(store_dir: Path | None, where: str | None, order_by: str | None = None) -> None:
    """On stderr: which columns the user's SQL names are empty in this store, and why."""
    from index.sql import empty_columns_note

    if not (where or order_by):
        return
    sql = f"SELECT 1 FROM tracks WHERE ({where or 'TRUE'})" + (f" ORDER BY {order_by}" if order_by else "")
    note = empty_columns_note(store_dir, sql)
    if note:
        click.echo(note, err=True)


def emit(items: Sequence, table_columns: Sequence[str], table_row, fmt: str, extra: dict[str, list],
         m3u8: Path | None, relative: bool, force: bool, store_dir: Path | None,
         playlist: Sequence | None = None) -> None:
    """Print ``items`` (dataclasses) as a table (``table_row(item)``) or as JSON/CSV of their
    fields, then the ``extra`` columns (name -> one value per item: ``why`` when explaining,
    ``shared`` concepts; a list is a JSON list, joined with ", " in a table or CSV), and write
    ``playlist`` (tracks from :func:`playlist_tracks`) when asked; with ``--m3u8 -`` the
    playlist is the only thing on standard output."""
    if m3u8 != STDOUT:
        if fmt == "table":
            columns = list(table_columns)
            rows = [tuple(table_row(x)) for x in items]
        else:
            columns = [f.name for f in fields(items[0])] if items else ["track_id", "path", "similarity"]
            rows = [tuple(asdict(x).values()) for x in items]
        columns += list(extra)

        def cell(v):
            return ", ".join(v) if isinstance(v, list) and fmt != "json" else v

        rows = [r + tuple(cell(values[i]) for values in extra.values()) for i, r in enumerate(rows)]
        click.echo(render(columns, rows, fmt))
    if m3u8 is not None:
        write_playlist(playlist, m3u8, relative, force, store_dir)


def emit_play_order(entries: Sequence, fmt: str, extra: dict[str, list], m3u8: Path | None,
                    relative: bool, force: bool, store_dir: Path | None, playlist: Sequence | None) -> None:
    """A path or radio (index.lists.PlaylistEntry): position, similarity to the previous
    track, role, track, path."""
    emit(entries, ["#", "sim", "role", "track", "path"],
         lambda t: (t.position, None if t.similarity is None else round(t.similarity, 3), t.role, t.label, t.path),
         fmt, extra, m3u8, relative, force, store_dir, playlist)


def shared_column(searcher, space: str, track_ids: Sequence[int], references: Sequence[Sequence[int]]) -> list:
    """Per track: the concepts it shares (index.tcav) with the closest of its ``references``
    (cosine in ``space``, as the search compares them); a track among its references: []."""
    import numpy as np

    from index.tcav import shared_concepts_of_pairs

    pairs = []
    for t, refs in zip(track_ids, references):
        if t in refs or len(refs) == 1:
            pairs.append((t, t if t in refs else refs[0]))
            continue
        sims = searcher.vectors(space, list(refs)) @ searcher.vectors(space, [t])[0]
        pairs.append((t, refs[int(np.argmax(sims))]))
    return shared_concepts_of_pairs(searcher.store, pairs, space)


# -- commands ---------------------------------------------------------------------------------

@click.command()
@click.option("--from", "start", required=True, metavar="X", help="First track (id, path, part of a path, title).")
@click.option("--to", "end", required=True, metavar="X", help="Last track.")
@click.option("--via", "via", multiple=True, metavar="X", help="A track to pass through, in order (repeatable).")
@length_options
@click.option("--where", "where", metavar="SQL", help="Only tracks matching this SQL condition on `tracks` between them.")
@space_option
@list_rules_options
@output_options
@store_option
def path(start: str, end: str, via: tuple[str, ...], length: int | None, minutes: float | None,
         where: str | None, space: str | None, rules, fmt: str, m3u8: Path | None, relative: bool,
         force: bool, explain: bool, concepts: bool, store_dir: Path | None) -> None:
    """A song path: a playlist that moves steadily from one track to another.

    Consecutive tracks are similar, and every track is further along from --from towards
    --to (through each --via in order) than the one before: no step back. The path is
    chosen to make its largest step between two tracks as small as possible.

    Example: engine path --from "Metal_madness" --to "Ambience" --via "Castle" --length 15 --m3u8 path.m3u8
    """
    from index.byexample import resolve_seeds
    from index.paths import song_path
    from index.query import DEFAULT_SPACE, Searcher

    space = space or DEFAULT_SPACE
    check_playlist_target(m3u8, force, store_dir)
    with Searcher(store_dir) as searcher:
        refs = resolve_seeds(searcher, space, named("--from", [start]) + named("--via", via) + named("--to", [end]))
        result = song_path(searcher, refs[0], refs[-1], space, via=refs[1:-1], length=length, minutes=minutes,
                           where=where, rules=rules)
        ids = [s.track_id for s in result.steps]
        extra = _extra_columns(searcher, space, ids, [ids[:1]] + [[p] for p in ids[:-1]], explain, concepts)
        listed = playlist_tracks(searcher, m3u8, ids)
    note_empty_columns(store_dir, where)
    steps = result.steps
    click.echo(f"path of {len(steps)} tracks ({result.seconds / 60:.0f} min) from {refs[0].label} to "
               f"{refs[-1].label} in {space}: worst step {result.worst_step:.3f} (cosine distance)", err=True)
    emit_play_order(steps, fmt, extra, m3u8, relative, force, store_dir, listed)


@click.command()
@click.option("--seed", "seeds", multiple=True, required=True, metavar="X",
              help="A track to start from (id, path, part of a path, title; repeatable).")
@length_options
@click.option("--variety", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="0: always the closest next track; 1: a wide choice.")
@click.option("--random-seed", type=int, metavar="N", help="Draw the same list again (with --variety > 0).")
@click.option("--where", "where", metavar="SQL", help="Only tracks matching this SQL condition on `tracks`.")
@space_option
@list_rules_options
@output_options
@store_option
def radio(seeds: tuple[str, ...], length: int | None, minutes: float | None, variety: float,
          random_seed: int | None, where: str | None, space: str | None, rules, fmt: str,
          m3u8: Path | None, relative: bool, force: bool, explain: bool, concepts: bool,
          store_dir: Path | None) -> None:
    """A radio playlist that continues from seed tracks (default 30 tracks).

    The seeds play first; each next track is close to the one before and to the seeds,
    never a repeat. --variety widens the choice.

    Example: engine radio --seed "Metal_madness" --seed "War_of_freedom" --minutes 60 --artist-gap 2 --m3u8 radio.m3u8
    """
    from index.byexample import resolve_seeds
    from index.query import DEFAULT_SPACE, Searcher
    from index.radio import radio as make_radio

    space = space or DEFAULT_SPACE
    check_playlist_target(m3u8, force, store_dir)
    with Searcher(store_dir) as searcher:
        refs = resolve_seeds(searcher, space, named("--seed", seeds))
        tracks = make_radio(searcher, refs, space, length=length, minutes=minutes, variety=variety,
                            where=where, rules=rules, random_seed=random_seed)
        ids = [t.track_id for t in tracks]
        extra = _extra_columns(searcher, space, ids, [[r.track_id for r in refs]] * len(ids), explain, concepts)
        listed = playlist_tracks(searcher, m3u8, ids)
    note_empty_columns(store_dir, where)
    minutes_total = sum(t.duration or 0 for t in tracks) / 60
    click.echo(f"radio of {len(tracks)} tracks ({minutes_total:.0f} min) from "
               f"{', '.join(r.label for r in refs)} in {space}", err=True)
    emit_play_order(tracks, fmt, extra, m3u8, relative, force, store_dir, listed)


@click.command()
@space_option
@format_option
@store_option
def duplicates(space: str | None, fmt: str, store_dir: Path | None) -> None:
    """List near-duplicate recordings: the same audio in two files or formats.

    Found from the embeddings (centred cosine >= 0.95), durations (within 1 s or 1 %) and, where
    measured, tempo and key; files with identical content too. Lists (knn, path, radio,
    playlist) show one track of each group unless --keep-duplicates.

    Example: engine duplicates --format json
    """
    from index.duplicates import find_duplicates
    from index.query import DEFAULT_SPACE, Searcher, check_space
    from index.trackfacts import all_track_facts

    space = space or DEFAULT_SPACE
    check_space(space)
    with Searcher(store_dir) as searcher:
        ids, vecs = searcher.matrix(space)
        groups = find_duplicates(ids, vecs, all_track_facts(searcher.store))
    click.echo(f"{len(groups)} group{'s' if len(groups) != 1 else ''} of near-duplicate recordings in {space}",
               err=True)
    columns = ["group", "track_id", "similarity", "duration", "path"]
    rows = [(g, t.track_id, g_.similarity, t.duration, t.path)
            for g, g_ in enumerate(groups, 1) for t in g_.tracks]
    click.echo(render(columns, rows, fmt))


def _extra_columns(searcher, space: str, track_ids: Sequence[int], references: Sequence[Sequence[int]],
                   explain: bool, concepts: bool) -> dict[str, list]:
    """For a play order: ``why`` each track follows the one before (the first: "") with
    --explain; the ``shared`` concepts with its reference (:func:`shared_column`) with --concepts."""
    extra: dict[str, list] = {}
    if explain:
        from index.explain import Explainer

        ex = Explainer(searcher.store)
        extra["why"] = [""] + [ex.why(t, [p]) for p, t in zip(track_ids, track_ids[1:])]
    if concepts:
        extra["shared"] = shared_column(searcher, space, track_ids, references)
    return extra
