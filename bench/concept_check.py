"""The concept "strings", learned from examples, against the tag heads (index.tcav).

    nice -n 19 python -m bench.concept_check [--store bench/out/search-store]

The concept is the direction in the MagnaTagATune (and MSD) MusiCNN space that tells the
rendered clips whose General MIDI instruments include violin, viola or cello
(``rendered/ground_truth.csv``) from random tracks of the corpus store. For each class of
the backbone's own tag layers (cut off as a head at the embedding), the TCAV score (share
of the class's tracks the concept pushes up) and its p-value against the space's
``tcav.RANDOM_CAVS`` random directions (the cached set, index.tcav.space_directions),
Holm-adjusted over every class of every table printed (one family: the claim "related
classes yes, unrelated no" is read row by row). Related classes (classical, strings,
violin, ...) should be pushed up significantly, unrelated ones (rock, techno, drums, ...)
not. Nothing is tuned to the outcome: the rows are printed as they come.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import numpy as np

from bench.search_corpus import ROOT, SHARED, build_corpus_store
from index import tcav
from index.store import Store
from index.usertags import fetch_vectors

RELATED = ("classical", "strings", "violin", "cello", "slow", "quiet", "soft")
UNRELATED = ("rock", "techno", "drums", "beat", "electronic", "pop", "metal", "dance", "guitar", "hard rock")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=ROOT / "bench" / "out" / "search-store")
    args = ap.parse_args()
    build_corpus_store(args.store)
    strings = {r["file"] for r in csv.DictReader(open(SHARED / "corpus" / "rendered" / "ground_truth.csv"))
               if any(w in r["instruments"] for w in ("violin", "viola", "cello"))}
    print(f"concept 'strings' from {len(strings)} rendered clips: {', '.join(sorted(strings))}; "
          f"load {os.getloadavg()[0]:.1f}\n")
    rows = []  # (space, label, tracks, TCAV score, uncorrected p)
    with Store.open_read_only(args.store) as store:
        paths = dict(store.con.execute("SELECT track_id, path FROM tracks").fetchall())
        for space in tcav.BACKBONE_TAG_HEADS:
            head = tcav.load_head(space)
            ids, x = fetch_vectors(store, space)
            rng = np.random.default_rng(0)
            examples = np.array([t for t in ids if Path(paths[int(t)]).name in strings])
            cav = tcav._cav(x, ids, examples, rng)
            random_dirs = tcav.space_directions(store, space, ids=ids, x=x).random
            probs = head.predict(x)
            for label in RELATED + UNRELATED:
                if label in head.labels:
                    n, score, p = tcav.class_scores(head, x, probs, head.labels.index(label), cav[None], rng,
                                                    random_dirs=random_dirs)
                    rows.append((space, label, n, float(score[0]), float(p[0])))
    adjusted = tcav.holm(np.array([r[4] for r in rows]))
    print(f"{len(random_dirs)} random directions; Holm over {len(rows)} classes\n")
    for space in tcav.BACKBONE_TAG_HEADS:
        print(f"| {space} head: class | related | tracks | TCAV score | p | p (Holm) | significant |")
        print("|---|---|---|---|---|---|---|")
        for (s, label, n, score, p), q in zip(rows, adjusted):
            if s == space:
                print(f"| {label} | {'yes' if label in RELATED else 'no'} | {n} | {score:.2f} | {p:.4f} | {q:.3f} | "
                      f"{'**yes**' if q < tcav.ALPHA else 'no'} |")
        print()

if __name__ == "__main__":
    main()
