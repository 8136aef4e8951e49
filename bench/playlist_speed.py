"""Speed of song paths, radio and multi-seed k-NN on a synthetic 100k-track store.

    nice -n 19 python -m bench.playlist_speed [--tracks 100000] [--queries 40]

The store (kept in ``bench/out/playlist-speed-<n>``, built once) holds ``n`` tracks with
200-d clustered vectors (bench/knn_speed.py's generator: cosine statistics like the
corpus's MusiCNN means) in space musicnn, written to DuckDB and indexed by the engine
(index.vectors: IVF at this size), 5,000 artists, durations 120-360 s.

Each case runs ``--queries`` times from random tracks through the Python API the CLI
calls, on one open Searcher (as the TUI does; the CLI also pays opening the store and
mapping the index, timed apart): a 30-track path, a 30-track radio, a 3-seed k-NN with
k = 30, each plain, with list rules (--max-per-artist 2 --artist-gap 3) and with a
--where filter keeping half the tracks. Wall-clock p50/p95 and CPU p50/p95 per call, the
load beside them; peak RSS at the end. Target: a 30-track path or radio in <= 200 ms p95.
Baseline in the same run: the one-seed k-NN (k = 30, Searcher.knn: what `engine knn` did
before playlists by example); each case's CPU p50 is also given as a multiple of it, a
figure the machine's load does not move much.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # last: an installed engine wins
    sys.path.append(str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]


def build(directory: Path, n: int) -> None:
    from bench.knn_speed import clustered_vectors
    from index import vectors as vec
    from index.store import Store

    if (directory / "engine.duckdb").is_file():
        return
    tmp = directory.with_name(directory.name + ".tmp")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    x = clustered_vectors(n, 200)
    with Store.open(tmp) as store:
        store.con.execute(f"""
            INSERT INTO tracks (track_id, path, content_hash, duration, artist, title, bpm, voice,
                                key_temperley, scale_temperley, has_musicnn)
            SELECT i, '/music/artist ' || (i % 5000) || '/album ' || (i % 7) || '/track ' || i || '.flac',
                   'h' || i, 120 + hash(i, 1) % 240, 'artist ' || (i % 5000), 'track ' || i,
                   60 + (hash(i, 2) % 1200000) / 10000.0, (hash(i, 3) % 1000000) / 1000000.0,
                   ['C','C#','D','D#','E','F','F#','G','G#','A','A#','B'][(1 + hash(i, 5) % 12)::BIGINT],
                   CASE WHEN hash(i, 6) % 2 = 0 THEN 'major' ELSE 'minor' END, true
            FROM range(1, {n + 1}) r(i)""")
        for start in range(0, n, 20_000):
            part = x[start:start + 20_000]
            store.con.execute("INSERT INTO embeddings SELECT unnest(?), 'musicnn', unnest(?)",
                              [list(range(start + 1, start + len(part) + 1)), part.tolist()])
        store.set_meta("generation:musicnn", "1")
        vec.rebuild(store, "musicnn")
    tmp.rename(directory)


def timed(fn, runs: int) -> tuple[float, float, float, float]:
    wall, cpu = [], []
    for i in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn(i)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return (float(np.percentile(wall, 50)), float(np.percentile(wall, 95)), float(np.percentile(cpu, 50)),
            float(np.percentile(cpu, 95)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=40)
    args = ap.parse_args()
    from index.byexample import more_like
    from index.lists import ListRules
    from index.paths import song_path
    from index.query import Searcher
    from index.tracks import TrackSummary
    from index.radio import radio

    n = args.tracks
    store = ROOT / "bench" / "out" / f"playlist-speed-{n}"
    t0 = time.perf_counter()
    build(store, n)
    print(f"store of {n:,} tracks ready in {time.perf_counter() - t0:.0f} s")
    rng = np.random.default_rng(11)
    pairs = rng.choice(n, size=(args.queries, 3), replace=True) + 1

    def ref(t: int) -> TrackSummary:
        return TrackSummary(int(t), "", None, None, None, None)

    t0, c0 = time.perf_counter(), time.process_time()
    searcher = Searcher(store)
    searcher.index("musicnn")
    print(f"open the store and map the index: {(time.perf_counter() - t0) * 1e3:.0f} ms wall, "
          f"{(time.process_time() - c0) * 1e3:.0f} ms CPU (the CLI pays this once per call)")
    rules = ListRules(max_per_artist=2, artist_gap=3)
    half = "voice < 0.5"
    searcher.allowed("musicnn", half)  # the filter's SQL check is cached per process, as in the TUI
    cases = {
        "baseline: knn 1 seed k=30": lambda i: searcher.knn(ref(pairs[i, 0]), "musicnn", 30),
        "path 30": lambda i: song_path(searcher, ref(pairs[i, 0]), ref(pairs[i, 1]), "musicnn", length=30),
        "path 30, rules": lambda i: song_path(searcher, ref(pairs[i, 0]), ref(pairs[i, 1]), "musicnn",
                                              length=30, rules=rules),
        "radio 30": lambda i: radio(searcher, [ref(pairs[i, 0])], "musicnn", length=30, random_seed=i),
        "radio 30, rules": lambda i: radio(searcher, [ref(pairs[i, 0])], "musicnn", length=30, rules=rules,
                                           random_seed=i),
        "knn 3 seeds k=30": lambda i: more_like(searcher, [ref(t) for t in pairs[i]], "musicnn", 30),
        "knn 3 seeds k=30, rules": lambda i: more_like(searcher, [ref(t) for t in pairs[i]], "musicnn", 30,
                                                       rules=rules),
    }
    with Store_where(searcher, half, pairs) as kept:
        cases["path 30, where 50%"] = lambda i: song_path(searcher, ref(kept[i, 0]), ref(kept[i, 1]), "musicnn",
                                                          length=30, where=half)
        cases["radio 30, where 50%"] = lambda i: radio(searcher, [ref(kept[i, 0])], "musicnn", length=30,
                                                       where=half, random_seed=i)
        print(f"\nload {os.getloadavg()[0]:.1f} (1-min average, {os.cpu_count()} cores); "
              f"{args.queries} calls each")
        print(f"{'case':<26} {'p50 ms':>8} {'p95 ms':>8} {'CPU p50 ms':>11} {'CPU p95 ms':>11} "
              f"{'CPU x baseline':>15}")
        base = None
        for name, fn in cases.items():
            fn(0)  # warm: first touches of the mapped index
            p50, p95, cpu, cpu95 = timed(fn, args.queries)
            base = base or cpu
            print(f"{name:<26} {p50 * 1e3:>8.0f} {p95 * 1e3:>8.0f} {cpu * 1e3:>11.0f} {cpu95 * 1e3:>11.0f} "
                  f"{cpu / base:>15.1f}", flush=True)
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
          f"load {os.getloadavg()[0]:.1f}")
    searcher.close()


class Store_where:
    """Random tracks that match the filter, for the filtered cases (their ends must match)."""

    def __init__(self, searcher, where: str, shape_like: np.ndarray):
        self.ids = searcher.allowed("musicnn", where)
        self.shape = shape_like.shape

    def __enter__(self) -> np.ndarray:
        rng = np.random.default_rng(12)
        return rng.choice(self.ids, size=self.shape)

    def __exit__(self, *exc) -> None:
        pass


if __name__ == "__main__":
    main()
