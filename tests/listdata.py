"""A small synthetic store for the list-rule tests: clustered vectors, artists, albums, and
planted near-duplicates (the same recording twice) and identical files.

Real audio is in the corpus tests (tests/test_playlists.py uses the session's corpus
store too); here the vectors are chosen so that rules and geometry can be checked
against brute force quickly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from index import vectors
from index.store import Store

ARTISTS = 12
ALBUMS_PER_ARTIST = 3


def make_list_store(directory: Path, n: int = 360, dim: int = 32, seed: int = 4) -> dict:
    """Write the store; returns what the tests compare with (vectors, facts, duplicate pairs).

    Tracks 1..n; every 40th track (from 40) is a near-duplicate of the track before it
    (same duration, tempo and key, vector + 1 % noise); track n is an identical copy
    (same content hash) of track 1. A fifth of the tracks have no artist tag.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((8, dim)).astype(np.float32)
    x = centres[rng.integers(0, 8, n)] + 0.9 * rng.standard_normal((n, dim)).astype(np.float32)
    artist = rng.integers(0, ARTISTS, n)
    album = rng.integers(0, ALBUMS_PER_ARTIST, n)
    duration = np.round(rng.uniform(120, 360, n), 1)
    bpm = np.round(rng.uniform(70, 170, n), 1)
    keys = rng.integers(0, 12, n)
    tagged = rng.random(n) > 0.2
    hashes = [f"h{i}" for i in range(n)]
    dup_pairs = []
    for i in range(39, n - 1, 40):  # 0-based: track i+1 repeats track i
        x[i] = x[i - 1] + 0.01 * np.linalg.norm(x[i - 1]) / np.sqrt(dim) * rng.standard_normal(dim)
        duration[i], bpm[i], keys[i] = duration[i - 1] + 0.4, bpm[i - 1], keys[i - 1]
        artist[i], album[i], tagged[i] = artist[i - 1], album[i - 1], tagged[i - 1]
        dup_pairs.append((i, i + 1))  # 1-based ids
    x[n - 1] = x[0]
    duration[n - 1], bpm[n - 1], keys[n - 1], hashes[n - 1] = duration[0], bpm[0], keys[0], hashes[0]
    artist[n - 1], album[n - 1], tagged[n - 1] = artist[0], album[0], tagged[0]
    dup_pairs.append((1, n))
    names = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
    rows = {
        "track_id": np.arange(1, n + 1, dtype=np.int32),
        "path": np.array([f"/m/Artist {a}/Album {b}/{i:04d}.flac" for i, (a, b) in enumerate(zip(artist, album), 1)],
                         dtype=object),
        "content_hash": np.array(hashes, dtype=object),
        "duration": duration,
        "bpm": bpm,
        "key_temperley": np.array([names[k] for k in keys], dtype=object),
        "scale_temperley": np.array(["minor" if k % 2 else "major" for k in keys], dtype=object),
        "artist": np.array([f"Artist {a}" if t else None for a, t in zip(artist, tagged)], dtype=object),
        "album": np.array([f"Album {b}" if t else None for b, t in zip(album, tagged)], dtype=object),
        "voice": np.round(rng.random(n), 3),
        "has_musicnn": np.ones(n, bool),
    }
    with Store.open(directory) as store:
        store.con.register("_rows", rows)
        cols = ", ".join(rows)
        store.con.execute(f"INSERT INTO tracks ({cols}) SELECT {cols} FROM _rows")
        store.con.unregister("_rows")
        store.con.execute("INSERT INTO embeddings SELECT unnest(?), 'musicnn', unnest(?)",
                          [list(range(1, n + 1)), x.tolist()])
        # One more track the models could not take: no embedding (a 0.1 s clip, say).
        store.con.execute("INSERT INTO tracks (track_id, path, duration, has_musicnn) "
                          f"VALUES ({n + 1}, '/m/too short.flac', 0.1, false)")
        store.set_meta("generation:musicnn", "1")
        vectors.rebuild(store, "musicnn")
    return {"x": x, "artist": artist, "album": album, "tagged": tagged, "duration": duration,
            "bpm": bpm, "voice": rows["voice"], "dup_pairs": dup_pairs, "n": n}
