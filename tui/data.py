"""The TUI's core: pages of results, track details and neighbours. No textual here.

A thin adapter over ``index`` (browse, query, search): everything is a frozen
dataclass, and :class:`Catalog` owns the DuckDB connections. Each *role* (results,
details, similarity) has its own connection and lock, so a slow k-NN search never
delays the results list; the app calls these methods from thread workers only. The SQL
(filters, pages, details) is index.browse's; here are only the roles' connections, the
filter text the panel reads (:func:`parse_range`) and how a cell is shown.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from index import browse, turns
from index.browse import (
    KEYS, PROFILES, RESULT_COLUMNS, SORTABLE, Filters, Page, Range, ResultRow, TrackDetail,
    combined_where, filter_sql,
)
from index.browse import FilterError as TuiError  # one class: the panel's text and its SQL
from index.query import Neighbour, Searcher
from index.queryerrors import BadSQLError, MissingEmbeddingsError, QueryError
from index.store import DB_NAME, Store, damaged_error, is_damaged
from index.tcav import Explanation
from index.usersql import prepare_connection
from tui.text import printable

PANE_SPACES = ("effnet", "musicnn")  # the Similar pane's two lists, in this order (mtt is in `more like`)
PAGE_SIZE = 200
# A role's connection is closed after this long without a query (index.turns: a build
# commits while the app is idle).
IDLE_CLOSE_S = 1.0
SEARCH_RESULTS = 500  # tracks a text search lists, best first

# -- filter text ------------------------------------------------------------------------------

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
class Similar:
    """Neighbours of one track in one space, or why there are none."""

    space: str
    track_id: int
    neighbours: tuple[Neighbour, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class Explained:
    """The concepts behind one head's top class for one track (index.tcav), or why there
    are none (``error``, one line)."""

    track_id: int
    head: str | None  # the head explained; None when the store allows none
    heads: tuple[str, ...] = ()  # every head the store's embeddings and models allow
    explanation: Explanation | None = None
    arrows: tuple[str, ...] = ()  # index.tcav.push_arrows, one per explanation effect
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
        # Its own role: an explanation takes seconds (CAVs learned per call), and must
        # not hold up the list, the details or the neighbours.
        self._explain = _Conn(self.directory)
        self._heads: dict[str, object] = {}  # index.tcav.Head by name, loaded once

    def close(self) -> None:
        for c in (self._results, self._details, self._search, self._text, self._explain):
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
        """The checked ``SELECT * FROM tracks WHERE (where)`` (index.browse.check_where);
        None for an empty filter. Raises :class:`BadSQLError` (one line)."""
        where = where.strip()
        if not where:
            return None
        if where in self._checked:
            return self._checked[where]
        sql = self._results.store_for(lambda store: browse.check_where(store, where))
        if len(self._checked) > 512:
            self._checked.clear()
        self._checked[where] = sql
        return sql

    def page(self, f: Filters, sort: str = "artist", descending: bool = False,
             offset: int = 0, limit: int = PAGE_SIZE, *, total: int | None = None) -> Page:
        """One page of matching tracks and the total count; only ``limit`` rows are fetched.
        A ``total`` the caller already knows (a later page of the same list) is not counted
        again."""
        if f.text.strip():
            return self.search_page(f, offset, limit)
        browse.check_sort(sort)
        user = self.check_where(f.where)
        return self._results.store_for(
            lambda store: browse.page(store, f, user, sort, descending, offset, limit, total=total))

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
        return self._results.store_for(lambda store: browse.result_rows(store, track_ids))

    def playlist(self, f: Filters, sort: str = "artist", descending: bool = False) -> list[ResultRow]:
        """Every matching track in the list's order (for an M3U8 export)."""
        page = self.page(f, sort, descending, 0, limit=2**31 - 1)
        return list(page.rows)

    def styles(self) -> list[str]:
        """Style names of the store, most common top style first, for completion."""
        return self._details.store_for(browse.style_names)

    def detail(self, track_id: int) -> TrackDetail:
        return self._details.store_for(lambda store: browse.track_detail(store, int(track_id)))

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

    def explain(self, track_id: int, head: str | None = None,
                cancelled: Callable[[], bool] = lambda: False) -> Explained | None:
        """Which concepts push ``head``'s top class for the track (None: the store's
        default head, index.tcav.default_head). Never raises an EngineError: the reason is
        in ``Explained.error``. None when ``cancelled()`` turns true (the app has moved on):
        checked once the role's previous explanation has finished and at each call of the
        head, so a stale request stops early (learning the concepts' directions cannot be
        interrupted)."""
        from dataclasses import replace

        from index import tcav
        from models.errors import EngineError

        class Cancelled(Exception):
            pass

        def run(store: Store) -> Explained | None:
            if cancelled():
                return None
            heads = tuple(tcav.available_heads(store))
            name = head if head in heads else None
            try:
                name = name or tcav.default_head(store)
                if name not in self._heads:
                    self._heads[name] = tcav.load_head(name)
                loaded = self._heads[name]

                def predict(x):  # each call of the head is a point where a stale request stops
                    if cancelled():
                        raise Cancelled
                    return loaded.predict(x)

                result = tcav.explain_track(store, int(track_id), replace(loaded, predict=predict))
            except Cancelled:
                return None
            except EngineError as exc:
                return Explained(int(track_id), name, heads, error=str(exc).split("\n")[0])
            return Explained(int(track_id), name, heads, result, tcav.push_arrows(result.effects))

        return self._explain.store_for(run)


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
    "BadSQLError", "Catalog", "Explained", "Filters", "KEYS", "MissingEmbeddingsError", "PAGE_SIZE", "Page",
    "PROFILES", "RESULT_COLUMNS", "Range", "ResultRow", "SORTABLE", "PANE_SPACES", "Similar",
    "TrackDetail", "TuiError", "combined_where", "filter_sql", "format_value", "parse_range",
]
