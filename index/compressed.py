"""Compressed indexes for large spaces: IVF lists of RaBitQ codes, re-ranked from float16 rows.

Above :data:`COMPRESS_MIN_FLOATS` (tracks x dimensions) a space's FAISS index keeps no full
vectors: ``IVF{nlist},RaBitQ`` stores one bit per dimension plus two factors (1280-d: 168
bytes a track, 200-d: 33), and the best candidates of its approximate scores are re-ranked
with the float16 rows of index.vectorfile. Measured on 200k x 1280 clustered vectors
(bench/knn_speed's generator) while choosing: IVF-Flat reached recall@10 0.982 at nprobe 8
with 5,154 bytes a track; RaBitQ re-ranking its top 50 reached 0.998 at nprobe 16 with 202
bytes a track, in ≈1 ms of one core. RaBitQ needs no codebook training (only the IVF
centroids; PQ64's training had not finished after ten minutes), so building and updating
cost about what IVF-Flat's do. docs/vectors.md has the figures at 1M-10M tracks.

Vectors are held *prepared* (index.vectors.prepare: the collection's centre subtracted, then
L2-normalised), in the row file and in the codes alike, so a compressed index ranks as the
exact one would and the query is prepared the same way whatever the index kind.

Building never holds the space's vectors in memory: pass 0 streams them (from DuckDB, in
chunks) to sum them for the centre (index.vectors.centre_of_blocks); pass 1 streams them
again, prepared, into the float16 row file while keeping a fixed random sample for training
and tuning; pass 2 streams the row file into the trained index and computes the tuning
queries' exact neighbours on the way. Peak memory is the sample (≤ :data:`MAX_TRAIN` rows)
plus the codes, not the vectors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from index.vectorfile import BLOCK_ROWS, MAX_DEAD_SHARE, VectorFile, VectorFileWriter

# Spaces holding more floats than this (tracks x dimensions, i.e. 1 GiB of float32: 210k
# EffNet or 1.34M MusiCNN tracks) get a compressed index. Below it IVF-Flat (or exact
# flat) costs little memory and keeps exact vectors in the index itself.
COMPRESS_MIN_FLOATS = 1 << 28
FACTORY = "IVF{nlist},RaBitQ"
KIND = "ivf-rabitq"
# IVF training sample: this many vectors per list (FAISS warns below 39), at most MAX_TRAIN.
TRAIN_PER_LIST = 40
MAX_TRAIN = 1 << 18
# Tracks of the collection used as queries when tuning nprobe and the re-rank depth.
TUNING_QUERIES = 200
# Re-rank depths tried, smallest first. Each candidate re-ranked is one row read (a random
# read once the row file no longer fits in the page cache: 0.07 ms median, 0.16 ms mean
# for 4 KiB here), so tuning probes more lists rather than read more than
# RERANK_BUDGET_BYTES of rows (1280-d: 102 rows, 200-d: 655), and goes deeper only when
# every list is probed. On 1M x 200 a 100-row cap needed nprobe 40 for recall 0.97.
RERANK_STEPS = (25, 50, 100, 200, 400)
RERANK_BUDGET_BYTES = 1 << 18
# Vectors added to the index per FAISS call while streaming.
ADD_BLOCK = 1 << 14
# Vectors an update compares with their rows at a time (index.vectorfile.BLOCK_ROWS: 16 MiB
# of float16 at 1280-d).
COMPARE_BLOCK = BLOCK_ROWS

Chunks = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]


@dataclass(frozen=True)
class Tuning:
    """Search settings chosen at build time and the recall@10 they reached on the
    collection's own tracks (each excluded from its own results)."""

    nprobe: int
    rerank: int
    recall: float


@dataclass(frozen=True)
class Built:
    index: object  # faiss.IndexIVFRaBitQ
    vectors: VectorFile
    tuning: Tuning
    trained_on: int
    seconds: float
    centre: np.ndarray  # float32 [dim] subtracted before normalising (index.vectors.prepare)


@dataclass(frozen=True)
class Updated:
    index: object
    vectors: VectorFile
    added: int
    removed: int
    changed: int


def wanted(count: int, dim: int, *, current=None) -> bool:
    """Whether a space of ``count`` x ``dim`` gets a compressed index. One that has one
    (``current``, its index.vectors.IndexInfo) keeps it until it shrinks below half the
    threshold, so a collection near it does not switch kinds (and retrain) back and forth."""
    floats = count * dim
    if current is not None and getattr(current, "kind", "") == KIND:
        return floats > COMPRESS_MIN_FLOATS // 2
    return floats > COMPRESS_MIN_FLOATS


def nlist_for(count: int) -> int:
    """The power of two nearest 2*sqrt(count), at least 16 (index.vectors uses the same rule)."""
    return 1 << max(4, round(np.log2(2 * np.sqrt(max(count, 1)))))


def _prepared(x: np.ndarray, centre: np.ndarray) -> np.ndarray:
    from index.vectormath import prepare

    return prepare(x, centre, inplace=True)


def build(chunks: Chunks, count: int, dim: int, directory: Path, space: str, *,
          centre: np.ndarray | None = None, seed: int = 1234) -> Built:
    """A compressed index of the ``count`` vectors ``chunks()`` yields, prepared with
    ``centre`` (None: computed by a first pass over ``chunks()``, which is then called
    twice; the second pass goes into the row file, the index is filled from that file).

    ``chunks`` yields (ids int64 [m], vectors float32 [m, dim] as stored); ids unique.
    """
    import faiss

    from index.vectormath import centre_of_blocks

    t0 = time.perf_counter()
    if centre is None:
        centre = centre_of_blocks((vecs for _, vecs in chunks()), dim)
    centre = np.asarray(centre, np.float32)
    nlist = nlist_for(count)
    n_train = min(count, MAX_TRAIN, TRAIN_PER_LIST * nlist)
    n_query = min(TUNING_QUERIES, count)
    rng = np.random.default_rng(seed)
    # Positions (in stream order) of the training sample and of the tuning queries.
    picked = rng.choice(count, size=min(count, n_train + n_query), replace=False)
    train_pos = np.sort(picked[:n_train])
    query_pos = np.sort(picked[n_train:])
    train = np.empty((len(train_pos), dim), np.float32)
    queries = np.empty((len(query_pos), dim), np.float32)
    query_ids = np.empty(len(query_pos), np.int64)

    writer = VectorFileWriter(directory, space, dim)
    seen = 0
    try:
        for ids, vecs in chunks():
            vecs = _prepared(np.array(vecs, dtype=np.float32), centre)
            writer.add(ids, vecs)
            end = seen + len(ids)
            for pos, out in ((train_pos, train), (query_pos, queries)):
                lo, hi = np.searchsorted(pos, [seen, end])
                out[lo:hi] = vecs[pos[lo:hi] - seen]
            lo, hi = np.searchsorted(query_pos, [seen, end])
            query_ids[lo:hi] = np.asarray(ids)[query_pos[lo:hi] - seen]
            seen = end
        if seen != count:
            raise RuntimeError(f"{space}: expected {count} vectors, read {seen} (changed while building?)")
        rows = writer.commit()
    except BaseException:
        writer.abort()
        raise

    index = faiss.index_factory(dim, FACTORY.format(nlist=nlist), faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.niter = 10
    ivf.cp.seed = seed
    ivf.cp.max_points_per_centroid = TRAIN_PER_LIST
    index.train(train)
    del train
    truth = _TopK(queries, query_ids, k=10)
    for ids, vecs in rows.blocks():
        for start in range(0, len(ids), ADD_BLOCK):
            index.add_with_ids(vecs[start:start + ADD_BLOCK], ids[start:start + ADD_BLOCK])
        truth.update(ids, vecs)
    tuning = tune(index, rows, queries, query_ids, truth.result())
    index.nprobe = tuning.nprobe
    return Built(index, rows, tuning, count, time.perf_counter() - t0, centre)


def update(index, rows: VectorFile, chunks: Chunks, directory: Path, space: str, *,
           centre: np.ndarray) -> Updated:
    """``index`` and ``rows`` brought in step with what ``chunks()`` yields, in place:
    rows appended for new and re-analysed tracks, deleted ones dropped; the IVF
    centroids and the ``centre`` the index was built with are kept (see
    index.vectors.RETRAIN_FACTOR for when they are not)."""
    dim = rows.dim
    seen = np.zeros(len(rows), bool)
    writer = VectorFileWriter(directory, space, dim, base=rows)
    fresh_ids: list[np.ndarray] = []
    changed = 0
    try:
        for ids, vecs in chunks():
            ids = np.asarray(ids, dtype=np.int64)
            # Compared COMPARE_BLOCK vectors at a time, the old rows read with pread: through
            # the mapping every row page of the space counts in the update's RSS (2.6 GB at
            # 1M x 1280), and whole-chunk temporaries cost ≈ 0.5 GB more (200k x 1280).
            for start in range(0, len(ids), COMPARE_BLOCK):
                block_ids = ids[start:start + COMPARE_BLOCK]
                v16 = _prepared(np.array(vecs[start:start + COMPARE_BLOCK], dtype=np.float32),
                                centre).astype(np.float16)
                at = rows.lookup(block_ids)
                present = at >= 0
                differs = ~present
                if present.any():
                    differs[present] = np.any(rows.read(at[present]) != v16[present], axis=1)
                    seen[np.searchsorted(rows.ids, block_ids[present])] = True
                changed += int((differs & present).sum())
                if differs.any():
                    writer.add(block_ids[differs], v16[differs])
                    fresh_ids.append(block_ids[differs])
            del ids, vecs  # not held while the next chunk is read
        gone = np.asarray(rows.ids[~seen])
        writer.drop(gone)
        fresh = np.concatenate([np.zeros(0, np.int64)] + fresh_ids)
        updated = writer.commit()
    except BaseException:
        writer.abort()
        raise
    out = np.concatenate([gone, fresh[np.isin(fresh, rows.ids)]])
    if len(out):
        index.remove_ids(np.ascontiguousarray(out, dtype=np.int64))
    for start in range(0, len(fresh), ADD_BLOCK):
        block_ids = fresh[start:start + ADD_BLOCK]
        index.add_with_ids(updated.read_vectors(block_ids), block_ids)
    if updated.dead_rows > MAX_DEAD_SHARE * max(updated.file_rows, 1):
        updated = compact(updated)
    return Updated(index, updated, len(fresh) - changed, len(gone), changed)


def compact(rows: VectorFile) -> VectorFile:
    """The row file rewritten without its dead rows."""
    writer = VectorFileWriter(rows.directory, rows.space, rows.dim)
    try:
        for ids, vecs in rows.blocks():
            writer.add(ids, vecs)
        return writer.commit()
    except BaseException:
        writer.abort()
        raise


class _TopK:
    """Exact top-(k+1) neighbours of fixed queries over vectors streamed block by block."""

    def __init__(self, queries: np.ndarray, query_ids: np.ndarray, k: int):
        self.q, self.qids, self.k = queries, query_ids, k
        self.best_s = np.full((len(queries), k + 1), -np.inf, np.float32)
        self.best_i = np.full((len(queries), k + 1), -1, np.int64)

    def update(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        if not len(self.q):
            return
        sims = self.q @ vecs.T
        s = np.concatenate([self.best_s, sims], axis=1)
        i = np.concatenate([self.best_i, np.broadcast_to(ids, sims.shape)], axis=1)
        top = np.argpartition(-s, self.k, axis=1)[:, : self.k + 1]
        self.best_s, self.best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)

    def result(self) -> list[set[int]]:
        """Each query's k nearest ids, itself excluded."""
        out = []
        for qid, s, i in zip(self.qids, self.best_s, self.best_i):
            ranked = [int(x) for x in i[np.argsort(-s)] if x != qid and x >= 0]
            out.append(set(ranked[: self.k]))
        return out


def rerank(rows: VectorFile, q: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``candidates`` (ids) ordered by similarity to the unit query ``q`` [d] read from
    their float16 rows: (ids, similarities), best first."""
    if not len(candidates):
        return candidates, np.zeros(0, np.float32)
    sims = rows.similarities(candidates, q)
    order = np.argsort(-sims, kind="stable")
    return candidates[order], sims[order]


def tune(index, rows: VectorFile, queries: np.ndarray, query_ids: np.ndarray,
         truth: list[set[int]], *, k: int = 10, target: float | None = None) -> Tuning:
    """The smallest nprobe, and at it the smallest re-rank depth of :data:`RERANK_STEPS`
    within :data:`RERANK_BUDGET_BYTES` of rows (any, once every list is probed), whose
    recall@k reaches ``target`` (index.vectors.TUNED_RECALL); else the best setting seen."""
    import faiss

    from index.vectors import TUNED_RECALL

    target = TUNED_RECALL if target is None else target
    ivf = faiss.extract_index_ivf(index)
    total = sum(len(t) for t in truth)
    if not total:
        return Tuning(1, RERANK_STEPS[0], 1.0)
    deepest = RERANK_STEPS[-1]
    preferred = RERANK_BUDGET_BYTES // (2 * rows.dim)
    nprobe, best = 1, Tuning(ivf.nlist, deepest, 0.0)
    while True:
        params = faiss.IVFRaBitQSearchParameters()
        params.nprobe = nprobe
        _, found = index.search(queries, deepest + 1, params=params)
        # Each query's deepest candidates read once for every depth, with pread: read
        # through the mapping, the tuning's candidates (200 queries x 400 x each nprobe)
        # touched nearly every page of a 10M x 200 row file, all counted in the build's RSS.
        cands = [row[(row >= 0) & (row != qid)][:deepest] for row, qid in zip(found, query_ids)]
        sims = [rows.read_vectors(c) @ q if len(c) else np.zeros(0, np.float32)
                for c, q in zip(cands, queries)]
        for depth in RERANK_STEPS:
            hits = 0
            for cand, sim, t in zip(cands, sims, truth):
                top = cand[:depth][np.argsort(-sim[:depth], kind="stable")]
                hits += len(t & set(top[:k].tolist()))
            recall = hits / total
            if recall >= target and (depth <= preferred or nprobe >= ivf.nlist):
                return Tuning(nprobe, depth, round(recall, 4))
            if recall > best.recall:
                best = Tuning(nprobe, depth, round(recall, 4))
        if nprobe >= ivf.nlist:
            return best
        nprobe = min(ivf.nlist, nprobe * 2 if nprobe < 8 else int(nprobe * 1.5))
