"""User SQL fragments (``--where``, ``--order-by``) checked before they run on the store.

User SQL (``where``, ``order_by``) is parsed by DuckDB and must leave the statement one
plain SELECT over ``tracks`` (a fragment cannot close its parenthesis, add a UNION, a
statement or a comment); the whole statement must pass ``engine sql``'s read-only check
(index.sql.check_read_only: allowed functions only); and it runs on a read-only
connection with external access (files, network) disabled. So it can neither write nor
reach outside the store. The views and macros of ``engine sql`` are available, e.g.
``style(track_id, 'Techno')``, here also as ``style('Techno')``.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np

from index.queryerrors import BadSQLError
from index.sql import error_line
from index.sqlviews import create_views
from index.store import Store


def prepare_connection(store: Store) -> None:
    """Make ``store``'s (read-only) connection safe and ready for user SQL fragments.

    Disables external access (no files, no network; it cannot be turned back on) and
    creates the views and macros of ``engine sql`` (index.sqlviews: ``style(track_id, name)``,
    ``tag(track_id, name)``, ``library``, ...) as TEMP objects. Idempotent.
    """
    if getattr(store, "_user_sql_ready", False):
        return
    store.con.execute("SET enable_external_access = false")
    create_views(store.con)
    store._user_sql_ready = True


@functools.lru_cache(maxsize=256)
def _read_only_refusal(sql: str) -> str | None:
    """index.sql's check (one read-only SELECT, allowed functions only), cached: it
    opens a DuckDB of its own (≈ 100 ms on a busy machine)."""
    from index.sql import SqlError, check_read_only

    try:
        check_read_only(sql)
    except SqlError as exc:
        return str(exc)
    return None


def select_sql(store: Store, columns: str, where: str | None, order_by: str | None = None,
               limit: int | None = None, *, then_by: str | None = None) -> str:
    """``SELECT columns FROM tracks WHERE (where) ORDER BY order_by, then_by LIMIT limit``, checked.

    ``where`` and ``order_by`` are user SQL fragments. Each is parsed by DuckDB and must
    leave the statement one plain SELECT from ``tracks`` with exactly the clauses given
    (a fragment that closes a parenthesis, adds a statement, a UNION or a comment is
    refused). Raises :class:`BadSQLError` with one line naming the fragment.
    ``then_by`` (trusted SQL) breaks ties, or is the whole order when ``order_by`` is None.
    """
    prepare_connection(store)
    key = (columns, where, order_by, limit, then_by)
    cache = store.__dict__.setdefault("_checked_sql", {})
    if key not in cache:
        if len(cache) > 256:
            cache.clear()
        cache[key] = _select_sql(store, columns, where, order_by, limit, then_by)
    return cache[key]


def _select_sql(store: Store, columns: str, where: str | None, order_by: str | None,
                limit: int | None, then_by: str | None) -> str:
    where_sql = "TRUE" if where is None or not where.strip() else where
    # Fragments on lines of their own: a trailing -- comment cannot swallow what follows.
    base = f"SELECT {columns} FROM tracks WHERE (\n{where_sql}\n)"
    checked = _checked(store, base, "WHERE filter", where_sql, order=False, limit=False,
                       bare=f"SELECT 1 FROM tracks WHERE\n{where_sql}")
    has_order = order_by is not None and bool(order_by.strip())
    if not has_order and then_by is None and limit is None:
        return checked
    sql = base
    if has_order:
        sql = f"{base} ORDER BY\n{order_by}\n" + (f", {then_by}" if then_by else "")
        _checked(store, sql, "ORDER BY", order_by, order=True, limit=False,
                 bare=f"SELECT 1 FROM tracks ORDER BY\n{order_by}")
    elif then_by:
        sql = f"{base} ORDER BY {then_by}"
    if limit is not None:
        if int(limit) < 0:
            raise BadSQLError(f"limit must be 0 or more, not {limit}")
        sql = f"{sql} LIMIT {int(limit)}"
    # Each fragment passed on its own; name the user's text, not the composed query.
    what, fragment = ("ORDER BY", order_by) if has_order else ("WHERE filter", where_sql)
    return _checked(store, sql, what, fragment, order=has_order or bool(then_by), limit=limit is not None)


def _checked(store: Store, sql: str, what: str, fragment: str, *, order: bool, limit: bool,
             bare: str | None = None) -> str:
    """Parse ``sql``; check its shape; return the SQL to run (with style() rewritten).

    ``bare`` is the fragment in a statement without the parentheses and columns we
    add: when ``sql`` does not parse, its error is the one that speaks of what the
    user typed ("at end of input" rather than "at or near ')'").
    """
    import duckdb

    con = store.con
    bad = f"bad {what} {fragment.strip()!r}"
    if "\x00" in sql:
        raise BadSQLError(f"{bad}: contains a NUL character")
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise BadSQLError(f"{bad}: {_parse_error(con, bare, fragment) or error_line(exc)}") from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise BadSQLError(f"{bad}: it must be part of one SELECT statement")
    try:
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    except duckdb.Error as exc:
        raise BadSQLError(f"{bad}: {error_line(exc)}") from None
    if tree.get("error"):
        raise BadSQLError(f"{bad}: {tree.get('error_message', 'not a SELECT')}")
    nodes = tree.get("statements", [])
    if len(nodes) != 1:
        raise BadSQLError(f"{bad}: it must be part of one SELECT statement")
    node = nodes[0]["node"]
    kinds = sorted(m.get("type") for m in node.get("modifiers", []))
    expected = sorted((["ORDER_MODIFIER"] if order else []) + (["LIMIT_MODIFIER"] if limit else []))
    table = node.get("from_table") or {}
    if (node.get("type") != "SELECT_NODE" or kinds != expected
            or table.get("type") != "BASE_TABLE" or table.get("table_name") != "tracks"
            or node.get("cte_map", {}).get("map") or node.get("group_expressions")
            or node.get("having") or node.get("qualify")):
        raise BadSQLError(f"{bad}: it must be a plain expression (no closing parenthesis, "
                          "ORDER BY, LIMIT, UNION or comment that changes the query)")
    refusal = _read_only_refusal(sql)
    if refusal:
        raise BadSQLError(f"{bad}: {refusal}")
    if not _add_track_id_to_style(node):
        return sql
    try:
        return con.execute("SELECT json_deserialize_sql(?::JSON)", [json.dumps(tree)]).fetchone()[0]
    except duckdb.Error as exc:  # pragma: no cover - DuckDB prints what it parsed
        raise BadSQLError(f"{bad}: {error_line(exc)}") from None


def _parse_error(con, bare: str | None, fragment: str) -> str | None:
    """What is wrong with the user's ``fragment`` alone (in ``bare``), or None if nothing is."""
    import duckdb

    if bare is None:
        return None
    try:
        statements = con.extract_statements(bare)
    except duckdb.Error as exc:
        return error_line(exc)
    if len(statements) > 1 or fragment.rstrip().endswith(";"):
        return "it must be part of one SELECT statement: remove the ';'"
    return None


# index.sql macros whose first argument is the track id, which a filter may leave out.
_ROW_MACROS = frozenset({"style", "haaqi"})


def _add_track_id_to_style(node: Any) -> bool:
    """Rewrite every one-argument style(x) or haaqi(x) to f(tracks.track_id, x), in place.

    DuckDB macros cannot see the calling row, so index.sql's ``style`` and ``haaqi`` take
    the track id; in a filter or sort order over ``tracks`` the row is implied, so
    ``style('Techno')`` and ``haaqi('mum')`` are accepted as well.
    """
    changed = False
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, dict):
            if (n.get("class") == "FUNCTION"
                    and str(n.get("function_name", "")).lower() in _ROW_MACROS
                    and not n.get("schema") and len(n.get("arguments", [])) == 1):
                n["arguments"].insert(0, {"name": "", "expression": {
                    "class": "COLUMN_REF", "type": "COLUMN_REF", "alias": "",
                    "query_location": 18446744073709551615, "query_location_length": 0,
                    "column_names": ["tracks", "track_id"]}})
                changed = True
            stack.extend(n.values())
        elif isinstance(n, list):
            stack.extend(n)
    return changed


def run_select(store: Store, sql: str, where: str | None, order_by: str | None = None) -> list[tuple]:
    """Run SQL from :func:`select_sql`; DuckDB's errors (unknown column...) become one line
    naming the fragment at fault."""
    import duckdb

    try:
        return store.con.execute(sql).fetchall()
    except duckdb.Error as exc:
        what, fragment = "ORDER BY", order_by
        if where is not None and where.strip():
            try:  # bind the filter alone: is it the culprit?
                store.con.execute("EXPLAIN " + select_sql(store, "track_id", where)).fetchall()
            except duckdb.Error:
                what, fragment = "WHERE filter", where
        if not fragment:
            what, fragment = "query", sql
        raise BadSQLError(f"bad {what} {fragment.strip()!r}: {error_line(exc)}") from None


def filter_ids_among(store: Store, where: str, ids: np.ndarray) -> np.ndarray:
    """Those of ``ids`` that match the SQL boolean ``where`` (a few hundred candidates:
    DuckDB probes them against the table, without fetching every matching id)."""
    import duckdb

    sql = f"SELECT track_id FROM (\n{select_sql(store, 'track_id', where)}\n) WHERE track_id IN (SELECT unnest(?))"
    try:
        got = store.con.execute(sql, [[int(i) for i in ids]]).fetchnumpy()["track_id"]
    except duckdb.Error as exc:
        raise BadSQLError(f"bad WHERE filter {where.strip()!r}: {error_line(exc)}") from None
    return np.asarray(got, dtype=np.int64)


def filter_ids(store: Store, where: str) -> np.ndarray:
    """Track ids (int64) of the tracks matching the SQL boolean ``where``."""
    import duckdb

    sql = select_sql(store, "track_id", where)
    try:
        ids = store.con.execute(sql).fetchnumpy()["track_id"]
    except duckdb.Error as exc:
        raise BadSQLError(f"bad WHERE filter {where.strip()!r}: {error_line(exc)}") from None
    return np.asarray(ids, dtype=np.int64)
