"""A deterministic synthetic store: for the TUI's snapshot tests and its speed benchmark.

``make_store(directory, n)`` writes ``n`` tracks with plausible descriptors, 5 style
rows and 2 tags per track, and (unless ``embeddings=False``, which a large store wants) seeded random
embeddings in both spaces, through
:class:`index.store.Store` (schema) and bulk inserts from registered numpy arrays.
Same ``n`` and ``seed``, same store.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from index.store import Store

ARTISTS = ("Aphex Twin", "Boards of Canada", "Burial", "Caribou", "Daft Punk", "Four Tet",
           "Jon Hopkins", "Kraftwerk", "Moderat", "Portishead", "Massive Attack", "Röyksopp")
STYLES = (("Electronic", "Techno"), ("Electronic", "House"), ("Electronic", "Ambient"),
          ("Electronic", "Downtempo"), ("Electronic", "Dubstep"), ("Electronic", "IDM"),
          ("Hip Hop", "Trip Hop"), ("Rock", "Krautrock"), ("Pop", "Synth-pop"))
KEYS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def make_store(directory: Path | str, n: int, *, seed: int = 7, embeddings: bool = True) -> Path:
    """Create a store of ``n`` synthetic tracks in ``directory`` (must not hold one yet)."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n + 1, dtype=np.int32)
    artist_i = rng.integers(0, len(ARTISTS), n)
    style_i = rng.integers(0, len(STYLES), n)
    key_i = rng.integers(0, 12, n)
    minor = rng.random(n) < 0.5
    tracks = {
        "track_id": ids,
        "path": np.array([f"/music/{ARTISTS[a]}/Album {i % 97:02d}/Track {i:06d}.flac"
                          for i, a in zip(ids, artist_i)], dtype=object),
        "duration": np.round(rng.uniform(120, 420, n), 1),
        "artist": np.array([ARTISTS[a] for a in artist_i], dtype=object),
        "title": np.array([f"Track {i:06d}" for i in ids], dtype=object),
        "album": np.array([f"Album {i % 97:02d}" for i in ids], dtype=object),
        "bpm": np.round(rng.uniform(70, 180, n), 1),
        "key_temperley": np.array([KEYS[k] for k in key_i], dtype=object),
        "scale_temperley": np.where(minor, "minor", "major").astype(object),
        "key_krumhansl": np.array([KEYS[k] for k in key_i], dtype=object),
        "scale_krumhansl": np.where(minor, "minor", "major").astype(object),
        "key_edma": np.array([KEYS[(k + 7) % 12] for k in key_i], dtype=object),
        "scale_edma": np.where(minor, "minor", "major").astype(object),
        "loudness_lufs": np.round(rng.uniform(-20, -6, n), 1),
        "danceability": np.round(rng.uniform(0, 3, n), 2),
        "voice": np.round(rng.random(n), 2),
        "danceable": np.round(rng.random(n), 2),
        "arousal": np.round(rng.uniform(2, 8, n), 2),
        "valence": np.round(rng.uniform(2, 8, n), 2),
        "top_style": np.array([STYLES[s][1] for s in style_i], dtype=object),
        "top_style_activation": np.round(rng.uniform(0.3, 0.9, n), 3),
        "genre": np.array([STYLES[s][0] for s in style_i], dtype=object),
        "quality": np.round(rng.uniform(60, 100, n), 1),
        "has_musicnn": np.full(n, embeddings),
        "has_effnet": np.full(n, embeddings),
    }
    # Styles: the top style plus 4 others with lower activations.
    st_ids = np.repeat(ids, 5)
    st_idx = (np.repeat(style_i, 5) + np.tile(np.arange(5), n)) % len(STYLES)
    act = np.where(np.tile(np.arange(5), n) == 0, np.repeat(tracks["top_style_activation"], 5),
                   rng.uniform(0.0, 0.3, 5 * n)).astype(np.float32)
    styles = {"track_id": st_ids, "genre": np.array([STYLES[i][0] for i in st_idx], dtype=object),
              "style": np.array([STYLES[i][1] for i in st_idx], dtype=object), "activation": act}
    tag_ids = np.repeat(ids, 2)
    tags = {"track_id": tag_ids, "source": np.tile(np.array(["musicnn", "moods_mirex"], dtype=object), n),
            "tag": np.tile(np.array(["electronic", "Cluster 3"], dtype=object), n),
            "activation": rng.random(2 * n).astype(np.float32)}
    with Store.open(Path(directory)) as store:
        with store.transaction():
            for table, data in (("tracks", tracks), ("styles", styles), ("tags", tags)):
                store.insert_columns(table, data)
            if embeddings:
                for space, dim in (("musicnn", 200), ("effnet", 1280)):
                    # Clustered by top style so neighbours look plausible.
                    centres = rng.standard_normal((len(STYLES), dim)).astype(np.float32)
                    vecs = centres[style_i] + 0.7 * rng.standard_normal((n, dim)).astype(np.float32)
                    store.insert_embeddings(space, ids, vecs)
            store.bump_generations(["musicnn", "effnet"] if embeddings else [])
    return Path(directory)
