"""What list rules and near-duplicate tests need of a track, read in one query.

The artist of a track is its ``artist`` tag (the first of several, compared
case-insensitively), else its ``album_artist`` tag; a track with neither has no artist.
Its album is the ``album`` tag together with that artist (two "Greatest Hits" are two
albums), else the folder that holds the file (the Artist/Album/track layout).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Iterable

from index.store import Store


@dataclass(frozen=True)
class TrackFacts:
    """One track as the list rules see it; None where the store has no value."""

    track_id: int
    path: str
    artist: str | None
    title: str | None
    duration: float | None  # seconds, whole file
    bpm: float | None
    key: str | None  # "C# minor" (Temperley profile, as the store's key_temperley/scale_temperley)
    album_artist: str | None = None
    album: str | None = None
    content_hash: str | None = None

    # Worked out on first use: only caps need them (a radio reads ~1,000 rows of facts,
    # and making both keys for each cost 40 ms of Python).
    @functools.cached_property
    def artist_key(self) -> str | None:
        """Normalised artist, None when the track has no artist tag."""
        return artist_key(self.artist, self.album_artist)

    @functools.cached_property
    def album_key(self) -> str:
        """Normalised album (tag with the artist, else the folder)."""
        return album_key(self.album, self.artist_key, self.path)


def _first(value: str | None) -> str:
    return (value or "").split(";")[0].strip()


def artist_key(artist: str | None, album_artist: str | None) -> str | None:
    """The artist rules compare: normalised, None when the track has no artist tag."""
    name = _first(artist) or _first(album_artist)
    return " ".join(name.casefold().split()) or None


def album_key(album: str | None, artist: str | None, path: str) -> str:
    """The album rules compare: the tag with the artist, else the file's folder."""
    if album and album.strip():
        return f"{artist or ''}\x1f{' '.join(album.casefold().split())}"
    return "\x1e" + os.path.dirname(path)


_FACTS_SQL = ("track_id, path, artist, title, duration, bpm, "
              "key_temperley || ' ' || scale_temperley, album_artist, album, content_hash")


def _facts(row: tuple) -> TrackFacts:
    return TrackFacts(*row)


def track_facts(store: Store, track_ids: Iterable[int]) -> dict[int, TrackFacts]:
    """Facts of the tracks with these ids (ids not in the store are left out)."""
    ids = sorted({int(t) for t in track_ids})
    if not ids:
        return {}
    # A list parameter, not literal ids: at 100k tracks 1,000 literal ids cost 123 ms of CPU
    # to plan and run, the parameter 7 ms (bench/out, DuckDB 1.x).
    rows = store.con.execute(f"SELECT {_FACTS_SQL} FROM tracks WHERE track_id IN (SELECT unnest(?))",
                             [ids]).fetchall()
    return {r[0]: _facts(r) for r in rows}


def all_track_facts(store: Store) -> dict[int, TrackFacts]:
    """Facts of every track (for a whole-collection pass such as ``engine duplicates``)."""
    return {r[0]: _facts(r) for r in store.con.execute(f"SELECT {_FACTS_SQL} FROM tracks").fetchall()}
