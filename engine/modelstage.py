"""The batched model stage: mel spectrograms of many files in, model outputs out.

Loads every model that is present once (converting .pb files to ONNX on first use),
patches each file's mel spectrogram the way Essentia's wrappers do, runs each
backbone with its heads over the patches of a whole batch of files, and TempoCNN
over its own patches. A missing model is reported once in plain words, with the
command that fetches it, and the stage goes on with what is available.
"""

from __future__ import annotations

import functools
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from engine.analysis import FileAnalysis
from models import registry
from models.errors import ModelError
from models.inference import EmbeddingPipeline, OnnxModel, RuntimeOptions, TrackOutputs, load
from models.registry import SPACES, ModelSpec, Role

log = logging.getLogger(__name__)

# Seconds to convert one TensorFlow graph to ONNX, for the first build's estimate.
# Measured: 7.0-10.0 CPU-s per model (emomusic 82 KB ... musicnn 3.2 MB alike:
# the converter subprocess's TensorFlow import dominates), 2-core EPYC.
CONVERT_SECONDS = 8.0


@dataclass
class ModelOutputs:
    """One file's model outputs; a space is absent when its backbone is unavailable.

    ``too_short`` lists the spaces whose backbone ran but had no patch to take:
    the file is shorter than :func:`shortest_seconds`. The store records that, so
    the next build does not ask again.
    """

    spaces: dict[str, TrackOutputs] = field(default_factory=dict)
    tempocnn: tuple[float, float] | None = None  # (bpm, confidence) of its majority vote
    tempocnn_probs: np.ndarray | None = None  # [n_patches, 256] softmax, for the octave decision
    too_short: tuple[str, ...] = ()


class ModelStage:
    """Every available model, loaded once.

    Parameters
    ----------
    options : RuntimeOptions
        Threads, device and batch size for onnxruntime.
    spaces : sequence of str
        Backbones to run (default both); a missing backbone is skipped with a note.
    echo : callable, optional
        Gets a line per model converted to ONNX (the first build's only silent wait).
    present : frozenset of str, optional
        :func:`present_models` of ``spaces``, when the caller has it already (a build
        asks once); else looked up here.
    """

    def __init__(self, options: RuntimeOptions | None = None, spaces: Sequence[str] = SPACES,
                 *, echo: Callable[[str], None] | None = None, present: frozenset[str] | None = None):
        if present is None:
            present = present_models(spaces)
        self.options = options or RuntimeOptions.from_env()
        self.pipelines: dict[str, EmbeddingPipeline] = {}
        self.labels: dict[str, tuple[str, ...]] = {}
        self.notes: list[str] = []
        self.tempocnn: OnnxModel | None = None
        progress = _ConversionProgress(_to_convert(spaces, present), echo)

        def try_load(spec: ModelSpec) -> OnnxModel | None:
            if spec.name not in present:
                return None  # reported by missing_models_note, once per build
            try:
                with progress.step(spec):
                    model = load(spec, self.options)
            except ModelError as exc:
                self.notes.append(f"{spec.name} unavailable: {exc}")
                return None
            if spec.metadata is not None or spec.label_list is not None:
                from models import paths

                meta = paths.models_dir() / spec.metadata.filename if spec.metadata else None
                self.labels[spec.name] = registry.labels(spec, meta)
            return model

        for space in spaces:
            backbone = try_load(registry.get(space))
            if backbone is None:
                continue
            heads = [m for m in map(try_load, registry.heads_of(space)) if m is not None]
            self.pipelines[space] = EmbeddingPipeline(backbone, heads)
        self.tempocnn = try_load(registry.get("tempocnn"))

    @property
    def spaces(self) -> tuple[str, ...]:
        return tuple(self.pipelines)

    @property
    def model_names(self) -> tuple[str, ...]:
        names = []
        for p in self.pipelines.values():
            names += [p.backbone.spec.name] + [h.spec.name for h in p.heads]
        return tuple(names) + (("tempocnn",) if self.tempocnn else ())

    def run(self, analyses: Sequence[FileAnalysis], spaces: Sequence[str] | None = None) -> list[ModelOutputs]:
        """Model outputs for a batch of analysed files, in the same order."""
        from models import frontend

        results = [ModelOutputs() for _ in analyses]
        # One mel spectrogram per file feeds every backbone; backbones built on another's
        # graph (mtt on musicnn) cut their patches from it too, so they add only their
        # inference (and share the patches themselves where the hops agree).
        cut: dict[tuple[str, int | None], list] = {}
        for space, pipeline in self.pipelines.items():
            if spaces is not None and space not in spaces:
                continue
            spec = pipeline.backbone.spec
            idx = [i for i, a in enumerate(analyses) if a.mel is not None]
            key = (spec.template or spec.name, spec.patch_hop)
            if key not in cut:
                cut[key] = [frontend.model_patches(spec, analyses[i].mel) for i in idx]
            per_track = cut[key]
            for i, outputs in zip(idx, pipeline.predict(per_track)):
                if outputs.embedding is not None:
                    results[i].spaces[space] = outputs
                else:  # no patch: shorter than one patch of this backbone
                    results[i].too_short += (space,)
        if self.tempocnn is not None:
            for res, a in zip(results, analyses):
                if a.tempocnn_input is not None and len(a.tempocnn_input):
                    probs = self.tempocnn.run(a.tempocnn_input)["predictions"]
                    res.tempocnn = frontend.tempo_from_activations(probs)
                    res.tempocnn_probs = probs
        return results


@functools.lru_cache(maxsize=None)
def shortest_frames(space: str) -> int:
    """Fewest mel frames (:func:`models.frontend.mel_bands`) that give ``space`` one patch."""
    from models import frontend

    spec = registry.get(space)
    n = spec.patch_frames
    while not len(frontend.model_patches(spec, np.zeros((n, registry.MEL.n_mels), np.float32))):
        n += 1  # EffNet's wrapper drops the last frame: one more
    return n


def shortest_seconds(space: str) -> float:
    """Shortest audio, in seconds, that ``space``'s backbone can take (musicnn ≈ 2.96, effnet ≈ 2.03).

    ``mel_bands`` cuts ``ceil(n / hop) + 1`` centred frames from ``n`` samples.
    """
    mel = registry.MEL
    return ((shortest_frames(space) - 2) * mel.hop_size + 1) / mel.sample_rate


def too_short_reason(seconds: float, spaces: Sequence[str] = SPACES) -> str | None:
    """Why a file of ``seconds`` has no output in some of ``spaces``, or None.

    E.g. ``too short for musicnn and effnet: 0.20 s of audio (musicnn needs 2.96 s, effnet 2.03 s)``.
    """
    short = [s for s in spaces if seconds < shortest_seconds(s)]
    if not short:
        return None
    needs = ", ".join(f"{s} {'needs ' if i == 0 else ''}{shortest_seconds(s):.2f} s"
                      for i, s in enumerate(short))
    names = " and ".join(short) if len(short) < 3 else ", ".join(short[:-1]) + " and " + short[-1]
    return f"too short for {names}: {seconds:.2f} s of audio ({needs})"


def present_models(spaces: Sequence[str] = SPACES) -> frozenset[str]:
    """Names of the models a stage over ``spaces`` can use whose files are in place.

    The backbones, all their heads and TempoCNN, each checked once (file existence, no
    hashing): a build asks this once and passes the answer on.
    """
    from models.paths import present

    candidates = [registry.get(s) for s in spaces]
    candidates += [h for s in spaces for h in registry.heads_of(s)] + [registry.get("tempocnn")]
    return frozenset(spec.name for spec in candidates if present(spec))


def _wanted(spaces: Sequence[str], present: frozenset[str]) -> list[ModelSpec]:
    """The models a stage over ``spaces`` wants: the backbones, the heads of those present, TempoCNN."""
    wanted = [registry.get(s) for s in spaces]
    for space in spaces:
        if space in present:
            wanted += list(registry.heads_of(space))
    return wanted + [registry.get("tempocnn")]


def _to_convert(spaces: Sequence[str], present: frozenset[str]) -> list[ModelSpec]:
    """Present models without a ready ONNX file (converted once, then cached)."""
    from models.export import export_available, onnx_path

    if not export_available():
        return []  # each load then fails with a note that names the `export` extra
    return [s for s in _wanted(spaces, present) if s.name in present and onnx_path(s) is None]


class _ConversionProgress:
    """Lines about the ONNX conversions of a first build: what, which one, how long."""

    def __init__(self, specs: list[ModelSpec], echo: Callable[[str], None] | None):
        self.specs, self.echo = specs, echo or (lambda line: None)
        self.done, self.spent = 0, 0.0
        if specs:
            self.echo(f"converting {len(specs)} model{'s' if len(specs) != 1 else ''} to ONNX, once (later builds reuse them; "
                      f"≈{len(specs) * CONVERT_SECONDS:.0f} s)")

    @contextmanager
    def step(self, spec: ModelSpec):
        if spec not in self.specs:
            yield
            return
        left = len(self.specs) - self.done
        per_model = self.spent / self.done if self.done else CONVERT_SECONDS
        self.echo(f"  converting {spec.name} ({self.done + 1}/{len(self.specs)}, "
                  f"≈{left * per_model:.0f} s left)")
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.done += 1
            self.spent += time.perf_counter() - t0


def available_spaces(spaces: Sequence[str] = SPACES, present: frozenset[str] | None = None) -> tuple[str, ...]:
    """Spaces whose backbone files are present (``present``: :func:`present_models`, looked
    up when not given): cheap, no session is opened."""
    if present is None:
        present = present_models(spaces)
    return tuple(s for s in spaces if s in present)


def missing_models_note(spaces: Sequence[str] = SPACES, present: frozenset[str] | None = None) -> str | None:
    """The plain-words note about missing models a build prints once, or None.

    ``present`` is :func:`present_models` of ``spaces``, looked up when not given.
    """
    if present is None:
        present = present_models(spaces)
    missing = [s for s in _wanted(spaces, present) if s.name not in present]
    return _missing_note(missing) if missing else None


def _missing_note(missing: list[ModelSpec]) -> str:
    backbones = [s for s in missing if s.role is Role.BACKBONE]
    names = " ".join(s.name for s in missing)
    what = "; ".join(f"{s.name} ({s.enables})" for s in backbones) or ", ".join(s.name for s in missing)
    from engine.errors import models_hint
    from models import paths

    return (
        f"models not in {paths.models_dir()}, their outputs stay empty: {what}. "
        f"To get them, {models_hint(names)}; then run the build again: only the missing "
        "outputs are computed."
    )

