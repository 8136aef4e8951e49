"""``engine listener`` and ``engine quality``: listener profiles and quality for hearing loss.

Thin click commands over index.listeners (profiles, predictions), engine.listeners
(scoring) and engine.haaqi (the real HAAQI). See docs/hearing.md.
"""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli.options import store_option
from engine.cli.output import format_option, render

_AUDIOGRAM_HELP = ("8 hearing thresholds in dB HL at 250, 500, 1k, 2k, 3k, 4k, 6k, 8k Hz, "
                   "e.g. 20,20,25,30,40,50,60,65.")


@click.group("listener")
def listener() -> None:
    """Listener profiles (audiograms): each gets a predicted quality for every track.

    The prediction is a HAAQI estimate, 0-1: how close the track, heard through a
    hearing aid fitted to the audiogram, comes to how its clean version would sound to
    that listener (docs/hearing.md). `engine build` keeps it up to date.
    """


@listener.command("add")
@click.argument("name")
@click.option("--audiogram", required=True, metavar="THRESHOLDS", help=_AUDIOGRAM_HELP)
@store_option
def listener_add(name: str, audiogram: str, store_dir: Path | None) -> None:
    """Add listener NAME and score every analysed track for them (no decoding).

    Example: engine listener add mum --audiogram 20,20,25,30,40,50,60,65
    """
    from models.audiogram import parse_audiogram
    from engine.listeners import score_listeners
    from index.listeners import add_listener, check_name
    from index.store import Store

    check_name(name)
    profile = parse_audiogram(audiogram)
    with Store.open(store_dir) as store:
        add_listener(store, name, profile)
        summary = score_listeners(store, [name])
    click.echo(f"added {name} ({profile.label}; {profile.text()} dB HL): "
               f"{summary.total} track{'' if summary.total == 1 else 's'} scored "
               f"in {summary.seconds:.1f} s", err=True)


@listener.command("list")
@format_option
@store_option
def listener_list(fmt: str, store_dir: Path | None) -> None:
    """Show the listener profiles, their hearing class and how many tracks are scored.

    Example: engine listener list --format json
    """
    from index.listeners import list_listeners
    from index.store import Store

    with Store.open_read_only(store_dir) as store:
        profiles = list_listeners(store)
    columns = ["name", "audiogram", "class", "pta_db", "scored", "tracks", "added_at"]
    rows = [(p.name, p.audiogram.text(), p.audiogram.label, round(p.audiogram.pta, 1),
             p.scored, p.tracks, p.added_at) for p in profiles]
    click.echo(render(columns, rows, fmt))


@listener.command("delete")
@click.argument("name")
@store_option
def listener_delete(name: str, store_dir: Path | None) -> None:
    """Remove listener NAME and their predictions (the tracks stay).

    Example: engine listener delete mum
    """
    from index.listeners import delete_listener
    from index.store import Store

    with Store.open(store_dir) as store:
        count = delete_listener(store, name)
    click.echo(f"deleted {name} and {count} prediction{'' if count == 1 else 's'}", err=True)


@click.command("quality")
@click.option("--listener", "listener_name", metavar="NAME",
              help="List the tracks worst first for this listener (or, with --reference, "
                   "take the audiogram from their profile).")
@click.option("--reference", "reference", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              metavar="REF", help="Clean reference file: run the real HAAQI of TEST against it.")
@click.argument("test", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--audiogram", metavar="THRESHOLDS", help="With --reference: " + _AUDIOGRAM_HELP)
@click.option("--seconds", type=click.FloatRange(min=0.5), default=30.0, show_default=True,
              help="With --reference: seconds compared, from the start (HAAQI costs about "
                   "1 CPU-second per second of audio).")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most this many tracks.")
@format_option
@store_option
def quality(listener_name: str | None, reference: Path | None, test: Path | None,
            audiogram: str | None, seconds: float, limit: int | None, fmt: str,
            store_dir: Path | None) -> None:
    """Music quality for a listener with hearing loss (HAAQI, 0 = bad .. 1 = as the clean track).

    With --listener NAME: the collection's tracks, worst first, by predicted HAAQI (no
    reference needed). With --reference REF TEST and --audiogram (or --listener): the
    real HAAQI of TEST against REF, which needs pyclarity (the command says how to
    install it), beside the prediction made from TEST alone.

    \b
    Examples:
      engine quality --listener mum --limit 20
      engine quality --reference master.flac transfer.mp3 --audiogram 20,20,25,30,40,50,60,65
    """
    from engine.errors import EngineError

    if reference is None:
        if test is not None or audiogram is not None:
            raise EngineError("TEST and --audiogram go with --reference REF: "
                              "engine quality --reference REF TEST --audiogram ...")
        if listener_name is None:
            raise EngineError("say whose quality: engine quality --listener NAME, or "
                              "engine quality --reference REF TEST --audiogram ...")
        _listener_tracks(listener_name, limit, fmt, store_dir)
        return
    if test is None:
        raise EngineError(f"--reference {reference} needs the TEST file to compare with it")
    if (audiogram is None) == (listener_name is None):
        raise EngineError("with --reference give the listener's hearing: --audiogram "
                          "THRESHOLDS or --listener NAME (one of them)")
    _compare(reference, test, audiogram, listener_name, seconds, fmt, store_dir)


def _listener_tracks(name: str, limit: int | None, fmt: str, store_dir: Path | None) -> None:
    from index.listeners import get_listener, list_listeners, worst_tracks
    from index.store import Store

    with Store.open_read_only(store_dir) as store:
        profile = get_listener(store, name)
        tracks = worst_tracks(store, name, limit)
        counts = {p.name: p for p in list_listeners(store)}[name]
    click.echo(f"{len(tracks)} track{'' if len(tracks) == 1 else 's'} for {name} "
               f"({profile.audiogram.label}), worst first; {counts.scored} of {counts.tracks} scored",
               err=True)
    if fmt == "table":
        columns = ["haaqi", "quality", "track_id", "artist", "title", "path"]
        rows = [(round(t.haaqi, 3), t.quality, t.track_id, t.artist, t.title, t.path) for t in tracks]
    else:
        columns = ["track_id", "path", "haaqi", "quality", "artist", "title"]
        rows = [(t.track_id, t.path, t.haaqi, t.quality, t.artist, t.title) for t in tracks]
    click.echo(render(columns, rows, fmt))


def _compare(reference: Path, test: Path, audiogram_text: str | None, name: str | None,
             seconds: float, fmt: str, store_dir: Path | None) -> None:
    from models.audiogram import parse_audiogram
    from engine.hearing_compare import compare_files

    if audiogram_text is not None:
        audiogram = parse_audiogram(audiogram_text)
    else:
        from index.listeners import get_listener
        from index.store import Store

        with Store.open_read_only(store_dir) as store:
            audiogram = get_listener(store, name).audiogram
    c = compare_files(reference, test, audiogram, seconds=seconds)
    columns = ["haaqi", "nonlinear", "linear", "predicted", "seconds", "audiogram", "class",
               "reference", "test"]
    row = (round(c.haaqi.score, 4), round(c.haaqi.nonlinear, 4), round(c.haaqi.linear, 4),
           None if c.predicted is None else round(c.predicted, 4), round(c.seconds, 2),
           audiogram.text(), audiogram.label, str(reference), str(test))
    click.echo(render(columns, [row], fmt))
