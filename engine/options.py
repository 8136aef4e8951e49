"""Options shared by several commands (kept apart from engine.cli to avoid import cycles)."""

from __future__ import annotations

from pathlib import Path

import click


# Where the store option leaves its value in click's context (shared by the whole
# command line), so that an error about the store can name it (engine.cli).
STORE_DIR_KEY = "engine.store_dir"


def _remember_store(ctx: click.Context, param, value):
    ctx.meta[STORE_DIR_KEY] = value
    return value


def store_option(f):
    """--store DIR, shared by every command that reads or writes the store."""
    return click.option(
        "--store",
        "store_dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="ENGINE_STORE",
        default=None,
        callback=_remember_store,
        help="Store folder (default: $ENGINE_STORE, else the user data folder).",
    )(f)
