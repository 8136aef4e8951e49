"""Same-album precision@10 of every way of building a similarity space, on the real library.

    nice -n 19 python -m bench.similarity_quality [--out bench/out/similarity] [--max-seconds 450]

For each recording of ``../shared/corpus/library`` (51 files in album folders), the
share of its 10 nearest neighbours (cosine) that come from the same album folder, never
counting the same source song. Two measures:

- **tracks**: each whole track (as ``engine build`` analyses it) against the others;
  the track itself does not count. 49 queries: one file gives no patch (0.09 s), one
  folder holds a single track (it cannot score).
- **excerpts**: each track cut into 30 s excerpts (19 MusiCNN patches, a new excerpt
  every 10 patches ≈ 15 s: 1-5 per track); an excerpt's neighbours are the excerpts of
  the other songs (excerpts of its own song are left out, neither hits nor misses).
  113 queries, closer to a collection of many songs per album.

Every file is its own song here (the script checks by near-identical embeddings).
``max`` is the best any space could reach. Each variant's gain over the baseline
(MusiCNN, mean, raw: what the store held before) comes with a paired bootstrap 95 %
interval over the queries and the count of queries it improves / worsens.

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
# The spaces this benchmark measures: models.registry.SPACES without EffNet, whose
# backbone is not available here (see the module docstring).
MEASURED_SPACES = ("musicnn", "mtt")
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
                pipelines = {s: EmbeddingPipeline(load(registry.get(s), opts)) for s in MEASURED_SPACES}
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
            tracks[str(path.relative_to(root))] = {s: z[s] for s in MEASURED_SPACES} | {"duration": float(z["duration"])}
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
class Item:
    """One query/candidate: a track or an excerpt of it."""

    song: str
    album: str
    patches: dict  # space -> [patches, 200]


def items(tracks: dict[str, dict], excerpt: int | None = None, hop: int = 10) -> list[Item]:
    out = []
    for name, t in sorted(tracks.items()):
        n = len(t[MEASURED_SPACES[0]])
        if not n or not all(len(t[s]) for s in MEASURED_SPACES):
            continue
        starts = [0] if excerpt is None or n <= excerpt else list(range(0, n - excerpt + 1, hop))
        for a in starts:
            cut = slice(a, a + excerpt) if excerpt else slice(None)
            out.append(Item(name, str(Path(name).parent), {s: t[s][cut] for s in MEASURED_SPACES}))
    return out


def per_query(vectors: np.ndarray, its: list[Item], k: int = K) -> tuple[np.ndarray, float]:
    """(P@k per scored query, the mean best possible)."""
    songs = np.array([i.song for i in its])
    albums = np.array([i.album for i in its])
    sims = vectors @ vectors.T
    out, best = [], []
    for q in range(len(its)):
        other = np.flatnonzero(songs != songs[q])  # never the same source song
        same = int((albums[other] == albums[q]).sum())
        if not same:
            continue
        top = other[np.argsort(-sims[q, other], kind="stable")[:k]]
        out.append(float((albums[top] == albums[q]).mean()))
        best.append(min(same, k) / k)
    return np.array(out), float(np.mean(best))


def spaces_for(its: list[Item], pooling: str, how: str) -> dict[str, np.ndarray]:
    per_space = {s: transform(np.stack([pool(i.patches[s], pooling) for i in its]), how) for s in MEASURED_SPACES}
    per_space["musicnn+mtt"] = np.concatenate([per_space["musicnn"], per_space["mtt"]], 1) / np.sqrt(2)
    return per_space


@dataclass(frozen=True)
class Score:
    variant: str
    precision: float  # mean P@10 over scored queries
    gain: float  # over the baseline, paired
    low: float  # 95 % bootstrap interval of the gain
    high: float
    better: int
    worse: int


def evaluate(its: list[Item], seed: int = 0) -> tuple[list[Score], float, int]:
    results = {}
    for pooling, how in itertools.product(("mean", "mean+std"), ("raw", "centred", "zscore", "whitened")):
        for space, vecs in spaces_for(its, pooling, how).items():
            results[(space, pooling, how)], best = per_query(vecs, its)
    base = results[("musicnn", "mean", "raw")]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(base), (2000, len(base)))
    scores = []
    for (space, pooling, how), v in results.items():
        d = v - base
        boot = d[draws].mean(1)
        scores.append(Score(f"{space:<12} {pooling:<9} {how}", float(v.mean()), float(d.mean()),
                            float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5)),
                            int((d > 0).sum()), int((d < 0).sum())))
    return sorted(scores, key=lambda s: -s.precision), best, len(base)


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
    report = {}
    for measure, its in (("tracks", items(tracks)), ("excerpts", items(tracks, excerpt=19))):
        scores, best, n = evaluate(its)
        report[measure] = [s.__dict__ for s in scores]
        print(f"\n{measure}: {n} queries, P@10 max {best:.3f}; gain over musicnn/mean/raw, paired")
        print(f"{'space':<12} {'pooling':<9} {'transform':<9} {'P@10':>6} {'gain':>7} {'95 % interval':>16} "
              f"{'better/worse':>13}")
        for s in scores:
            print(f"{s.variant:<33} {s.precision:>5.3f} {s.gain:>+7.3f} {s.low:>+7.3f} .. {s.high:>+6.3f} "
                  f"{s.better:>6}/{s.worse}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
