"""Song paths: ours (index.paths) against the peers' method, at equal length.

    nice -n 19 python -m bench.path_quality [--pairs 150] [--synthetic 20000]

The peers' method (bliss, AudioMuse-AI): N points spaced evenly on the great circle
between the two tracks' embeddings (spherical interpolation), the nearest unused track
to each. Both methods get the same two end tracks and the same length N, in the same
store and space, and are scored on:

- **worst step**: the largest cosine distance (1 - cos) between consecutive tracks;
- **back-tracking**: steps whose progress (angle to the start / (angle to the start +
  angle to the end)) goes down, i.e. the path turns back towards where it came from.

Collections: the real library and rendered clips (77 recordings, MusiCNN track means
from bench/similarity_quality.py's cache, centred as the search space is), N = 8; and a
synthetic clustered collection (bench/knn_speed.py's generator), N = 30.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # last: an installed engine wins
    sys.path.append(str(Path(__file__).resolve().parents[1]))

from bench.similarity_quality import ROOT, SHARED, extract  # noqa: E402


def write_store(directory: Path, vectors: np.ndarray, paths: list[str], durations: list[float],
                space: str = "musicnn") -> None:
    """A store holding these tracks and vectors (raw: the engine normalises and indexes them)."""
    from index import vectors as vec
    from index.store import Store

    n = len(paths)
    with Store.open(directory) as store:
        store.con.register("_t", {"track_id": np.arange(1, n + 1), "path": np.array(paths, dtype=object),
                                  "duration": np.asarray(durations, dtype=np.float64),
                                  "content_hash": np.array([f"h{i}" for i in range(n)], dtype=object)})
        store.con.execute("INSERT INTO tracks (track_id, path, duration, content_hash) "
                          "SELECT track_id, path, duration, content_hash FROM _t")
        store.con.unregister("_t")
        for start in range(0, n, 20_000):
            part = vectors[start:start + 20_000]
            store.con.execute("INSERT INTO embeddings SELECT unnest(?), ?, unnest(?)",
                              [list(range(start + 1, start + len(part) + 1)), space, part.tolist()])
        store.set_meta(f"generation:{space}", "1")
        vec.rebuild(store, space)


def baseline(searcher, space: str, a: int, b: int, n: int) -> list[int]:
    """The peers' path: the nearest unused track to each of n evenly spaced slerp points."""
    from index.paths import slerp

    va, vb = searcher.vectors(space, [a, b])
    used = [a]
    for point in slerp(va, vb, np.arange(1, n - 1) / (n - 1)):
        ids, _ = searcher.nearest(space, point, 1, exclude=set(used) | {b})
        used.append(int(ids[0]))
    return used + [b]


def score(searcher, space: str, order: list[int]) -> tuple[float, int]:
    """(worst step, back-tracking steps) of a play order."""
    from index.paths import progress

    v = searcher.vectors(space, order)
    steps = 1.0 - np.einsum("ij,ij->i", v[:-1], v[1:])
    t = progress(v, v[0], v[-1])
    return float(steps.max()), int((np.diff(t) < -1e-9).sum())


def compare(store: Path, pairs: list[tuple[int, int]], n: int, label: str) -> None:
    from index.paths import song_path
    from index.query import Searcher
    from index.tracks import TrackSummary

    ours_w, base_w, ours_b, base_b, wins, ties, t_ours = [], [], [], [], 0, 0, []
    larger_monotone = 0  # ours larger although the peers' path does not step back
    with Searcher(store) as s:
        for a, b in pairs:
            ref = lambda t: TrackSummary(t, "", None, None, None, None)  # noqa: E731
            t0 = time.process_time()
            ours = [st.track_id for st in song_path(s, ref(a), ref(b), "musicnn", length=n).steps]
            t_ours.append(time.process_time() - t0)
            base = baseline(s, "musicnn", a, b, n)
            assert len(ours) == len(base) == n
            (w1, b1), (w2, b2) = score(s, "musicnn", ours), score(s, "musicnn", base)
            ours_w.append(w1), base_w.append(w2), ours_b.append(b1), base_b.append(b2)
            wins += w1 < w2 - 1e-9
            ties += abs(w1 - w2) <= 1e-9
            larger_monotone += w1 > w2 + 1e-9 and b2 == 0
    m = len(pairs)
    print(f"\n{label}: {m} pairs, N = {n}")
    print(f"{'method':<22} {'worst step: mean':>17} {'p90':>7} {'max':>7} {'back-tracking steps':>20} "
          f"{'paths with any':>15}")
    for name, w, b in (("ours (index.paths)", ours_w, ours_b), ("slerp + nearest", base_w, base_b)):
        print(f"{name:<22} {np.mean(w):>17.4f} {np.percentile(w, 90):>7.4f} {np.max(w):>7.4f} "
              f"{np.mean(b):>20.2f} {np.mean(np.array(b) > 0):>15.1%}")
    print(f"ours smaller worst step in {wins}/{m}, equal in {ties}/{m}, larger in {m - wins - ties}/{m} "
          f"({larger_monotone} of them against a peers' path without back-tracking); "
          f"CPU per path p50 {np.median(t_ours) * 1e3:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "similarity")
    ap.add_argument("--pairs", type=int, default=150)
    ap.add_argument("--synthetic", type=int, default=20_000, help="tracks in the synthetic collection (0: skip)")
    args = ap.parse_args()
    print(f"load: {os.getloadavg()[0]:.1f} (1-min average) on {os.cpu_count()} cores")
    work = Path(tempfile.mkdtemp(prefix="path-quality-"))
    rng = np.random.default_rng(5)
    try:
        corpus = SHARED / "corpus"
        tracks = {}
        for sub in ("library", "rendered"):
            files = sorted(p for p in (corpus / sub).rglob("*") if p.suffix in (".ogg", ".mp3", ".m4a", ".flac")
                           and "COPYRIGHT" not in p.parts)
            tracks.update({f"{sub}/{k}": v for k, v in extract(args.out, 450.0, corpus / sub, files).items()})
        names = sorted(n for n, t in tracks.items() if len(t["musicnn"]))
        x = np.stack([tracks[n]["musicnn"].mean(0) for n in names])
        write_store(work / "corpus", x, [f"/corpus/{n}" for n in names], [tracks[n]["duration"] for n in names])
        albums = [str(Path(n).parent) for n in names]
        all_pairs = [(i + 1, j + 1) for i in range(len(names)) for j in range(len(names))
                     if i != j and albums[i] != albums[j]]
        chosen = [all_pairs[i] for i in rng.choice(len(all_pairs), min(args.pairs, len(all_pairs)), replace=False)]
        compare(work / "corpus", chosen, 8, f"library + rendered ({len(names)} recordings)")
        if args.synthetic:
            from bench.knn_speed import clustered_vectors

            n = args.synthetic
            write_store(work / "synthetic", clustered_vectors(n, 200), [f"/s/{i}" for i in range(n)], [200.0] * n)
            pairs = [tuple(int(v) + 1 for v in rng.choice(n, 2, replace=False)) for _ in range(min(args.pairs, 100))]
            compare(work / "synthetic", pairs, 30, f"synthetic clustered ({n:,} tracks)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
