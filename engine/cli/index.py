"""`engine index info` and `engine index sync`: thin click commands over index.vectors."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import click

from engine.cli.options import store_option
from engine.cli.output import format_option, render


@click.group("index")
def index_group() -> None:
    """The similarity indexes, one per embedding space (see docs/vectors.md)."""


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)  # pragma: no cover


@index_group.command("info")
@format_option
@store_option
def info(fmt: str, store_dir: Path | None) -> None:
    """Per space: index kind, size on disk, vectors, training, expected recall.

    Example: engine index info
    """
    from index.store import Store
    from index.vectors import IndexStatus, describe

    with Store.open_read_only(store_dir) as store:
        states = describe(store)
    if fmt == "table":
        columns = ["space", "state", "index", "vectors", "dim", "on disk", "trained on",
                   "recall@10", "trained"]
        rows = [(s.space, s.state, s.layout or "-", f"{s.vectors:,}", s.dim or "-",
                 _size(s.index_bytes + s.rows_bytes) if s.index_bytes else "-",
                 f"{s.trained_on:,}" if s.trained_on else "-",
                 f"{s.recall:.3f}" if s.recall is not None else "-", s.trained_at or "-")
                for s in states]
    else:
        columns = [f.name for f in fields(IndexStatus)]
        rows = [tuple(asdict(s).values()) for s in states]
    click.echo(render(columns, rows, fmt))


@index_group.command("sync")
@click.option("--space", "spaces", multiple=True, metavar="SPACE",
              help="Only this space (repeatable); default: every space.")
@store_option
def sync(spaces: tuple[str, ...], store_dir: Path | None) -> None:
    """Bring the indexes in step with the store (what `engine build` does at its end).

    Updates in place what it can; builds anew what is missing, damaged or has outgrown
    its training. Large spaces are read in chunks, in bounded memory.

    Example: engine index sync --space effnet
    """
    from index import vectors
    from index.query import SPACES, check_space
    from index.store import Store

    for space in spaces:
        check_space(space)
    with Store.open(store_dir) as store:
        done = vectors.sync(store, spaces=spaces or tuple(SPACES))
    for info in done:
        click.echo(f"{info.space}: {info.index_kind}, {info.count:,} vectors", err=True)
    if not done:
        click.echo("every index is in step", err=True)
