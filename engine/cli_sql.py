"""``engine sql``: one read-only SQL query over the store, printed as a table, JSON or CSV.

A thin layer over :mod:`index.sql`, which checks and runs the query.
"""

from __future__ import annotations

import sys
import uuid
from datetime import time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from engine.options import store_option
from engine.output import format_option, render


def _json_ready(v: Any) -> Any:
    """DuckDB values that json cannot write as they are (DECIMAL, INTERVAL, UUID, BLOB, ...)."""
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, timedelta):
        return v.total_seconds()
    if isinstance(v, (uuid.UUID, time)):
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, dict):
        return {str(k): _json_ready(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_ready(x) for x in v]
    return v


@click.command("sql")
@click.argument("query")
@store_option
@format_option
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="Print at most this many rows (a note on stderr says when more exist).")
def sql(query: str, store_dir: Path | None, fmt: str, limit: int | None) -> None:
    """Run one read-only SQL QUERY on the store (DuckDB SQL; `-` reads it from stdin).

    Tables: tracks, styles, tags, embeddings, failures. Views and macros for common
    questions: library, track_keys, track_styles, genres, top_styles, in_key('A minor'),
    style(track_id, 'Techno'), tag(track_id, 'happy'). Only SELECT (and EXPLAIN SELECT)
    runs; anything that would write or read outside the store is refused.

    Example: engine sql "SELECT title, bpm FROM library ORDER BY style(track_id, 'Techno') DESC LIMIT 10"
    """
    from index.sql import empty_columns_note, run_query

    if query == "-":
        query = sys.stdin.read()
    result = run_query(store_dir, query, limit=limit)
    note = empty_columns_note(store_dir, query)
    if note:
        click.echo(note, err=True)
    rows = result.rows
    if fmt == "json":
        rows = [[_json_ready(v) for v in r] for r in rows]
    click.echo(render(result.columns, rows, fmt))
    if result.truncated:
        click.echo(f"(stopped at --limit {limit}; more rows exist)", err=True)
