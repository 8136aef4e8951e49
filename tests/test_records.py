"""One place per column: each result type names its own columns, each head its own.

engine/records.py derives a track's row from the results' ``columns()`` and the model
registry; these tests hold that every name it writes is declared in index/schema.py and
that every declared column has a writer, so a new column cannot be half added.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.analysis import AnalysisTask, FileAnalysis
from engine.decode import FileFacts
from engine.descriptors import DspDescriptors, Key, Loudness, Tempo
from engine.modelstage import ModelOutputs
from engine.quality import QUALITY_COLUMNS
from engine.records import build_record, file_columns
from engine.tags import Tags
from index.schema import KEY_PROFILES, TRACK_COLUMN_NAMES, TRACK_COLUMNS
from models import registry
from models.inference import TrackOutputs

# Columns the record or the store fills itself, not a result type or a model.
OWN_COLUMNS = {"track_id", "path", "path_bytes", "analysed_at", "file_size", "mtime_ns", "content_hash",
               "analysed_seconds", "truncated", "notes", "band_levels", "no_output_reason",
               *(f"has_{s}" for s in registry.SPACES)}


def _analysis(**parts) -> FileAnalysis:
    task = AnalysisTask("/music/a.flac", file_size=1, mtime_ns=2, content_hash="h")
    return FileAnalysis(task, analysed_seconds=30.0, **parts)


def _dsp(bpm: float = 120.0) -> DspDescriptors:
    keys = {p: Key("A", "minor", 0.5 + i / 10) for i, p in enumerate(KEY_PROFILES)}
    return DspDescriptors(Tempo(bpm, 0.4, "multifeature"), keys, Loudness(-9.0, 5.0, -math.inf), 1.2)


def test_result_types_fill_only_declared_columns_and_every_file_column_has_a_writer():
    facts = FileFacts(duration=30.0, sample_rate=44100, channels=2, codec="flac", bitrate=None, container="flac")
    written = set(facts.columns()) | set(Tags().columns()) | set(_dsp().columns()) | set(QUALITY_COLUMNS)
    assert written <= set(TRACK_COLUMN_NAMES)
    file_level = {c.name for c in TRACK_COLUMNS if not c.needs}
    assert file_level - written - OWN_COLUMNS == set()


def test_file_columns_come_from_the_results_with_undefined_values_noted():
    cols = file_columns(_analysis(tags=Tags(artist="X", genre="Dub"), dsp=_dsp(bpm=math.nan)))
    assert cols["artist"] == "X" and cols["tag_genre"] == "Dub"
    assert cols["key_edma"] == "A" and cols["key_strength_edma"] == pytest.approx(0.7)
    assert cols["loudness_lufs"] == -9.0 and cols["bpm"] is None and cols["true_peak_dbtp"] is None
    assert cols["notes"] == "bpm not measurable; true_peak_dbtp not measurable (-inf dB: no signal)"


def test_model_columns_are_declared_with_the_models_they_need():
    declared = {c.name: c for c in TRACK_COLUMNS}
    heads = [s for s in registry.MODELS.values() if s.column is not None]
    assert heads, "no head stores a column"
    for head in heads:
        column = declared.get(head.column)
        assert column is not None, f"{head.name}: column {head.column!r} is not declared in index/schema.py"
        assert column.sql_type == "DOUBLE" and column.needs == (head.backbone, head.name)
        assert head.positive_class is not None


def test_binary_heads_fill_their_column_and_other_classifier_heads_fill_tags():
    labels, predictions = {}, {}
    for head in registry.heads_of("effnet") + registry.heads_of("musicnn"):
        n = head.n_outputs
        names = tuple(f"{head.name}-{i}" for i in range(n))
        if head.positive_class:  # the positive class second, as in voice_instrumental's .json
            names = (f"not-{head.positive_class}", head.positive_class)
        labels[head.name] = names
        predictions[head.name] = np.linspace(0.1, 0.9, n, dtype=np.float32)
    labels["genre_discogs400"] = tuple(f"Genre---Style {i}" for i in range(400))
    spaces = {
        "effnet": TrackOutputs(3, np.zeros(1280, np.float32),
                               {h.name: predictions[h.name] for h in registry.heads_of("effnet")}),
        "musicnn": TrackOutputs(3, np.zeros(200, np.float32),
                                {h.name: predictions[h.name] for h in registry.heads_of("musicnn")}),
    }
    labels["emomusic"] = ("valence", "arousal")
    rec = build_record(_analysis(), ModelOutputs(spaces=spaces), labels, with_file_columns=False)

    for head in registry.heads_of("effnet"):
        if head.column:
            assert rec.columns[head.column] == pytest.approx(0.9)  # the positive class's probability
    sources = {source for source, _, _ in rec.tags}
    assert sources == {"moods_mirex", "mtg_jamendo_genre", "mtg_jamendo_moodtheme", "mtg_jamendo_top50tags",
                       "gender", "engagement", "nsynth_instrument"}
    assert len(rec.styles) == 400 and rec.columns["top_style"] == "Style 399"
    assert rec.columns["valence"] == pytest.approx(0.1) and rec.columns["arousal"] == pytest.approx(0.9)
