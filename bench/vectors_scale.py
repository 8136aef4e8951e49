"""Large spaces: build, search and update of the compressed index on synthetic stores.

    python bench/vectors_scale.py --tracks 1M --dim 1280 --workdir /work/cache/i20/stores
    python bench/vectors_scale.py --tracks 3M --dim 200 --source generator

Each size runs in phases, each in a child process so its own peak RSS is measured
(``ru_maxrss`` of the child, not of this driver), and each phase's result is kept in
``<workdir>/<tracks>-<dim>/results.json`` so an interrupted run resumes where it stopped:

1. ``store``: a store folder whose ``tracks`` table holds N synthetic tracks (a ``voice``
   column uniform in [0, 1) to filter on) and, with ``--source duckdb`` (default), whose
   ``embeddings`` table holds their vectors, inserted in chunks.
2. ``build``: the index built as ``engine build`` builds it (index.vectors.sync: vectors
   streamed from DuckDB); with ``--source generator`` the vectors are streamed from the
   generator into index.compressed.build instead (no DuckDB copy: for sizes whose float32
   table would not fit this machine's disk; DuckDB's read cost is then the figure
   measured at the smaller sizes, ≈20 µs a 1280-d vector).
3. ``search``: ``engine knn`` through index.query.Searcher, 200 seeded query tracks, with
   no filter and filters keeping 50 %, 5 %, 0.1 % and 0.001 % of the tracks: p50/p95
   latency, recall@10 against exact search over the same filtered set (float32, centred
   on the index's centre as the engine ranks, computed by streaming the generator), how often fewer than k came back although k matched, and
   the RSS after the searches (anonymous and file-backed pages apart).
4. ``update``: 1 % new tracks added, then the index brought in step (in place).

Vectors: bench.knn_speed's clustered mixture (400 styles, cosine statistics of real
MusiCNN embeddings), drawn in fixed blocks seeded by block number, so any block can be
drawn again without the others (the truth pass and the update need that).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # last: an installed engine wins
    sys.path.append(str(Path(__file__).resolve().parents[1]))

from bench.knn_speed import mixture, mixture_block, parse_size  # noqa: E402

BLOCK = 50_000
SEED = 20
QUERIES = 200
K = 10
FILTERS = {  # name -> (SQL over tracks, the same condition on the voice array)
    "none": (None, None),
    "50%": ("voice < 0.5", 0.5),
    "5%": ("voice < 0.05", 0.05),
    "0.1%": ("voice < 0.001", 0.001),
    "0.001%": ("voice < 0.00001", 0.00001),
}
SPACE = {200: "musicnn", 1280: "effnet"}


def block(dim: int, index: int, first_id: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Block ``index`` of the synthetic collection: (ids, unit vectors [BLOCK, dim])."""
    params = mixture(np.random.default_rng(SEED), dim)
    rng = np.random.default_rng([SEED, index])
    ids = np.arange(first_id + index * BLOCK, first_id + (index + 1) * BLOCK, dtype=np.int64)
    return ids, mixture_block(rng, params, BLOCK)


def chunks(n: int, dim: int, start: int = 0):
    """Tracks ``start+1 .. n`` (block-aligned ``start``), as (ids, vectors) blocks."""
    for b in range(start // BLOCK, (n + BLOCK - 1) // BLOCK):
        ids, vecs = block(dim, b)
        keep = ids <= n
        yield (ids, vecs) if keep.all() else (ids[keep], vecs[keep])
        del ids, vecs  # not held while the next block is drawn


def voice(ids: np.ndarray) -> np.ndarray:
    """The ``voice`` column of these tracks, as the store computes it (see phase_store)."""
    # splitmix64 in numpy = the SQL below; uniform in [0, 1) and independent of the vectors.
    z = (ids.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15))
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def rss() -> dict:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(line.split()[1]) // 1024
    return out


def insert_tracks(store, ids: np.ndarray, with_vectors: np.ndarray | None, space: str) -> None:
    store.con.register("_t", {"track_id": ids.astype(np.int32), "voice": voice(ids)})
    store.con.execute("INSERT INTO tracks (track_id, path, content_hash, voice, bpm) SELECT track_id, "
                      "'/music/' || track_id || '.flac', 'h' || track_id, voice, 120 FROM _t")
    store.con.unregister("_t")
    if with_vectors is not None:
        rows = np.empty(len(ids), dtype=object)
        rows[:] = list(with_vectors)
        store.con.register("_e", {"track_id": ids.astype(np.int32), "v": rows})
        store.con.execute(f"INSERT INTO embeddings SELECT track_id, '{space}', v FROM _e")
        store.con.unregister("_e")


# -- phases (each runs in a child process) ----------------------------------------------------

def phase_store(directory: Path, n: int, dim: int, source: str) -> dict:
    from index.store import Store

    space = SPACE[dim]
    shutil.rmtree(directory / "store", ignore_errors=True)
    t0, c0 = time.perf_counter(), time.process_time()
    copy_from = os.environ.get("BENCH_STORE_FROM")  # a store of this size made before
    if copy_from:
        (directory / "store").mkdir(parents=True)
        shutil.copy(Path(copy_from) / "engine.duckdb", directory / "store" / "engine.duckdb")
    with Store.open(directory / "store") as store:
        if copy_from:  # without the tracks its update phase added
            for table in ("tracks", "embeddings"):
                store.con.execute(f"DELETE FROM {table} WHERE track_id > {n}")
            store.bump_generations([space])
        elif source == "duckdb":
            for ids, vecs in chunks(n, dim):
                insert_tracks(store, ids, vecs, space)
        else:  # the vectors go straight into the build (phase_build)
            for start in range(0, n, BLOCK):
                insert_tracks(store, np.arange(start + 1, min(n, start + BLOCK) + 1), None, space)
        store.bump_generations([space])
        store.con.execute("CHECKPOINT")
    db = directory / "store" / "engine.duckdb"
    return {"store_s": time.perf_counter() - t0, "store_cpu_s": time.process_time() - c0,
            "duckdb_bytes": db.stat().st_size}


def phase_build(directory: Path, n: int, dim: int, source: str) -> dict:
    from index import compressed, vectors
    from index.store import Store

    space = SPACE[dim]
    t0, c0 = time.perf_counter(), time.process_time()
    with Store.open(directory / "store") as store:
        if source == "duckdb":
            info = vectors.sync(store, spaces=(space,))[0]
        else:
            built = compressed.build(lambda: chunks(n, dim), n, dim, store.directory, space)
            vectors.write_built(store, space, built)
            info = vectors.read_info(store.directory, space)
    store_dir = directory / "store"
    return {"build_s": time.perf_counter() - t0, "build_cpu_s": time.process_time() - c0,
            "kind": info.kind, "nprobe": info.nprobe, "rerank": info.rerank, "tuned_recall": info.recall,
            "index_bytes": vectors.index_path(store_dir, space).stat().st_size,
            "rows_bytes": sum(p.stat().st_size for p in store_dir.glob(f"{space}.f16*"))}


def exact_truth(n: int, dim: int, query_ids: np.ndarray, centre: np.ndarray | None) -> dict[str, list[set[int]]]:
    """Exact top-K ids per query and filter, streaming the generator once; vectors prepared
    with the index's ``centre`` as the engine compares them (index.vectors.prepare)."""
    from index.vectormath import prepare

    # Query ids are sorted, so taking them block by block keeps their order.
    q = prepare(np.concatenate([block(dim, b)[1][(query_ids[(query_ids - 1) // BLOCK == b] - 1) % BLOCK]
                                for b in np.unique((query_ids - 1) // BLOCK)]), centre)
    best = {f: (np.full((len(q), K + 1), -np.inf, np.float32), np.full((len(q), K + 1), -1, np.int64))
            for f in FILTERS}
    for ids, vecs in chunks(n, dim):
        sims = q @ prepare(vecs, centre).T
        sims[query_ids[:, None] == ids[None, :]] = -np.inf
        v = voice(ids)
        for name, (_, below) in FILTERS.items():
            s = sims if below is None else np.where(v < below, sims, -np.inf)
            bs, bi = best[name]
            cs = np.concatenate([bs, s], axis=1)
            ci = np.concatenate([bi, np.broadcast_to(ids, s.shape)], axis=1)
            top = np.argpartition(-cs, K, axis=1)[:, : K + 1]
            best[name] = (np.take_along_axis(cs, top, 1), np.take_along_axis(ci, top, 1))
    out = {}
    for name, (bs, bi) in best.items():
        out[name] = []
        for rs, ri in zip(bs, bi):
            o = np.argsort(-rs)[:K]
            out[name].append({int(i) for i, s in zip(ri[o], rs[o]) if s > -np.inf})
    return out


def _check_rows_against_the_generator(dim: int, centre: np.ndarray | None) -> None:
    """With ``--source generator`` DuckDB holds no vectors, so the searcher's check on
    opening (a run of index.vectors.CHECK_RUN tracks' rows compared with DuckDB's vectors)
    compares them with the generator's instead: the same run rule, the same tolerance."""
    from index import vectors

    def rows_mismatch(store, space, rows, *, seed=None):
        rng = np.random.default_rng(seed)
        start = int(rng.integers(0, max(1, len(rows) - vectors.CHECK_RUN + 1)))
        run = np.asarray(rows.ids[start:start + vectors.CHECK_RUN])
        want = np.empty((len(run), dim), np.float32)
        for b in np.unique((run - 1) // BLOCK):
            ids, vecs = block(dim, int(b))
            inside = (run >= ids[0]) & (run <= ids[-1])
            want[inside] = vecs[run[inside] - ids[0]]
        bad = np.flatnonzero(np.abs(rows.vectors(run) - vectors.prepare(want, centre)).max(axis=1) > 2e-3)
        return f"holds another vector for track {int(run[bad[0]])}" if len(bad) else None

    vectors.rows_mismatch = rows_mismatch


def phase_search(directory: Path, n: int, dim: int, source: str) -> dict:
    from index import vectors
    from index.query import Searcher

    space = SPACE[dim]
    info = vectors.read_info(directory / "store", space)
    centre = None if info is None or info.centre is None else np.asarray(info.centre, np.float32)
    query_ids = np.sort(np.random.default_rng(99).choice(n, QUERIES, replace=False) + 1)
    c0 = time.process_time()
    # Kept for a rerun on the same index (the truth depends on its centre): minutes of CPU.
    import hashlib

    key = hashlib.sha256(b"" if centre is None else centre.tobytes()).hexdigest()[:16]
    cached = directory / f"truth-{key}.json"
    if cached.exists():
        truth = {f: [set(t) for t in ts] for f, ts in json.loads(cached.read_text()).items()}
    else:
        truth = exact_truth(n, dim, query_ids, centre)
        cached.write_text(json.dumps({f: [sorted(t) for t in ts] for f, ts in truth.items()}))
    truth_cpu = time.process_time() - c0
    out = {"truth_cpu_s": truth_cpu, "filters": {}}
    if source == "generator":
        _check_rows_against_the_generator(dim, centre)
    rss0 = rss()
    with Searcher(directory / "store") as searcher:
        t0 = time.perf_counter()
        searcher.index(space)
        out["open_s"] = time.perf_counter() - t0
        for name, (where, below) in FILTERS.items():
            matching = n if below is None else int((voice(np.arange(1, n + 1)) < below).sum())
            # The first query with this filter fetches its ids from DuckDB (a Searcher on a
            # read-only store keeps them for the next ones, index.query.FILTER_CACHE): timed apart.
            t1, c1 = time.perf_counter(), time.process_time()
            searcher.knn(int(query_ids[0]), space, K, where)
            first_ms, first_cpu_ms = (time.perf_counter() - t1) * 1e3, (time.process_time() - c1) * 1e3
            times, cpu, hits, total, short = [], [], 0, 0, 0
            load = os.getloadavg()[0]
            for qid, t in zip(query_ids, truth[name]):
                t1, c1 = time.perf_counter(), time.process_time()
                found = searcher.knn(int(qid), space, K, where)
                times.append(time.perf_counter() - t1)
                cpu.append(time.process_time() - c1)  # all threads (DuckDB's too)
                hits += len({f.track_id for f in found} & t)
                total += len(t)
                short += len(found) < len(t)
            ms = np.array(times) * 1e3
            out["filters"][name] = {"matching": matching, "p50_ms": float(np.percentile(ms, 50)),
                                    "p95_ms": float(np.percentile(ms, 95)), "recall": hits / max(total, 1),
                                    "cpu_p50_ms": float(np.percentile(cpu, 50)) * 1e3,
                                    "cpu_p95_ms": float(np.percentile(cpu, 95)) * 1e3,
                                    "short": short, "load": load,
                                    "first_ms": first_ms, "first_cpu_ms": first_cpu_ms}
            print(f"  {name:>7} ({matching:>10,} match): p50 {out['filters'][name]['p50_ms']:7.1f} ms  "
                  f"p95 {out['filters'][name]['p95_ms']:7.1f} ms  cpu p95 {out['filters'][name]['cpu_p95_ms']:6.1f} ms  recall@10 {hits / max(total, 1):.3f}  "
                  f"short {short}  first query {first_ms:.0f} ms (cpu {first_cpu_ms:.0f})  (load {load:.1f})",
                  file=sys.stderr, flush=True)
    out["rss_before_mb"] = rss0
    out["rss_after_mb"] = rss()
    return out


def phase_update(directory: Path, n: int, dim: int, source: str) -> dict:
    """1 % new tracks (ids n+1 .. 1.01 n) written, then the index brought in step."""
    from index import compressed, vectors
    from index.store import Store

    space = SPACE[dim]
    extra = max(1, n // 100)
    new_ids = np.arange(n + 1, n + extra + 1, dtype=np.int64)
    # New tracks' vectors: drawn from a block far past the collection, relabelled.
    vecs = np.concatenate([block(dim, 10_000 + b)[1] for b in range((extra + BLOCK - 1) // BLOCK)])[:extra].copy()
    t0, c0 = time.perf_counter(), time.process_time()
    with Store.open(directory / "store") as store:
        insert_tracks(store, new_ids, vecs if source == "duckdb" else None, space)
        store.bump_generations([space])
        write_s = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), time.process_time()
        if source == "duckdb":
            info = vectors.sync(store, spaces=(space,))[0]
        else:
            def all_chunks():
                yield from chunks(n, dim)
                yield new_ids, vecs
            before = vectors.read_info(store.directory, space)
            index = vectors.load(store.directory, space)
            rows = vectors.vectorfile.VectorFile.open(store.directory, space, dim)
            done = compressed.update(index, rows, all_chunks, store.directory, space,
                                     centre=np.asarray(before.centre, np.float32))
            info = vectors.write_updated(store, space, before, done)
    return {"update_s": time.perf_counter() - t0, "update_cpu_s": time.process_time() - c0,
            "update_write_s": write_s, "added": extra, "trained_on": info.trained_on, "count": info.count}


def report(workdir: Path) -> str:
    """Markdown tables of every result under ``workdir`` (for docs/vectors.md)."""
    runs = []
    for path in sorted(workdir.glob("*/results.json")):
        n, dim, rest = path.parent.name.split("-", 2)
        result = json.loads(path.read_text())
        if "build" in result:  # a run stopped before its index was built shows nothing
            runs.append((int(n), int(dim), rest, result))
    runs.sort(key=lambda r: (r[1], r[0], r[2]))
    gb = 1e9
    lines = ["| tracks | dim | source | index | build s (CPU s) | build peak RSS | index file | rows file "
             "| DuckDB file | 1 % update s (CPU s) | update peak RSS |", "|" + "---|" * 11]
    for n, dim, rest, r in runs:
        b, u, st = r.get("build", {}), r.get("update", {}), r.get("store", {})
        kind = b.get("kind", "?")
        if kind == "ivf-rabitq":
            kind = f"IVF-RaBitQ nprobe {b['nprobe']}, re-rank {b['rerank']}"
        elif kind == "ivf-flat":
            kind = f"IVF-Flat nprobe {b['nprobe']}"
        lines.append(
            f"| {n:,} | {dim} | {rest} | {kind} | {b.get('build_s', 0):.0f} ({b.get('build_cpu_s', 0):.0f}) "
            f"| {b.get('peak_rss_mb', 0) / 1e3:.2f} GB | {b.get('index_bytes', 0) / gb:.2f} GB "
            f"| {b.get('rows_bytes', 0) / gb:.2f} GB "
            f"| {st.get('duckdb_bytes', 0) / gb:.2f} GB | "
            + (f"{u['update_s']:.0f} ({u['update_cpu_s']:.0f}) | {u['peak_rss_mb'] / 1e3:.2f} GB |" if u else "- | - |"))
    lines += ["", "| tracks | dim | index | filter | matching | p50 ms | p95 ms | CPU p95 ms | recall@10 "
              "| fewer than k | load | search RSS after (anon + file) |", "|" + "---|" * 12]
    for n, dim, rest, r in runs:
        se, b = r.get("search"), r.get("build", {})
        if not se:
            continue
        after = se["rss_after_mb"]
        for name, f in se["filters"].items():
            cpu = f"{f['cpu_p95_ms']:.1f}" if "cpu_p95_ms" in f else "-"
            lines.append(
                f"| {n:,} | {dim} | {b.get('kind', '?')} | {name} | {f['matching']:,} | {f['p50_ms']:.1f} "
                f"| {f['p95_ms']:.1f} | {cpu} | {f['recall']:.3f} | {f['short']} | {f['load']:.1f} "
                f"| {after['RssAnon'] / 1e3:.2f} + {after['RssFile'] / 1e3:.2f} GB |")
    return "\n".join(lines)


PHASES = {"store": phase_store, "build": phase_build, "search": phase_search, "update": phase_update}


def child(args) -> None:
    if os.environ.get("BENCH_COMPRESS_ABOVE"):  # e.g. 0: the compressed kind at any size
        from index import compressed

        compressed.COMPRESS_MIN_FLOATS = int(os.environ["BENCH_COMPRESS_ABOVE"])
    if os.environ.get("BENCH_POST_FILTER_MIN"):  # e.g. 10**12: a filter's first query fetches its ids
        from index import query

        query.POST_FILTER_MIN_TRACKS = int(os.environ["BENCH_POST_FILTER_MIN"])
    result = PHASES[args.phase](args.dir, args.n, args.dim, args.source)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["cpu_s"] = time.process_time()
    result["load_end"] = os.getloadavg()[0]
    print(json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracks", default="1M")
    ap.add_argument("--dim", type=int, default=1280, choices=sorted(SPACE))
    ap.add_argument("--source", default="duckdb", choices=("duckdb", "generator"))
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vectors-scale"))
    ap.add_argument("--phases", default="store,build,search,update")
    ap.add_argument("--redo", action="store_true", help="run the phases again even if done")
    ap.add_argument("--compress-above", type=int, default=None, metavar="FLOATS",
                    help="index.compressed.COMPRESS_MIN_FLOATS for this run (0: compressed at any size)")
    ap.add_argument("--tag", default="", help="appended to the run's folder name (a variant)")
    ap.add_argument("--store-from", type=Path, default=None,
                    help="copy the DuckDB file of a store of the same size made before")
    ap.add_argument("--report", action="store_true", help="print the results under --workdir as Markdown")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        return child(args)
    if args.report:
        return print(report(args.workdir))
    n = parse_size(args.tracks)
    variant = "" if args.compress_above is None else f"-compress{args.compress_above}"
    directory = args.workdir / f"{n}-{args.dim}-{args.source}{variant}{'-' + args.tag if args.tag else ''}"
    if args.compress_above is not None:
        os.environ["BENCH_COMPRESS_ABOVE"] = str(args.compress_above)
    if args.store_from is not None:
        os.environ["BENCH_STORE_FROM"] = str(args.store_from)
    directory.mkdir(parents=True, exist_ok=True)
    results_path = directory / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for phase in args.phases.split(","):
        if phase in results and not args.redo:
            print(f"{phase}: done before, kept", file=sys.stderr)
            continue
        print(f"{n:,} x {args.dim}: {phase} (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, __file__, "--phase", phase, "--dir", str(directory),
                               "--n", str(n), "--dim", str(args.dim), "--source", args.source],
                              stdout=subprocess.PIPE, text=True)
        if proc.returncode:
            sys.exit(f"{phase} failed (exit {proc.returncode})")
        results[phase] = json.loads(proc.stdout.strip().splitlines()[-1])
        results_path.write_text(json.dumps(results, indent=1))
        print(f"  {json.dumps(results[phase])}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
