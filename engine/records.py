"""Turn one file's analysis and model outputs into the store's rows (index.schema names)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from engine import tempo
from engine.analysis import FileAnalysis
from engine.modelstage import ModelOutputs, too_short_reason
from index.store import TrackRecord
from models import registry
from models.registry import Output

STYLE_SEPARATOR = "---"  # Discogs labels are 'Genre---Style'
STYLE_HEAD = "genre_discogs400"  # its outputs fill the styles table (top_style, genre)


def file_columns(analysis: FileAnalysis) -> dict[str, Any]:
    """Columns known without models: file facts, tags, DSP descriptors and quality.

    Each result type gives its own ``columns()`` (names declared in :mod:`index.schema`):
    a new descriptor is added there, beside the code that computes it, not here.
    """
    task = analysis.task
    cols: dict[str, Any] = {
        "file_size": task.file_size,
        "mtime_ns": task.mtime_ns,
        "content_hash": task.content_hash,
        "analysed_seconds": analysis.analysed_seconds,
        "truncated": analysis.truncated,
    }
    for part in (analysis.facts, analysis.tags, analysis.dsp, analysis.quality):
        if part is not None:
            cols.update(part.columns())
    if analysis.band_levels is not None:
        cols["band_levels"] = [float(v) for v in analysis.band_levels]
    notes = list(analysis.warnings) + _undefined_values(cols)
    cols["notes"] = "; ".join(notes) or None
    return cols


def _undefined_values(cols: dict[str, Any]) -> list[str]:
    """Set NaN and ±inf measures to NULL, saying which and why (e.g. a silent file has no
    true peak: -inf dBTP), so tables, JSON and CSV all show the same empty value."""
    notes = []
    for name, v in cols.items():
        if isinstance(v, (float, np.floating)) and not np.isfinite(v):
            cols[name] = None
            notes.append(f"{name} not measurable" + (f" ({v:+} dB: no signal)" if np.isinf(v) else ""))
    return notes


def build_record(
    analysis: FileAnalysis,
    outputs: ModelOutputs,
    labels: Mapping[str, tuple[str, ...]],
    *,
    with_file_columns: bool = True,
    ran: tuple[str, ...] = (),
) -> TrackRecord:
    """The store record for one file.

    With ``with_file_columns`` False only model columns are set, for a track whose
    descriptors are stored and which only gains outputs of a newly available model.
    ``ran`` names the spaces whose backbone ran on the file: ``has_<space>`` is then
    true or false (NULL means not run yet, which a later build makes up for).
    ``labels`` holds each loaded model's class labels by model name
    (:attr:`engine.modelstage.ModelStage.labels`).
    """
    cols = file_columns(analysis) if with_file_columns else {}
    for space in ran:  # ran, but too little audio for one patch: false, so not run again
        cols[f"has_{space}"] = False
    rec = TrackRecord(path=analysis.task.path, columns=cols)
    if outputs.tempocnn is not None:
        cols["bpm_tempocnn"] = outputs.tempocnn[0]
    if with_file_columns and analysis.dsp is not None:
        # The tempo octave needs TempoCNN, which runs here in the model stage, after the
        # per-file analysis: the decision is made where both are known.
        decided = tempo.decide(analysis.dsp.tempo, outputs.tempocnn_probs)
        cols.update(bpm=decided.bpm, bpm_confidence=decided.confidence)
    for space in outputs.too_short:
        cols[f"has_{space}"] = False  # ran and cannot: the next build does not ask again
    if outputs.too_short or with_file_columns:
        # About every space, so an update that adds one model keeps the others' reason.
        cols["no_output_reason"] = (
            (too_short_reason(analysis.analysed_seconds) or f"too short for {' and '.join(outputs.too_short)}")
            if outputs.too_short else None)

    musicnn = outputs.spaces.get("musicnn")
    if musicnn is not None:
        cols["has_musicnn"] = True
        rec.embeddings["musicnn"] = musicnn.embedding
        p = musicnn.predictions
        if "emomusic" in p:
            emo = dict(zip(labels["emomusic"], p["emomusic"]))  # ('valence', 'arousal')
            cols["valence"], cols["arousal"] = float(emo["valence"]), float(emo["arousal"])
        if "moods_mirex" in p:
            cols["mirex_mood"] = labels["moods_mirex"][int(np.argmax(p["moods_mirex"]))]
        if "musicnn" in p:
            rec.tags += _rows("musicnn", labels["musicnn"], p["musicnn"])
        _store_heads("musicnn", p, labels, rec)

    mtt = outputs.spaces.get("mtt")
    if mtt is not None:
        cols["has_mtt"] = True
        rec.embeddings["mtt"] = mtt.embedding
        if "mtt" in mtt.predictions:
            rec.tags += _rows("mtt", labels["mtt"], mtt.predictions["mtt"])
        _store_heads("mtt", mtt.predictions, labels, rec)

    effnet = outputs.spaces.get("effnet")
    if effnet is not None:
        cols["has_effnet"] = True
        rec.embeddings["effnet"] = effnet.embedding
        p = effnet.predictions
        # The genre_discogs400 head is Essentia's recommended style classifier; the
        # backbone's own 400 outputs stand in when the head is absent.
        style_source = STYLE_HEAD if STYLE_HEAD in p else "effnet"
        if style_source in p:
            acts = p[style_source]
            names = labels[style_source]
            for label, act in zip(names, acts):
                genre, _, style = label.partition(STYLE_SEPARATOR)
                rec.styles.append((genre, style or genre, float(act)))
            best = int(np.argmax(acts))
            genre, _, style = names[best].partition(STYLE_SEPARATOR)
            cols.update(top_style=style or genre, top_style_activation=float(acts[best]), genre=genre)
        _store_heads("effnet", p, labels, rec)
    return rec


def _store_heads(space: str, predictions: Mapping[str, np.ndarray],
                 labels: Mapping[str, tuple[str, ...]], rec: TrackRecord) -> None:
    """Store the outputs of ``space``'s heads as the registry says.

    A head with a ``column`` (models.registry) gives its positive class's probability in
    that ``tracks`` column; any other classifier head gives one ``tags`` row per class,
    source = its name. Regression heads (emoMusic) and the style head have columns and
    tables of their own, filled by :func:`build_record`.
    """
    for head in registry.heads_of(space):
        if head.name not in predictions:
            continue
        probs = predictions[head.name]
        if head.column is not None:
            rec.columns[head.column] = float(probs[labels[head.name].index(head.positive_class)])
        elif head.output_kind in (Output.SIGMOID, Output.SOFTMAX) and head.name != STYLE_HEAD:
            rec.tags += _rows(head.name, labels[head.name], probs)


def _rows(source: str, names: tuple[str, ...], acts: np.ndarray) -> list[tuple[str, str, float]]:
    return [(source, name, float(v)) for name, v in zip(names, acts)]
