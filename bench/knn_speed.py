"""k-NN speed and recall on synthetic stores of 100k and 1M tracks.

    python bench/knn_speed.py                          # 100k x {200, 1280}, 1M x 200
    python bench/knn_speed.py --sizes 1M --dims 1280   # the big one (≈10 GB RAM, minutes)

For each size and dimension it builds a real store folder (DuckDB ``tracks`` table +
the in-memory FAISS index that index.vectors.build_index makes for that size: exact or
IVF-Flat; spaces past index.compressed.COMPRESS_MIN_FLOATS get a compressed index, which
bench/vectors_scale.py measures), then times what
``engine knn`` does per query through index.query.Searcher: resolve the track, find
its duplicates, run the DuckDB filter, FAISS search, fetch the rows. Loading the
index is timed separately (the CLI pays it once per call; the TUI once).

Vectors are a Gaussian mixture, not uniform noise: 20 "genres" x 20 "styles" (400
clusters, unequal sizes) in a 64-d latent space, projected to d dimensions, plus
isotropic noise and a shared offset (track-mean embeddings are not centred). Its cosine
statistics match the corpus's MusiCNN embeddings: median pair 0.51 (corpus 0.53), median
nearest neighbour 0.89 in 20k tracks (0.88 among the corpus's 61). So neighbourhoods
overlap the way musical ones do and recall figures mean something. Filters are on descriptor
columns drawn independently of the vectors: voice > 0.5 keeps 50 %, bpm in a 6-BPM
band 5 %, a 2.4-BPM band with voice > 0.95 0.1 %.

Recall@10 is against exact search over the same filtered set (numpy, float32); the
query track is excluded from both, as in ``engine knn``. Queries are tracks of the
collection (200 by default, seeded), not the 200 that tuned nprobe at build time.

Targets on the 2-core reference machine: p95 <= 20 ms at 100k, <= 100 ms at 1M.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # last: an installed engine wins
    sys.path.append(str(Path(__file__).resolve().parents[1]))

FILTERS = {
    "none": None,
    "50%": "voice > 0.5",
    "5%": "bpm BETWEEN 120 AND 126",
    "0.1%": "bpm BETWEEN 120 AND 122.4 AND voice > 0.95",
}
SPACE_FOR_DIM = {200: "musicnn", 1280: "effnet"}


def parse_size(text: str) -> int:
    text = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("km")) * mult)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mixture(rng: np.random.Generator, dim: int, latent: int = 64):
    """The mixture's parameters: 400 style centres (20 genres x 20) in a ``latent``-d space,
    their weights, the projection to ``dim`` and the shared offset."""
    genres = rng.standard_normal((20, latent)).astype(np.float32)
    styles = (np.repeat(genres, 20, axis=0)
              + 0.6 * rng.standard_normal((400, latent)).astype(np.float32))
    weights = rng.dirichlet(np.full(400, 0.7))  # some styles are much more common
    project = rng.standard_normal((latent, dim)).astype(np.float32) / np.sqrt(latent)
    offset = 1.5 * rng.standard_normal(dim).astype(np.float32)
    return styles, weights, project, offset


def mixture_block(rng: np.random.Generator, params, m: int) -> np.ndarray:
    """``m`` L2-normalised float32 vectors drawn from :func:`mixture`'s parameters."""
    styles, weights, project, offset = params
    z = styles[rng.choice(len(styles), size=m, p=weights)]
    z += 0.7 * rng.standard_normal(z.shape, dtype=np.float32)
    # ``project`` is float64 (divided by np.sqrt), so the rows are computed in float64 and
    # returned as float32, as every consumer stores them. A slice of rows at a time: the same
    # floats as whole-block operations (the generator's stream is sequential, matmul and
    # norms are per row), without 1 GB of float64 temporaries at 50,000 x 1280 in a
    # benchmark that measures RSS.
    out = np.empty((m, project.shape[1]), np.float32)
    for start in range(0, m, 4096):
        part = z[start:start + 4096] @ project
        part += offset
        noise = rng.standard_normal(part.shape, dtype=np.float32)
        noise *= 0.35
        part += noise
        part /= np.linalg.norm(part, axis=1, keepdims=True)
        out[start:start + 4096] = part
    return out


def clustered_vectors(n: int, dim: int, seed: int = 0, latent: int = 64) -> np.ndarray:
    """n L2-normalised float32 vectors from a hierarchical Gaussian mixture (400 clusters)."""
    rng = np.random.default_rng(seed)
    params = mixture(rng, dim, latent)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 50_000):
        m = min(50_000, n - start)
        out[start:start + m] = mixture_block(rng, params, m)
    return out


def make_store(directory: Path, n: int, dim: int, vectors: np.ndarray) -> dict:
    """A store folder with n synthetic tracks and ``space``'s index built by the engine's rule;
    ``vectors`` are prepared (centred, normalised) in place, as the index holds them."""
    import faiss

    from index import vectors as vec
    from index.store import Store

    space = SPACE_FOR_DIM.get(dim, "musicnn")
    t0 = time.perf_counter()
    with Store.open(directory) as store:
        # Descriptor columns from DuckDB's hash: deterministic, independent of the vectors.
        store.con.execute(f"""
            INSERT INTO tracks (track_id, path, content_hash, duration, artist, title, bpm,
                                voice, danceability, key_temperley, scale_temperley, has_musicnn,
                                has_effnet)
            SELECT i, '/music/artist ' || (i % 5000) || '/track ' || i || '.flac', 'h' || i,
                   120 + hash(i, 1) % 240, 'artist ' || (i % 5000), 'track ' || i,
                   60 + (hash(i, 2) % 1200000) / 10000.0, (hash(i, 3) % 1000000) / 1000000.0,
                   (hash(i, 4) % 3000) / 1000.0,
                   ['C','C#','D','D#','E','F','F#','G','G#','A','A#','B'][(1 + hash(i, 5) % 12)::BIGINT],
                   CASE WHEN hash(i, 6) % 2 = 0 THEN 'major' ELSE 'minor' END, true, true
            FROM range(1, {n + 1}) r(i)""")
        store.set_meta(f"generation:{space}", "1")
    db_s = time.perf_counter() - t0

    ids = np.arange(1, n + 1, dtype=np.int64)
    rss0 = rss_mb()
    t0 = time.perf_counter()
    centre = vec.centre_of(vectors)  # as index.vectors.rebuild prepares a space
    vectors = vec.prepare(vectors, centre, inplace=True)  # the caller's array: its truth is these
    index = vec.build_index(ids, vectors)
    build_s = time.perf_counter() - t0
    build_rss = rss_mb() - rss0
    path = vec.index_path(directory, space)
    with Store.open(directory) as store:  # file, sidecar and its checksum record, as a build writes them
        vec._write(store, space, index, vec.IndexInfo(space, 1, n, dim, centre=tuple(float(c) for c in centre)))
    ivf = faiss.try_extract_index_ivf(index)
    kind = f"IVF{ivf.nlist},Flat nprobe {ivf.nprobe}" if ivf is not None else "Flat (exact)"
    del index
    gc.collect()
    return {"space": space, "db_s": db_s, "build_s": build_s, "kind": kind,
            "file_mb": path.stat().st_size / 2**20, "build_rss_mb": build_rss}


def exact_topk(vectors: np.ndarray, rows: np.ndarray, allowed_rows: np.ndarray | None,
               k: int) -> list[set[int]]:
    """Exact top-k track ids (row + 1) for each query row, over allowed rows, self excluded."""
    q = vectors[rows]
    cand = np.arange(len(vectors)) if allowed_rows is None else allowed_rows
    best_s = np.full((len(rows), k + 1), -np.inf, np.float32)
    best_i = np.zeros((len(rows), k + 1), np.int64)
    for start in range(0, len(cand), 100_000):
        part = cand[start:start + 100_000]
        sims = q @ vectors[part].T
        sims[part[None, :] == rows[:, None]] = -np.inf  # the query itself
        s = np.concatenate([best_s, sims], axis=1)
        i = np.concatenate([best_i, np.broadcast_to(part, sims.shape)], axis=1)
        top = np.argpartition(-s, k, axis=1)[:, : k + 1]
        best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
    out = []
    for s, i in zip(best_s, best_i):
        order = np.argsort(-s)[:k]
        out.append({int(x) + 1 for x, v in zip(i[order], s[order]) if v > -np.inf})
    return out


def faiss_alone(index, queries: np.ndarray) -> str:
    """p50 of the bare FAISS search, tuned and exact (every list), without DuckDB."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    settings = [("exact flat", None)] if ivf is None else [
        (f"nprobe {ivf.nprobe}", faiss.SearchParametersIVF(nprobe=ivf.nprobe)),
        (f"exact (all {ivf.nlist} lists)", faiss.SearchParametersIVF(nprobe=ivf.nlist))]
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    out = []
    for name, params in settings:
        times = []
        for q in queries:
            t0 = time.perf_counter()
            index.search(q[None, :], 11, params=params)
            times.append(time.perf_counter() - t0)
        out.append(f"{name} p50 {np.median(times) * 1e3:.2f} ms")
    faiss.omp_set_num_threads(previous)
    return "; ".join(out)


def run_case(n: int, dim: int, queries: int, k: int, workdir: Path) -> list[dict]:
    from index import vectors as vec
    from index.query import Searcher

    # DuckDB holds no vectors here (the truth is the in-memory array), so the searcher's
    # comparison of a sample of the index with DuckDB's vectors is skipped; the file's
    # checksum is still checked against its record.
    vec._sample_mismatch = lambda store, space, index: None

    t0 = time.perf_counter()
    vectors = clustered_vectors(n, dim)
    gen_s = time.perf_counter() - t0
    directory = workdir / f"store-{n}-{dim}"
    shutil.rmtree(directory, ignore_errors=True)
    info = make_store(directory, n, dim, vectors)
    space = info["space"]
    print(f"\n{n:,} x {dim} ({space}): {info['kind']}; vectors generated in {gen_s:.1f} s, "
          f"DuckDB filled in {info['db_s']:.1f} s, index built in {info['build_s']:.1f} s "
          f"(+{info['build_rss_mb']:.0f} MB RSS during build), file {info['file_mb']:.0f} MB",
          flush=True)

    rows = np.random.default_rng(99).choice(n, size=queries, replace=False)
    results = []
    rss0 = rss_mb()
    with Searcher(directory) as searcher:
        t0 = time.perf_counter()
        searcher.index(space)
        load_s = time.perf_counter() - t0
        load_mb = rss_mb() - rss0
        print(f"  index load {load_s:.2f} s, +{load_mb:.0f} MB RSS", flush=True)
        faiss_line = faiss_alone(searcher.index(space), vectors[rows[:50]])
        print(f"  FAISS alone (1 thread, k=11): {faiss_line}", flush=True)
        for name, where in FILTERS.items():
            allowed_rows = None
            matching = n
            if where is not None:
                from index.usersql import filter_ids
                allowed_rows = filter_ids(searcher.store, where) - 1
                allowed_rows.sort()
                matching = len(allowed_rows)
            truth = exact_topk(vectors, rows, allowed_rows, k)
            searcher.knn(int(rows[0]) + 1, space, k, where)  # warm DuckDB's caches
            load = os.getloadavg()[0]
            times, hits, total, short = [], 0, 0, 0
            for row, t in zip(rows, truth):
                t1 = time.perf_counter()
                found = searcher.knn(int(row) + 1, space, k, where)
                times.append(time.perf_counter() - t1)
                got = {nb.track_id for nb in found}
                hits += len(got & t)
                total += len(t)
                short += len(found) < min(k, matching - 1)
            ms = np.array(times) * 1e3
            results.append({"n": n, "dim": dim, "filter": name, "matching": matching,
                            "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
                            "min_ms": float(ms.min()), "load": load,
                            "recall": hits / max(total, 1), "short": short, "kind": info["kind"],
                            "build_s": info["build_s"], "load_s": load_s, "file_mb": info["file_mb"]})
            r = results[-1]
            print(f"  {name:>5} ({matching:>9,} match): p50 {r['p50_ms']:7.2f} ms  p95 {r['p95_ms']:7.2f} ms"
                  f"  min {r['min_ms']:6.2f} ms  recall@{k} {r['recall']:.3f}  short results {short}"
                  f"  (load {load:.1f})", flush=True)
    del vectors
    gc.collect()
    shutil.rmtree(directory, ignore_errors=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100k,1M", help="comma-separated track counts (100k, 1M, 250000)")
    ap.add_argument("--dims", default="200,1280", help="comma-separated dimensions (200 musicnn, 1280 effnet)")
    ap.add_argument("--cases", default=None,
                    help="explicit n x d pairs instead, e.g. 100k:200,100k:1280,1M:200 (default when "
                         "neither --sizes nor --dims is given: those three)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--workdir", type=Path, default=None, help="where the synthetic stores go (temp)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args()

    if args.cases:
        cases = [(parse_size(c.split(":")[0]), int(c.split(":")[1])) for c in args.cases.split(",")]
    elif "--sizes" in sys.argv or "--dims" in sys.argv:
        cases = [(parse_size(s), int(d)) for s in args.sizes.split(",") for d in args.dims.split(",")]
    else:
        cases = [(100_000, 200), (100_000, 1280), (1_000_000, 200)]
    import faiss

    print(f"faiss {faiss.__version__}, {os.cpu_count()} cores, {faiss.omp_get_max_threads()} FAISS threads, "
          f"load average {os.getloadavg()[0]:.1f}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="knn-bench-"))
    rows = []
    for n, dim in cases:
        rows += run_case(n, dim, args.queries, args.k, workdir)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}; peak RSS {peak_rss_mb():.0f} MB\n")
    print("| tracks | dim | index | filter | matching | p50 ms | p95 ms | min ms | recall@10 | build s | load s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']:,} | {r['dim']} | {r['kind']} | {r['filter']} | {r['matching']:,} | "
              f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['min_ms']:.1f} | {r['recall']:.3f} | "
              f"{r['build_s']:.0f} | {r['load_s']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
