"""FAISS indexes, one per embedding space, kept in step with DuckDB.

DuckDB is the source of truth. Each index file ``<space>.faiss`` has a sidecar
``<space>.faiss.json`` recording the store generation it was built from; when the
store's generation for that space differs (or the file is missing or unreadable),
the index is rebuilt from the ``embeddings`` table. Files are written to a
temporary name and renamed, so a crash never leaves a half-written index.
Vectors are L2-normalised, so inner product = cosine similarity.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index.store import Store


@dataclass(frozen=True)
class IndexInfo:
    space: str
    generation: int
    count: int
    dim: int


def index_path(store_dir: Path, space: str) -> Path:
    return store_dir / f"{space}.faiss"


def _info_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def read_info(store_dir: Path, space: str) -> IndexInfo | None:
    try:
        return IndexInfo(**json.loads(_info_path(index_path(store_dir, space)).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def is_fresh(store: Store, space: str) -> bool:
    info = read_info(store.directory, space)
    return (
        info is not None
        and info.generation == store.generation(space)
        and index_path(store.directory, space).is_file()
    )


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


# Exact search (a flat scan) while one query reads at most this many floats (tracks x
# dimensions), i.e. up to 12.5k EffNet or 80k MusiCNN tracks; larger spaces get an
# IVF-Flat index (see build_index). Measured by bench/knn_speed.py on the 2-core
# reference machine: a single-threaded scan costs 0.2-0.35 ns per float (100k x 200:
# 4.5 ms, 100k x 1280: 31-36 ms), but a whole filtered query over a flat 100k x 200
# index reached p95 31 ms while other jobs loaded the machine, against 12 ms with IVF.
EXACT_MAX_FLOATS = 16_000_000
# Recall@10 that build_index tunes nprobe for, on a sample of the collection's own
# tracks as queries; the target users get is 0.95, the margin covers other queries.
TUNED_RECALL = 0.97


def build_index(ids: np.ndarray, vectors: np.ndarray, *, exact_max_floats: int | None = None):
    """A FAISS inner-product index over L2-normalised ``vectors`` [n, d] with ``ids`` [n].

    Small spaces (n x d <= ``EXACT_MAX_FLOATS``) get ``IndexIDMap2(IndexFlatIP)``: exact.
    Larger ones get ``IndexIVFFlat`` with ``nlist`` = the power of two nearest 2*sqrt(n)
    (spherical k-means, 10 iterations on at most 64 points per list) and ``nprobe``
    tuned here to reach ``TUNED_RECALL`` on 200 of the collection's tracks used as
    queries. IVF-Flat keeps full vectors, so a search with ``nprobe = nlist`` is exact:
    filtered queries use that when the filter is very selective (index.query).
    """
    import faiss

    n, dim = vectors.shape
    limit = EXACT_MAX_FLOATS if exact_max_floats is None else exact_max_floats
    nlist = 1 << max(4, round(np.log2(2 * np.sqrt(max(n, 1)))))
    if n * dim <= limit or n < 64 * nlist:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        index.add_with_ids(vectors, ids)
        return index
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
    index.nprobe = tune_nprobe(index, ids, vectors, rng=rng)
    return index


def tune_nprobe(index, ids: np.ndarray, vectors: np.ndarray, *, rng=None, queries: int = 200,
                k: int = 10, target: float = TUNED_RECALL) -> int:
    """The smallest nprobe whose recall@k against exact search reaches ``target``.

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
    while nprobe < nlist:
        index.nprobe = nprobe
        _, found = index.search(q, k + 1)
        hits = sum(len(t & set(f[f != ids[r]][:k])) for t, f, r in zip(truth, found, rows))
        if hits >= target * sum(len(t) for t in truth):
            return nprobe
        nprobe = min(nlist, nprobe * 2 if nprobe < 8 else int(nprobe * 1.5))
    return nlist


def rebuild(store: Store, space: str) -> IndexInfo:
    """Build ``space``'s index from DuckDB and write it atomically."""
    import faiss

    ids, vectors = store.embedding_matrix(space)
    dim = vectors.shape[1] if vectors.size else 0
    if len(ids):
        index = build_index(ids, normalise(vectors))
    else:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(max(dim, 1)))
    info = IndexInfo(space, store.generation(space), int(len(ids)), int(dim))
    path = index_path(store.directory, space)
    tmp = path.with_name(path.name + ".tmp")
    faiss.write_index(index, str(tmp))
    os.replace(tmp, path)
    tmp_info = _info_path(path).with_suffix(".tmp")
    tmp_info.write_text(json.dumps(info.__dict__))
    os.replace(tmp_info, _info_path(path))
    return info


def sync(store: Store, spaces=("musicnn", "effnet")) -> list[IndexInfo]:
    """Rebuild every stale or missing index; returns what was rebuilt."""
    return [rebuild(store, s) for s in spaces if not is_fresh(store, s)]


def load(store_dir: Path, space: str):
    import faiss

    return faiss.read_index(str(index_path(store_dir, space)))
