"""`engine explain`: which concepts push a head's prediction for a track (index.tcav)."""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli.options import models_option, store_option
from engine.cli.output import format_option, render


@click.command()
@click.option("--track", "-t", "track", required=True, metavar="TRACK", help="Track id, path, title or a unique part.")
@click.option("--head", metavar="NAME", default=None,
              help="Prediction head: moods_mirex, emomusic (MusiCNN) or an EffNet head such as "
              "genre_discogs400 (default: the first the store and models have).")
@click.option("--class", "label", metavar="LABEL", default=None, help="Explain this class instead of the top one.")
@click.option("--with", "other", metavar="TRACK", default=None,
              help="Instead: the concepts this track and TRACK both hold (for a similarity pair).")
@format_option
@store_option
@models_option
def explain(track: str, head: str | None, label: str | None, other: str | None, fmt: str,
            store_dir: Path | None) -> None:
    """Which concepts (tags, descriptor extremes, your tags) push a head's prediction for a track.

    A concept is a direction in the embedding learned from its example tracks; its
    effect is the head's derivative along it (TCAV), at the track and over the tracks
    of that class, tested against random directions. See docs/tags.md.

    Example: engine explain --track "Castle" --head moods_mirex
    """
    from index import tcav
    from index.tracks import resolve_track
    from index.store import Store

    with Store.open_read_only(store_dir) as store:
        ref = resolve_track(store, track)
        if other is not None:
            ref2 = resolve_track(store, other)
            names = tcav.shared_concepts(store, ref.track_id, ref2.track_id, "musicnn")
            click.echo(f"{ref.label} and {ref2.label} share: {', '.join(names) or 'no concept clearly'}")
            return
        name = head or tcav.default_head(store)
        result = tcav.explain_track(store, ref.track_id, tcav.load_head(name), label=label)
    click.echo(f"{ref.label}: {result.text()}", err=True)
    if result.testable:
        click.echo(f"({result.head}; TCAV over {result.class_tracks} tracks of the class, p against "
                   f"{tcav.RANDOM_CAVS} random directions)", err=True)
    else:
        click.echo(f"({result.head}; derivatives at the track only: no TCAV score or p-value)", err=True)
    click.echo(render(["concept", "at_track", "tcav", "p_value", "significant"],
                      [(e.concept, e.at_track, e.tcav, e.p_value, e.significant) for e in result.effects], fmt))
