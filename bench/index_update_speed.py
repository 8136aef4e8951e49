"""Keeping an approximate (IVF) index in step: in-place update against retraining.

    python bench/index_update_speed.py [--tracks 100000] [--dim 1280] [--change 0.02]

Builds a store whose ``embeddings`` table holds ``--tracks`` clustered vectors
(bench.knn_speed.clustered_vectors) and syncs its index from scratch (an IVF-Flat index
at these sizes). Then a re-build's worth of changes — ``--change`` of the collection:
half of it deleted, half new tracks, and a quarter as many re-analysed (new vectors) —
and times, in the same run on the same store:

* update: ``index.vectors.sync`` as a build runs it (the index updated in place);
* retrain: the same sync with the index's training record removed (built anew).

Both indexes are checked for recall@10 against exact search (200 of the collection's
tracks as queries, each excluded from its own results), so the update's speed is not
bought with recall.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # last: an installed engine wins
    sys.path.append(str(Path(__file__).resolve().parents[1]))


def insert(store, ids: np.ndarray, vecs: np.ndarray, space: str) -> None:
    rows = np.empty(len(ids), dtype=object)
    rows[:] = list(vecs)
    store.con.register("_src", {"track_id": ids.astype(np.int32), "v": rows})
    store.con.execute(f"INSERT INTO embeddings SELECT track_id, '{space}', v FROM _src")
    store.con.unregister("_src")


def recall(index, ids: np.ndarray, vecs: np.ndarray, rows: np.ndarray, k: int = 10) -> float:
    q = vecs[rows]
    exact = np.argsort(-(q @ vecs.T), axis=1)[:, : k + 1]
    _, found = index.search(q, k + 1)
    hits = total = 0
    for r, truth, got in zip(rows, ids[exact], found):
        truth = set(truth[truth != ids[r]][:k])
        hits += len(truth & set(got[got != ids[r]][:k]))
        total += len(truth)
    return hits / total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--change", type=float, default=0.02, help="share of the collection changed")
    args = ap.parse_args()

    from bench.knn_speed import clustered_vectors
    from index import vectors
    from index.store import Store

    n, dim, space = args.tracks, args.dim, "effnet" if args.dim == 1280 else "musicnn"
    gone, new, redone = int(n * args.change / 2), int(n * args.change / 2), int(n * args.change / 4)
    x = clustered_vectors(n + new, dim, seed=3)
    with tempfile.TemporaryDirectory(prefix="index-update-") as tmp, Store.open(Path(tmp)) as store:
        insert(store, np.arange(1, n + 1), x[:n], space)
        store.bump_generations([space])
        t = time.perf_counter()
        first = vectors.sync(store, spaces=(space,))[0]
        print(f"{n:,} x {dim} ({space}): first build {time.perf_counter() - t:.1f} s, "
              f"IVF trained on {first.trained_on:,}")

        rng = np.random.default_rng(5)
        victims = rng.choice(np.arange(1, n + 1), size=gone + redone, replace=False)
        store.con.execute("DELETE FROM embeddings WHERE track_id IN (SELECT unnest(?))",
                          [victims.tolist()])
        redo_ids = victims[gone:]
        insert(store, redo_ids, clustered_vectors(redone, dim, seed=9), space)
        insert(store, np.arange(n + 1, n + new + 1), x[n:], space)
        store.bump_generations([space])
        print(f"changes: {gone:,} deleted, {new:,} added, {redone:,} re-analysed")

        t = time.perf_counter()
        info = vectors.sync(store, spaces=(space,))[0]
        update_s = time.perf_counter() - t
        assert info.trained_on == first.trained_on, "expected an in-place update"
        updated = vectors.load(Path(tmp), space)
        updated_centre = vectors.read_info(Path(tmp), space).centre

        info_file = vectors.index_path(Path(tmp), space).with_name(f"{space}.faiss.json")
        info_file.unlink()  # no training record: built anew
        t = time.perf_counter()
        vectors.sync(store, spaces=(space,))
        retrain_s = time.perf_counter() - t
        retrained = vectors.load(Path(tmp), space)
        retrained_centre = vectors.read_info(Path(tmp), space).centre

        ids, raw = store.embedding_matrix(space)
        rows = np.random.default_rng(11).choice(len(ids), size=200, replace=False)
        # each index against its own vectors: centred on what it was trained with
        for name, index, centre, took in (("update  ", updated, updated_centre, update_s),
                                          ("retrain ", retrained, retrained_centre, retrain_s)):
            vecs = vectors.prepare(raw, centre)
            print(f"{name}: {took:6.2f} s   recall@10 {recall(index, ids, vecs, rows):.3f} "
                  f"(nprobe {index.nprobe})")
        print(f"update is {retrain_s / update_s:.1f}x faster than retraining")


if __name__ == "__main__":
    main()
