"""Few-shot quality of user-trained tags (index.usertags) on the real corpus.

    nice -n 19 python -m bench.tag_quality [--store bench/out/search-store] [--repeats 20]

The store is the corpus store of bench/search_corpus.py (51 library recordings and the
26 rendered clips, MusiCNN (MSD) and MagnaTagATune spaces; no EffNet backbone here).

- **albums**: each album folder of the library with more than k tracks is a tag; k
  random tracks of it are the positives (k = 3, 5, 10). The other tracks are split at
  random into halves: one half may be drawn as random negatives, the other is held out
  with the album's remaining tracks; AUC of the held-out album tracks against the
  held-out others (chance 0.5), mean over albums and ``--repeats`` draws.
- **rendered**: the General MIDI instruments of ``rendered/ground_truth.csv`` as tags
  ("piano", "strings" = violin/viola/cello, "choir"), k = 3 and 5, the same way over the
  whole store.

Each row: the space chosen by cross-validation (auto) and each space alone.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np

from bench.search_corpus import ROOT, SHARED, build_corpus_store
from index import usertags
from index.store import Store

INSTRUMENTS = {"piano": ("piano",), "strings": ("violin", "viola", "cello", "string"), "choir": ("choir",)}


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    d = pos[:, None] - neg[None, :]
    return float(((d > 0) + 0.5 * (d == 0)).mean())


def evaluate(store: Store, members: list[int], everyone: list[int], k: int, spaces, rng) -> float | None:
    """AUC on held-out tracks of one draw; None when nothing of the tag is left to find."""
    members = list(members)
    positives = list(rng.choice(members, k, replace=False))
    others = [t for t in everyone if t not in set(members)]
    rng.shuffle(others)
    held_others = others[: len(others) // 2]
    held_members = [t for t in members if t not in set(positives)]
    if not held_members or not held_others:
        return None
    probe = usertags.train(store, "bench", positives, spaces=spaces, holdout=held_others + held_members,
                           seed=int(rng.integers(2**31)))
    ids, got = usertags.scores(store, probe)
    s = dict(zip(ids.tolist(), got))
    pos = np.array([s[t] for t in held_members if t in s])
    neg = np.array([s[t] for t in held_others if t in s])
    return auc(pos, neg) if len(pos) and len(neg) else None


def table(store: Store, tags: dict[str, list[int]], everyone: list[int], ks, repeats: int, spaces_list) -> list[str]:
    lines = ["| tag | tracks | k | " + " | ".join(n for n, _ in spaces_list) + " |",
             "|---|---|---|" + "---|" * len(spaces_list)]
    summary = {(k, n): [] for k in ks for n, _ in spaces_list}
    for name, members in tags.items():
        for k in ks:
            if len(members) <= k:
                continue
            cells = []
            for label, spaces in spaces_list:
                rng = np.random.default_rng(k * 1000 + len(name))  # same draws for every space
                got = [a for a in (evaluate(store, members, everyone, k, spaces, rng) for _ in range(repeats))
                       if a is not None]
                cells.append(f"{np.mean(got):.2f}" if got else "–")
                summary[(k, label)] += got
            lines.append(f"| {name} | {len(members)} | {k} | " + " | ".join(cells) + " |")
    for k in ks:
        if any(summary[(k, n)] for n, _ in spaces_list):
            lines.append(f"| **mean** | | {k} | " + " | ".join(
                f"**{np.mean(summary[(k, n)]):.2f}**" if summary[(k, n)] else "–" for n, _ in spaces_list) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=ROOT / "bench" / "out" / "search-store")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    build_corpus_store(args.store)
    t0 = time.process_time()
    with Store.open_read_only(args.store) as store:
        rows = store.con.execute("SELECT track_id, path FROM tracks ORDER BY track_id").fetchall()
        spaces = [s for s in ("musicnn", "mtt", "effnet")
                  if store.con.execute("SELECT count(*) FROM embeddings WHERE space = ?", [s]).fetchone()[0]]
        spaces_list = [("auto (CV)", None)] + [(s, (s,)) for s in spaces]
        everyone = [t for t, _ in rows]
        albums: dict[str, list[int]] = {}
        for t, p in rows:
            if "/library/" in p:
                albums.setdefault(Path(p).parent.name, []).append(t)
        truth = {r["file"]: r["instruments"]
                 for r in csv.DictReader(open(SHARED / "corpus" / "rendered" / "ground_truth.csv"))}
        instruments: dict[str, list[int]] = {name: [] for name in INSTRUMENTS}
        for t, p in rows:
            inst = truth.get(Path(p).name)
            if "/rendered/" in p and inst:
                for name, words in INSTRUMENTS.items():
                    if any(w in inst for w in words):
                        instruments[name].append(t)
        print(f"{len(rows)} tracks; spaces {', '.join(spaces)}; {args.repeats} draws per cell; "
              f"load {os.getloadavg()[0]:.1f}\n")
        print("Library album folders as tags: AUC of held-out album tracks vs held-out others (chance 0.50)\n")
        print("\n".join(table(store, {a: m for a, m in albums.items() if len(m) > 3}, everyone, (3, 5, 10),
                              args.repeats, spaces_list)))
        print("\nRendered clips, General MIDI instruments as tags: same AUC (chance 0.50)\n")
        print("\n".join(table(store, instruments, everyone, (3, 5), args.repeats, spaces_list)))
    print(f"\n({time.process_time() - t0:.0f} CPU-s)")


if __name__ == "__main__":
    main()
