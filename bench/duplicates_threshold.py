"""How similar the same recording is to itself in another file, and distinct songs to each other.

    nice -n 19 python -m bench.duplicates_threshold [--out bench/out/similarity]

Positives: ``../shared/corpus/degraded/clean.flac`` against each of its 12 versions
(lossy re-encodes at 32/64 kbit/s MP3 and 24 kbit/s AAC: the same audio in another
format; and damaged copies: hiss, hum, clipping, telephone band, vinyl...). Negatives:
every pair of distinct recordings among the library (51) and the rendered clips (26,
among them Bach chorales rendered with the same General MIDI instrument: hard
negatives). Cosine of the track-mean MusiCNN embeddings, raw and centred on the
collection (library + rendered) as the search space is (index.vectors).

The near-duplicate rule (index.duplicates) must take every re-encode and no distinct pair.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench.similarity_quality import AUDIO, ROOT, SHARED, extract

CORPUS = SHARED / "corpus"
FORMATS = {"lowbitrate_32k.mp3", "lowbitrate_64k.mp3", "lowbitrate_aac24k.m4a"}


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO | {".flac"}
                  and "COPYRIGHT" not in p.parts)


def _means(tracks: dict, space: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    names = sorted(n for n, t in tracks.items() if len(t[space]))
    return names, np.stack([tracks[n][space].mean(0) for n in names]), np.array([tracks[n]["duration"] for n in names])


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "similarity")
    args = ap.parse_args()
    coll = {}
    for sub in ("library", "rendered"):
        got = extract(args.out, 450.0, CORPUS / sub, _files(CORPUS / sub))
        coll.update({f"{sub}/{k}": v for k, v in got.items()})
    degraded = extract(args.out, 450.0, CORPUS / "degraded", _files(CORPUS / "degraded"))
    for space in ("musicnn", "mtt"):
        names, x, durations = _means(coll, space)
        mu = _unit(x).mean(0) * 0 + x.mean(0)
        for how, f in (("raw", lambda v: _unit(v)), ("centred", lambda v: _unit(v - mu))):
            v = f(x)
            s = v @ v.T
            iu = np.triu_indices(len(names), 1)
            neg = s[iu]
            worst = np.argsort(-neg)[:3]
            clean = f(degraded["clean.flac"][space].mean(0))
            print(f"\n{space} {how}: distinct pairs (n={len(neg)}): max {neg.max():.4f}, "
                  f"99.9th pct {np.percentile(neg, 99.9):.4f}, median {np.median(neg):.4f}")
            for w in worst:
                a, b = names[iu[0][w]], names[iu[1][w]]
                print(f"    {neg[w]:.4f}  {a}  ~  {b}  ({durations[iu[0][w]]:.1f} s / {durations[iu[1][w]]:.1f} s)")
            for name in sorted(degraded):
                if name == "clean.flac":
                    continue
                c = float(f(degraded[name][space].mean(0)) @ clean)
                tag = "format" if name in FORMATS else "damaged"
                print(f"    clean ~ {name:<24} {c:.4f}  ({tag})")


if __name__ == "__main__":
    main()
