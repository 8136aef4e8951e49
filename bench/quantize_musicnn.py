"""Which MusiCNN runs fastest at essentia-tensorflow's outputs? Prints the table.

    python -m bench.quantize_musicnn [--runs 7] [--threads 1,2] [--only pruned,float]

For each variant of ``msd-musicnn-1`` (the tf2onnx conversion, onnxruntime graph
settings, int8 quantisations, and :mod:`models.quantize`'s pruned rebuild) it
measures milliseconds per 30 s clip (19 patches in one ``session.run``, median of
``--runs`` runs after a warm-up, wall clock) at each thread count, and parity with
essentia-tensorflow on 20 evaluation tracks:

* per-patch embedding cosine (min and mean over 380 patches) and the minimum
  track-mean embedding cosine, against ``TensorflowPredictMusiCNN``
  (``model/dense/BiasAdd``);
* max |Δ| of track-mean emoMusic valence/arousal (1-9), MIREX moods and the 50
  MSD tags, against ``TensorflowPredict2D`` on Essentia's own embeddings and
  ``TensorflowPredictMusiCNN`` (``model/Sigmoid``).

Inputs: the central 30 s of each track, decoded by ``MonoLoader(sampleRate=16000,
resampleQuality=4)``; mel patches from Essentia's ``FrameGenerator(512, 256)`` +
``TensorflowInputMusiCNN``, cut like ``TensorflowPredictMusiCNN`` (187 frames, hop
93, last partial patch dropped), so only the model differs from the reference.
Calibration (int8 variants) uses all 361 patches of 19 other tracks: a fixed list,
no sampling, so it is deterministic. Timing is noisy when other processes share
the CPU: the load average is printed, and CPU time of the calling thread is
shown for 1-thread runs (onnxruntime runs a 1-thread session on the caller).

Environment: ``ENGINE_MODELS`` (default ``../shared/models``), ``ENGINE_CACHE``
(default ``$TMPDIR/music-engine-bench-cache``), ``ENGINE_SHARED`` (default
``../shared``) for the corpus. Needs essentia-tensorflow, onnx, onnxruntime and,
for the one-time .pb conversion, tensorflow + tf2onnx.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # last: an installed engine wins
    sys.path.append(str(ROOT))
SHARED = Path(os.environ.get("ENGINE_SHARED", ROOT.parent / "shared"))
os.environ.setdefault("ENGINE_MODELS", str(SHARED / "models"))
os.environ.setdefault("ENGINE_CACHE", str(Path(tempfile.gettempdir()) / "music-engine-bench-cache"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CORPUS = SHARED / "corpus"
SR = 16000
CLIP_S = 30

# Fixed, disjoint track lists (relative to the corpus). Evaluation: 14 library + 6 rendered.
EVAL_TRACKS = (
    "library/FreedroidRPG/02 AmbientBattle.ogg",
    "library/Frozen Bubble/01 frozen-mainzik-1p.ogg",
    "library/Hedgewars/Themes/01 Art.mp3",
    "library/Hedgewars/Themes/05 City.mp3",
    "library/HyperRogue/hr-savino-caribbean.ogg",
    "library/Sectoid/Fretsonfire Songs/Metal_madness.ogg",
    "library/Sectoid/Fretsonfire Songs/Feelings.ogg",
    "library/Singularity/Music/01 A_New_Journey.m4a",
    "library/SuperTux/Soundtrack/05 antarctic_bossattack.ogg",
    "library/SuperTux/Soundtrack/07 antarctic_chipdisko.ogg",
    "library/librosa-examples/Kevin_MacLeod_-_Vibe_Ace.ogg",
    "library/librosa-examples/Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg",
    "library/librosa-examples/Karissa_Hobbs_-_Lets_Go_Fishin.ogg",
    "library/librosa-examples/442789__lena-orsa__happy-music-pistachio-ice-cream-ragtime.ogg",
    "rendered/chorale_00.ogg",
    "rendered/chorale_12.ogg",
    "rendered/classical_00.ogg",
    "rendered/classical_06.ogg",
    "rendered/folk_00.ogg",
    "rendered/folk_08.ogg",
)
# Calibration: 13 library + 6 rendered, none of them evaluated.
CALIBRATION_TRACKS = (
    "library/FreedroidRPG/03 Bleostrada.ogg",
    "library/FreedroidRPG/06 Hyperbattle.ogg",
    "library/Frozen Bubble/03 introzik.ogg",
    "library/Hedgewars/Themes/03 Brick.mp3",
    "library/Hedgewars/Themes/07 Desert.mp3",
    "library/HyperRogue/hr-savino-ocean.ogg",
    "library/Sectoid/Fretsonfire Songs/Escape_from_chaosland.ogg",
    "library/Sectoid/Fretsonfire Songs/War_of_freedom.ogg",
    "library/Singularity/Music/02 Aberrations.m4a",
    "library/SuperTux/Soundtrack/01 antarctic_airship_2.ogg",
    "library/SuperTux/Soundtrack/08 antarctic_jewels.ogg",
    "library/librosa-examples/147793__setuniman__sweet-waltz-0i-22mi.ogg",
    "library/librosa-examples/Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.ogg",
    "rendered/chorale_04.ogg",
    "rendered/chorale_20.ogg",
    "rendered/classical_02.ogg",
    "rendered/classical_10.ogg",
    "rendered/folk_04.ogg",
    "rendered/folk_10.ogg",
)
assert not set(EVAL_TRACKS) & set(CALIBRATION_TRACKS)

EMB = "model/dense/BiasAdd:0"
TAGS = "model/Sigmoid:0"


# ----------------------------------------------------------------------------- reference


def _essentia():
    import essentia
    import essentia.standard as es

    essentia.log.warningActive = False
    essentia.log.infoActive = False
    return es


def excerpt(es, rel: str) -> np.ndarray:
    y = es.MonoLoader(filename=str(CORPUS / rel), sampleRate=SR, resampleQuality=4)()
    n = CLIP_S * SR
    start = max(0, (len(y) - n) // 2)
    return y[start : start + n]


def essentia_patches(es, y: np.ndarray) -> np.ndarray:
    """TensorflowPredictMusiCNN's input: 187-frame patches, hop 93, last partial dropped."""
    to_mel = es.TensorflowInputMusiCNN()
    mel = np.array([to_mel(f) for f in es.FrameGenerator(y, frameSize=512, hopSize=256)], dtype=np.float32)
    n = (len(mel) - 187) // 93 + 1
    return np.stack([mel[i * 93 : i * 93 + 187] for i in range(n)])


def load_data(models_dir: Path):
    es = _essentia()
    pb = lambda name: str(models_dir / name)  # noqa: E731
    emb_alg = es.TensorflowPredictMusiCNN(graphFilename=pb("msd-musicnn-1.pb"), output="model/dense/BiasAdd")
    tag_alg = es.TensorflowPredictMusiCNN(graphFilename=pb("msd-musicnn-1.pb"), output="model/Sigmoid")
    emo = es.TensorflowPredict2D(graphFilename=pb("emomusic-msd-musicnn-2.pb"), output="model/Identity")
    moods = es.TensorflowPredict2D(
        graphFilename=pb("moods_mirex-msd-musicnn-1.pb"), input="serving_default_model_Placeholder", output="PartitionedCall"
    )
    evals, tf_times = [], []
    for rel in EVAL_TRACKS:
        y = excerpt(es, rel)
        p = essentia_patches(es, y)
        t0 = time.perf_counter()
        e = emb_alg(y)
        tf_times.append(time.perf_counter() - t0)
        if e.shape[0] != p.shape[0]:
            raise RuntimeError(f"{rel}: {p.shape[0]} patches but Essentia made {e.shape[0]}")
        evals.append(dict(track=rel, patches=p, emb=e, tags=tag_alg(y), emo=emo(e), moods=moods(e)))
        print(f"  reference: {rel} ({p.shape[0]} patches, {tf_times[-1] * 1000:.0f} ms)", file=sys.stderr, flush=True)
    cal = np.concatenate([essentia_patches(es, excerpt(es, rel)) for rel in CALIBRATION_TRACKS])
    # steady state: first call includes graph loading
    return evals, cal, float(np.median(tf_times[1:]))


# ----------------------------------------------------------------------------- measuring


def session(path: Path, threads: int, level: str = "ALL", optimized_out: Path | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = {
        "ALL": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "EXTENDED": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "DISABLE": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[level]
    if optimized_out is not None:
        so.optimized_model_filepath = str(optimized_out)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def parity(sess, heads, evals) -> dict[str, float]:
    pc, tc, d_emo, d_moods, d_tags = [], [], [], [], []
    for v in evals:
        e, t = sess.run([EMB, TAGS], {"model/Placeholder:0": v["patches"]})
        pc.append(cosine(e, v["emb"]))
        tc.append(float(cosine(e.mean(0), v["emb"].mean(0))))
        emo = heads["emo"].run(None, {heads["emo"].get_inputs()[0].name: e})[0]
        moods = heads["moods"].run(None, {heads["moods"].get_inputs()[0].name: e})[0]
        d_emo.append(np.abs(emo.mean(0) - v["emo"].mean(0)).max())
        d_moods.append(np.abs(moods.mean(0) - v["moods"].mean(0)).max())
        d_tags.append(np.abs(t.mean(0) - v["tags"].mean(0)).max())
    pc = np.concatenate(pc)
    return dict(
        patch_min=float(pc.min()),
        patch_mean=float(pc.mean()),
        track_min=min(tc),
        emo=float(max(d_emo)),
        moods=float(max(d_moods)),
        tags=float(max(d_tags)),
    )


def timing(sess, x: np.ndarray, runs: int, batch: int | None = None) -> tuple[float, float, float]:
    """Median and min wall ms, median calling-thread CPU ms, for ``x`` in runs of ``batch``."""
    batch = batch or len(x)
    sess.run([EMB, TAGS], {"model/Placeholder:0": x[:batch]})
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.thread_time()
        for i in range(0, len(x), batch):
            sess.run([EMB, TAGS], {"model/Placeholder:0": x[i : i + batch]})
        wall.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    return float(np.median(wall) * 1000), float(np.min(wall) * 1000), float(np.median(cpu) * 1000)


# ----------------------------------------------------------------------------- variants


def build_variants(float_onnx: Path, cal: np.ndarray, work: Path, only: set[str] | None):
    """name -> (onnx path, graph optimisation level, description); built lazily in order."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from bench.musicnn_int8 import int8_convs
    from models import quantize as q

    def want(name):
        return only is None or name in only

    out = []
    if want("float"):
        out.append(("float", float_onnx, "ALL", "tf2onnx float32, ORT_ENABLE_ALL (NCHWc)"))
    if want("float-extended"):
        out.append(("float-extended", float_onnx, "EXTENDED", "float32, ORT_ENABLE_EXTENDED (no NCHWc layout)"))
    if want("float-saved-opt"):
        saved = work / "float_opt.onnx"
        session(float_onnx, 1, "ALL", optimized_out=saved)
        out.append(("float-saved-opt", saved, "DISABLE", "ORT_ENABLE_ALL graph saved, reloaded without optimising"))
    if want("dynamic-int8"):
        p = work / "dynamic.onnx"
        quantize_dynamic(str(float_onnx), str(p), weight_type=QuantType.QUInt8, op_types_to_quantize=["Conv", "MatMul"])
        out.append(("dynamic-int8", p, "ALL", "quantize_dynamic Conv+MatMul (ConvInteger), U8 weights"))
    if want("static-all-convs"):
        p = work / "static_all.onnx"
        int8_convs(float_onnx, p, cal, nodes=_conv_names(float_onnx))
        out.append(("static-all-convs", p, "ALL", "QDQ U8S8 per-channel MinMax, all 8 convs"))
    if want("static-timbral"):
        p = work / "static_timbral.onnx"
        int8_convs(float_onnx, p, cal)
        out.append(("static-timbral", p, "ALL", "QDQ U8S8 per-channel MinMax, the 2 timbral convs"))
    for block in (q.nchwc_block_size(), 8 if q.nchwc_block_size() != 8 else 16):
        name = f"pruned-b{block}"
        if want(name) or (want("pruned") and block == q.nchwc_block_size()):
            p = work / f"{name}.onnx"
            info = q.prune_musicnn(float_onnx, p, block=block)
            out.append((name, p, "ALL", f"models.quantize.prune_musicnn, block {block}, {info.macs_per_patch / 1e6:.0f} MMAC/patch"))
    if want("pruned-int8") or want("pruned-int8-rr"):
        base = work / "pruned_base.onnx"
        q.prune_musicnn(float_onnx, base)
        if want("pruned-int8"):
            p = work / "pruned_int8.onnx"
            int8_convs(base, p, cal)
            out.append(("pruned-int8", p, "ALL", "pruned + QDQ U8S8 timbral convs"))
        if want("pruned-int8-rr"):
            p = work / "pruned_int8_rr.onnx"
            int8_convs(base, p, cal, reduce_range=True)
            out.append(("pruned-int8-rr", p, "ALL", "same, reduce_range (7-bit weights, AVX2-safe)"))
    return out


def _conv_names(path: Path) -> list[str]:
    import onnx

    m = onnx.load(str(path))
    return [n.name or f"Conv_{i}" for i, n in enumerate(m.graph.node) if n.op_type == "Conv"]


# ----------------------------------------------------------------------------- main


def cpu_summary() -> str:
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    if "avx512f" in flags:
        path = "MLAS: AVX-512F SGEMM/NCHWc (block 16)"
    else:
        path = "MLAS: AVX2/FMA SGEMM/NCHWc (block 8)"
    if "avx512_vnni" in flags:
        path += ", U8S8 QGEMM with AVX-512 VNNI (vpdpbusds, no saturation)"
    elif "avx_vnni" in flags:
        path += ", U8S8 QGEMM with AVX-VNNI"
    else:
        path += ", U8S8 QGEMM with vpmaddubsw (int16 pair sums can saturate: use reduce_range)"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, ISA {' '.join(isa)}; {path}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--only", default=None, help="comma-separated variant names")
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    only = set(args.only.split(",")) if args.only else None

    import onnxruntime as ort

    from models import paths, registry
    from models.export import ensure_onnx

    models_dir = paths.models_dir()
    float_onnx = ensure_onnx(registry.get("musicnn"))
    heads_onnx = {"emo": ensure_onnx(registry.get("emomusic")), "moods": ensure_onnx(registry.get("moods_mirex"))}

    print(f"CPU: {cpu_summary()}")
    print(f"onnxruntime {ort.__version__}; load average before: {os.getloadavg()[0]:.2f}")
    print(f"Reference: essentia-tensorflow on {len(EVAL_TRACKS)} evaluation tracks ...", file=sys.stderr)
    evals, cal, tf_ms = load_data(models_dir)
    tf_ms *= 1000
    heads = {k: session(p, 1) for k, p in heads_onnx.items()}
    x = evals[0]["patches"]
    print(
        f"{len(evals)} evaluation tracks x {x.shape[0]} patches; {len(cal)} calibration patches from "
        f"{len(CALIBRATION_TRACKS)} other tracks; essentia-tensorflow TensorflowPredictMusiCNN "
        f"(one output, its own thread pool): {tf_ms:.0f} ms per clip"
    )

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, level, desc in build_variants(float_onnx, cal, Path(tmp), only):
            row = dict(name=name, desc=desc)
            s1 = session(path, 1, level)
            row.update(parity(s1, heads, evals))
            for th in threads:
                s = s1 if th == 1 else session(path, th, level)
                row[f"ms{th}"], row[f"min{th}"], row[f"cpu{th}"] = timing(s, x, args.runs)
            if name in ("float", "pruned-b16", "pruned-b8"):
                # batch size: 4 clips (76 patches) run in chunks of b, per clip
                xs = np.concatenate([v["patches"] for v in evals[:4]])
                row["batches"] = {b: timing(s1, xs, max(3, args.runs // 2), b)[0] / 4 for b in (1, 4, 19, 64)}
            rows.append(row)
            print(f"  measured {name}", file=sys.stderr, flush=True)

    base = next((r for r in rows if r["name"] == "float"), None)
    head = (
        "| variant | "
        + " | ".join(f"{t} thr ms/clip, median ({'CPU' if t == 1 else 'min'})" for t in threads)
        + " | ×float (1 thr) | patch cos min / mean | track cos min | emo Δmax | moods Δmax | MSD tags Δmax |"
    )
    print()
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        times = " | ".join(
            f"{r[f'ms{t}']:.0f} ({r[f'cpu{t}'] if t == 1 else r[f'min{t}']:.0f})" for t in threads
        )
        speed = f"{base['ms1'] / r['ms1']:.1f}" if base and 1 in threads else "-"
        print(
            f"| {r['name']} | {times} | {speed} | {r['patch_min']:.6f} / {r['patch_mean']:.6f} | "
            f"{r['track_min']:.6f} | {r['emo']:.2g} | {r['moods']:.2g} | {r['tags']:.2g} |"
        )
    batched = [r for r in rows if "batches" in r]
    if batched:
        print("\nBatch size (1 thread, 4 clips = 76 patches run in chunks of b; ms per clip, median):")
        print("| variant | b=1 | b=4 | b=19 | b=64 |\n|---|---|---|---|---|")
        for r in batched:
            print(f"| {r['name']} | " + " | ".join(f"{r['batches'][b]:.0f}" for b in (1, 4, 19, 64)) + " |")
    print()
    for r in rows:
        print(f"  {r['name']}: {r['desc']}")
    print(f"\nload average after: {os.getloadavg()[0]:.2f} (timings are unreliable when it exceeds the free cores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
