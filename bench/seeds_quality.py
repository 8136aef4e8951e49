"""Which rule combines several seeds best, and what avoiding a track does, on the real library.

    nice -n 19 python -m bench.seeds_quality [--out bench/out/similarity]

Vectors: the library's MusiCNN track means (per-patch embeddings cached by
bench/similarity_quality.py), centred on the collection as the default search space
is. Scores come from index.byexample (the code ``engine knn`` runs); every other
library track is a candidate; no list rules.

- **same album**: two seeds from one album folder (every pair, albums of 3+ tracks):
  the share of the 10 results from that album (seeds excluded).
- **two albums**: one seed from each of two album folders (every such pair): the share
  of results from either album, and how often both albums are in the 10.
- **avoid**: one seed; the album most present among its 10 neighbours (other than the
  seed's) is the one to steer away from, and its highest-ranked track is avoided: the
  share of the 10 from that album without and with ``--not``, and from the seed's album.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from bench.similarity_quality import ROOT, MEASURED_SPACES, extract, transform
from index.byexample import COMBINES, avoided, combine_scores

K = 10


def top(vectors: np.ndarray, seeds: list[int], combine: str, avoid: list[int] = ()) -> np.ndarray:
    cand = np.array([i for i in range(len(vectors)) if i not in seeds and i not in avoid])
    v = vectors[cand]
    keep = ~avoided(v, vectors[seeds], vectors[list(avoid)])
    cand, v = cand[keep], v[keep]
    scores = combine_scores(v, vectors[seeds], combine)
    return cand[np.lexsort((cand, -scores))][:K]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "similarity")
    ap.add_argument("--space", default="musicnn", choices=MEASURED_SPACES)
    args = ap.parse_args()
    tracks = extract(args.out, 450.0)
    names = sorted(n for n, t in tracks.items() if len(t[args.space]))
    albums = np.array([str(Path(n).parent) for n in names])
    vectors = transform(np.stack([tracks[n][args.space].mean(0) for n in names]), "centred")
    big = [a for a in sorted(set(albums)) if (albums == a).sum() >= 3]
    members = {a: list(np.flatnonzero(albums == a)) for a in big}
    print(f"{len(names)} tracks, {len(big)} albums of 3+ tracks; {args.space} centred; top {K}")
    print(f"\n{'rule':<9} {'same album P@10':>16} {'two albums: share':>18} {'both in 10':>11}")
    for combine in COMBINES:
        same = [np.mean(albums[top(vectors, list(p), combine)] == a)
                for a in big for p in itertools.combinations(members[a], 2)]
        share, both = [], []
        for a, b in itertools.combinations(big, 2):
            for i, j in itertools.product(members[a], members[b]):
                got = albums[top(vectors, [i, j], combine)]
                share.append(np.mean((got == a) | (got == b)))
                both.append((got == a).any() and (got == b).any())
        print(f"{combine:<9} {np.mean(same):>16.3f} {np.mean(share):>18.3f} {np.mean(both):>11.3f}"
              f"   ({len(same)} / {len(share)} queries)")
    before, after, own_before, own_after = [], [], [], []
    for i in range(len(names)):
        if albums[i] not in members:
            continue
        got = top(vectors, [i], "centroid")
        others = [a for a in albums[got] if a != albums[i]]
        if not others:
            continue
        b = max(set(others), key=others.count)
        worst = next(int(t) for t in got if albums[t] == b)
        again = top(vectors, [i], "centroid", [worst])
        before.append(np.mean(albums[got] == b))
        after.append(np.mean(albums[again] == b))
        own_before.append(np.mean(albums[got] == albums[i]))
        own_after.append(np.mean(albums[again] == albums[i]))
    print(f"\navoid one track ({len(before)} queries): share of its album in the 10 "
          f"{np.mean(before):.3f} -> {np.mean(after):.3f}; seed's own album {np.mean(own_before):.3f} -> "
          f"{np.mean(own_after):.3f}")


if __name__ == "__main__":
    main()
