"""The TUI's core: filters, pages of results, track details and neighbours. No textual here.

A thin adapter over ``index`` (query, sql, playlist): everything is a frozen dataclass,
and :class:`Catalog` owns the DuckDB connections. Each *role* (results, details,
similarity) has its own connection and lock, so a slow k-NN search never delays the
results list; the app calls these methods from thread workers only.

Filters from the panel are turned into SQL by :func:`filter_sql` (values are numbers or
quoted literals, so that SQL is trusted); the free WHERE text typed by the user goes
through :func:`index.query.select_sql` (parsed, shape-checked and read-only checked)
and the checked ``SELECT * FROM tracks WHERE (...)`` replaces ``tracks`` in the page
query (DuckDB folds it into one scan; an ``IN (...)`` semi-join cost twice as much).
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from engine.errors import EngineError
from index import turns
from index.pathnames import from_db
from index.query import (
    BadSQLError, MissingEmbeddingsError, Neighbour, QueryError, Searcher, _one_line,
    prepare_connection, select_sql,
)
from index.listeners import track_scores
from index.store import DB_NAME, Store, damaged_error, is_damaged
from tui.text import printable

KEYS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Spellings a store may hold for each pitch class (flats, unicode accidentals).
_ENHARMONIC = {"C#": ("C#", "Db"), "D#": ("D#", "Eb"), "F#": ("F#", "Gb"),
               "G#": ("G#", "Ab"), "A#": ("A#", "Bb")}
from index.schema import KEY_PROFILES as PROFILES  # noqa: E402
SPACES = ("effnet", "musicnn")
PAGE_SIZE = 200
# A role's connection is closed after this long without a query (index.turns: a build
# commits while the app is idle).
IDLE_CLOSE_S = 1.0
SEARCH_RESULTS = 500  # tracks a text search lists, best first

# Results columns: (heading, SQL expression). The first is the row key.
RESULT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("artist", "artist"),
    ("title", "coalesce(nullif(trim(title), ''), regexp_replace(path, '^.*[/\\\\]', ''))"),
    ("album", "album"),
    ("bpm", "bpm"),
    ("key", "key_temperley || ' ' || scale_temperley"),
    ("lufs", "loudness_lufs"),
    ("dance", "danceability"),
    ("voice", "voice"),
    ("arousal", "arousal"),
    ("valence", "valence"),
    ("top_style", "top_style"),
)
SORTABLE = tuple(name for name, _ in RESULT_COLUMNS)


class TuiError(EngineError):
    """A filter value that cannot be read; the message says what to type."""


# -- filters ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Range:
    """A closed range; either end may be open (None)."""

    low: float | None = None
    high: float | None = None

    @property
    def empty(self) -> bool:
        return self.low is None and self.high is None


_UNSIGNED = r"(?:\d+(?:\.\d*)?|\.\d+)"
_NUMBER = r"[-+]?" + _UNSIGNED
_RANGE = re.compile(rf"^\s*({_NUMBER})?\s*(?:-|–|—|\.\.|to)\s*({_NUMBER})?\s*$")


def parse_range(text: str) -> Range:
    """'120-130', '120–130', '120..130', '120-' (at least), '-130' (at most), '>120',
    '<130', '128' (exactly, ±0.5) or '' (any). Raises :class:`TuiError` otherwise."""
    text = (text or "").strip()
    if not text:
        return Range()
    m = re.fullmatch(rf"(>=?|<=?)\s*({_NUMBER})", text)
    if m:
        v = float(m.group(2))
        return Range(low=v) if m.group(1).startswith(">") else Range(high=v)
    m = re.fullmatch(rf"(?:-|–|\.\.)\s*({_UNSIGNED})", text)  # '-130': at most
    if m:
        return Range(high=float(m.group(1)))
    m = re.fullmatch(_NUMBER, text)
    if m:
        v = float(text)
        return Range(v - 0.5, v + 0.5)
    m = _RANGE.match(text)
    if m and (m.group(1) or m.group(2)):
        low = float(m.group(1)) if m.group(1) else None
        high = float(m.group(2)) if m.group(2) else None
        if low is not None and high is not None and low > high:
            low, high = high, low
        return Range(low, high)
    raise TuiError(f"cannot read {text!r} as a range: type e.g. 120-130, >120, <130")


@dataclass(frozen=True)
class Filters:
    """What the filter panel holds. Empty fields do not filter."""

    tempo: Range = Range()
    key: str | None = None  # tonic, one of KEYS
    scale: str | None = None  # 'major' or 'minor'
    profile: str = "temperley"
    voice: bool | None = None  # True: with voice, False: instrumental
    danceability: Range = Range()
    arousal: Range = Range()
    valence: Range = Range()
    style: str | None = None
    style_min: float = 0.0
    where: str = ""  # the user's free SQL
    text: str = ""  # search words (index.search): the list is then ranked by relevance


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _range_sql(column: str, r: Range) -> list[str]:
    out = []
    if r.low is not None:
        out.append(f"{column} >= {r.low!r}")
    if r.high is not None:
        out.append(f"{column} <= {r.high!r}")
    return out


def filter_sql(f: Filters) -> str:
    """The panel's filters (not the free WHERE) as one trusted SQL boolean; 'TRUE' if none."""
    if f.profile not in PROFILES:
        raise TuiError(f"unknown key profile {f.profile!r}: use one of {', '.join(PROFILES)}")
    parts = _range_sql("bpm", f.tempo)
    if f.key:
        names = _ENHARMONIC.get(f.key, (f.key,))
        parts.append(f"key_{f.profile} IN ({', '.join(_literal(n) for n in names)})")
    if f.scale:
        parts.append(f"scale_{f.profile} = {_literal(f.scale)}")
    if f.voice is not None:
        parts.append("voice >= 0.5" if f.voice else "voice < 0.5")
    parts += _range_sql("danceability", f.danceability)
    parts += _range_sql("arousal", f.arousal)
    parts += _range_sql("valence", f.valence)
    if f.style and f.style.strip():
        name = f.style.strip().lower()
        parts.append(
            "track_id IN (SELECT track_id FROM styles WHERE (lower(style) = "
            f"{_literal(name)} OR lower(genre || '---' || style) = {_literal(name)}) "
            f"AND activation >= {float(f.style_min)!r})")
    return " AND ".join(parts) or "TRUE"


def combined_where(f: Filters) -> str | None:
    """Everything as one SQL boolean for index.query (k-NN restriction); None if no filter."""
    parts = [p for p in (filter_sql(f), f.where.strip()) if p and p != "TRUE"]
    if not parts:
        return None
    return " AND ".join(f"({p})" for p in parts)


# -- results --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResultRow:
    track_id: int
    path: str  # as stored: display text (index.pathnames)
    duration: float | None
    values: tuple  # in RESULT_COLUMNS order
    path_bytes: bytes | None = None  # the name's bytes when it is not UTF-8

    @property
    def file_path(self) -> str:
        """The name to open the file by."""
        return from_db(self.path, self.path_bytes)

    @property
    def artist(self) -> str | None:
        return self.values[0]

    @property
    def title(self) -> str | None:
        return self.values[1]


@dataclass(frozen=True)
class Page:
    """Rows ``offset``.. of the ``total`` tracks matching the filters, in ``sort`` order."""

    rows: tuple[ResultRow, ...]
    total: int
    offset: int = 0
    sort: str = "artist"
    descending: bool = False


@dataclass(frozen=True)
class TrackDetail:
    track_id: int
    path: str
    fields: tuple[tuple[str, object], ...]  # (column, value), non-NULL, schema order
    styles: tuple[tuple[str, float], ...]
    tags: tuple[tuple[str, str, float], ...]  # (source, tag, activation)
    listeners: tuple[tuple[str, float], ...] = ()  # (listener, predicted HAAQI 0-1)


@dataclass(frozen=True)
class Similar:
    """Neighbours of one track in one space, or why there are none."""

    space: str
    track_id: int
    neighbours: tuple[Neighbour, ...] = ()
    error: str | None = None


QUALITY_COLUMNS = ("quality", "clicks_per_min", "clipping_share", "hum_db", "hum_hz",
                   "dropouts", "snr_db", "noise_floor_dbfs", "bandwidth_hz", "dc_offset",
                   "silence_start_s", "silence_end_s")


class _Conn:
    """Read-only connections for one role, each used from one worker at a time.

    A connection is opened when a query needs it and kept while queries follow each
    other, then closed after :data:`IDLE_CLOSE_S` idle, or before the next query when a
    build waits to commit (index.turns.writer_waiting): a build adding music commits
    between the app's queries, and each query sees what is committed so far.
    """

    def __init__(self, directory: Path | None):
        self.directory = Path(directory) if directory else None
        self.lock = threading.Lock()
        self._store: Store | None = None
        self._used = 0.0
        self._timer: threading.Timer | None = None
        self.store_for(lambda store: None)  # open once now: a missing store fails at start

    def store_for(self, use):
        """``use(store)`` on an open store, under the role's lock; returns what it returns."""
        import duckdb

        with self.lock:
            if self._store is not None and turns.writer_waiting(self._store.directory):
                self._close()
            if self._store is None:
                self._store = Store.open_read_only(self.directory)
                self.directory = self._store.directory
                prepare_connection(self._store)
            try:
                return use(self._store)
            except duckdb.Error as exc:
                if is_damaged(exc):  # one line in the app, never a crashed worker
                    raise TuiError(str(damaged_error(self._store.directory, exc))) from None
                raise
            finally:
                self._used = time.monotonic()
                if self._timer is None:
                    self._timer = threading.Timer(IDLE_CLOSE_S, self._close_if_idle)
                    self._timer.daemon = True
                    self._timer.start()

    def rows(self, sql: str, params: Sequence = ()) -> list[tuple]:
        return self.store_for(lambda store: store.con.execute(sql, list(params)).fetchall())

    def _close_if_idle(self) -> None:
        with self.lock:
            self._timer = None
            idle = time.monotonic() - self._used
            if self._store is None:
                return
            if idle >= IDLE_CLOSE_S or turns.writer_waiting(self._store.directory):
                self._close()
            else:
                self._timer = threading.Timer(IDLE_CLOSE_S - idle, self._close_if_idle)
                self._timer.daemon = True
                self._timer.start()

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def close(self) -> None:
        with self.lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._close()


def _row(r: tuple) -> ResultRow:
    """A ResultRow from ``SELECT track_id, path, duration, path_bytes, <RESULT_COLUMNS>``."""
    return ResultRow(r[0], r[1], r[2], tuple(r[4:]), r[3])


class Catalog:
    """The TUI's view of one store. Thread-safe: each role has a connection and a lock."""

    def __init__(self, store_dir: Path | str | None = None):
        self._results = _Conn(Path(store_dir) if store_dir else None)
        self.directory = self._results.directory
        self._details = _Conn(self.directory)
        self._search = _Conn(self.directory)
        self._searcher: Searcher | None = None
        self._text_searcher = None  # index.search.TextSearcher, made on the first search
        self._text = _Conn(self.directory)
        self._text_lock = threading.Lock()
        self._text_hits: tuple[tuple[str, str | None], list[int]] | None = None
        self._checked: dict[str, str] = {}

    def close(self) -> None:
        for c in (self._results, self._details, self._search, self._text):
            c.close()

    def version(self) -> tuple[int, int] | None:
        """(mtime ns, size) of the store's file: it changes with every commit of a build."""
        try:
            st = os.stat(self.directory / DB_NAME)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    # -- user SQL ---------------------------------------------------------------------
    def check_where(self, where: str) -> str | None:
        """The checked ``SELECT * FROM tracks WHERE (where)``; None for an empty filter.

        Raises :class:`BadSQLError` (one line) when the text does not parse, is not a plain
        read-only expression, or does not bind (unknown column, wrong types).
        """
        import duckdb

        where = where.strip()
        if not where:
            return None
        if where in self._checked:
            return self._checked[where]
        def check(store: Store) -> str:
            sql = select_sql(store, "*", where)
            try:
                store.con.execute("EXPLAIN " + sql).fetchall()
            except duckdb.Error as exc:
                raise BadSQLError(f"bad WHERE filter {where!r}: {_one_line(exc)}") from None
            return sql

        sql = self._results.store_for(check)
        if len(self._checked) > 512:
            self._checked.clear()
        self._checked[where] = sql
        return sql

    def _source(self, f: Filters) -> str:
        """What to select from: ``tracks``, or the tracks the user's WHERE keeps."""
        user = self.check_where(f.where)
        return f"({user}) AS tracks" if user else "tracks"

    def page(self, f: Filters, sort: str = "artist", descending: bool = False,
             offset: int = 0, limit: int = PAGE_SIZE, *, total: int | None = None) -> Page:
        """One page of matching tracks and the total count; only ``limit`` rows are fetched.
        A ``total`` the caller already knows (a later page of the same list) is not counted
        again."""
        import duckdb

        if f.text.strip():
            return self.search_page(f, offset, limit)
        if sort not in SORTABLE:
            raise TuiError(f"cannot sort by {sort!r}: use one of {', '.join(SORTABLE)}")
        source, where = self._source(f), filter_sql(f)
        expr = dict(RESULT_COLUMNS)[sort]
        direction = "DESC" if descending else "ASC"
        cols = ", ".join(e for _, e in RESULT_COLUMNS)
        sql = (f"SELECT track_id, path, duration, path_bytes, {cols} FROM {source} WHERE {where} "
               f"ORDER BY {expr} {direction} NULLS LAST, path LIMIT {int(limit)} OFFSET {int(offset)}")
        try:
            rows = self._results.rows(sql)
            if total is None:
                total = self._results.rows(f"SELECT count(*) FROM {source} WHERE {where}")[0][0]
        except duckdb.Error as exc:
            raise BadSQLError(f"bad filter: {_one_line(exc)}") from None
        return Page(tuple(_row(r) for r in rows), int(total),
                    offset, sort, descending)

    def search_page(self, f: Filters, offset: int = 0, limit: int = PAGE_SIZE) -> Page:
        """Rows ``offset``.. of the :data:`SEARCH_RESULTS` best matches of ``f.text`` among
        the tracks the other filters keep, best first (``sort`` is ``"relevance"``)."""
        from index.search import TextSearcher

        where = combined_where(f)
        key = (f.text.strip(), where)
        def search(store: Store) -> list[int]:
            if self._text_searcher is None:
                self._text_searcher = TextSearcher(store=store)
            else:
                self._text_searcher.rebind(store)  # caches kept while the store is unchanged
            return [h.track_id for h in self._text_searcher.search(key[0], SEARCH_RESULTS, where).hits]

        with self._text_lock:
            if self._text_hits is None or self._text_hits[0] != key:
                try:
                    self._text_hits = (key, self._text.store_for(search))
                except BadSQLError:
                    raise
                except QueryError as exc:  # no match, empty query, missing model: one line
                    raise TuiError(str(exc)) from None
            ids = self._text_hits[1]
        rows = self.rows_for(ids[offset : offset + limit])
        return Page(rows, len(ids), offset, "relevance", False)

    def rows_for(self, track_ids: Sequence[int]) -> tuple[ResultRow, ...]:
        """Result rows for these tracks, in the order given (for a k-NN seeded list)."""
        if not track_ids:
            return ()
        cols = ", ".join(e for _, e in RESULT_COLUMNS)
        ids = ", ".join(str(int(t)) for t in track_ids)
        rows = self._results.rows(f"SELECT track_id, path, duration, path_bytes, {cols} FROM tracks "
                                  f"WHERE track_id IN ({ids})")
        by_id = {r[0]: _row(r) for r in rows}
        return tuple(by_id[int(t)] for t in track_ids if int(t) in by_id)

    def playlist(self, f: Filters, sort: str = "artist", descending: bool = False) -> list[ResultRow]:
        """Every matching track in the list's order (for an M3U8 export)."""
        page = self.page(f, sort, descending, 0, limit=2**31 - 1)
        return list(page.rows)

    def styles(self) -> list[str]:
        """Style names of the store, most common top style first, for completion."""
        rows = self._details.rows(
            "SELECT s.style FROM (SELECT DISTINCT style FROM styles) s "
            "LEFT JOIN (SELECT top_style, count(*) AS n FROM tracks GROUP BY top_style) t "
            "ON t.top_style = s.style ORDER BY coalesce(t.n, 0) DESC, s.style")
        return [r[0] for r in rows]

    def detail(self, track_id: int) -> TrackDetail:
        import duckdb

        con = self._details

        def fetch(store: Store):
            cur = store.con.execute("SELECT * FROM tracks WHERE track_id = ?", [int(track_id)])
            return [d[0] for d in cur.description], cur.fetchone()

        names, row = con.store_for(fetch)
        if row is None:
            raise QueryError(f"track {track_id} is no longer in the store")
        values = dict(zip(names, row))
        fields = tuple((n, v) for n, v in values.items() if v is not None)
        styles = con.rows("SELECT style, activation FROM styles WHERE track_id = ? "
                          "ORDER BY activation DESC LIMIT 8", [int(track_id)])
        tags = con.rows(
            "SELECT source, tag, activation FROM (SELECT *, row_number() OVER "
            "(PARTITION BY source ORDER BY activation DESC) AS r FROM tags WHERE track_id = ?) "
            "WHERE r <= 3 ORDER BY source, activation DESC", [int(track_id)])
        try:
            listeners = tuple(con.store_for(lambda store: track_scores(store, int(track_id))))
        except duckdb.CatalogException:  # a store made before listener profiles existed
            listeners = ()
        return TrackDetail(int(track_id), values["path"], fields,
                           tuple((s, float(a)) for s, a in styles),
                           tuple((s, t, float(a)) for s, t, a in tags), listeners)

    def make_list(self, request):
        """(tui.lists.ListMade, its result rows in play order) for a ListRequest (more like
        the seeds, a path, a radio). Raises QueryError (one line) when it cannot be made."""
        from tui.lists import build_list

        def make(store: Store):
            self._rebind_searcher(store)
            return build_list(self._searcher, request)

        made = self._search.store_for(make)
        return made, self.rows_for(made.track_ids)

    def _rebind_searcher(self, store: Store) -> None:
        """The similarity searcher on ``store`` (the search role's current connection)."""
        if self._searcher is None:
            self._searcher = Searcher(store=store)
        else:
            self._searcher.rebind(store)  # keeps its indexes while they are in step

    def similar(self, track_id: int, space: str, k: int = 10, f: Filters | None = None) -> Similar:
        """The ``k`` nearest tracks in ``space``; restricted to ``f`` when given. Never raises
        a QueryError: the reason is in ``Similar.error``."""
        try:
            where = combined_where(f) if f is not None else None
            def search(store: Store) -> list[Neighbour]:
                self._rebind_searcher(store)
                return self._searcher.knn(int(track_id), space, k, where)

            found = self._search.store_for(search)
        except (QueryError, TuiError) as exc:
            return Similar(space, int(track_id), (), str(exc))
        return Similar(space, int(track_id), tuple(found))


def format_value(v: object, digits: int = 2) -> str:
    """A cell: '' for NULL, numbers rounded, booleans yes/no, text without control
    characters. Show it as plain text (``rich.text.Text``), never as markup."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:.0f}"
    return printable(str(v))


__all__ = [
    "BadSQLError", "Catalog", "Filters", "KEYS", "MissingEmbeddingsError", "PAGE_SIZE", "Page",
    "PROFILES", "RESULT_COLUMNS", "Range", "ResultRow", "SORTABLE", "SPACES", "Similar",
    "TrackDetail", "TuiError", "combined_where", "filter_sql", "format_value", "parse_range",
]
