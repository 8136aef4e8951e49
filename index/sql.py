"""Read-only SQL over the store: the core of ``engine sql`` (the CLI and the TUI stay thin).

A query can neither change the store nor reach outside it. Three independent layers:

1. :func:`check_read_only` parses the text with DuckDB's own parser: exactly one
   statement, of type SELECT (or ``EXPLAIN [ANALYZE]`` of one); its syntax tree
   (``json_serialize_sql``) may call only the table functions in
   :data:`ALLOWED_TABLE_FUNCTIONS` and our own macros, may not name a file as a table
   (``FROM 'x.csv'``), and may not call :data:`DENIED_FUNCTIONS`.
2. The store's file is attached ``READ_ONLY`` to a private in-memory DuckDB, so a
   write that got through would be refused by DuckDB itself.
3. That DuckDB runs with external access and the local file system disabled,
   extension install/autoload off, spilling to disk off (so not even temp files are
   written) and Python replacement scans off; then its configuration is locked, so
   no statement can turn any of it back on.

The private database also holds TEMP views and macros (index.sqlviews) that make
the common questions short; they live in memory, so the store file is never touched.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from index import turns
from index.sqlviews import TABLE_MACROS, create_views
from index.store import (
    DB_NAME, NoStoreError, busy_reading, damaged_error, default_store_dir, is_damaged, missing_schema,
    upgrade_older_store,
)
from models.errors import EngineError

# The name the store has inside queries (`engine.tracks`), as `duckdb engine.duckdb` would.
CATALOG = "engine"

# Table functions a query may call: generators and DuckDB's own catalog listings.
# Anything else (read_csv, read_parquet, glob, sqlite_scan, query, ...) is refused.
ALLOWED_TABLE_FUNCTIONS = frozenset({
    "range", "generate_series", "unnest", "repeat_row",
    "duckdb_columns", "duckdb_constraints", "duckdb_databases", "duckdb_dependencies",
    "duckdb_functions", "duckdb_indexes", "duckdb_keywords", "duckdb_schemas",
    "duckdb_sequences", "duckdb_settings", "duckdb_tables", "duckdb_types", "duckdb_views",
    "pragma_table_info", "pragma_show", "pragma_database_size", "pragma_storage_info",
    "pragma_version", "pragma_database_list", "pragma_collations",
    "json_each", "json_tree",
})

# Scalar functions with side effects.
DENIED_FUNCTIONS = frozenset({"nextval", "setval", "write_log", "getenv", "set_variable"})

# Why a statement is refused, by its first keyword (else by DuckDB's statement type).
_REFUSED = {
    "INSERT": "writes rows", "UPDATE": "writes rows", "DELETE": "deletes rows",
    "TRUNCATE": "deletes rows", "MERGE": "writes rows", "MERGE_INTO": "writes rows",
    "CREATE": "creates objects", "CREATE_FUNC": "creates objects", "DROP": "drops objects",
    "DEALLOCATE": "drops a prepared statement", "ALTER": "changes the schema",
    "COMMENT": "changes the schema", "ATTACH": "attaches a database",
    "DETACH": "detaches a database", "COPY": "copies to or from files",
    "COPY_DATABASE": "copies a database", "EXPORT": "writes the database to files",
    "IMPORT": "reads a database from files", "INSTALL": "installs extensions",
    "LOAD": "loads extensions", "EXTENSION": "manages extensions",
    "SET": "changes settings", "RESET": "changes settings", "USE": "changes the current database",
    "VARIABLE_SET": "sets variables", "BEGIN": "controls transactions",
    "START": "controls transactions", "COMMIT": "controls transactions",
    "END": "controls transactions", "ROLLBACK": "controls transactions",
    "ABORT": "controls transactions", "TRANSACTION": "controls transactions",
    "CALL": "calls a procedure", "CHECKPOINT": "writes the database file",
    "PRAGMA": "runs a pragma (for table info use DESCRIBE tracks)",
    "VACUUM": "rewrites the database", "ANALYZE": "updates statistics",
    "PREPARE": "prepares statements", "EXECUTE": "executes prepared statements",
    "PIVOT": "runs several statements (name the values: PIVOT ... ON col IN (...))",
    "MULTI": "runs several statements", "LOGICAL_PLAN": "runs a plan", "RELATION": "runs a relation",
}

_HINT = "engine sql runs one SELECT (or EXPLAIN SELECT) on the read-only store"

_SETTINGS = {
    # Applied before the store is attached; `enable_external_access` and
    # `disabled_filesystems` come after it (they would forbid the attach itself).
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "allow_persistent_secrets": False,
    "python_enable_replacements": False,
    "temp_directory": "",
}

# Locked settings checked after setup; a mismatch fails closed.
_EXPECTED = {
    "enable_external_access": "false",
    "lock_configuration": "true",
    "autoload_known_extensions": "false",
    "autoinstall_known_extensions": "false",
    "python_enable_replacements": "false",
    "temp_directory": "",
}

_EXPLAIN = re.compile(r"\s*explain(?:\s+analy[sz]e)?\s+(?=\S)", re.IGNORECASE)
_PATHLIKE = re.compile(r"[/\\:~.]")


class SqlError(EngineError):
    """A query that is refused (it would write or reach outside the store) or that fails.

    The message is always one line (line breaks from the query or DuckDB become spaces).
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


@dataclass(frozen=True)
class QueryResult:
    """Rows of a query: ``columns`` and DuckDB ``types`` (names), ``rows`` in column order.

    ``truncated`` is true when ``limit`` rows were returned and more were available.
    """

    columns: tuple[str, ...]
    types: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    truncated: bool = False


def error_line(exc: BaseException) -> str:
    """DuckDB's message without its multi-line caret display."""
    lines = [ln.strip() for ln in str(exc).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("LINE ") and set(ln) != {"^"}]
    return " ".join(lines) or type(exc).__name__


def _connect(memory_limit: str | None = None):
    """A private in-memory DuckDB with the settings that must precede the attach.

    ``memory_limit`` (DuckDB's, e.g. '1GB') bounds its operators (joins, sorts, which
    cannot spill here); strings it builds are not counted (``repeat('x', 2000000000)``
    grew to ≈7 GB), so ``engine sql`` also caps the process (engine/cli/sql.py).
    """
    import duckdb

    config = dict(_SETTINGS)
    if memory_limit:
        config["memory_limit"] = memory_limit
    return duckdb.connect(":memory:", config=config)


def _store_dir(store_dir: Path | str | None) -> Path:
    directory = Path(store_dir or default_store_dir()).expanduser().resolve()
    if not (directory / DB_NAME).is_file():
        raise NoStoreError(
            f"no store at {directory}: run `engine build <music folder>` first "
            "(or pass --store / set ENGINE_STORE)"
        )
    return directory


def _attach(con, directory: Path) -> None:
    """Attach the store read-only as ``engine``, create the views, then lock everything."""
    import duckdb

    db = directory / DB_NAME
    path = str(db).replace("'", "''")
    try:
        # While a build commits a batch the file is taken: wait for its turn (index.turns).
        wait_s = turns.wait_s(turns.READ_WAIT_S)
        def attach():
            turns.reading_turn(
                directory, lambda: con.execute(f"ATTACH '{path}' AS {CATALOG} (READ_ONLY)").fetchall(),
                wait_s=wait_s, busy=lambda e: busy_reading(directory, e, wait_s))

        attach()
        missing = missing_schema(con, CATALOG)
        if missing:  # a store made by an older engine: add what it lacks, then read it
            con.execute(f"DETACH {CATALOG}").fetchall()
            upgrade_older_store(directory, missing)
            attach()
        con.execute(f"USE {CATALOG}").fetchall()
        create_views(con)
        _lock(con)
    except duckdb.OutOfMemoryException as exc:
        raise SqlError(f"out of memory opening the store {db} ({str(exc).splitlines()[0]}): "
                       "close other programs, or allow more with --max-memory") from None
    except duckdb.Error as exc:
        if is_damaged(exc):
            raise damaged_error(directory, exc) from None
        raise SqlError(f"cannot open the store {db}: {error_line(exc)}") from None


def _lock(con) -> None:
    for sql in ("SET enable_external_access = false",
                "SET disabled_filesystems = 'LocalFileSystem'",
                "SET lock_configuration = true"):
        con.execute(sql).fetchall()
    names = list(_EXPECTED)
    got = con.execute(
        "SELECT name, value FROM duckdb_settings() WHERE name IN (SELECT unnest(?))", [names]
    ).fetchall()
    actual = {n: str(v).lower() for n, v in got}
    wrong = [n for n in names if actual.get(n) != _EXPECTED[n]]
    if wrong:  # fail closed: a DuckDB that ignores one of them does not run user SQL
        raise SqlError(f"cannot lock down DuckDB for engine sql (settings {', '.join(wrong)} "
                       "did not take); please report this with your DuckDB version")


_parser = None  # check_read_only's DuckDB: it only parses, so one serves every check
_parser_lock = threading.Lock()


def check_read_only(sql: str) -> None:
    """Raise :class:`SqlError` unless ``sql`` is one read-only query (see the module doc)."""
    global _parser
    # One shared connection: opening one per check cost ≈13 ms, a third of the TUI's
    # keystroke budget while typing a WHERE filter. Nothing of the query runs on it.
    with _parser_lock:
        if _parser is None:
            _parser = _connect()
        _check(_parser, sql)


def _check(con, sql: str, *, explain_ok: bool = True):
    """The statement to run (a DuckDB ``Statement``) once ``sql`` passes the checks."""
    import duckdb

    if not isinstance(sql, str) or not sql.strip():
        raise SqlError('no query given: pass one, e.g. engine sql "SELECT count(*) FROM tracks"')
    try:
        statements = con.extract_statements(sql)
    except Exception as exc:  # ParserException, or ValueError for a type Python does not know
        raise SqlError(f"cannot parse the query: {error_line(exc)}") from None
    if not statements:
        raise SqlError("the query holds no statement (only comments or ';')")
    if len(statements) > 1:
        raise SqlError(f"the query holds {len(statements)} statements; {_HINT}, so remove the extra ';'")
    statement = statements[0]
    try:
        kind = statement.type.name
    except ValueError:  # a statement type newer than the Python enum (e.g. UPDATE EXTENSIONS)
        kind = "UNKNOWN"
    if kind == "EXPLAIN" and explain_ok:
        match = _EXPLAIN.match(statement.query)
        if match is None:
            raise SqlError(f"refused: only EXPLAIN [ANALYZE] SELECT ... is allowed; {_HINT}")
        _check(con, statement.query[match.end():], explain_ok=False)
    elif kind != "SELECT":
        words = [w.upper() for w in re.findall(r"[A-Za-z_]+", statement.query[:60])]
        raise SqlError(f"refused: {_refusal(kind, words)}; {_HINT}")
    else:
        try:
            tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [statement.query]).fetchall()[0][0])
        except (duckdb.Error, ValueError, TypeError) as exc:
            raise SqlError(f"cannot check the query: {error_line(exc)}") from None
        if tree.get("error") or len(tree.get("statements", ())) != 1:
            raise SqlError(f"cannot check the query: {tree.get('error_message', 'not one SELECT')}")
        _check_tree(tree)
    return statement


def _refusal(kind: str, words: list[str]) -> str:
    """'COPY copies to or from files': the statement's keyword(s) and what it would do."""
    if kind == "UNKNOWN":  # e.g. UPDATE EXTENSIONS
        return f"{' '.join(words[:2]) or kind} is not a query"
    first = words[0] if words else kind
    key = words[1] if first == "FORCE" and len(words) > 1 else first
    if key not in _REFUSED:  # e.g. WITH ... DELETE: name the statement type
        return f"{kind.replace('_', ' ')} {_REFUSED.get(kind, 'is not a query')}"
    return f"{'FORCE ' if first == 'FORCE' else ''}{key} {_REFUSED[key]}"


def _tree_nodes(tree: Any) -> Iterator[dict]:
    """Every node (dict) of a ``json_serialize_sql`` tree, depth first."""
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            yield item
            stack.extend(item.values())


def _check_tree(node: Any) -> None:
    """Walk a ``json_serialize_sql`` tree; refuse outside reads and side effects."""
    for item in _tree_nodes(node):
        kind = item.get("type")
        if kind == "TABLE_FUNCTION":
            name = str((item.get("function") or {}).get("function_name", "")).lower()
            if name not in ALLOWED_TABLE_FUNCTIONS and name not in TABLE_MACROS:
                raise SqlError(
                    f"refused: {name}() reads from outside the store or is not allowed here; "
                    f"{_HINT} (allowed table functions: range, generate_series, unnest, "
                    "duckdb_*, pragma_table_info, in_key)"
                )
        elif kind == "BASE_TABLE":
            name = str(item.get("table_name", ""))
            if _PATHLIKE.search(name):
                raise SqlError(f"refused: FROM '{name}' would read a file; {_HINT} "
                               "(its tables and views only)")
        if item.get("class") == "FUNCTION":
            name = str(item.get("function_name", "")).lower()
            if name in DENIED_FUNCTIONS:
                raise SqlError(f"refused: {name}() has side effects; {_HINT}")


class SqlSession:
    """A read-only connection to one store, for many queries (the TUI keeps one open).

    Example::

        with SqlSession.open(store_dir) as session:
            result = session.query("SELECT title FROM library ORDER BY bpm DESC", limit=10)
    """

    def __init__(self, directory: Path, con) -> None:
        self.directory = directory
        self._con = con

    @classmethod
    def open(cls, store_dir: Path | str | None = None) -> "SqlSession":
        """Open the store in ``store_dir`` (default: the user's store) for queries."""
        directory = _store_dir(store_dir)
        con = _connect()
        try:
            _attach(con, directory)
        except BaseException:
            con.close()
            raise
        return cls(directory, con)

    def check(self, sql: str) -> None:
        """Raise :class:`SqlError` unless ``sql`` passes the parser check (nothing runs)."""
        _check(self._con, sql)

    def query(self, sql: str, *, limit: int | None = None,
              timeout_s: float | None = None) -> QueryResult:
        """Run one read-only query; at most ``limit`` rows (all when None), stopped after
        ``timeout_s`` seconds (None: no limit)."""
        import duckdb

        if limit is not None and limit < 0:
            raise SqlError(f"limit must be 0 or more, not {limit}")
        statement = _check(self._con, sql)
        timer = None
        if timeout_s is not None:
            timer = threading.Timer(timeout_s, self._con.interrupt)
            timer.daemon = True
            timer.start()
        try:
            rel = self._con.sql(statement.query)
            if rel is None:  # cannot happen for a SELECT; be explicit rather than crash
                return QueryResult((), (), ())
            columns = tuple(rel.columns)
            types = tuple(str(t) for t in rel.types)
            rows = (rel if limit is None else rel.limit(limit + 1)).fetchall()
        except duckdb.InterruptException:
            self._abort()
            raise SqlError(timeout_message(timeout_s)) from None
        except MemoryError:
            self._abort()
            raise SqlError("out of memory for the query's result: narrow it (filters, fewer "
                           "columns, --limit) or allow more with --max-memory") from None
        except duckdb.PermissionException as exc:
            self._abort()
            raise SqlError(f"refused: {error_line(exc)}; {_HINT}") from None
        except duckdb.OutOfMemoryException as exc:
            self._abort()
            first = str(exc).splitlines()[0] if str(exc) else "Out of Memory Error"
            raise SqlError(f"{first}; engine sql never spills to disk, so narrow the query "
                           "(filters, fewer columns, LIMIT) or allow more with --max-memory") from None
        except duckdb.Error as exc:
            self._abort()
            if is_damaged(exc):
                raise damaged_error(self.directory, exc) from None
            raise SqlError(error_line(exc)) from None
        finally:
            if timer is not None:
                timer.cancel()
        truncated = limit is not None and len(rows) > limit
        if truncated:
            rows = rows[:limit]
        return QueryResult(columns, types, tuple(tuple(r) for r in rows), truncated)

    def _abort(self) -> None:
        """Drop any half-read result: DuckDB refuses new work while one is pending."""
        try:
            self._con.abort()
        except Exception:
            pass

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> "SqlSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def timeout_message(timeout_s: float | None) -> str:
    return (f"the query was stopped after {timeout_s:g} s (--timeout): narrow it (filters, "
            "LIMIT) or allow more time with --timeout")


def run_query(store_dir: Path | str | None, sql: str, *, limit: int | None = None,
              timeout_s: float | None = None, memory_limit: str | None = None) -> QueryResult:
    """Run one read-only query on the store in ``store_dir`` (default: the user's store).

    ``timeout_s`` stops it after that many seconds; ``memory_limit`` is DuckDB's (e.g.
    '1GB'). Raises :class:`SqlError` for a refused, failing or stopped query,
    ``NoStoreError`` / ``StoreBusyError`` when the store is missing or being written.
    """
    directory = _store_dir(store_dir)
    with SqlSession(directory, _connect(memory_limit)) as session:
        _check(session._con, sql)  # parse first: a refused query never opens the store
        _attach(session._con, directory)
        return session.query(sql, limit=limit, timeout_s=timeout_s)


# Macros whose values come from a table that only models fill.
_MACRO_TABLES = {"style": "styles", "tag": "tags"}


def empty_columns_note(store_dir: Path | str | None, sql: str) -> str | None:
    """One line saying which columns ``sql`` names have no values in this store, and why.

    A filter on a column that a missing model leaves empty (``voice < 0.2`` without
    EffNet) matches nothing, which reads like an answer; this says it is not one.
    Only columns named in ``sql`` count (not ``*``), and ``style()`` / ``tag()``
    when the store has no styles / tags. None when nothing named is empty, or when
    ``sql`` cannot be parsed (the query itself reports that).
    """
    from index.schema import TABLE_NEEDS, TRACK_COLUMNS

    needs = {c.name: c.needs for c in TRACK_COLUMNS if c.needs}
    with SqlSession.open(store_dir) as session:
        con = session._con
        try:
            tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
        except Exception:  # noqa: BLE001 - the query's own error says it better
            return None
        columns, macros = _named(tree)
        empty: dict[str, tuple[str, ...]] = {}
        tracks = con.execute("SELECT count(*) FROM tracks").fetchall()[0][0]
        if not tracks:
            return None
        for name in sorted(columns & set(needs)):
            if not con.execute(f"SELECT count({name}) FROM tracks").fetchall()[0][0]:
                empty[name] = needs[name]
        for macro in sorted(macros & set(_MACRO_TABLES)):
            table = _MACRO_TABLES[macro]
            if not con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]:
                empty[f"{macro}()"] = TABLE_NEEDS[table]
    if not empty:
        return None
    from models.errors import models_hint

    models = list(dict.fromkeys(m for ms in empty.values() for m in ms))
    what = ", ".join(f"{name} (needs {' + '.join(ms)})" for name, ms in empty.items())
    return (f"note: no values in this store for {what}: the models were missing when it was "
            f"built, so nothing can match. To get them, {models_hint(' '.join(models))}; "
            "then run `engine build` again")


def _named(tree: Any) -> tuple[set[str], set[str]]:
    """Column names and function names a ``json_serialize_sql`` tree mentions."""
    columns: set[str] = set()
    functions: set[str] = set()
    for item in _tree_nodes(tree):
        if item.get("class") == "COLUMN_REF" and item.get("column_names"):
            columns.add(str(item["column_names"][-1]).lower())
        elif item.get("class") == "FUNCTION":
            functions.add(str(item.get("function_name", "")).lower())
    return columns, functions
