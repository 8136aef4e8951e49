"""k-NN search: a track's nearest neighbours in one embedding space, through FAISS.

No click here: the CLI (engine/cli/query.py) and the TUI call these functions.

k-NN is cosine similarity in one embedding space (FAISS inner product on vectors centred
on the collection's mean and L2-normalised, see index.vectors). A ``where`` filter is an SQL boolean expression over the
``tracks`` table; it is applied *before* ranking, so a filtered search returns k tracks
whenever at least k tracks match it (and have an embedding in that space). The query
track and exact duplicates of it (same ``content_hash``, or similarity >= 0.99999) are
never returned.

Search strategy, by index kind (index.vectors.build_index chooses the kind):

- flat (small collections): exact; a filter becomes an ID selector on the scan.
- IVF-Flat (large ones): unfiltered queries probe the tuned ``nprobe`` lists. A filter
  keeping a fraction s of the tracks probes ``nprobe / s`` lists, so as many matching
  candidates are ranked as in an unfiltered search; once that is half of all lists, or
  the search found fewer than k, every list is scanned, which with IVF-*Flat* is an
  exact search over the filtered subset.
- compressed (index.compressed): as IVF-Flat, the candidates re-ranked from the float16
  rows; a filter matching at most :data:`ROWS_EXACT_BYTES` of rows, or
  :data:`ROWS_SCAN_BYTES` where the index would scan every list for it, is ranked exactly
  from the rows instead (their cost grows with the matches, the scan's with the tracks).

A filter's matching ids and FAISS selector are kept between queries while the store
connection is read-only (:data:`FILTER_CACHE`): fetching them is the part of a wide
filter's cost that grows with the collection. On a large collection a filter not kept
is first applied to the unfiltered search's best candidates (:data:`POST_FILTER_CANDIDATES`);
only when fewer than k of them match are its ids fetched.

Finding the query track is index.tracks; checking a ``where`` filter is index.usersql.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from models.errors import models_hint
from index.queryerrors import MissingEmbeddingsError, QueryError, UnknownSpaceError
from index.store import Store
from index.tracks import TrackSummary, model_outcome, resolve_track, track_label
from index.usersql import filter_ids, filter_ids_among

# Embedding spaces and their dimensions (index.schema: embeddings.space).
from models.registry import SPACES  # noqa: E402
# The space used when none is asked for: the best same-album precision measured on the
# library (bench/similarity_quality.py, docs/playlists.md); EffNet cannot be measured here.
DEFAULT_SPACE = "musicnn"
# Similarity at or above which a track counts as the same recording as the query.
DUPLICATE_SIMILARITY = 0.99999
# A filter matching at most this many tracks is searched exactly by fetching their
# vectors (reconstruct_batch) and ranking them in numpy: 0.1 ms for 1,000 of 1M tracks,
# where an ID selector still visits all 1M ids (3-7 ms); from ~5k on the fetch costs more.
SUBSET_EXACT_MAX = 2048
# With a compressed index, a filter matching at most this many bytes of float16 rows
# (1280-d: 3,276 tracks, 200-d: 20,971) is ranked exactly from the rows (index.vectorfile):
# ≈ 4 µs of CPU a 1280-d row where the filtered IVF search, probing every list for a filter
# that rare, scanned all codes (25 ms at 1M x 1280, growing with the tracks).
ROWS_EXACT_BYTES = 8 << 20
# ... and one of up to this many bytes when the index would probe every list for it: that
# scan costs the same whatever the filter (32 ms at 1M x 1280, linear in the tracks), the
# rows cost ≈ 2.5 µs a 1280-d track (13,107 tracks: ≈ 35 ms), whatever the collection's size.
ROWS_SCAN_BYTES = 32 << 20
# Filters whose matching track ids (and FAISS selector) a Searcher keeps between queries on
# a read-only store: fetching 500k ids from DuckDB and turning them into a selector cost
# 11 ms of a 20 ms query at 1M tracks, linear in the tracks.
FILTER_CACHE = 4
# A filter not in that cache, on a collection of at least POST_FILTER_MIN_TRACKS, is first
# tried after ranking: the unfiltered search's POST_FILTER_CANDIDATES best tracks, those
# the filter keeps checked in DuckDB. When k of them match they are the filtered top k
# (every other match ranks below them); else the filter's ids are fetched as above. A wide
# filter's first query then costs a search and a check of 256 ids, not fetching millions
# (on a read-only store the second query fetches them, to be kept for the later ones).
POST_FILTER_MIN_TRACKS = 200_000
POST_FILTER_CANDIDATES = 256
# FAISS threads for one query. One query gains little from OpenMP, and on a busy machine
# its spinning threads cost 30x (30k x 200 flat: 1.8 ms with 1 thread, 52 ms with 2
# while other processes held the cores; reconstructing 1,000 vectors: 0.1 ms with 1
# thread, 6 ms with 2 right after a DuckDB query), so searches run single-threaded.
SEARCH_THREADS = 1


@dataclass(frozen=True)
class Neighbour:
    """One k-NN result: rank 1 is the most similar track; similarity is cosine, -1..1."""

    rank: int
    track_id: int
    path: str
    similarity: float
    artist: str | None
    title: str | None
    duration: float | None
    bpm: float | None
    key: str | None  # tonic, Temperley profile (the most accurate on the test corpus)
    scale: str | None
    loudness_lufs: float | None
    danceability: float | None
    danceable: float | None
    voice: float | None
    arousal: float | None
    valence: float | None
    top_style: str | None
    genre: str | None

    @property
    def label(self) -> str:
        return track_label(self.artist, self.title, self.path)


# tracks columns behind Neighbour's descriptor fields, in field order.
_DESCRIPTOR_SQL = (
    "artist, title, duration, bpm, key_temperley, scale_temperley, loudness_lufs, "
    "danceability, danceable, voice, arousal, valence, top_style, genre"
)


# -- k-NN -----------------------------------------------------------------------------------

def check_space(space: str) -> None:
    if space not in SPACES:
        raise UnknownSpaceError(f"unknown embedding space {space!r}: use one of {', '.join(SPACES)}")


class Searcher:
    """k-NN over one store, keeping its FAISS indexes loaded between queries (TUI, bench).

    ``with Searcher(store_dir) as s: s.knn("Metal_madness", "effnet", k=10)``
    """

    def __init__(self, store_dir: Path | str | None = None, *, store: Store | None = None):
        # Given a ``store``, the caller owns it (and may :meth:`rebind` another one later).
        self._owns_store = store is None
        self.store = store if store is not None else Store.open_read_only(
            Path(store_dir) if store_dir else None)
        self._generations: dict[str, int] = {}
        self._indexes: dict[str, Any] = {}
        self._centres: dict[str, np.ndarray | None] = {}  # index.vectors.prepare's centre
        self._vector_rows: dict[str, Any] = {}  # space -> index.vectorfile.VectorFile (compressed kind)
        self._rerank: dict[str, int] = {}
        self.stale: dict[str, str | None] = {}  # space -> why its file was not used (None: used)
        self._ids: dict[str, np.ndarray] = {}
        self._present: dict[str, np.ndarray] = {}
        # (space, where) -> (allowed ids, their FAISS selector or None): see FILTER_CACHE.
        self._filters: OrderedDict[tuple[str, str], tuple[np.ndarray, Any]] = OrderedDict()
        self._read_only: bool | None = None
        self._post_filtered_once: set[tuple[str, str]] = set()  # see _tries_post_filter

    def close(self) -> None:
        if self._owns_store:
            self.store.close()

    def rebind(self, store: Store) -> None:
        """Search through ``store`` from now on (a newer connection to the same store);
        indexes whose space has changed since they were loaded are dropped."""
        if store is not self.store:  # its tables may differ: filters are fetched again
            self._filters.clear()
            self._read_only = None
        self.store = store
        for space in list(self._indexes):
            if store.generation(space) != self._generations.get(space):
                for cache in (self._indexes, self._centres, self._ids, self._present, self.stale,
                              self._vector_rows, self._rerank):
                    cache.pop(space, None)
                self._filters.clear()

    def __enter__(self) -> "Searcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def index(self, space: str):
        """The space's FAISS index: the file when it is in step with DuckDB (contents
        checked, index.vectors.check), else built in memory from DuckDB; never written.
        A compressed index (index.compressed) is never built here: a stale one is searched
        as it is, a damaged one is a QueryError naming the repair."""
        from index import vectors

        check_space(space)
        if space not in self._indexes:
            self._generations[space] = self.store.generation(space)
            try:
                opened = vectors.open_for_search(self.store, space)
            except vectors.IndexUnreadableError as exc:
                raise QueryError(str(exc)) from None
            index, centre, self.stale[space] = opened.index, opened.centre, opened.why
            self._vector_rows[space], self._rerank[space] = opened.rows, opened.rerank
            if index is None or index.ntotal == 0:
                raise MissingEmbeddingsError(_missing_message(space))
            self._indexes[space] = index
            self._centres[space] = centre
        return self._indexes[space]

    def rows(self, space: str):
        """The float16 rows a compressed index re-ranks with (index.vectorfile.VectorFile),
        or None for an index that holds its vectors itself."""
        self.index(space)
        return self._vector_rows.get(space)

    def indexed_ids(self, space: str) -> np.ndarray:
        """Sorted track ids (int64) that have a vector in ``space``'s index."""
        import faiss

        from index import vectors

        if space not in self._ids:
            index = self.index(space)
            ivf = faiss.try_extract_index_ivf(index)
            rows = self.rows(space)
            if rows is not None:  # the row file's ids are the index's, sorted already
                ids = np.asarray(rows.ids)
            elif ivf is None:
                ids = faiss.vector_to_array(index.id_map)
            else:
                ids = vectors.ivf_ids(ivf)
            self._ids[space] = np.sort(ids.astype(np.int64))
        return self._ids[space]

    def in_index(self, space: str, ids: np.ndarray) -> np.ndarray:
        """The ``ids`` that have a vector in ``space``'s index (order kept)."""
        indexed = self.indexed_ids(space)
        if not len(indexed) or not len(ids):
            return ids[:0]
        top = int(indexed[-1])
        if top <= 64 * len(indexed) + (1 << 20):  # dense ids (a sequence): a lookup table
            if space not in self._present:
                present = np.zeros(top + 1, dtype=bool)
                present[indexed] = True
                self._present[space] = present
            present = self._present[space]
            inside = ids[(ids >= 0) & (ids <= top)]
            return inside[present[inside]]
        pos = np.minimum(np.searchsorted(indexed, ids), len(indexed) - 1)
        return ids[indexed[pos] == ids]

    def query_vector(self, track: TrackSummary, space: str) -> np.ndarray:
        """The track's vector [1, d] prepared as the index holds it (centred, normalised): from
        the index (or its float16 rows), else from DuckDB."""
        rows = self.rows(space)
        if rows is not None and rows.contains([track.track_id])[0]:
            return rows.vectors(np.array([track.track_id]))
        try:
            return self.index(space).reconstruct(int(track.track_id))[None, :]
        except RuntimeError:  # not in the index (or an index without an id map)
            pass
        vector = self.store.embedding(track.track_id, space)
        if vector is None:
            raise MissingEmbeddingsError(self._no_vector_reason(track, space))
        from index.vectormath import prepare

        self.index(space)  # loads the centre
        return prepare(vector[None, :], self._centres.get(space))

    def vectors(self, space: str, track_ids: Sequence[int]) -> np.ndarray:
        """Normalised vectors ``[len(track_ids), d]`` (float32) of tracks in ``space``'s
        index, as the search compares them; raises MissingEmbeddingsError for an id without one."""
        ids = np.asarray(track_ids, dtype=np.int64)
        index = self.index(space)
        if not len(ids):
            return np.zeros((0, index.d), np.float32)
        missing = np.setdiff1d(ids, self.in_index(space, ids))
        if len(missing):
            raise MissingEmbeddingsError(f"track {int(missing[0])} has no {space} embedding")
        rows = self.rows(space)
        if rows is not None:  # a compressed index keeps its vectors in these rows
            return rows.vectors(ids)
        with _faiss_threads():
            return np.asarray(index.reconstruct_batch(ids), dtype=np.float32)

    def matrix(self, space: str) -> tuple[np.ndarray, np.ndarray]:
        """(track ids int64 [n], vectors float32 [n, d]) of every track in ``space``, from
        DuckDB, prepared as the index holds them (index.vectors.prepare)."""
        from index.vectormath import prepare

        self.index(space)  # loads the centre
        ids, raw = self.store.embedding_matrix(space)
        return ids, prepare(raw, self._centres.get(space), inplace=True)

    def allowed(self, space: str, where: str | None) -> np.ndarray | None:
        """Track ids of ``space``'s index that the SQL ``where`` keeps; None without a filter."""
        if where is None or not where.strip():
            return None
        return self._filter(space, where)[0]

    def _filter(self, space: str, where: str) -> tuple[np.ndarray, Any]:
        """(ids of ``space``'s index that ``where`` keeps, a FAISS selector for them or None
        when the index needs none), kept for the next queries while the store is read-only
        (:data:`FILTER_CACHE`)."""
        key = (space, where.strip())
        if key in self._filters:
            self._filters.move_to_end(key)
            return self._filters[key]
        allowed = self.in_index(space, filter_ids(self.store, where))
        exact = _exact(self.index(space), self._vector_rows.get(space), self._rerank.get(space, 0),
                       len(allowed), 0)
        made = (allowed, None if exact else _selector(allowed)[0])
        if self._read_only is None:
            self._read_only = self.store.read_only()
        if self._read_only:
            self._filters[key] = made
            while len(self._filters) > FILTER_CACHE:
                self._filters.popitem(last=False)
        return made

    def nearest(self, space: str, q: np.ndarray, k: int, *, exclude: set[int] | None = None,
                allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (track ids, cosine similarities) for a normalised query vector ``q``
        ``[d]``, best first: ``allowed`` (from :meth:`allowed`) restricts the candidates,
        ``exclude`` removes ids. Exact duplicates of ``q`` (similarity >= 0.99999) are skipped."""
        q = np.ascontiguousarray(np.asarray(q, dtype=np.float32).reshape(1, -1))
        index = self.index(space)
        return _search(index, q, k, set(exclude or ()), allowed, self._vector_rows.get(space),
                       self._rerank.get(space, 0))

    def _no_vector_reason(self, track: TrackSummary, space: str) -> str:
        """Why ``track`` has no vector in ``space``, and what (if anything) fixes it."""
        head = f"track {track.track_id} ({track.path}) has no {space} embedding"
        has, reason = model_outcome(self.store, track.track_id, space)
        if has is False:  # the model ran and could not take it: no build changes that
            return f"{head}: {reason or 'the model cannot take this track'}"
        return (f"{head}: the {space} model was missing when it was analysed. To get it, "
                f"{models_hint(space)}; then run `engine build` on its folder again")

    def knn(self, track: str | int | TrackSummary, space: str, k: int = 10,
            where: str | None = None) -> list[Neighbour]:
        """The ``k`` tracks most similar to ``track`` in ``space``, best first.

        ``where`` (SQL over ``tracks``) restricts the candidates before ranking.
        """
        check_space(space)
        if k < 1:
            raise QueryError(f"k must be at least 1, not {k}")
        ref = track if isinstance(track, TrackSummary) else resolve_track(self.store, track)
        index = self.index(space)
        q = self.query_vector(ref, space)
        exclude = {ref.track_id}
        filtered = where is not None and bool(where.strip())
        if filtered and self._tries_post_filter(space, where):
            first = self._post_filtered(space, q, k, exclude, where)
            if first is not None:
                rows = self._rows(first[0])
                if not any(ref.content_hash is not None and r[1] == ref.content_hash for r in rows.values()):
                    return self._neighbours(zip(*first), rows)
        allowed = sel = None
        if filtered:
            allowed, sel = self._filter(space, where)
        while True:
            ids, sims = _search(index, q, k, exclude, allowed, self._vector_rows.get(space),
                                self._rerank.get(space, 0), sel=sel)
            rows = self._rows(ids)
            # Copies of the query's file (same content hash) are found among the results
            # rather than by scanning every hash first: they are rare, and then searched past.
            copies = {t for t, r in rows.items() if ref.content_hash is not None and r[1] == ref.content_hash}
            if not copies:
                break
            exclude |= copies
        return self._neighbours(zip(ids, sims), rows)

    def _tries_post_filter(self, space: str, where: str) -> bool:
        """Whether a query with ``where`` first tries :meth:`_post_filtered`: on a read-only
        store, for the filter's first query only (the next one fetches its ids, which
        :data:`FILTER_CACHE` then keeps for every later query); on a writable one, which
        keeps nothing, every time."""
        key = (space, where.strip())
        if key in self._filters:
            return False
        if self._read_only is None:
            self._read_only = self.store.read_only()
        if not self._read_only:
            return True
        if key in self._post_filtered_once:
            return False
        self._post_filtered_once.add(key)
        return True

    def _post_filtered(self, space: str, q: np.ndarray, k: int, exclude: set[int],
                       where: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The filtered top ``k`` from the unfiltered search's best
        :data:`POST_FILTER_CANDIDATES` when at least ``k`` of them match ``where``, else None
        (and None below :data:`POST_FILTER_MIN_TRACKS` tracks, where fetching ids is cheap)."""
        index = self.index(space)
        n = max(POST_FILTER_CANDIDATES, 8 * k)
        if index.ntotal < POST_FILTER_MIN_TRACKS or n >= index.ntotal:
            return None
        ids, sims = _search(index, q, n, exclude, None, self._vector_rows.get(space), self._rerank.get(space, 0))
        keep = np.isin(ids, filter_ids_among(self.store, where, ids))
        if keep.sum() < k:
            return None
        return ids[keep][:k], sims[keep][:k]

    def neighbours(self, ranked: Sequence[tuple[int, float]]) -> list[Neighbour]:
        """:class:`Neighbour` rows (ranks from 1) for (track id, similarity) pairs, in the
        order given; ids no longer in the store are left out."""
        ranked = list(ranked)
        return self._neighbours(ranked, self._rows(np.array([t for t, _ in ranked], np.int64)))

    @staticmethod
    def _neighbours(ranked, rows: dict[int, tuple]) -> list[Neighbour]:
        pairs = ((int(i), round(float(s), 6)) for i, s in ranked if int(i) in rows)
        return [Neighbour(rank, tid, rows[tid][0], sim, *rows[tid][2:])
                for rank, (tid, sim) in enumerate(pairs, 1)]

    def _rows(self, ids: np.ndarray) -> dict[int, tuple]:
        """track_id -> (path, content_hash, descriptors...) for ``ids``."""
        if not len(ids):
            return {}
        # A list parameter: as fast as literal ids for 10-40 of 100k tracks (3-7 ms CPU), and
        # literal ids cost 62 ms for 500, 123 ms for 1,000 (a playlist's candidates).
        rows = self.store.con.execute(
            f"SELECT track_id, path, content_hash, {_DESCRIPTOR_SQL} FROM tracks "
            "WHERE track_id IN (SELECT unnest(?))", [[int(i) for i in ids]]
        ).fetchall()
        return {r[0]: r[1:] for r in rows}


def _missing_message(space: str) -> str:
    backbone = "Discogs-EffNet" if space == "effnet" else "MusiCNN"
    return (f"the store has no {space} embeddings: the {backbone} backbone is missing. "
            f"To get it, {models_hint(space)}; then run `engine build` on your music again")


@contextmanager
def _faiss_threads(n: int = SEARCH_THREADS):
    """Run FAISS calls inside with ``n`` OpenMP threads (see SEARCH_THREADS)."""
    import faiss

    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _probes(index, matching: int) -> tuple[int, int]:
    """(the lists a search probes for a filter keeping ``matching`` of the index's tracks,
    the lists there are; 0, 0 without lists): the tuned nprobe divided by the share kept,
    all of them from half on."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return 0, 0
    fraction = min(1.0, matching / max(index.ntotal, 1))
    nprobe = min(ivf.nlist, math.ceil(ivf.nprobe / max(fraction, 1e-12)))
    return (ivf.nlist if nprobe * 2 >= ivf.nlist else nprobe), ivf.nlist


def _exact(index, rows, rerank: int, matching: int, k: int) -> bool:
    """Whether a filter keeping ``matching`` tracks is ranked exactly, without the index:
    up to SUBSET_EXACT_MAX tracks (an index holding its vectors), ROWS_EXACT_BYTES of rows,
    or ROWS_SCAN_BYTES of them where the index would scan every list (a compressed one)."""
    if matching <= k:
        return True
    if rows is None:
        return matching <= SUBSET_EXACT_MAX
    if matching <= max(rerank, ROWS_EXACT_BYTES // (2 * rows.dim)):
        return True
    probed, lists = _probes(index, matching)
    return matching <= ROWS_SCAN_BYTES // (2 * rows.dim) and lists > 0 and probed >= lists


def _selector(allowed: np.ndarray):
    """A FAISS ID selector for ``allowed``: a bitmap when ids are dense."""
    import faiss

    top = int(allowed.max()) if len(allowed) else 0
    if top < 64 * len(allowed) + (1 << 20):  # bitmap of at most max(8*n, 128 KiB) bytes
        mask = np.zeros(top + 1, dtype=bool)
        mask[allowed] = True
        bitmap = np.packbits(mask, bitorder="little")
        sel = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        sel._keep = bitmap  # the selector points into this array
        return sel, len(allowed)
    sel = faiss.IDSelectorBatch(allowed)
    return sel, len(allowed)


def _search(index, q: np.ndarray, k: int, exclude: set[int], allowed: np.ndarray | None,
            rows=None, rerank: int = 0, sel=None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (ids, similarities) for query ``q`` [1, d], skipping ``exclude`` and duplicates.

    ``allowed`` (track ids, all in the index) restricts the search; None means every track.
    ``rows`` (index.vectorfile.VectorFile, with a compressed index): the index's scores
    are approximate, so at least ``rerank`` candidates are fetched and ordered by these
    rows; a filter matching at most :data:`ROWS_EXACT_BYTES` of rows (:data:`ROWS_SCAN_BYTES`
    where the index would probe every list for it) is ranked from the rows alone.
    ``sel``: a selector for ``allowed`` made before (Searcher._filter)."""
    import faiss

    if allowed is not None and _exact(index, rows, rerank, len(allowed), k):
        subset = allowed[~np.isin(allowed, np.fromiter(exclude, np.int64))] if exclude else allowed
        try:
            if rows is not None:
                sims = rows.similarities(subset, q[0])
            else:
                with _faiss_threads():
                    vecs = index.reconstruct_batch(subset) if len(subset) else np.zeros((0, index.d), np.float32)
                sims = vecs @ q[0]
        except (RuntimeError, KeyError):  # an index without an id -> vector map: use a selector below
            pass
        else:
            order = np.argsort(-sims, kind="stable")
            order = order[sims[order] < DUPLICATE_SIMILARITY][:k]
            return subset[order], sims[order]
    ivf = faiss.try_extract_index_ivf(index)
    nlist = ivf.nlist if ivf is not None else 0
    base_nprobe = ivf.nprobe if ivf is not None else 0
    matching = index.ntotal
    if allowed is None:
        sel = None
    else:
        if not len(allowed):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if sel is None:
            sel, _ = _selector(allowed)
        matching = len(allowed)
    nprobe = base_nprobe
    if ivf is not None and sel is not None:
        nprobe, _ = _probes(index, matching)
    # Ask for extra rows: excluded ids (the selector keeps them) and near-duplicates.
    want = max(k + len(exclude) + 1, rerank if rows is not None else 0)
    excluded = np.fromiter(exclude, np.int64)
    while True:
        want = min(want, index.ntotal)
        params = _search_params(ivf, nprobe, sel)
        with _faiss_threads():
            sims, ids = index.search(q, want, params=params)
        found = int((ids[0] >= 0).sum())  # FAISS pads with -1 at the end
        ids, sims = ids[0][:found], sims[0][:found]
        if rows is not None:
            from index.compressed import rerank as by_rows

            ids, sims = by_rows(rows, q[0], ids)
        keep = sims < DUPLICATE_SIMILARITY
        if exclude:
            keep &= ~np.isin(ids, excluded)
        if keep.sum() >= k:
            break
        if found < want:
            # The probed lists held fewer matches than asked for: scan them all (exact
            # with IVF-Flat; every match seen with a compressed index).
            if ivf is not None and nprobe < nlist:
                nprobe = nlist
                continue
            break  # every match has been seen
        if want >= index.ntotal:
            break
        want *= 2
    return ids[keep][:k], sims[keep][:k]


def _search_params(ivf, nprobe: int, sel):
    """FAISS search parameters: the IVF kind's own class (RaBitQ's carries its query bits)."""
    import faiss

    if ivf is None:
        return faiss.SearchParameters(sel=sel) if sel is not None else None
    params = (faiss.IVFRaBitQSearchParameters() if isinstance(ivf, faiss.IndexIVFRaBitQ)
              else faiss.SearchParametersIVF())
    params.nprobe = nprobe
    if sel is not None:
        params.sel = sel
    return params


def knn(store_dir: Path | str | None, track: str | int | TrackSummary, space: str, k: int = 10,
        where: str | None = None) -> list[Neighbour]:
    """The ``k`` tracks most similar to ``track`` (id, path or unique path part) in ``space``.

    Opens the store read-only for this one query; use :class:`Searcher` for many.
    """
    check_space(space)
    with Searcher(store_dir) as searcher:
        return searcher.knn(track, space, k, where)
