"""Browsing the collection: the filter panel's filters as SQL, pages of results, track details.

The TUI (tui.data.Catalog) calls these functions on a store it holds open; each returns
frozen dataclasses. Filters from the panel are turned into SQL by :func:`filter_sql`
(values are numbers or quoted literals, so that SQL is trusted); the free WHERE text
typed by the user goes through :func:`index.usersql.select_sql` (parsed, shape-checked
and read-only checked) in :func:`check_where`, and the checked
``SELECT * FROM tracks WHERE (...)`` replaces ``tracks`` in the page query (DuckDB folds
it into one scan; an ``IN (...)`` semi-join cost twice as much).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from models.errors import EngineError
from index.listeners import track_scores
from index.pathnames import from_db
from index.queryerrors import BadSQLError, QueryError
from index.schema import KEY_PROFILES
from index.sql import error_line
from index.sqlviews import TITLE_SQL
from index.store import Store, is_damaged
from index.tracks import TrackSummary
from index.usersql import select_sql

KEYS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Spellings a store may hold for each pitch class (flats, unicode accidentals).
_ENHARMONIC = {"C#": ("C#", "Db"), "D#": ("D#", "Eb"), "F#": ("F#", "Gb"),
               "G#": ("G#", "Ab"), "A#": ("A#", "Bb")}
PROFILES = KEY_PROFILES  # the filter panel's profile choices

# Results columns: (heading, SQL expression). The first is the row key.
RESULT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("artist", "artist"),
    ("title", TITLE_SQL),
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

class FilterError(EngineError):
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
        raise FilterError(f"unknown key profile {f.profile!r}: use one of {', '.join(PROFILES)}")
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

    def summary(self) -> TrackSummary:
        """The row as playlists take it (index.playlist.write_m3u8)."""
        return TrackSummary(self.track_id, self.path, self.duration, self.artist, self.title,
                            path_bytes=self.path_bytes)


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


def _row(r: tuple) -> ResultRow:
    """A ResultRow from ``SELECT track_id, path, duration, path_bytes, <RESULT_COLUMNS>``."""
    return ResultRow(r[0], r[1], r[2], tuple(r[4:]), r[3])


_ROW_SQL = "track_id, path, duration, path_bytes, " + ", ".join(e for _, e in RESULT_COLUMNS)


def check_where(store: Store, where: str) -> str:
    """The checked ``SELECT * FROM tracks WHERE (where)`` for a non-empty ``where``.

    Raises :class:`BadSQLError` (one line) when the text does not parse, is not a plain
    read-only expression, or does not bind (unknown column, wrong types).
    """
    import duckdb

    sql = select_sql(store, "*", where)
    try:
        store.con.execute("EXPLAIN " + sql).fetchall()
    except duckdb.Error as exc:
        raise BadSQLError(f"bad WHERE filter {where!r}: {error_line(exc)}") from None
    return sql


def check_sort(sort: str) -> str:
    """The SQL expression of the results column ``sort``; :class:`FilterError` for another name."""
    if sort not in SORTABLE:
        raise FilterError(f"cannot sort by {sort!r}: use one of {', '.join(SORTABLE)}")
    return dict(RESULT_COLUMNS)[sort]


def page(store: Store, f: Filters, user_sql: str | None, sort: str, descending: bool,
         offset: int, limit: int, *, total: int | None = None) -> Page:
    """Rows ``offset``.. (at most ``limit``) of the tracks the panel's filters ``f`` and the
    checked user SQL (``user_sql`` from :func:`check_where`, or None) keep, in ``sort``
    order, and their total count (not counted again when ``total`` is given)."""
    import duckdb

    expr = check_sort(sort)
    source = f"({user_sql}) AS tracks" if user_sql else "tracks"
    where = filter_sql(f)
    direction = "DESC" if descending else "ASC"
    sql = (f"SELECT {_ROW_SQL} FROM {source} WHERE {where} "
           f"ORDER BY {expr} {direction} NULLS LAST, path LIMIT {int(limit)} OFFSET {int(offset)}")
    try:
        rows = store.con.execute(sql).fetchall()
        if total is None:
            total = store.con.execute(f"SELECT count(*) FROM {source} WHERE {where}").fetchall()[0][0]
    except duckdb.Error as exc:
        if is_damaged(exc):
            raise
        raise BadSQLError(f"bad filter: {error_line(exc)}") from None
    return Page(tuple(_row(r) for r in rows), int(total), offset, sort, descending)


def result_rows(store: Store, track_ids: Sequence[int]) -> tuple[ResultRow, ...]:
    """Result rows for these tracks, in the order given (ids not in the store are left out)."""
    if not track_ids:
        return ()
    ids = ", ".join(str(int(t)) for t in track_ids)
    rows = store.con.execute(f"SELECT {_ROW_SQL} FROM tracks WHERE track_id IN ({ids})").fetchall()
    by_id = {r[0]: _row(r) for r in rows}
    return tuple(by_id[int(t)] for t in track_ids if int(t) in by_id)


def style_names(store: Store) -> list[str]:
    """Style names of the store, most common top style first, for completion."""
    rows = store.con.execute(
        "SELECT s.style FROM (SELECT DISTINCT style FROM styles) s "
        "LEFT JOIN (SELECT top_style, count(*) AS n FROM tracks GROUP BY top_style) t "
        "ON t.top_style = s.style ORDER BY coalesce(t.n, 0) DESC, s.style").fetchall()
    return [r[0] for r in rows]


def track_detail(store: Store, track_id: int) -> TrackDetail:
    """Everything stored about one track: its non-NULL columns, its 8 strongest styles, the
    3 strongest tags of each source and its listeners' predicted HAAQI; a
    :class:`QueryError` when the track is no longer in the store."""
    import duckdb

    cur = store.con.execute("SELECT * FROM tracks WHERE track_id = ?", [int(track_id)])
    names, row = [d[0] for d in cur.description], cur.fetchone()
    if row is None:
        raise QueryError(f"track {track_id} is no longer in the store")
    values = dict(zip(names, row))
    fields = tuple((n, v) for n, v in values.items() if v is not None)
    styles = store.con.execute("SELECT style, activation FROM styles WHERE track_id = ? "
                               "ORDER BY activation DESC LIMIT 8", [int(track_id)]).fetchall()
    tags = store.con.execute(
        "SELECT source, tag, activation FROM (SELECT *, row_number() OVER "
        "(PARTITION BY source ORDER BY activation DESC) AS r FROM tags WHERE track_id = ?) "
        "WHERE r <= 3 ORDER BY source, activation DESC", [int(track_id)]).fetchall()
    try:
        listeners = tuple(track_scores(store, int(track_id)))
    except duckdb.CatalogException:  # a store made before listener profiles existed
        listeners = ()
    return TrackDetail(int(track_id), values["path"], fields,
                       tuple((s, float(a)) for s, a in styles),
                       tuple((s, t, float(a)) for s, t, a in tags), listeners)
