# One file (≈760 lines) on purpose: one space's index file from build to check, write and open shares the sidecar and DuckDB record at each step, and tests set its constants (EXACT_MAX_FLOATS) here; the vector maths is index.vectormath.
"""FAISS indexes, one per embedding space, kept in step with DuckDB.

DuckDB is the source of truth. Each index file ``<space>.faiss`` has a sidecar
``<space>.faiss.json`` recording the store generation it was built from and how it was
trained; when the store's generation for that space differs (or the file is missing
or unreadable), the index is brought in step with the ``embeddings`` table: an exact
(flat) index is rebuilt, an approximate (IVF) one is updated in place (see
:data:`RETRAIN_FACTOR`). Files are written to a temporary name and renamed, so a crash
never leaves a half-written index; an update compares the index's own contents with
the table, so it is right whatever the sidecar says.

An index holds each track's vector *prepared* (index.vectormath.prepare): the collection's mean
vector (index.vectormath.centre_of; the *centre*, kept in the sidecar) subtracted, then L2-normalised, so inner
product = cosine similarity of centred vectors. Track-mean embeddings share a large
common offset; without it, neighbours are ranked by what every track has. Centring
raised the same-album precision@10 of the library from 0.266 to 0.294 (MusiCNN, 113
excerpt queries; 95 % interval of the gain 0.006-0.050) and helped each space tried
(docs/playlists.md, bench/similarity_quality.py). An index updated in place keeps the
centre it was trained with; a rebuild computes it anew. A compressed index
(index.compressed) holds prepared vectors too, in its float16 row file and its codes:
its build streams the space once more to compute the centre first.

Contents are checked, not only the generation: a file changed behind the store's back
(a vector negated in place, an index copied from another store with its sidecar) gave
silently wrong neighbours. Writing an index records its size and SHA-256 in DuckDB
(``meta`` key ``index:<space>``, see :class:`FileRecord`); :func:`check` compares the
file with that record (the whole file up to :data:`FULL_DIGEST_MAX`, else spread
windows of it) and a sample of the index's vectors with DuckDB's. A searcher that finds
the file stale builds the index in memory from DuckDB (:func:`open_index`); ``engine
build`` checks every byte (:func:`sync`) and rewrites what differs.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from index import compressed, vectorfile
from index.store import Store
from models.errors import EngineError
from models.registry import SPACES
from index.vectormath import CENTRE_PRIOR, centre_of, centre_of_blocks, normalise, prepare  # noqa: F401 (read as vectors.X)

# Files up to this size are hashed whole whenever a searcher opens them (SHA-256 runs at
# ≈1.4 GB/s here: 45 ms CPU for 64 MiB); larger ones by :data:`WINDOWS` spread windows
# of :data:`WINDOW_BYTES`, plus the vector sample. ``engine build`` hashes every byte.
FULL_DIGEST_MAX = 64 << 20
WINDOWS = 16
WINDOW_BYTES = 1 << 20
# Vectors compared with DuckDB's when an index is opened: a wrong index (another
# store's, or stale) differs in nearly every vector, so a small sample finds it.
SAMPLE_VECTORS = 16


class IndexWriteError(EngineError):
    """An index file could not be written (disk full, read-only folder)."""


@dataclass(frozen=True)
class IndexInfo:
    """The sidecar ``<space>.faiss.json``: what the index file holds and how it was made.
    Fields after ``trained_on`` were added with compressed indexes; an older sidecar
    reads with their defaults (``kind`` is then inferred, see :attr:`index_kind`)."""

    space: str
    generation: int
    count: int
    dim: int
    trained_on: int = 0  # vectors the IVF clustering was trained on; 0 for an exact index
    kind: str = ""  # KIND_FLAT, KIND_IVF_FLAT or index.compressed.KIND
    nprobe: int = 0  # lists probed by an unfiltered search (IVF kinds)
    rerank: int = 0  # candidates re-ranked from float16 rows (compressed kind)
    recall: float | None = None  # recall@10 measured when nprobe (and rerank) were tuned
    trained_at: str = ""  # ISO time the clustering was trained (or the flat index built)
    centre: tuple[float, ...] | None = None  # subtracted before normalising (see prepare)

    @property
    def index_kind(self) -> str:
        if self.kind:
            return self.kind
        return KIND_IVF_FLAT if self.trained_on else KIND_FLAT


KIND_FLAT = "flat"
KIND_IVF_FLAT = "ivf-flat"


def index_path(store_dir: Path, space: str) -> Path:
    return store_dir / f"{space}.faiss"


def _info_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def read_info(store_dir: Path, space: str) -> IndexInfo | None:
    try:
        return IndexInfo(**json.loads(_info_path(index_path(store_dir, space)).read_text()))
    except (OSError, ValueError, TypeError):
        return None


@dataclass(frozen=True)
class FileRecord:
    """What DuckDB remembers of an index file it was written with (``meta`` key
    ``index:<space>``): the generation, the size, the SHA-256 of the whole file and of its
    spread windows (see :func:`digests`)."""

    generation: int
    size: int
    sha256: str
    windows: str


def _record_key(space: str) -> str:
    return f"index:{space}"


def read_record(store: Store, space: str) -> FileRecord | None:
    try:
        return FileRecord(**json.loads(store.meta(_record_key(space)) or "null"))
    except (TypeError, ValueError):
        return None


def digests(path: Path, *, full: bool = True) -> tuple[int, str | None, str]:
    """(size, SHA-256 of the whole file or None when not ``full``, SHA-256 of
    :data:`WINDOWS` windows of :data:`WINDOW_BYTES` spread evenly over the file)."""
    whole = hashlib.sha256() if full else None
    spread = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        spread.update(size.to_bytes(8, "little"))
        if whole is not None:
            while chunk := f.read(1 << 22):
                whole.update(chunk)
        step = max(WINDOW_BYTES, size // WINDOWS)
        for offset in range(0, size, step):
            f.seek(offset)
            spread.update(f.read(WINDOW_BYTES))
    return size, whole.hexdigest() if whole is not None else None, spread.hexdigest()


def is_fresh(store: Store, space: str, *, thorough: bool = False) -> bool:
    """Whether ``space``'s index file is the one written for the store's current
    embeddings: generation, size and digests as recorded (see :func:`check`)."""
    return check(store, space, thorough=thorough) is None


def check(store: Store, space: str, *, thorough: bool = False, index=None) -> str | None:
    """Why ``space``'s index file cannot be trusted, or None when it can.

    Compares the sidecar's and DuckDB's generations, the file's size and SHA-256 with
    what DuckDB recorded when it was written (the whole file when ``thorough`` or small,
    else spread windows), and, when ``index`` (the file, loaded) is given, its vector
    count and a sample of its vectors with DuckDB's.
    """
    path = index_path(store.directory, space)
    info = read_info(store.directory, space)
    generation = store.generation(space)
    record = read_record(store, space)
    if info is None or not path.is_file():
        return "missing"
    if info.generation != generation or record is None or record.generation != generation:
        return "stale"
    if info.centre is None and info.count:
        return "made before centring (it holds uncentred vectors)"
    try:
        full = thorough or record.size <= FULL_DIGEST_MAX
        size, whole, windows = digests(path, full=full)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if size != record.size or windows != record.windows or (full and whole != record.sha256):
        return "changed since it was written"
    if index is not None:
        return _sample_mismatch(store, space, index)
    return None


def _sample_mismatch(store: Store, space: str, index) -> str | None:
    """Why the loaded ``index`` differs from DuckDB (count, a sample of vectors), or None.
    A compressed index holds no vectors: its float16 rows are compared (:func:`rows_mismatch`)."""
    info = read_info(store.directory, space)
    if info is not None and info.index_kind == compressed.KIND:
        try:
            rows = vectorfile.VectorFile.open(store.directory, space, info.dim)
        except (OSError, ValueError) as exc:
            return f"row file unreadable ({' '.join(str(exc).split())[:120]})"
        count, _ = store.embedding_shape(space)
        if index.ntotal != count or len(rows) != count:
            return f"holds {index.ntotal} vectors ({len(rows)} rows), the store {count}"
        return rows_mismatch(store, space, rows)
    count, sample = store.embedding_sample(space, SAMPLE_VECTORS)
    centre = None if info is None else info.centre
    if index.ntotal != count:
        return f"holds {index.ntotal} vectors, the store {count}"
    for track_id, vector in sample:
        try:
            got = index.reconstruct(int(track_id))
        except RuntimeError:
            return f"lacks track {track_id}"
        if not np.allclose(got, prepare(np.asarray(vector, np.float32), centre), atol=1e-5):
            return f"holds another vector for track {track_id}"
    return None


# Exact search (a flat scan) while one query reads at most this many floats (tracks x
# dimensions), i.e. up to 12.5k EffNet or 80k MusiCNN tracks; larger spaces get an
# IVF-Flat index (see build_index). Measured by bench/knn_speed.py on the 2-core
# reference machine: a single-threaded scan costs 0.2-0.35 ns per float (100k x 200:
# 4.5 ms, 100k x 1280: 31-36 ms), but a whole filtered query over a flat 100k x 200
# index reached p95 31 ms while other jobs loaded the machine, against 12 ms with IVF.
EXACT_MAX_FLOATS = 16_000_000
# An IVF index is updated in place (vectors of deleted or re-analysed tracks out, new ones
# in) while the space holds between 1/RETRAIN_FACTOR and RETRAIN_FACTOR times the vectors
# its clustering was trained on; beyond that it is retrained, since centroids fitted to
# a collection half or twice the size no longer split it evenly. Training and tuning cost
# ≈2 min at 1M x 1280 on two cores; an update costs reading the vectors and the file.
RETRAIN_FACTOR = 2.0
# Recall@10 that build_index tunes nprobe for, on a sample of the collection's own
# tracks as queries; the target users get is 0.95, the margin covers other queries.
TUNED_RECALL = 0.97


def build_index(ids: np.ndarray, vectors: np.ndarray, *, exact_max_floats: int | None = None,
                with_recall: bool = False):
    """A FAISS inner-product index over L2-normalised ``vectors`` [n, d] with ``ids`` [n].

    Small spaces (n x d <= ``EXACT_MAX_FLOATS``) get ``IndexIDMap2(IndexFlatIP)``: exact.
    Larger ones get ``IndexIVFFlat`` with ``nlist`` = the power of two nearest 2*sqrt(n)
    (spherical k-means, 10 iterations on at most 64 points per list) and ``nprobe``
    tuned here to reach ``TUNED_RECALL`` on 200 of the collection's tracks used as
    queries. IVF-Flat keeps full vectors, so a search with ``nprobe = nlist`` is exact:
    filtered queries use that when the filter is very selective (index.query).
    ``with_recall``: (index, the recall@10 nprobe was tuned to reach; 1.0 when exact).
    """
    import faiss

    n, dim = vectors.shape
    limit = EXACT_MAX_FLOATS if exact_max_floats is None else exact_max_floats
    nlist = 1 << max(4, round(np.log2(2 * np.sqrt(max(n, 1)))))
    if n * dim <= limit or n < 64 * nlist:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        index.add_with_ids(vectors, ids)
        return (index, 1.0) if with_recall else index
    index = faiss.index_factory(dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.niter = 10
    ivf.cp.max_points_per_centroid = 64
    ivf.cp.seed = 1234
    rng = np.random.default_rng(1234)
    sample = rng.choice(n, size=min(n, 64 * nlist), replace=False)
    sample.sort()
    index.train(vectors[sample])
    index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
    index.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct(track_id)
    index.nprobe, recall = tune_nprobe(index, ids, vectors, rng=rng, with_recall=True)
    return (index, recall) if with_recall else index


def tune_nprobe(index, ids: np.ndarray, vectors: np.ndarray, *, rng=None, queries: int = 200,
                k: int = 10, target: float = TUNED_RECALL, with_recall: bool = False):
    """The smallest nprobe whose recall@k against exact search reaches ``target``
    (with ``with_recall``: (nprobe, the recall it reached)).

    Queries are tracks of the collection itself (what ``engine knn`` asks), each
    excluded from its own results, as the query track is in a real search.
    """
    rng = rng or np.random.default_rng(0)
    n = len(ids)
    rows = rng.choice(n, size=min(queries, n), replace=False)
    q = vectors[rows]
    # Exact top-(k+1) by blocks of the collection, so memory stays at queries x block.
    best_s = np.full((len(rows), k + 1), -np.inf, np.float32)
    best_i = np.zeros((len(rows), k + 1), np.int64)
    for start in range(0, n, 65536):
        block = vectors[start:start + 65536]
        sims = q @ block.T
        cand_s = np.concatenate([best_s, sims], axis=1)
        cand_i = np.concatenate([best_i, np.broadcast_to(ids[start:start + len(block)], sims.shape)], axis=1)
        top = np.argpartition(-cand_s, k, axis=1)[:, : k + 1]
        best_s = np.take_along_axis(cand_s, top, 1)
        best_i = np.take_along_axis(cand_i, top, 1)
    truth = [set(row[row != ids[r]][:k]) if (row == ids[r]).any() else
             set(row[np.argsort(-s)][:k]) for row, s, r in zip(best_i, best_s, rows)]
    nlist = index.nlist
    nprobe = 1
    wanted = sum(len(t) for t in truth)
    while True:
        index.nprobe = nprobe
        _, found = index.search(q, k + 1)
        hits = sum(len(t & set(f[f != ids[r]][:k])) for t, f, r in zip(truth, found, rows))
        if hits >= target * wanted or nprobe >= nlist:
            recall = round(hits / max(wanted, 1), 4)
            return (nprobe, recall) if with_recall else nprobe
        nprobe = min(nlist, nprobe * 2 if nprobe < 8 else int(nprobe * 1.5))


def rebuild(store: Store, space: str) -> IndexInfo:
    """Bring ``space``'s index in step with DuckDB, write it atomically and record its
    digests in DuckDB (``store`` must be writable).

    A space above index.compressed.COMPRESS_MIN_FLOATS gets a compressed index, built or
    updated by streaming its vectors (bounded memory, index.compressed). Otherwise an IVF
    index is updated in place when the space's size allows (see :data:`RETRAIN_FACTOR`),
    or the index is built anew (:func:`build_index`).
    Raises :class:`IndexWriteError` (one line) when the file cannot be written.
    """
    index, info = in_step(store, space)
    return _write(store, space, index, info)


def _write(store: Store, space: str, index, info: IndexInfo) -> IndexInfo:
    """Write ``index`` and its sidecar atomically (temporary names, then renamed) and
    record the file's digests in DuckDB; a row file left from a compressed kind goes."""
    import faiss

    path = index_path(store.directory, space)
    tmp = path.with_name(path.name + ".tmp")
    try:
        faiss.write_index(index, str(tmp))
        size, whole, windows = digests(tmp)
        os.replace(tmp, path)
        tmp_info = _info_path(path).with_suffix(".tmp")
        tmp_info.write_text(json.dumps(info.__dict__))
        os.replace(tmp_info, _info_path(path))
    except (RuntimeError, OSError) as exc:
        for leftover in (tmp, _info_path(path).with_suffix(".tmp")):
            leftover.unlink(missing_ok=True)
        raise IndexWriteError(
            f"cannot write the {space} index {path}: {_write_reason(exc)}; free some space (or "
            "make the folder writable) and run `engine build` again: the store itself is intact "
            "and the index is rebuilt from it") from None
    if info.kind != compressed.KIND:
        vectorfile.remove(store.directory, space)
    store.set_meta(_record_key(space), json.dumps(asdict(FileRecord(info.generation, size, whole, windows))))
    return info


def _write_reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    for known in ("No space left on device", "Read-only file system", "Permission denied",
                  "Disk quota exceeded", "File too large"):
        if known.lower() in text.lower():
            return known
    return " ".join(text.split())[:200]


def in_step(store: Store, space: str):
    """(an index in step with DuckDB's ``space`` embeddings, its IndexInfo), in memory.

    Reuses the file's IVF clustering when it may (:func:`_updated_ivf` compares its
    contents with the table, so a wrong file is corrected, not trusted). A large space
    gets a compressed index (index.compressed), streamed from DuckDB: its float16 row
    file is written next to the index as a side effect.
    """
    count, dim = store.embedding_shape(space)
    if compressed.wanted(count, dim, current=read_info(store.directory, space)):
        return _compressed_in_step(store, space, count, dim)
    return _in_memory_in_step(store, space)


def write_built(store: Store, space: str, built: "compressed.Built") -> IndexInfo:
    """Write a compressed index built from any source (bench/vectors_scale.py)."""
    return _write(store, space, built.index, _built_info(store, space, built))


def write_updated(store: Store, space: str, before: IndexInfo, done: "compressed.Updated") -> IndexInfo:
    """Write a compressed index updated from any source (bench/vectors_scale.py)."""
    return _write(store, space, done.index, _updated_info(store, space, before, done))


def _built_info(store: Store, space: str, built: "compressed.Built") -> IndexInfo:
    return IndexInfo(space, store.generation(space), int(built.index.ntotal), built.vectors.dim,
                     built.trained_on, kind=compressed.KIND, nprobe=built.tuning.nprobe,
                     rerank=built.tuning.rerank, recall=built.tuning.recall, trained_at=_now(),
                     centre=_centre_tuple(built.centre))


def _updated_info(store: Store, space: str, before: IndexInfo, done: "compressed.Updated") -> IndexInfo:
    return IndexInfo(space, store.generation(space), int(done.index.ntotal), done.vectors.dim,
                     before.trained_on, kind=compressed.KIND, nprobe=before.nprobe,
                     rerank=before.rerank, recall=before.recall, trained_at=before.trained_at,
                     centre=before.centre)


def _centre_tuple(centre: np.ndarray | None) -> tuple[float, ...] | None:
    """A centre as the sidecar's JSON holds it."""
    return None if centre is None else tuple(float(c) for c in centre)


def _now() -> str:
    import datetime as dt

    return dt.datetime.now().replace(microsecond=0).isoformat()


def _in_memory_in_step(store: Store, space: str):
    """(flat or IVF-Flat index in step with the table, its IndexInfo), all vectors in memory."""
    import faiss

    ids, vecs = store.embedding_matrix(space)
    dim = vecs.shape[1] if vecs.size else 0
    trained_on = 0
    centre = None
    before = read_info(store.directory, space)
    trained_at = before.trained_at if before is not None else ""
    recall = None
    if len(ids):
        # vecs is a fresh array: prepared in place, no second copy (GBs at 1M)
        index, trained_on, centre = _updated_ivf(store.directory, space, ids, vecs)
        if index is None:
            centre = centre_of(vecs)
            index, recall = build_index(ids, prepare(vecs, centre, inplace=True), with_recall=True)
            trained_on = len(ids) if isinstance(index, faiss.IndexIVF) else 0
            trained_at = _now()
    else:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(max(dim, 1)))
    ivf = faiss.try_extract_index_ivf(index)
    kind = KIND_IVF_FLAT if ivf is not None else KIND_FLAT
    if recall is None and before is not None and before.index_kind == kind and kind == KIND_IVF_FLAT:
        recall = before.recall
    return index, IndexInfo(space, store.generation(space), int(len(ids)), int(dim), int(trained_on),
                            kind=kind, nprobe=int(ivf.nprobe) if ivf is not None else 0,
                            recall=1.0 if kind == KIND_FLAT else recall, trained_at=trained_at,
                            centre=_centre_tuple(centre))


def _compressed_in_step(store: Store, space: str, count: int, dim: int):
    """(compressed index in step with the table, its IndexInfo): updated in place when the
    existing one may be (same kind and dimension, a centre, within RETRAIN_FACTOR of its
    training, its ids those of its row file), else built anew. Vectors are streamed from
    DuckDB; an update keeps the centre the index was built with, as IVF-Flat's does."""
    chunks = lambda: store.embedding_chunks(space)  # noqa: E731
    info = read_info(store.directory, space)
    if (info is not None and info.index_kind == compressed.KIND and info.dim == dim
            and info.centre is not None
            and info.trained_on / RETRAIN_FACTOR <= count <= info.trained_on * RETRAIN_FACTOR):
        try:
            index = load(store.directory, space)
            rows = vectorfile.VectorFile.open(store.directory, space, dim)
        except (RuntimeError, OSError, ValueError):  # missing or unreadable: build anew
            index = rows = None
        if index is not None and _same_ids(index, rows):
            done = compressed.update(index, rows, chunks, store.directory, space,
                                     centre=np.asarray(info.centre, np.float32))
            return done.index, _updated_info(store, space, info, done)
    built = compressed.build(chunks, count, dim, store.directory, space)
    return built.index, _built_info(store, space, built)


def _same_ids(index, rows: vectorfile.VectorFile) -> bool:
    """Whether the index holds exactly the row file's tracks (not so after a crash between
    writing the two)."""
    if index.ntotal != len(rows):
        return False
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    return ivf is not None and np.array_equal(np.sort(ivf_ids(ivf)), np.asarray(rows.ids))


def _updated_ivf(directory: Path, space: str, ids: np.ndarray, vecs: np.ndarray):
    """(the space's IVF index with the table's changes applied, the count it was trained
    on, its centre), or (None, 0, None) when the index must be built anew: none yet, an
    exact one, another dimension, no centre (made before centring), or a space now too
    small for IVF or outside RETRAIN_FACTOR of its training. When it is updated, ``vecs``
    (raw) are prepared in place with the index's centre."""
    import faiss

    info = read_info(directory, space)
    n, dim = vecs.shape
    if (info is None or not info.trained_on or info.dim != dim or n * dim <= EXACT_MAX_FLOATS
            or info.centre is None
            or not info.trained_on / RETRAIN_FACTOR <= n <= info.trained_on * RETRAIN_FACTOR):
        return None, 0, None
    try:
        index = load(directory, space)
    except (RuntimeError, OSError):  # missing or unreadable: build anew
        return None, 0, None
    if not isinstance(index, faiss.IndexIVFFlat) or index.d != dim:
        return None, 0, None
    centre = np.asarray(info.centre, dtype=np.float32)
    prepare(vecs, centre, inplace=True)
    # Compare the index's contents with the table list by list: no copy of the whole index.
    seen = np.zeros(n, bool)  # in the index already ...
    changed = np.zeros(n, bool)  # ... but with another vector (the track was re-analysed)
    gone = [np.zeros(0, np.int64)]
    for list_ids, list_vecs in _ivf_lists(index):
        at = np.minimum(np.searchsorted(ids, list_ids), n - 1)  # ids are sorted
        kept = ids[at] == list_ids
        gone.append(list_ids[~kept])
        at = at[kept]
        seen[at] = True
        changed[at[np.any(list_vecs[kept] != vecs[at], axis=1)]] = True
    out = np.concatenate(gone + [ids[changed]])
    if len(out):
        index.remove_ids(np.ascontiguousarray(out, dtype=np.int64))
    new = changed | ~seen
    if new.any():
        index.add_with_ids(np.ascontiguousarray(vecs[new]), np.ascontiguousarray(ids[new]))
    return index, info.trained_on, centre


def _ivf_lists(index, *, with_vectors: bool = True):
    """Each non-empty inverted list of an IVF index as (ids, vectors), copied out; vectors
    (``IndexIVFFlat`` only) are None unless ``with_vectors``."""
    import faiss

    invlists, d = index.invlists, index.d
    for lst in range(index.nlist):
        size = invlists.list_size(lst)
        if not size:
            continue
        id_ptr = invlists.get_ids(lst)
        try:
            list_ids = faiss.rev_swig_ptr(id_ptr, size).astype(np.int64)
        finally:
            invlists.release_ids(lst, id_ptr)
        vecs = None
        if with_vectors:
            code_ptr = invlists.get_codes(lst)
            try:
                codes = faiss.rev_swig_ptr(code_ptr, size * invlists.code_size).copy()
            finally:
                invlists.release_codes(lst, code_ptr)
            vecs = codes.view(np.float32).reshape(size, d)
        yield list_ids, vecs


def ivf_ids(index) -> np.ndarray:
    """The ids (int64, list order) stored in an IVF index."""
    return np.concatenate([np.zeros(0, np.int64)]
                          + [i for i, _ in _ivf_lists(index, with_vectors=False)])


def ivf_contents(index) -> tuple[np.ndarray, np.ndarray]:
    """(ids int64 [n], vectors float32 [n, d]) stored in an ``IndexIVFFlat``, list by list."""
    parts = list(_ivf_lists(index))
    if not parts:
        return np.zeros(0, np.int64), np.zeros((0, index.d), np.float32)
    return np.concatenate([i for i, _ in parts]), np.concatenate([v for _, v in parts])


def sync(store: Store, spaces=SPACES) -> list[IndexInfo]:
    """Update every stale, missing or changed index (see :func:`rebuild`, :func:`check`:
    every byte is hashed); returns what changed."""
    return [rebuild(store, s) for s in spaces if _needs_rebuild(store, s)]


def _needs_rebuild(store: Store, space: str) -> bool:
    if read_info(store.directory, space) is None and not index_path(store.directory, space).exists() \
            and not store.embedding_shape(space)[0]:
        return False  # no vectors and never indexed (its model is missing): nothing to write
    if check(store, space, thorough=True) is not None:
        return True
    try:
        index = load(store.directory, space, mmap=True)
    except (RuntimeError, OSError):
        return True
    return _sample_mismatch(store, space, index) is not None


class IndexUnreadableError(EngineError):
    """A compressed index that cannot be used and is too large to build in a search."""


@dataclass
class OpenedIndex:
    """What a searcher uses for one space (:func:`open_for_search`)."""

    index: object  # a FAISS index
    rows: "vectorfile.VectorFile | None"  # float16 rows to re-rank with (compressed kind)
    rerank: int  # candidates re-ranked from ``rows``
    why: str | None  # why the file was not used as it is (None: it was)
    centre: np.ndarray | None = None  # float32 [d] the vectors were prepared with (see prepare)


def open_index(store: Store, space: str):
    """(``space``'s FAISS index for searching, why the file was not used or None): see
    :func:`open_for_search`, which also gives a compressed index's float16 rows."""
    opened = open_for_search(store, space)
    return opened.index, opened.why


def open_for_search(store: Store, space: str) -> OpenedIndex:
    """``space``'s index for searching: the file when it is in step with DuckDB (mapped,
    not read), else an index built in memory from DuckDB, with why the file was not used.

    A compressed index is never built here (that streams the whole space): one older than
    the store (a build is adding tracks) is searched as it is, one that fails its checks
    raises :class:`IndexUnreadableError` naming the repair. Searchers never write:
    ``engine build`` or ``engine index sync`` rewrite a stale or changed file.
    """
    info = read_info(store.directory, space)
    if info is not None and info.index_kind == compressed.KIND:
        return _open_compressed_checked(store, space)
    why = check(store, space)
    if why is None:
        try:
            index = load(store.directory, space, mmap=True)
        except (RuntimeError, OSError) as exc:
            why = f"unreadable ({' '.join(str(exc).split())[:120]})"
        else:
            why = _sample_mismatch(store, space, index)
            if why is None:
                return OpenedIndex(index, None, 0, None, _centre_array(read_info(store.directory, space)))
    count, dim = store.embedding_shape(space)
    if compressed.wanted(count, dim):
        raise IndexUnreadableError(
            f"the {space} index in {store.directory} is {why} and too large to build in memory "
            f"here: run `engine index sync --space {space}`")
    index, info = in_step(store, space)
    return OpenedIndex(index, None, 0, why, _centre_array(info))


def _centre_array(info: IndexInfo | None) -> np.ndarray | None:
    return None if info is None or info.centre is None else np.asarray(info.centre, np.float32)


def _open_compressed_checked(store: Store, space: str) -> OpenedIndex:
    """A compressed index as it is (with its centre), or IndexUnreadableError. One made
    before centring (no centre) fails :func:`check` like a changed file: its rows are not
    what a search compares queries with, and a search cannot rebuild it."""
    why = check(store, space)
    centre = _centre_array(read_info(store.directory, space))
    stale = why == "stale"
    if why is None or stale:
        try:
            index, rows, rerank = open_compressed(store.directory, space)
        except (RuntimeError, OSError, ValueError) as exc:
            why = f"unreadable ({' '.join(str(exc).split())[:120]})"
        else:
            if stale:  # searched as it is: tracks analysed since are missing until a sync
                return OpenedIndex(index, rows, rerank, "older than the store", centre)
            why = rows_mismatch(store, space, rows)
            if why is None:
                return OpenedIndex(index, rows, rerank, None, centre)
    raise IndexUnreadableError(
        f"the {space} index in {store.directory} cannot be used ({why}): run `engine index "
        f"sync --space {space}` to rebuild it from the store")


def open_compressed(store_dir: Path, space: str):
    """(index mapped for searching, its float16 rows, re-rank depth) when ``space`` has a
    compressed index, else None. Raises OSError/RuntimeError/ValueError for damaged files."""
    info = read_info(store_dir, space)
    if info is None or info.index_kind != compressed.KIND:
        return None
    index = load(store_dir, space, mmap=True)
    rows = vectorfile.VectorFile.open(store_dir, space, info.dim)
    if len(rows) != index.ntotal:
        raise ValueError(f"{space}: the index holds {index.ntotal} vectors, its row file {len(rows)}")
    return index, rows, info.rerank


# Consecutive tracks whose float16 rows are compared with DuckDB's vectors when a compressed
# index in step with the store is opened. A run of ids, not a random sample: DuckDB reads
# one row group for it (milliseconds at any size), where `USING SAMPLE` or scattered ids
# scan the whole table (2 s for 200 scattered vectors at 200k x 1280). A wrong row file
# (another store's, a stale copy) differs in nearly every vector, so 16 find it.
CHECK_RUN = 16


def rows_mismatch(store: Store, space: str, rows: vectorfile.VectorFile, *, seed: int | None = None) -> str | None:
    """Why ``rows`` does not hold DuckDB's vectors, prepared with the index's centre, for a
    run of :data:`CHECK_RUN` tracks (which differ, or which are missing on either side), or
    None when they agree."""
    if not len(rows):
        return None
    rng = np.random.default_rng(seed)
    start = int(rng.integers(0, max(1, len(rows) - CHECK_RUN + 1)))
    run = np.asarray(rows.ids[start:start + CHECK_RUN])
    got = store.con.execute(
        "SELECT track_id, vector FROM embeddings WHERE space = ? AND track_id BETWEEN ? AND ? "
        "ORDER BY track_id", [space, int(run[0]), int(run[-1])]).fetchall()
    ids = np.array([r[0] for r in got], np.int64)
    if not np.array_equal(ids, run):
        missing = np.setdiff1d(np.union1d(ids, run), np.intersect1d(ids, run))
        return f"track {int(missing[0])} is in one of the store and the row file, not both"
    info = read_info(store.directory, space)
    want = prepare(np.array([r[1] for r in got], np.float32), None if info is None else info.centre,
                   inplace=True)
    bad = np.flatnonzero(np.abs(rows.vectors(run) - want).max(axis=1) > 2e-3)
    return f"holds another vector for track {int(run[bad[0]])}" if len(bad) else None


@dataclass(frozen=True)
class IndexStatus:
    """One space's index as `engine index info` shows it."""

    space: str
    state: str  # 'in step', 'stale' (the store changed since), 'missing', 'no vectors'
    kind: str  # KIND_FLAT, KIND_IVF_FLAT or index.compressed.KIND ('' when missing)
    layout: str  # e.g. 'IVF2048,RaBitQ nprobe 16 + float16 re-rank of 50'
    vectors: int  # in the index
    store_vectors: int  # in DuckDB
    dim: int
    trained_on: int
    recall: float | None  # recall@10 measured at build time (1.0 for exact)
    trained_at: str
    index_bytes: int  # the FAISS file
    rows_bytes: int  # float16 rows and their map (compressed kind)


def describe(store: Store, spaces=None) -> list[IndexStatus]:
    """Every space's index: kind, size on disk, vectors, training, expected recall."""
    import faiss

    from index.query import SPACES

    out = []
    for space in spaces or SPACES:
        count, _ = store.embedding_shape(space)
        info = read_info(store.directory, space)
        path = index_path(store.directory, space)
        if info is None or not path.is_file() or not (info.count or count):
            out.append(IndexStatus(space, "missing" if count else "no vectors", "", "", 0, count,
                                   0, 0, None, "", 0, 0))
            continue
        kind = info.index_kind
        layout = "exact (flat)"
        try:
            ivf = faiss.try_extract_index_ivf(load(store.directory, space, mmap=True))
        except RuntimeError:
            ivf, layout = None, "unreadable"
        if ivf is not None:
            codes = "RaBitQ" if kind == compressed.KIND else "Flat"
            layout = f"IVF{ivf.nlist},{codes} nprobe {ivf.nprobe}"
            if kind == compressed.KIND:
                layout += f" + float16 re-rank of {info.rerank}"
        rows_bytes = sum(p.stat().st_size for p in (vectorfile.rows_path(store.directory, space),
                                                     vectorfile.map_path(store.directory, space))
                         if p.exists())
        state = "in step" if info.generation == store.generation(space) else "stale"
        out.append(IndexStatus(space, state, kind, layout, info.count, count, info.dim,
                               info.trained_on, info.recall, info.trained_at,
                               path.stat().st_size, rows_bytes))
    return out


def load(store_dir: Path, space: str, *, mmap: bool = False):
    """Read ``space``'s index. ``mmap`` maps the file instead of reading it (for searching
    only: it cannot be changed): a 1M x 1280 index opens in milliseconds instead of ≈3 s,
    and a search pages in only the lists it probes."""
    import faiss

    path = str(index_path(store_dir, space))
    if mmap:
        try:
            return faiss.read_index(path, faiss.IO_FLAG_MMAP)
        except RuntimeError:  # a FAISS that cannot map this index type: read it whole
            pass
    return faiss.read_index(path)
