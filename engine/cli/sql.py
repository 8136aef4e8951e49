"""``engine sql``: one read-only SQL query over the store, printed as a table, JSON or CSV.

A thin layer over :mod:`index.sql`, which checks and runs the query.
"""

from __future__ import annotations

import os
import re
import sys
from contextlib import contextmanager
import threading
import uuid
from datetime import time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from engine.cli.options import store_option
from engine.cli.output import format_option, render


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


class _SqlCommand(click.Command):
    """Takes a query that starts with a ``--`` comment as the QUERY, not as an option: a
    word with white space in it cannot be an option name."""

    def parse_args(self, ctx, args):
        queries = [a for a in args if a.startswith("-") and any(c.isspace() for c in a)]
        if queries and "--" not in args:
            args = [a for a in args if a not in queries] + ["--", *queries]
        return super().parse_args(ctx, args)


# Seconds a query may run, and memory it may use, unless told otherwise.
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_MAX_MEMORY = "1GB"
# What the process may map besides the query's memory (interpreter, DuckDB's threads and
# libraries: 0.9 GB of address space measured for a small query on 2 cores) and the
# result as Python objects.
_PROCESS_HEADROOM = 1 << 30
# After --timeout, DuckDB is interrupted; work it cannot interrupt (one huge string
# function) ends the process this many seconds later.
_HARD_STOP_S = 10.0


@click.command("sql", cls=_SqlCommand)
@click.argument("query")
@store_option
@format_option
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="Print at most this many rows (a note on stderr says when more exist).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_TIMEOUT_S, show_default=True, help="Stop the query after this many seconds.")
@click.option("--max-memory", default=DEFAULT_MAX_MEMORY, show_default=True, metavar="SIZE",
              help="Memory the query may use, e.g. 512MB, 4GB (DuckDB's memory_limit; the "
                   "process is capped a little above it).")
def sql(query: str, store_dir: Path | None, fmt: str, limit: int | None, timeout_s: float,
        max_memory: str) -> None:
    """Run one read-only SQL QUERY on the store (DuckDB SQL; `-` reads it from stdin).

    Tables: tracks, styles, tags, embeddings, failures, listeners, listener_quality.
    Views and macros for common questions: library, track_keys, track_styles, genres,
    top_styles, in_key('A minor'), style(track_id, 'Techno'), tag(track_id, 'happy'),
    haaqi(track_id, 'mum'). Only SELECT (and EXPLAIN SELECT) runs; anything that would
    write or read outside the store is refused. A query may start with a -- comment.

    Example: engine sql "SELECT title, bpm FROM library ORDER BY style(track_id, 'Techno') DESC LIMIT 10"
    """
    from index.sql import SqlError, empty_columns_note, run_query, timeout_message

    if query == "-":
        query = sys.stdin.read()
    limit_bytes = _bytes(max_memory)
    stop = threading.Timer(timeout_s + _HARD_STOP_S, _hard_stop, [timeout_message(timeout_s)])
    stop.daemon = True
    stop.start()
    try:
        with _address_space_cap(limit_bytes + _PROCESS_HEADROOM):
            result = run_query(store_dir, query, limit=limit, timeout_s=timeout_s,
                               memory_limit=f"{limit_bytes}B")
    except MemoryError:
        raise SqlError("out of memory for the query: narrow it (filters, fewer columns, --limit) "
                       "or allow more with --max-memory") from None
    finally:
        stop.cancel()
    note = empty_columns_note(store_dir, query)
    if note:
        click.echo(note, err=True)
    rows = result.rows
    if fmt == "json":
        rows = [[_json_ready(v) for v in r] for r in rows]
    click.echo(render(result.columns, rows, fmt))
    if result.truncated:
        click.echo(f"(stopped at --limit {limit}; more rows exist)", err=True)


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def _bytes(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise click.BadParameter(f"cannot read {text!r} as a size: write e.g. 512MB or 4GB",
                                 param_hint="--max-memory")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


@contextmanager
def _address_space_cap(extra: int):
    """While inside, this process may map at most ``extra`` bytes more than it has now
    (RLIMIT_AS), so a query that builds huge values fails with 'out of memory' instead of
    taking the machine. The limit is put back afterwards (the command may run in-process)."""
    try:
        import resource

        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):  # not Linux: DuckDB's memory_limit only
        yield
        return
    cap = mapped + extra
    for limit in (soft, hard):
        if limit != resource.RLIM_INFINITY:
            cap = min(cap, limit)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _hard_stop(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.stderr.flush()
    os._exit(1)
