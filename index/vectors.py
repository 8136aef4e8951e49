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


def rebuild(store: Store, space: str) -> IndexInfo:
    """Build ``space``'s index from DuckDB and write it atomically."""
    import faiss

    ids, vectors = store.embedding_matrix(space)
    dim = vectors.shape[1] if vectors.size else 0
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(max(dim, 1)))
    if len(ids):
        index.add_with_ids(normalise(vectors), ids)
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
