"""Batched ONNX inference: backbones over mel patches, heads over their embeddings.

Execution provider is chosen at run time: CUDA when onnxruntime-gpu is installed
and a GPU answers, else CPU (``device="auto"``); ``ENGINE_DEVICE=cpu|cuda|auto``
overrides. Batching works across patches and across tracks: the patches of many
tracks are stacked into one array, run in chunks of ``batch_size`` and split back (on
CPU, a backbone whose patches overlap runs track by track instead, sharing the work of
the overlap: :mod:`models.frontsplit`).
Heads run on the backbone's per-patch embeddings (as Essentia's
``TensorflowPredict2D`` does); predictions are then averaged over a track's patches,
and the per-patch embeddings are averaged into the track's similarity vector.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from models.errors import ModelError
from models.registry import ModelSpec, Role

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# Rows per session.run by default (RuntimeOptions.batch_size): patch models take one
# patch per run on CPU, heads every embedding row of a batch at once.
_CPU_PATCH_BATCH = 1
_CPU_HEAD_BATCH = 4096
_GPU_BATCH = 64


@dataclass(frozen=True)
class RuntimeOptions:
    """How onnxruntime runs.

    Parameters
    ----------
    threads : int
        Intra-op threads per session; 0 lets onnxruntime use every core.
    device : {"auto", "cpu", "cuda"}
        "auto" takes CUDA when it is installed and a GPU is present.
    batch_size : int
        Rows per ``session.run`` call; 0 (the default) means 64 on CUDA and, on CPU, one
        patch per call for a patch model (backbones, TempoCNN) and all rows at once for a
        head. On CPU one patch's activations stay in the core's cache: per patch, one
        thread, MTT MusiCNN 8.1 ms at 1 per call against 8.9 at 16, MSD MusiCNN 3.1 / 3.5,
        TempoCNN 1.07 / 1.48 (EffNet's backbone is not available here: unmeasured); larger
        batches also grow onnxruntime's memory arena (the two MusiCNNs of a build peaked
        at 1,407 MB RSS with 64 per call, 619 MB with 16).
    """

    threads: int = 0
    device: str = "auto"
    batch_size: int = 0

    @classmethod
    def from_env(cls, **overrides) -> "RuntimeOptions":
        device = os.environ.get("ENGINE_DEVICE", "auto")
        return cls(**{"device": device, **overrides})


def select_providers(device: str = "auto") -> list[str]:
    """Execution providers to request, best first; CPU is always the fallback."""
    import onnxruntime as ort

    if device not in ("auto", "cpu", "cuda"):
        raise ModelError(f"unknown device {device!r}; use auto, cpu or cuda")
    available = ort.get_available_providers()
    if device == "cpu":
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if device == "cuda":
        raise ModelError(
            "device 'cuda' requested but onnxruntime has no CUDA provider: "
            "pip install 'music-engine[gpu]' (onnxruntime-gpu) on a machine with an NVIDIA GPU"
        )
    return [CPU]


class OnnxModel:
    """One model's onnxruntime session, with its registry entry for tensor names."""

    def __init__(self, spec: ModelSpec, onnx_file: Path, options: RuntimeOptions):
        self.spec = spec
        self.options = options
        self.session = self._session(onnx_file)
        self.input_name = self.session.get_inputs()[0].name
        self._purposes = list(spec.outputs)
        self._output_names = _resolve_outputs(spec, self.session.get_outputs())

    def _session(self, onnx_file: Path):
        """An onnxruntime session on ``onnx_file`` with this model's options."""
        import onnxruntime as ort

        options, spec = self.options, self.spec
        so = ort.SessionOptions()
        so.intra_op_num_threads = options.threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        # No busy-waiting between ops: in a build the model stage shares the cores with
        # the analysis workers, and spinning threads burn their CPU (measured: 0.20 vs
        # 0.15 CPU-s per track for MusiCNN + heads + TempoCNN, 2 threads, 2 busy workers).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = select_providers(options.device)
        session = ort.InferenceSession(str(onnx_file), so, providers=providers)
        if options.device == "cuda" and CUDA not in session.get_providers():
            # onnxruntime-gpu lists CUDA even without a usable GPU and falls back silently.
            raise ModelError(f"CUDA requested for {spec.name} but no GPU could be used")
        return session

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    @property
    def batch_size(self) -> int:
        """Rows per run: the option, or by default 64 on CUDA; on CPU 1 for a patch
        model and 4096 for a head (see RuntimeOptions)."""
        if self.options.batch_size > 0:
            return self.options.batch_size
        if CUDA in self.providers:
            return _GPU_BATCH
        return _CPU_HEAD_BATCH if self.spec.role is Role.HEAD else _CPU_PATCH_BATCH

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run over axis 0 of ``x`` in chunks of ``batch_size``; returns purpose -> array."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        n = x.shape[0]
        if n == 0:
            return {p: np.zeros((0, 0), np.float32) for p in self._purposes}
        step = self.batch_size
        return self._gather(self.session.run(self._output_names, {self.input_name: x[start : start + step]})
                            for start in range(0, n, step))

    def _gather(self, runs) -> dict[str, np.ndarray]:
        """Purpose -> rows of every run, from an iterable of runs' outputs (one list per
        run, in ``_output_names`` order)."""
        chunks: list[list[np.ndarray]] = [[] for _ in self._output_names]
        for outs in runs:
            for acc, out in zip(chunks, outs):
                acc.append(out.reshape(out.shape[0], -1))
        return {p: np.concatenate(acc) for p, acc in zip(self._purposes, chunks)}

    #: Whether :meth:`run_track` shares work between a track's overlapping patches (then
    #: backbones run track by track, not on every track's patches stacked together).
    shares_patches = False

    def run_track(self, patches: np.ndarray, hop: int) -> dict[str, np.ndarray]:
        """:meth:`run` over one track's ``patches``, cut every ``hop`` frames (a model that
        can share work between overlapping patches overrides this: models.frontsplit)."""
        del hop
        return self.run(patches)


def _resolve_outputs(spec: ModelSpec, outputs) -> list[str]:
    """Session output names for the spec's purposes, in the spec's order.

    Converted graphs keep TensorFlow's tensor names. The official EffNet ONNX names
    its tensors its own way, so where a name is absent the output is matched by
    width: ``embedding_dim`` for embeddings, ``n_outputs`` for predictions.
    """
    by_name = {o.name: o for o in outputs}
    widths = {"embeddings": spec.embedding_dim, "predictions": spec.n_outputs}
    names = []
    for purpose, tensor in spec.outputs.items():
        if tensor in by_name:
            names.append(tensor)
            continue
        want = widths.get(purpose)
        match = [o.name for o in outputs if o.shape and o.shape[-1] == want]
        if len(match) != 1:
            found = ", ".join(f"{o.name}{o.shape}" for o in outputs)
            raise ModelError(
                f"{spec.name}: cannot find its {purpose} output ({tensor}) among {found}"
            )
        names.append(match[0])
    return names


@dataclass
class TrackOutputs:
    """A track's model outputs.

    ``embedding`` is the mean of the per-patch embeddings (None when the track gave
    no patch); ``predictions`` maps a model name (the backbone's own outputs under
    its name, and each head's) to its prediction vector averaged over patches.
    """

    n_patches: int
    embedding: np.ndarray | None
    predictions: dict[str, np.ndarray] = field(default_factory=dict)


class EmbeddingPipeline:
    """A backbone and the heads that read its embeddings, run batched across tracks."""

    def __init__(
        self,
        backbone: OnnxModel,
        heads: Sequence[OnnxModel] = (),
    ):
        if backbone.spec.role is not Role.BACKBONE:
            raise ModelError(f"{backbone.spec.name} is not an embedding backbone")
        for head in heads:
            if head.spec.backbone != backbone.spec.name:
                raise ModelError(
                    f"head {head.spec.name} reads {head.spec.backbone} embeddings, "
                    f"not {backbone.spec.name}"
                )
        self.backbone = backbone
        self.heads = list(heads)

    def patch_outputs(self, patches: np.ndarray) -> dict[str, np.ndarray]:
        """Per-patch outputs for stacked patches [n, frames, bands].

        Returns the backbone's ``embeddings`` and each model's per-patch predictions
        (keyed by model name).
        """
        return self._with_heads(self.backbone.run(patches))

    def _with_heads(self, out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The backbone's per-patch outputs ``out`` renamed as :meth:`patch_outputs` returns
        them, with every head run on the embeddings."""
        embeddings = out["embeddings"]
        result = {"embeddings": embeddings}
        if "predictions" in out:
            result[self.backbone.spec.name] = out["predictions"]
        for head in self.heads:
            result[head.spec.name] = head.run(embeddings)["predictions"]
        return result

    def predict(self, tracks: Sequence[np.ndarray]) -> list[TrackOutputs]:
        """Outputs for several tracks' patches ([n_i, frames, bands] each, cut every
        ``patch_hop`` frames of the backbone's spec), the heads in one batch."""
        counts = [int(t.shape[0]) for t in tracks]
        nonempty = [t for t in tracks if t.shape[0]]
        if not nonempty:
            return [TrackOutputs(0, None) for _ in tracks]
        hop = self.backbone.spec.patch_hop
        if hop is None or not self.backbone.shares_patches:
            per_patch = self.patch_outputs(np.concatenate(nonempty))
        else:  # track by track: overlapping patches share work (models.frontsplit)
            runs = [self.backbone.run_track(t, hop) for t in nonempty]
            per_patch = self._with_heads({k: np.concatenate([r[k] for r in runs]) for k in runs[0]})
        results: list[TrackOutputs] = []
        start = 0
        for n in counts:
            if n == 0:
                results.append(TrackOutputs(0, None))
                continue
            rows = slice(start, start + n)
            start += n
            emb = per_patch["embeddings"][rows].mean(axis=0)
            preds = {k: v[rows].mean(axis=0) for k, v in per_patch.items() if k != "embeddings"}
            results.append(TrackOutputs(n, emb, preds))
        return results


def load(spec: ModelSpec, options: RuntimeOptions | None = None) -> OnnxModel:
    """Open ``spec``'s ONNX session, converting its .pb first if needed (cached)."""
    from models.export import ensure_onnx, front_split

    onnx_file = ensure_onnx(spec)
    options = options or RuntimeOptions.from_env()
    split = front_split(onnx_file)
    # On a GPU, batches across tracks matter more than the timbral work saved.
    if split is not None and select_providers(options.device) == [CPU]:
        from models.frontsplit import FrontSplitModel

        return FrontSplitModel(spec, onnx_file, split, options)
    return OnnxModel(spec, onnx_file, options)
