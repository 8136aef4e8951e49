"""The store's SQL interface: every table and column, with its meaning, in one place.

This is the stable interface users query with ``engine sql``; docs/columns.md is
generated from it (``python docs/generate.py``, checked by tests/test_docs.py). Change
a name here and nowhere else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEMA_VERSION = 1

#: The key profiles the store has a key, scale and strength column for (``key_<profile>``,
#: ``scale_<profile>``, ``key_strength_<profile>``), in this order.
KEY_PROFILES = ("temperley", "krumhansl", "edma")
#: How the ``quality`` column is scored from the defect columns (engine.quality computes
#: it, index.report shows the thresholds): (column, scale, value at penalty 0, value at
#: penalty 1, weight); the module docstring of engine.quality gives the reasons.
SCORE_TERMS: tuple[tuple[str, str, float, float, float], ...] = (
    ("bandwidth_hz", "log", 18000.0, 3000.0, 0.7),
    ("snr_db", "linear", 30.0, 0.0, 0.7),
    ("clicks_per_min", "log", 30.0, 1000.0, 0.6),
    ("clipping_share", "log", 0.005, 0.1, 0.6),
    ("hum_db", "linear", 12.0, 30.0, 0.6),
    ("dropouts", "halving", 0.0, math.inf, 0.6),
    ("dc_offset", "linear", 0.02, 0.2, 0.2),
)
#: The tonics ``key_<profile>`` holds, as Essentia spells them, by pitch class 0-11.
TONICS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    meaning: str
    # Models that must be present at build time for this column to have values
    # (named as `engine models fetch` takes them); empty for file facts and DSP.
    needs: tuple[str, ...] = ()


# One row per analysed track. NULL where the model or measure is unavailable.
TRACK_COLUMNS: tuple[Column, ...] = (
    Column("track_id", "INTEGER", "stable id of the track"),
    Column("path", "VARCHAR", "absolute path of the file (bytes that are not UTF-8 shown as \\xNN)"),
    Column("path_bytes", "BLOB", "the path's exact bytes when it is not valid UTF-8; else NULL"),
    Column("file_size", "BIGINT", "size in bytes when analysed"),
    Column("mtime_ns", "BIGINT", "modification time (ns) when analysed"),
    Column("content_hash", "VARCHAR", "fingerprint of the content (detects moved files)"),
    Column("duration", "DOUBLE", "duration of the whole file, seconds"),
    Column("analysed_seconds", "DOUBLE", "seconds of audio analysed (long files are capped)"),
    Column("truncated", "BOOLEAN", "true when only the first analysed_seconds were analysed"),
    Column("notes", "VARCHAR", "why values are NULL or the analysis partial (decoder warnings); else NULL"),
    Column("sample_rate", "INTEGER", "native sample rate, Hz"),
    Column("channels", "INTEGER", "native channel count"),
    Column("codec", "VARCHAR", "audio codec (e.g. mp3, vorbis, flac, aac, opus)"),
    Column("container", "VARCHAR", "container format"),
    Column("bitrate", "INTEGER", "bit rate, bit/s (NULL when unknown)"),
    Column("artist", "VARCHAR", "artist tag"),
    Column("title", "VARCHAR", "title tag"),
    Column("album", "VARCHAR", "album tag"),
    Column("album_artist", "VARCHAR", "album artist tag"),
    Column("year", "INTEGER", "year from the date tag"),
    Column("tag_genre", "VARCHAR", "the file's own genre tag (compare: genre)"),
    Column("track_number", "INTEGER", "track number tag"),
    Column("bpm", "DOUBLE", "tempo, beats per minute (multi-feature beat tracker; octave decided with TempoCNN, docs/tempo.md)"),
    Column("bpm_confidence", "DOUBLE", "tempo confidence, 0-1: probability of the chosen octave x beat-tracking confidence"),
    Column("bpm_tempocnn", "DOUBLE", "tempo from TempoCNN, BPM (a second opinion)",
           needs=('tempocnn',)),
    Column("key_temperley", "VARCHAR", "key tonic (C, C#, ... B), Temperley profile"),
    Column("scale_temperley", "VARCHAR", "major or minor, Temperley profile"),
    Column("key_strength_temperley", "DOUBLE", "key strength 0-1, Temperley profile"),
    Column("key_krumhansl", "VARCHAR", "key tonic, Krumhansl profile"),
    Column("scale_krumhansl", "VARCHAR", "major or minor, Krumhansl profile"),
    Column("key_strength_krumhansl", "DOUBLE", "key strength 0-1, Krumhansl profile"),
    Column("key_edma", "VARCHAR", "key tonic, EDMA profile (electronic music)"),
    Column("scale_edma", "VARCHAR", "major or minor, EDMA profile"),
    Column("key_strength_edma", "DOUBLE", "key strength 0-1, EDMA profile"),
    Column("loudness_lufs", "DOUBLE", "integrated loudness, LUFS (EBU R128, stereo)"),
    Column("loudness_range_lu", "DOUBLE", "loudness range, LU (EBU R128)"),
    Column("true_peak_dbtp", "DOUBLE", "true peak, dBTP"),
    Column("danceability", "DOUBLE", "Essentia's signal-processing danceability, 0-3"),
    Column("quality", "DOUBLE", "audio quality score, 0-100 (100 = no defect found)"),
    Column("clicks_per_min", "DOUBLE", "isolated clicks/pops/crackle per minute (clean music 0-30)"),
    Column("clipping_share", "DOUBLE", "share of samples piled up at the peak, 0-1 (clean < 0.005)"),
    Column("hum_db", "DOUBLE", "prominence of a steady 50/60 Hz mains line, dB (music 0-12)"),
    Column("hum_hz", "DOUBLE", "mains frequency of the hum, 50 or 60 Hz; NULL when hum_db < 12"),
    Column("dropouts", "INTEGER", "abrupt digital gaps (5 ms-2 s) inside the programme"),
    Column("snr_db", "DOUBLE", "signal to white-equivalent noise floor, dB (below ~30: hiss)"),
    Column("noise_floor_dbfs", "DOUBLE", "white-equivalent noise floor over 0..bandwidth_hz, dBFS"),
    Column("bandwidth_hz", "DOUBLE", "spectral cut-off, Hz (128 kbit/s lossy: 16-17.5 kHz)"),
    Column("dc_offset", "DOUBLE", "largest absolute channel mean, fraction of full scale"),
    Column("silence_start_s", "DOUBLE", "leading silence (below -60 dBFS), seconds"),
    Column("silence_end_s", "DOUBLE", "trailing silence (below -60 dBFS), seconds"),
    Column("band_levels", "FLOAT[]", "27 band levels, dB: p10/p50/p90 below 177 Hz and around "
           "250..8k Hz (models.bands; input of the listener_quality predictions)"),
    Column("quality_profile", "FLOAT[]", "14 defect statistics: dynamics, codec artefacts, impulses, "
           "hum level (engine.quality_profile; input of the listener_quality predictions)"),
    Column("arousal", "DOUBLE", "arousal, 1-9 (emoMusic head on MusiCNN)",
           needs=('musicnn', 'emomusic')),
    Column("valence", "DOUBLE", "valence, 1-9 (emoMusic head on MusiCNN)",
           needs=('musicnn', 'emomusic')),
    Column("mirex_mood", "VARCHAR", "most likely of the 5 MIREX mood clusters",
           needs=('musicnn', 'moods_mirex')),
    Column("danceable", "DOUBLE", "probability of being danceable, 0-1 (EffNet head)",
           needs=('effnet', 'danceability')),
    Column("voice", "DOUBLE", "probability of vocals, 0-1 (EffNet voice/instrumental head)",
           needs=('effnet', 'voice_instrumental')),
    Column("mood_happy", "DOUBLE", "probability of a happy mood, 0-1 (EffNet head)",
           needs=('effnet', 'mood_happy')),
    Column("mood_sad", "DOUBLE", "probability of a sad mood, 0-1 (EffNet head)",
           needs=('effnet', 'mood_sad')),
    Column("mood_relaxed", "DOUBLE", "probability of a relaxed mood, 0-1 (EffNet head)",
           needs=('effnet', 'mood_relaxed')),
    Column("mood_aggressive", "DOUBLE", "probability of an aggressive mood, 0-1 (EffNet head)",
           needs=('effnet', 'mood_aggressive')),
    Column("top_style", "VARCHAR", "most activated Discogs style (e.g. 'Techno')",
           needs=('effnet',)),
    Column("top_style_activation", "DOUBLE", "activation of top_style, 0-1", needs=('effnet',)),
    Column("genre", "VARCHAR", "parent genre of top_style (e.g. 'Electronic')", needs=('effnet',)),
    Column("has_musicnn", "BOOLEAN", "MusiCNN outputs are present (false: the model cannot take "
           "this track, see no_output_reason; NULL: not computed yet)"),
    Column("has_effnet", "BOOLEAN", "Discogs-EffNet outputs are present (false and NULL as for has_musicnn)"),
    Column("has_mtt", "BOOLEAN", "MagnaTagATune MusiCNN outputs are present (false and NULL as for has_musicnn)"),
    Column("no_output_reason", "VARCHAR", "why a model present gave this track no output "
           "(e.g. 'too short for musicnn: 0.20 s of audio ...'); NULL when none"),
    Column("analysed_at", "TIMESTAMP", "when the track was analysed"),
)

TABLES_DDL = {
    "tracks": "CREATE TABLE IF NOT EXISTS tracks ("
    + ", ".join(f"{c.name} {c.sql_type}" for c in TRACK_COLUMNS)
    + ", PRIMARY KEY (track_id), UNIQUE (path))",
    # Style activations of the Discogs-EffNet genre head, labels split at '---'.
    "styles": "CREATE TABLE IF NOT EXISTS styles (track_id INTEGER, genre VARCHAR, "
    "style VARCHAR, activation FLOAT)",
    # Every other multi-label output: source is the model name (musicnn = MSD tags,
    # mtt = MagnaTagATune tags, moods_mirex, mtg_jamendo_genre, mtg_jamendo_moodtheme, mtg_jamendo_top50tags, ...).
    "tags": "CREATE TABLE IF NOT EXISTS tags (track_id INTEGER, source VARCHAR, "
    "tag VARCHAR, activation FLOAT)",
    # Track-mean embeddings; space is 'musicnn' (200-d), 'mtt' (200-d) or 'effnet' (1280-d).
    "embeddings": "CREATE TABLE IF NOT EXISTS embeddings (track_id INTEGER, space VARCHAR, "
    "vector FLOAT[], PRIMARY KEY (track_id, space))",
    # stage 'skipped': found by the scan but not analysable (unreadable folder, FIFO, not
    # audio); 'read': cannot be read; else the analysis stage that failed (decode, dsp, ...).
    "failures": "CREATE TABLE IF NOT EXISTS failures (path VARCHAR PRIMARY KEY, stage VARCHAR, "
    "error VARCHAR, \"at\" TIMESTAMP, file_size BIGINT, mtime_ns BIGINT, path_bytes BLOB)",
    # The user's own tags (index.usertags): one score per tag and scored track.
    "user_tags": "CREATE TABLE IF NOT EXISTS user_tags (track_id INTEGER, tag VARCHAR, score FLOAT, "
    "PRIMARY KEY (track_id, tag))",
    # Their linear probes: weights on the raw embeddings of `spaces` (concatenated), the
    # embedding models' SHA-256 they were trained on, the examples and CV quality.
    "probes": "CREATE TABLE IF NOT EXISTS probes (tag VARCHAR PRIMARY KEY, spaces VARCHAR[], "
    "versions VARCHAR, weights FLOAT[], bias DOUBLE, positives INTEGER[], negatives INTEGER[], "
    "random_negatives INTEGER, quality VARCHAR, trained_at TIMESTAMP)",
    # Listener profiles (engine listener add) and the predicted HAAQI of every track for
    # each of them (models.hearing, filled by engine build and engine listener add).
    "listeners": "CREATE TABLE IF NOT EXISTS listeners (name VARCHAR PRIMARY KEY, "
    "audiogram DOUBLE[], added_at TIMESTAMP)",
    "listener_quality": "CREATE TABLE IF NOT EXISTS listener_quality (track_id INTEGER, "
    "listener VARCHAR, haaqi DOUBLE, model VARCHAR, scored_at TIMESTAMP, "
    "PRIMARY KEY (track_id, listener))",
    # Key/value facts about the store (schema version, index generations).
    "meta": "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
}

TABLE_MEANINGS = {
    "tracks": "one row per analysed track (columns below)",
    "styles": "(track_id, genre, style, activation): 400 Discogs styles per track (EffNet)",
    "tags": "(track_id, source, tag, activation): MSD tags (source 'musicnn'), MagnaTagATune "
    "tags ('mtt'), MIREX moods, MTG-Jamendo tags, ...",
    "embeddings": "(track_id, space, vector): track-mean embeddings, space 'musicnn', 'mtt' or 'effnet'",
    "failures": "(path, stage, error, at): files that could not be analysed or were skipped, with the reason",
    "user_tags": "(track_id, tag, score): your own tags (`engine tag train`), score 0-1 per scored track; "
    "e.g. `--where \"track_id IN (SELECT track_id FROM user_tags WHERE tag = 'cinematic' AND score > 0.8)\"`",
    "probes": "(tag, spaces, versions, weights, bias, positives, negatives, random_negatives, quality, "
    "trained_at): the trained probe of each of your tags",
    "listeners": "(name, audiogram, added_at): listener profiles, audiogram = 8 thresholds in "
    "dB HL at 250, 500, 1k, 2k, 3k, 4k, 6k, 8k Hz (engine listener add)",
    "listener_quality": "(track_id, listener, haaqi, model, scored_at): predicted HAAQI 0-1 "
    "of each track for each listener (1 = sounds to them as the clean recording would; "
    "docs/hearing.md)",
}

TRACK_COLUMN_NAMES = tuple(c.name for c in TRACK_COLUMNS)

# Tables filled by models only, with the models they need (see Column.needs).
TABLE_NEEDS = {"styles": ("effnet",), "tags": ("musicnn",)}


def markdown() -> str:
    """The schema as Markdown tables, for docs/columns.md."""
    lines = ["| table | rows |", "|---|---|"]
    lines += [f"| `{t}` | {m} |" for t, m in TABLE_MEANINGS.items()]
    lines += ["", "| `tracks` column | type | meaning | empty without the models |", "|---|---|---|---|"]
    lines += [f"| `{c.name}` | {c.sql_type} | {c.meaning} | {' + '.join(f'`{m}`' for m in c.needs)} |"
              for c in TRACK_COLUMNS]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
