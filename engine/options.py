"""Options shared by several commands (kept apart from engine.cli to avoid import cycles)."""

from __future__ import annotations

from pathlib import Path

import click


def store_option(f):
    """--store DIR, shared by every command that reads or writes the store."""
    return click.option(
        "--store",
        "store_dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="ENGINE_STORE",
        default=None,
        help="Store folder (default: $ENGINE_STORE, else the user data folder).",
    )(f)
