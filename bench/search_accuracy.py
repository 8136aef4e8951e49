"""Mean average precision of `engine search` for instrument queries over the rendered clips.

    python -m bench.search_accuracy [--store bench/out/search-store]

The store holds ``../shared/corpus/rendered`` (26 clips rendered from scores with
General MIDI instruments) and ``corpus/library`` (51 recordings), built with the real
models (bench/search_corpus.py). Each query ranks the 26 rendered clips (``--where``
on their folder; the learned text space is trained on the whole store, as a user's
would be) in three modes: vocabulary/tags only, the sentence model only, and both.
Relevant clips come from ``ground_truth.csv`` (``instruments``, ``drums``). Chance is
the expected AP of a random order (20,000 shuffles). Writes a Markdown table to stdout
and ``bench/out/search_accuracy.md``.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import numpy as np

from bench.search_corpus import ROOT, SHARED, TEXT_MODEL_DIR, build_corpus_store

# Query -> what makes a rendered clip relevant (General MIDI names in ground_truth.csv).
QUERIES = {
    "piano": lambda inst, drums: "piano" in inst,
    "choir": lambda inst, drums: "choir" in inst,
    "strings": lambda inst, drums: any(s in inst for s in ("violin", "viola", "cello", "string ensemble")),
    "guitar": lambda inst, drums: "guitar" in inst,
    "flute": lambda inst, drums: "flute" in inst,
    "brass": lambda inst, drums: "brass" in inst or "trumpet" in inst or "trombone" in inst,
    "organ": lambda inst, drums: "organ" in inst,
    "drums": lambda inst, drums: drums,
    # The other instruments of the clips that no tag model here names: a wider check of
    # what brass and organ show (one or two clips each), so a change for those two is not
    # judged on three clips.
    "oboe": lambda inst, drums: "oboe" in inst,
    "clarinet": lambda inst, drums: "clarinet" in inst,
    "bassoon": lambda inst, drums: "bassoon" in inst,
    "banjo": lambda inst, drums: "banjo" in inst,
    "harmonica": lambda inst, drums: "harmonica" in inst,
}
WITH_TAG = ("piano", "choir", "strings", "guitar", "flute", "drums")  # MTT has a tag for these
WITHOUT_TAG = ("brass", "organ", "oboe", "clarinet", "bassoon", "banjo", "harmonica")
MODES = ("tags", "text", "combined")


def average_precision(ranked_relevance: list[bool], n_relevant: int) -> float:
    hits, total = 0, 0.0
    for i, rel in enumerate(ranked_relevance, 1):
        if rel:
            hits += 1
            total += hits / i
    return total / n_relevant if n_relevant else float("nan")


def chance_ap(n: int, n_relevant: int, trials: int = 20_000, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    rel = np.zeros(n, bool)
    rel[:n_relevant] = True
    return float(np.mean([average_precision(list(rng.permutation(rel)), n_relevant) for _ in range(trials)]))


def load_truth() -> dict[str, dict[str, str]]:
    """``ground_truth.csv`` of the rendered clips: file name -> its row."""
    with open(SHARED / "corpus" / "rendered" / "ground_truth.csv", newline="") as fh:
        return {r["file"]: r for r in csv.DictReader(fh)}


def corpus_store_and_truth(description: str) -> tuple[Path, dict[str, dict[str, str]]]:
    """The command line shared by the search benchmarks: the store of the corpus (built
    when missing) and the rendered clips' ground truth."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--store", type=Path, default=ROOT / "bench" / "out" / "search-store")
    ap.add_argument("--text-model-dir", type=Path, default=TEXT_MODEL_DIR)
    args = ap.parse_args()
    return build_corpus_store(args.store, args.text_model_dir), load_truth()


def main() -> None:
    from index.search import NoMatchError, TextSearcher

    store, truth = corpus_store_and_truth(__doc__.splitlines()[0])
    where = "path LIKE '%/rendered/%'"
    lines = ["| query | relevant | chance | tags only | sentence model only | combined |", "|---|---|---|---|---|---|"]
    results: dict[str, dict[str, float]] = {}
    with TextSearcher(store) as s:
        for query, is_relevant in QUERIES.items():
            rel = {f for f, r in truth.items() if is_relevant(r["instruments"], r["drums"] == "1")}
            row = {"chance": chance_ap(len(truth), len(rel))}
            for mode in MODES:
                try:
                    hits = s.search(query, k=len(truth), where=where, mode=mode).hits
                except NoMatchError:
                    row[mode] = float("nan")  # nothing in the vocabulary: no ranking at all
                    continue
                row[mode] = average_precision([Path(h.path).name in rel for h in hits], len(rel))
            results[query] = row
            cells = [f"{row[m]:.2f}" if row[m] == row[m] else "no tag" for m in MODES]
            lines.append(f"| {query} | {len(rel)} | {row['chance']:.2f} | " + " | ".join(cells) + " |")
    for name, qs in (("mean, queries with an MTT tag", WITH_TAG),
                     ("mean, brass and organ", ("brass", "organ")),
                     ("mean, the 7 instruments without a tag", WITHOUT_TAG)):
        cells = []
        for m in ("chance",) + MODES:
            vals = [results[q][m] for q in qs if results[q][m] == results[q][m]]
            cells.append(f"{np.mean(vals):.2f}" if vals else "—")
        lines.append(f"| **{name}** | | " + " | ".join(cells) + " |")
    load = os.getloadavg()
    lines.append(f"\n(load average {load[0]:.1f} while measuring; {len(truth)} rendered clips)")
    text = "\n".join(lines)
    print(text)
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "search_accuracy.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
