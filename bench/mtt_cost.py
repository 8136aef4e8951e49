"""What the MagnaTagATune MusiCNN costs per track, and what cheaper ways to run it change.

    python -m bench.mtt_cost [--tracks 39] [--tols 1e-2,3e-2,1e-1] [--hops 374] [--seconds 30]

For every real track of ``../shared/corpus/rendered`` and ``corpus/library`` (first 30 s,
decoded and turned into mel bands as ``engine build`` does), it runs the ``mtt`` model
(one onnxruntime thread, the caller's CPU time) in these variants and compares each
with the reference, the pruned model the engine ships (dead-filter bound 1e-2) on every
MusiCNN patch (187 frames, hop 93, as Essentia's wrapper cuts them):

* ``hop 187``: the same model on non-overlapping patches (the ``musicnn`` package's own
  default, ``input_overlap=False``): about half the patches;
* ``tol T``: the model pruned at bound ``T`` (:func:`models.quantize.prune_musicnn`),
  on every patch, and on non-overlapping ones;
* ``hop H`` (``--hops``): the shipped model on patches ``H`` frames apart (374: one
  3 s patch in every 6 s).

Per variant: CPU-ms per track (mean; one thread, so on an idle machine wall ≈ CPU),
the track-mean embedding cosine (min, median), the tag activations' max and mean |Δ|
(track means, 50 tags in [0, 1]), and how many tracks keep the same top-3 tags as a
set. Prints a Markdown table and the load average. Pruned variants are written to a
temporary folder, never into the model cache.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # last: an installed engine wins
    sys.path.append(str(ROOT))
SHARED = Path(os.environ.get("ENGINE_SHARED", ROOT.parent / "shared"))
os.environ.setdefault("ENGINE_MODELS", str(SHARED / "models"))
CLIP_S = 30
AUDIO = (".ogg", ".mp3", ".flac", ".wav", ".m4a", ".opus")


@dataclass
class Variant:
    name: str
    onnx: Path
    hop: int


@dataclass
class Outputs:
    embedding: np.ndarray  # [200] track mean
    tags: np.ndarray  # [50] track mean
    cpu_s: float


def corpus_tracks(limit: int) -> list[Path]:
    files = sorted(p for folder in ("rendered", "library") for p in (SHARED / "corpus" / folder).rglob("*")
                   if p.suffix.lower() in AUDIO)
    step = max(1, len(files) // limit) if limit else 1
    return files[::step][:limit]  # spread over both folders


def mels(tracks: list[Path], seconds: float = CLIP_S) -> list[np.ndarray]:
    from engine.decode import decode
    from models import frontend

    return [frontend.mel_bands(decode(t, max_seconds=seconds).mono_16k) for t in tracks]


def run(variant: Variant, mel_list: list[np.ndarray]) -> list[Outputs | None]:
    import onnxruntime as ort

    from models import frontend, registry

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(variant.onnx), so, providers=["CPUExecutionProvider"])
    spec = registry.get("mtt")
    names = [o.name for o in sess.get_outputs()]
    emb_name = next(n for n in names if "dense/BiasAdd" in n)
    tag_name = next(n for n in names if "Sigmoid" in n)
    inp = sess.get_inputs()[0].name
    out: list[Outputs | None] = []
    for mel in mel_list:
        # A hop of k whole patches: every k-th non-overlapping patch.
        every = max(1, variant.hop // spec.patch_frames) if variant.hop > spec.patch_frames else 1
        p = frontend.patches(mel, patch_frames=spec.patch_frames,
                             patch_hop=min(variant.hop, spec.patch_frames))[::every]
        if not len(p):
            out.append(None)
            continue
        t0 = time.process_time()
        emb, tags = sess.run([emb_name, tag_name], {inp: p.astype(np.float32)})
        out.append(Outputs(emb.mean(0), tags.mean(0), time.process_time() - t0))
    return out


def compare(ref: list[Outputs | None], cand: list[Outputs | None]) -> dict[str, float]:
    pairs = [(r, c) for r, c in zip(ref, cand) if r is not None and c is not None]
    cos = np.array([float(r.embedding @ c.embedding / np.linalg.norm(r.embedding) / np.linalg.norm(c.embedding))
                    for r, c in pairs])
    dtag = np.array([np.abs(r.tags - c.tags) for r, c in pairs])
    top3 = sum(set(np.argsort(-r.tags)[:3]) == set(np.argsort(-c.tags)[:3]) for r, c in pairs)
    return {"cpu_ms": 1000 * float(np.mean([c.cpu_s for _, c in pairs])), "cos_min": float(cos.min()),
            "cos_median": float(np.median(cos)), "tag_max": float(dtag.max()), "tag_mean": float(dtag.mean()),
            "top3_same": top3, "n": len(pairs)}


def main() -> None:
    from models import quantize, registry
    from models.export import FAST_VARIANTS, ensure_onnx

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=39)
    ap.add_argument("--tols", default="3e-2,1e-1")
    ap.add_argument("--hops", default="", help="more patch hops for the shipped model, e.g. 374")
    ap.add_argument("--seconds", type=float, default=CLIP_S, help="audio read from each track")
    args = ap.parse_args()
    spec = registry.get("mtt")
    hops = [int(h) for h in args.hops.split(",") if h]
    for h in hops:
        if h > spec.patch_frames and h % spec.patch_frames:
            ap.error(f"--hops: a hop above {spec.patch_frames} frames must be a multiple of it, got {h}")
    shipped = ensure_onnx(spec)
    converted = shipped.with_name(shipped.name.replace(".fast", ""))
    tmp = Path(tempfile.mkdtemp(prefix="mtt-cost-"))
    variants = [Variant(f"every patch (hop 93), tol {FAST_VARIANTS['mtt']:g} [shipped before]", shipped, 93),
                Variant("hop 187 (non-overlapping)", shipped, 187)]
    for tol in [float(t) for t in args.tols.split(",") if t]:
        info = quantize.prune_musicnn(converted, tmp / f"tol{tol:g}.onnx", tol=tol)
        print(f"tol {tol:g}: {sum(info.live)} of {sum(info.total)} front-end filters kept, "
              f"{info.macs_per_patch / 1e9:.2f} GMAC per patch", file=sys.stderr)
        variants += [Variant(f"hop 93, tol {tol:g}", tmp / f"tol{tol:g}.onnx", 93),
                     Variant(f"hop 187, tol {tol:g}", tmp / f"tol{tol:g}.onnx", 187)]
    variants += [Variant(f"hop {h}", shipped, h) for h in hops]
    tracks = corpus_tracks(args.tracks)
    mel_list = mels(tracks, args.seconds)
    print(f"{len(tracks)} tracks (first {args.seconds:g} s); load average {os.getloadavg()}", file=sys.stderr)
    run(variants[0], mel_list[:2])  # warm-up
    ref = run(variants[0], mel_list)
    lines = ["| variant | CPU-ms/track | emb cosine min / median | tags max / mean abs diff | same top-3 |",
             "|---|---|---|---|---|"]
    for v in variants:
        res = ref if v is variants[0] else run(v, mel_list)
        c = compare(ref, res)
        lines.append(f"| {v.name} | {c['cpu_ms']:.0f} | {c['cos_min']:.5f} / {c['cos_median']:.5f} | "
                     f"{c['tag_max']:.4f} / {c['tag_mean']:.5f} | {c['top3_same']}/{c['n']} |")
        print(lines[-1], file=sys.stderr)
    print("\n".join(lines))
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
