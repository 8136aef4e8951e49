"""Speed of user-trained tags at 100k tracks: training and scoring new tracks.

    nice -n 19 python -m bench.tag_speed [--tracks 100000] [--out bench/out/tag-speed-100000]

A synthetic store (made once, kept in --out): N tracks with MusiCNN (200-d), MTT (200-d)
and EffNet (1280-d) vectors drawn around 50 cluster centres, so a cluster is a tag the
probe can learn. Measured, wall-clock and CPU (this process), with the load:

- **baseline**: reading every vector of the three spaces from the store (what any
  collection-wide pass pays);
- **train**: ``engine tag train`` without the CLI: 10 positives of one cluster,
  cross-validation over the three spaces and their combination, the fit
  (index.usertags.train); then **score + store** every track (index.usertags.save).
  Target: train + score + store ≤ 5 s;
- **new tracks**: 1000 tracks lose their scores (as after a build that re-analysed
  them) and index.usertags.score_missing scores them again; per track. Target ≤ 1 ms.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import numpy as np

from index import usertags
from index.store import Store

ROOT = Path(__file__).resolve().parents[1]
DIMS = {"musicnn": 200, "mtt": 200, "effnet": 1280}
CLUSTERS = 50


def make_store(directory: Path, n: int, seed: int = 0) -> np.ndarray:
    """The synthetic store (unless there); returns each track's cluster ``[n]`` (track i+1)."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, CLUSTERS, n)
    if (directory / "engine.duckdb").is_file():
        return cluster
    with Store.open(directory) as store:
        store.con.register("_t", {"track_id": np.arange(1, n + 1, dtype=np.int32),
                                  "path": np.array([f"/m/{i:06d}.flac" for i in range(1, n + 1)], dtype=object)})
        store.con.execute("INSERT INTO tracks (track_id, path) SELECT track_id, path FROM _t")
        store.con.unregister("_t")
        for space, dim in DIMS.items():
            centres = rng.standard_normal((CLUSTERS, dim)).astype(np.float32)
            for start in range(0, n, 10_000):  # in blocks: a Python list per row costs memory
                stop = min(n, start + 10_000)
                x = centres[cluster[start:stop]] + 2.0 * rng.standard_normal((stop - start, dim)).astype(np.float32)
                rows = np.empty(stop - start, dtype=object)
                rows[:] = list(x)
                store.con.register("_e", {"track_id": np.arange(start + 1, stop + 1, dtype=np.int32), "v": rows})
                store.con.execute("INSERT INTO embeddings SELECT track_id, ?, v FROM _e", [space])
                store.con.unregister("_e")
    return cluster


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or ROOT / "bench" / "out" / f"tag-speed-{args.tracks}"
    cluster = make_store(out, args.tracks)
    import sklearn.linear_model  # noqa: F401  (its import, ≈1 s, is paid once per process, not per tag)

    print(f"{args.tracks} tracks, spaces {', '.join(f'{s} {d}-d' for s, d in DIMS.items())}; "
          f"load {os.getloadavg()[0]:.1f}")
    with Store.open(out) as store:
        store.con.execute("DELETE FROM probes; DELETE FROM user_tags")
        _, w_base, c_base = timed(lambda: [store.embedding_matrix(s) for s in DIMS])
        print(f"baseline, read every vector:      {w_base:6.2f} s wall  {c_base:6.2f} CPU-s")
        positives = (np.flatnonzero(cluster == 7)[:10] + 1).tolist()
        probe, w_train, c_train = timed(lambda: usertags.train(store, "bench", positives))
        print(f"train (CV over 4 candidates, fit): {w_train:6.2f} s wall  {c_train:6.2f} CPU-s   "
              f"chose {probe.chosen.name}, CV AUC {probe.chosen.auc:.3f}")
        scored, w_save, c_save = timed(lambda: usertags.save(store, probe))
        print(f"score + store {scored} tracks:    {w_save:6.2f} s wall  {c_save:6.2f} CPU-s")
        total_w, total_c = w_train + w_save, c_train + c_save
        print(f"train + score + store:            {total_w:6.2f} s wall  {total_c:6.2f} CPU-s   "
              f"({total_c / c_base:.1f}x the baseline's CPU; target 5 s)")
        s = dict(store.con.execute("SELECT track_id, score FROM user_tags WHERE tag = 'bench'").fetchall())
        inside = np.array([s[i + 1] for i in np.flatnonzero(cluster == 7)])
        outside = np.array([s[i + 1] for i in np.flatnonzero(cluster != 7)[:5000]])
        print(f"  cluster 7 found: mean score {inside.mean():.3f} inside vs {outside.mean():.3f} outside")
        redo = 1000
        store.con.execute("DELETE FROM user_tags WHERE track_id > ?", [args.tracks - redo])
        _, w_new, c_new = timed(lambda: usertags.score_missing(store))
        print(f"score {redo} new tracks:            {w_new:6.2f} s wall  {c_new:6.2f} CPU-s   "
              f"= {1000 * w_new / redo:.2f} ms wall, {1000 * c_new / redo:.2f} CPU-ms per track (target 1 ms)")
    print(f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; "
          f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
