"""The concept "strings", learned from examples, against the tag heads (index.tcav).

    nice -n 19 python -m bench.concept_check [--store bench/out/search-store] [--top-tags N]

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index import tcav
from index.store import Store
from index.usertags import fetch_vectors

RELATED = ("classical", "strings", "violin", "cello", "slow", "quiet", "soft")
UNRELATED = ("rock", "techno", "drums", "beat", "electronic", "pop", "metal", "dance", "guitar", "hard rock")


@dataclass(frozen=True)
class ClassRow:
    """The concept's effect on one class of one tag head."""

    space: str  # the head: "musicnn" (MSD tags) or "mtt" (MagnaTagATune)
    label: str
    related: bool
    tracks: int  # tracks of the class in the store (tcav.class_members)
    score: float  # TCAV score; NaN when not tested (under tcav.MIN_CLASS_TRACKS tracks)
    p: float  # uncorrected, against the random directions
    p_holm: float  # Holm-adjusted over the tested rows

    @property
    def tested(self) -> bool:
        return bool(np.isfinite(self.p))

    @property
    def significant(self) -> bool:
        return self.p_holm < tcav.ALPHA


def string_clips(corpus: Path) -> set[str]:
    """File names of the rendered clips whose instruments include violin, viola or cello."""
    with open(corpus / "rendered" / "ground_truth.csv") as f:
        return {r["file"] for r in csv.DictReader(f)
                if any(w in r["instruments"] for w in ("violin", "viola", "cello"))}


def check(store_dir: Path, examples: set[str], *, n_random: int | None = None, seed: int = 0) -> list[ClassRow]:
    """The concept learned from the tracks named ``examples`` (file names) against the
    classes of both tag heads. Random directions: the store's cached set
    (tcav.space_directions, learned on first use), or ``n_random`` learned now."""
    raw = []  # (space, label, tracks, score, p)
    with Store.open_read_only(store_dir) as store:
        paths = dict(store.con.execute("SELECT track_id, path FROM tracks").fetchall())
        for space in tcav.BACKBONE_TAG_HEADS:
            head = tcav.load_head(space)
            ids, x = fetch_vectors(store, space)
            rng = np.random.default_rng(seed)
            chosen = np.array([t for t in ids if Path(paths[int(t)]).name in examples])
            cav = tcav._cav(x, ids, chosen, rng)
            if n_random is None:
                random_dirs = tcav.space_directions(store, space, ids=ids, x=x).random
            else:
                random_dirs = np.stack(tcav.random_cavs(np.arange(len(x)), x,
                                                        np.random.default_rng([seed, 1]), n_random))
            probs = head.predict(x)
            for label in RELATED + UNRELATED:
                if label in head.labels:
                    n, score, p = tcav.class_scores(head, x, probs, head.labels.index(label), cav[None], rng,
                                                    random_dirs=random_dirs)
                    raw.append((space, label, n, float(score[0]), float(p[0])))
    pv = np.array([r[4] for r in raw])
    tested = np.isfinite(pv)
    adjusted = np.full(len(raw), np.nan)
    adjusted[tested] = tcav.holm(pv[tested])
    return [ClassRow(s, label, label in RELATED, n, score, p, float(q))
            for (s, label, n, score, p), q in zip(raw, adjusted)]


def table(rows: list[ClassRow], space: str) -> str:
    out = [f"| {space} head: class | related | tracks | TCAV score | p | p (Holm) | significant |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.space != space:
            continue
        rel = "yes" if r.related else "no"
        if not r.tested:
            out.append(f"| {r.label} | {rel} | {r.tracks} | – | – | – | not tested |")
        else:
            out.append(f"| {r.label} | {rel} | {r.tracks} | {r.score:.2f} | {r.p:.4f} | {r.p_holm:.3f} | "
                       f"{'**yes**' if r.significant else 'no'} |")
    return "\n".join(out)


def main() -> None:
    from bench.search_corpus import ROOT, SHARED, build_corpus_store

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=ROOT / "bench" / "out" / "search-store")
    ap.add_argument("--top-tags", type=int, default=tcav.TOP_TAGS,
                    help="a track is of each of its N strongest tags (default %(default)s)")
    args = ap.parse_args()
    tcav.TOP_TAGS = args.top_tags
    build_corpus_store(args.store)
    strings = string_clips(SHARED / "corpus")
    print(f"concept 'strings' from {len(strings)} rendered clips: {', '.join(sorted(strings))}; "
          f"load {os.getloadavg()[0]:.1f}\n")
    rows = check(args.store, strings)
    print(f"{tcav.RANDOM_CAVS} random directions; a track is of its {tcav.TOP_TAGS} strongest tags; "
          f"Holm over the {sum(r.tested for r in rows)} tested classes\n")
    for space in tcav.BACKBONE_TAG_HEADS:
        print(table(rows, space) + "\n")


if __name__ == "__main__":
    main()
