"""The batched model stage: mel spectrograms of many files in, model outputs out.

Loads every model that is present once (converting .pb files to ONNX on first use),
patches each file's mel spectrogram the way Essentia's wrappers do, runs each
backbone with its heads over the patches of a whole batch of files, and TempoCNN
over its own patches. A missing model is reported once in plain words, with the
command that fetches it, and the stage goes on with what is available.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

from engine.analysis import FileAnalysis
from models import registry
from models.errors import ModelError
from models.inference import EmbeddingPipeline, OnnxModel, RuntimeOptions, TrackOutputs, load
from models.registry import ModelSpec, Role

log = logging.getLogger(__name__)

SPACES = ("musicnn", "effnet", "mtt")  # embedding spaces = backbone names


@dataclass
class ModelOutputs:
    """One file's model outputs; a space is absent when its backbone is unavailable."""

    spaces: dict[str, TrackOutputs] = field(default_factory=dict)
    tempocnn: tuple[float, float] | None = None  # (bpm, confidence)


class ModelStage:
    """Every available model, loaded once.

    Parameters
    ----------
    options : RuntimeOptions
        Threads, device and batch size for onnxruntime.
    spaces : sequence of str
        Backbones to run (default both); a missing backbone is skipped with a note.
    """

    def __init__(self, options: RuntimeOptions | None = None, spaces: Sequence[str] = SPACES):
        from models.fetch import present

        self.options = options or RuntimeOptions.from_env()
        self.pipelines: dict[str, EmbeddingPipeline] = {}
        self.labels: dict[str, tuple[str, ...]] = {}
        self.notes: list[str] = []
        self.tempocnn: OnnxModel | None = None

        def try_load(spec: ModelSpec) -> OnnxModel | None:
            if not present(spec):
                return None  # reported by missing_models_note, once per build
            try:
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
        # graph (mtt on musicnn) also share its patches, so they add only their inference.
        cut: dict[str, list] = {}
        for space, pipeline in self.pipelines.items():
            if spaces is not None and space not in spaces:
                continue
            spec = pipeline.backbone.spec
            idx = [i for i, a in enumerate(analyses) if a.mel is not None]
            key = spec.template or spec.name
            if key not in cut:
                cut[key] = [frontend.model_patches(spec, analyses[i].mel) for i in idx]
            per_track = cut[key]
            for i, outputs in zip(idx, pipeline.predict(per_track)):
                if outputs.embedding is not None:
                    results[i].spaces[space] = outputs
        if self.tempocnn is not None:
            for res, a in zip(results, analyses):
                if a.tempocnn_input is not None and len(a.tempocnn_input):
                    probs = self.tempocnn.run(a.tempocnn_input)["predictions"]
                    res.tempocnn = frontend.tempo_from_activations(probs)
        return results


def available_spaces(spaces: Sequence[str] = SPACES) -> tuple[str, ...]:
    """Spaces whose backbone files are present: cheap (no session is opened)."""
    from models.fetch import present

    return tuple(s for s in spaces if present(registry.get(s)))


def missing_models_note(spaces: Sequence[str] = SPACES) -> str | None:
    """The plain-words note about missing models a build prints once, or None."""
    from models.fetch import present

    wanted = [registry.get(s) for s in spaces]
    for space in spaces:
        if present(registry.get(space)):
            wanted += list(registry.heads_of(space))
    wanted.append(registry.get("tempocnn"))
    missing = [s for s in wanted if not present(s)]
    return _missing_note(missing) if missing else None


def _missing_note(missing: list[ModelSpec]) -> str:
    backbones = [s for s in missing if s.role is Role.BACKBONE]
    names = " ".join(s.name for s in missing)
    what = "; ".join(f"{s.name} ({s.enables})" for s in backbones) or ", ".join(s.name for s in missing)
    from models import paths

    return (
        f"models not installed, their outputs stay empty: {what}. "
        f"Fetch them with `engine models fetch {names}` (into {paths.models_dir()}), "
        "then run the build again: only the missing outputs are computed."
    )

