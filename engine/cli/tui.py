"""``engine tui``: the terminal app (tui/), a few lines over it."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from engine.cli.options import store_option


@click.command()
@store_option
def tui(store_dir: Path | None) -> None:
    """Browse the store in a keyboard-first terminal app: filter, sort, compare, play, export.

    Filters (tempo, key, voice, danceability, arousal/valence, style, free SQL WHERE)
    re-query as you type; the selected track's descriptors and its nearest tracks in
    effnet and musicnn are shown below. Press ? for keys, Ctrl+P for commands,
    Ctrl+Q to quit. Playback uses $ENGINE_PLAYER, else mpv, ffplay or vlc.

    Example: engine tui --store ~/music-store
    """
    from tui.app import run

    status = run(store_dir)
    if status:  # a crash: Textual has printed it
        sys.exit(status)
