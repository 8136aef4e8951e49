"""Turn one file's analysis and model outputs into the store's rows (index.schema names)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from engine import tempo
from engine.analysis import FileAnalysis
from engine.modelstage import ModelOutputs, too_short_reason
from index.store import TrackRecord
from models import registry

# Binary heads stored as a probability column: head name -> tracks column.
HEAD_COLUMNS = {
    "voice_instrumental": "voice",
    "danceability": "danceable",
    "mood_happy": "mood_happy",
    "mood_sad": "mood_sad",
    "mood_relaxed": "mood_relaxed",
    "mood_aggressive": "mood_aggressive",
}
STYLE_SEPARATOR = "---"  # Discogs labels are 'Genre---Style'


def file_columns(a: FileAnalysis) -> dict[str, Any]:
    """Columns known without models: file facts, tags, DSP descriptors and quality."""
    t = a.task
    cols: dict[str, Any] = {
        "file_size": t.file_size,
        "mtime_ns": t.mtime_ns,
        "content_hash": t.content_hash,
        "analysed_seconds": a.analysed_seconds,
        "truncated": a.truncated,
    }
    if a.facts is not None:
        f = a.facts
        cols.update(
            duration=f.duration,
            sample_rate=f.sample_rate,
            channels=f.channels,
            codec=f.codec,
            container=f.container,
            bitrate=f.bitrate,
        )
    if a.tags is not None:
        g = a.tags
        cols.update(
            artist=g.artist,
            title=g.title,
            album=g.album,
            album_artist=g.album_artist,
            year=g.year,
            tag_genre=g.genre,
            track_number=g.track_number,
        )
    if a.dsp is not None:
        d = a.dsp
        cols.update(bpm=d.tempo.bpm, bpm_confidence=d.tempo.confidence, danceability=d.danceability)
        for profile, key in d.keys.items():
            cols[f"key_{profile}"] = key.key
            cols[f"scale_{profile}"] = key.scale
            cols[f"key_strength_{profile}"] = key.strength
        cols.update(
            loudness_lufs=d.loudness.integrated_lufs,
            loudness_range_lu=d.loudness.range_lu,
            true_peak_dbtp=d.loudness.true_peak_dbtp,
        )
    if a.quality is not None:
        cols.update(a.quality.columns())
    if a.band_levels is not None:
        cols["band_levels"] = [float(v) for v in a.band_levels]
    notes = list(a.warnings) + _undefined_values(cols)
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
    a: FileAnalysis,
    m: ModelOutputs,
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
    """
    cols = file_columns(a) if with_file_columns else {}
    for space in ran:  # ran, but too little audio for one patch: false, so not run again
        cols[f"has_{space}"] = False
    rec = TrackRecord(path=a.task.path, columns=cols)
    if m.tempocnn is not None:
        cols["bpm_tempocnn"] = m.tempocnn[0]
    if with_file_columns and a.dsp is not None:
        # The tempo octave needs TempoCNN, which runs here in the model stage, after the
        # per-file analysis: the decision is made where both are known.
        decided = tempo.decide(a.dsp.tempo, m.tempocnn_probs)
        cols.update(bpm=decided.bpm, bpm_confidence=decided.confidence)
    for space in m.too_short:
        cols[f"has_{space}"] = False  # ran and cannot: the next build does not ask again
    if m.too_short or with_file_columns:
        # About every space, so an update that adds one model keeps the others' reason.
        cols["no_output_reason"] = (
            (too_short_reason(a.analysed_seconds) or f"too short for {' and '.join(m.too_short)}")
            if m.too_short else None)

    musicnn = m.spaces.get("musicnn")
    if musicnn is not None:
        cols["has_musicnn"] = True
        rec.embeddings["musicnn"] = musicnn.embedding
        p = musicnn.predictions
        if "emomusic" in p:
            emo = dict(zip(labels["emomusic"], p["emomusic"]))  # ('valence', 'arousal')
            cols["valence"], cols["arousal"] = float(emo["valence"]), float(emo["arousal"])
        if "moods_mirex" in p:
            cols["mirex_mood"] = labels["moods_mirex"][int(np.argmax(p["moods_mirex"]))]
        for source in ("musicnn", "moods_mirex"):
            if source in p:
                rec.tags += _rows(source, labels[source], p[source])

    mtt = m.spaces.get("mtt")
    if mtt is not None:
        cols["has_mtt"] = True
        rec.embeddings["mtt"] = mtt.embedding
        if "mtt" in mtt.predictions:
            rec.tags += _rows("mtt", labels["mtt"], mtt.predictions["mtt"])

    effnet = m.spaces.get("effnet")
    if effnet is not None:
        cols["has_effnet"] = True
        rec.embeddings["effnet"] = effnet.embedding
        p = effnet.predictions
        # The genre_discogs400 head is Essentia's recommended style classifier; the
        # backbone's own 400 outputs stand in when the head is absent.
        style_source = "genre_discogs400" if "genre_discogs400" in p else "effnet"
        if style_source in p:
            acts = p[style_source]
            names = labels[style_source]
            for label, act in zip(names, acts):
                genre, _, style = label.partition(STYLE_SEPARATOR)
                rec.styles.append((genre, style or genre, float(act)))
            best = int(np.argmax(acts))
            genre, _, style = names[best].partition(STYLE_SEPARATOR)
            cols.update(top_style=style or genre, top_style_activation=float(acts[best]), genre=genre)
        for head, column in HEAD_COLUMNS.items():
            if head in p:
                spec = registry.get(head)
                cols[column] = float(p[head][labels[head].index(spec.positive_class)])
        for head in registry.heads_of("effnet"):
            if head.name in p and head.name not in HEAD_COLUMNS and head.name != "genre_discogs400":
                rec.tags += _rows(head.name, labels[head.name], p[head.name])
    return rec


def _rows(source: str, names: tuple[str, ...], acts: np.ndarray) -> list[tuple[str, str, float]]:
    return [(source, name, float(v)) for name, v in zip(names, acts)]
