"""Same-album precision@10 of every way of building a similarity space, on the real library.

    nice -n 19 python -m bench.similarity_quality [--out bench/out/similarity] [--max-seconds 450]

For each recording of ``../shared/corpus/library`` (51 files in album folders), the
share of its 10 nearest neighbours (cosine, among the library's other tracks) that
come from the same album folder. The track itself never counts; nor does another
file of the same source song (none in this corpus: each file is its own song, which
the script checks by content hash and by near-identical embeddings). A folder with a
single track cannot score and is left out of the mean. ``P@10 max`` is the best any
space could reach (an album of n tracks gives at most (n-1)/10 per track).

Variants (see docs/playlists.md for the figures):

- pooling of the per-patch embeddings of a track: ``mean`` (what the store holds) or
  ``mean+std`` (mean and standard deviation over patches, concatenated);
- collection transform: ``raw``, ``centred`` (collection mean subtracted before the
  cosine), ``zscore`` (each dimension standardised), ``whitened`` (PCA whitening of
  the collection, shrunk towards the identity: eigenvalues + their mean);
- space: ``musicnn`` (MSD MusiCNN), ``mtt`` (MagnaTagATune MusiCNN) and ``musicnn+mtt``
  (the two transformed spaces, each unit length, concatenated: equal weight).

The per-patch embeddings are computed once with the real models (decode with the
build's defaults, the build's front-end and patching) and kept in ``--out`` so a
second run only evaluates (resumable: one file per track). The EffNet backbone is not
available here (tests use a generated stand-in: never a figure to report).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ENGINE_SHARED", ROOT.parent / "shared"))
LIBRARY = SHARED / "corpus" / "library"
AUDIO = {".ogg", ".mp3", ".m4a", ".flac"}
SPACES = ("musicnn", "mtt")
K = 10


def library_files(root: Path = LIBRARY) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO and "COPYRIGHT" not in p.parts)


def _key(path: Path, root: Path) -> str:
    return hashlib.sha1(str(path.relative_to(root)).encode()).hexdigest()[:16]


def extract(out: Path, max_seconds: float, root: Path = LIBRARY,
            files: list[Path] | None = None) -> dict[str, dict]:
    """Per-patch embeddings of every library file (or ``files`` under ``root``) in each
    space, cached in ``out``; keyed by the path relative to ``root``."""
    os.environ.setdefault("ENGINE_MODELS", str(SHARED / "models"))
    os.environ.setdefault("ENGINE_OFFLINE", "1")
    from engine.decode import decode
    from models import frontend, registry
    from models.inference import EmbeddingPipeline, RuntimeOptions, load

    out.mkdir(parents=True, exist_ok=True)
    pipelines = None
    tracks: dict[str, dict] = {}
    for path in files if files is not None else library_files(root):
        cache = out / f"{_key(path, root)}.npz"
        if not cache.is_file():
            if pipelines is None:
                opts = RuntimeOptions.from_env(threads=1)
                pipelines = {s: EmbeddingPipeline(load(registry.get(s), opts)) for s in SPACES}
            t0 = time.process_time()
            audio = decode(path, max_seconds=max_seconds)
            mel = frontend.mel_bands(audio.mono_16k)
            patches = frontend.model_patches("musicnn", mel)
            embs = {s: (p.patch_outputs(patches)["embeddings"] if len(patches) else np.zeros((0, 200), np.float32))
                    for s, p in pipelines.items()}
            tmp = cache.with_name(cache.stem + ".tmp.npz")
            np.savez(tmp, duration=audio.facts.duration or 0.0, **embs)
            os.replace(tmp, cache)
            print(f"{time.process_time() - t0:6.1f} CPU-s  {len(patches):3d} patches  {path.relative_to(root)}",
                  flush=True)
        with np.load(cache) as z:
            tracks[str(path.relative_to(root))] = {s: z[s] for s in SPACES} | {"duration": float(z["duration"])}
    return tracks


# -- spaces -----------------------------------------------------------------------------

def pool(patches: np.ndarray, how: str) -> np.ndarray:
    if how == "mean":
        return patches.mean(0)
    if how == "mean+std":
        return np.concatenate([patches.mean(0), patches.std(0)])
    raise ValueError(how)


def transform(x: np.ndarray, how: str) -> np.ndarray:
    """Collection transform of ``x`` [n, d], then rows to unit length."""
    if how == "centred":
        x = x - x.mean(0)
    elif how == "zscore":
        x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    elif how == "whitened":
        c = x - x.mean(0)
        cov = c.T @ c / max(len(c) - 1, 1)
        w, v = np.linalg.eigh(cov)
        w = np.maximum(w, 0) + w.mean()  # shrunk: n << d here, raw whitening blows up noise
        x = c @ v / np.sqrt(w)
    elif how != "raw":
        raise ValueError(how)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class Score:
    variant: str
    precision: float  # mean P@10 over scored tracks
    best_possible: float
    scored: int


def precision_at_k(vectors: np.ndarray, albums: list[str], k: int = K) -> tuple[float, float, int]:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    albums_a = np.asarray(albums)
    per, best = [], []
    for i in range(len(albums)):
        size = int((albums_a == albums_a[i]).sum())
        if size < 2:
            continue
        top = np.argsort(-sims[i], kind="stable")[:k]
        per.append(float((albums_a[top] == albums_a[i]).mean()))
        best.append(min(size - 1, k) / k)
    return float(np.mean(per)), float(np.mean(best)), len(per)


def evaluate(tracks: dict[str, dict]) -> list[Score]:
    names = sorted(n for n, t in tracks.items() if all(len(t[s]) for s in SPACES))
    albums = [str(Path(n).parent) for n in names]
    scores = []
    for pooling, how in itertools.product(("mean", "mean+std"), ("raw", "centred", "zscore", "whitened")):
        per_space = {s: transform(np.stack([pool(tracks[n][s], pooling) for n in names]), how) for s in SPACES}
        per_space["musicnn+mtt"] = np.concatenate([per_space["musicnn"], per_space["mtt"]], 1) / np.sqrt(2)
        for space, vecs in per_space.items():
            p, best, n = precision_at_k(vecs, albums)
            scores.append(Score(f"{space:<12} {pooling:<9} {how}", p, best, n))
    return scores


def check_distinct(tracks: dict[str, dict]) -> list[tuple[str, str, float]]:
    """Pairs of library files whose mean embeddings are near-identical (same source song)."""
    names = sorted(tracks)
    v = np.stack([tracks[n]["musicnn"].mean(0) if len(tracks[n]["musicnn"]) else np.zeros(200) for n in names])
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    s = v @ v.T
    return [(names[i], names[j], float(s[i, j])) for i in range(len(names)) for j in range(i + 1, len(names))
            if s[i, j] > 0.995]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "similarity")
    ap.add_argument("--max-seconds", type=float, default=450.0, help="as engine build's default")
    ap.add_argument("--json", type=Path, help="also write the scores here")
    args = ap.parse_args()
    tracks = extract(args.out, args.max_seconds)
    same = check_distinct(tracks)
    print(f"{len(tracks)} tracks; near-identical pairs (same source song): {same or 'none'}")
    scores = evaluate(tracks)
    print(f"\n{'space':<12} {'pooling':<9} {'transform':<9}  P@10   (max {scores[0].best_possible:.3f}, "
          f"{scores[0].scored} tracks)")
    for s in sorted(scores, key=lambda s: -s.precision):
        print(f"{s.variant:<33} {s.precision:.3f}")
    if args.json:
        args.json.write_text(json.dumps([s.__dict__ for s in scores], indent=1))


if __name__ == "__main__":
    main()
