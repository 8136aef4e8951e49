"""Options shared by several commands (apart from the group, engine/cli/__init__.py: no cycles)."""

from __future__ import annotations

import os
from pathlib import Path

import click

# The variable every model lookup reads (models.paths.models_dir); --models sets it.
MODELS_ENV = "ENGINE_MODELS"


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


def _use_models_dir(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    # Through the environment, so the worker processes and the ONNX conversion
    # subprocess look in the same folder.
    if value is not None:
        os.environ[MODELS_ENV] = str(value.expanduser().resolve())


def models_option(f):
    """--models DIR: where the official model files are, same as $ENGINE_MODELS."""
    return click.option(
        "--models",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        expose_value=False,
        is_eager=True,
        callback=_use_models_dir,
        metavar="DIR",
        help="Folder of the official model files (.pb/.onnx + .json, e.g. copied from a "
        "machine with internet); same as $ENGINE_MODELS. Default: the user cache folder "
        "that `engine models fetch` fills.",
    )(f)
