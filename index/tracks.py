"""Tracks by name: the one track-summary type, and what users type resolved to a track.

:func:`resolve_track` turns a track id, a file path, a title, "artist – title" or a
unique part of one into a :class:`TrackSummary`; :func:`tracks_by_id` reads summaries
by id. Both the CLI and the TUI use these (k-NN seeds, playlists, paths, radio).
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from index.queryerrors import AmbiguousTrackError, UnknownTrackError
from index.store import Store

# Candidates listed by an ambiguous-track error.
MAX_CANDIDATES = 10


@dataclass(frozen=True)
class TrackSummary:
    """One track as lists, playlists and seeds need it.

    ``path`` is the stored display text (index.pathnames); ``path_bytes`` holds the
    name's bytes when it is not valid UTF-8 (``from_db(path, path_bytes)`` opens it).
    """

    track_id: int
    path: str
    duration: float | None = None
    artist: str | None = None
    title: str | None = None
    content_hash: str | None = None
    path_bytes: bytes | None = None

    @property
    def label(self) -> str:
        return track_label(self.artist, self.title, self.path)


# tracks columns behind TrackSummary's fields, in field order.
SUMMARY_SQL = "track_id, path, duration, artist, title, content_hash, path_bytes"


def track_label(artist: str | None, title: str | None, path: str) -> str:
    """'artist – title', or whichever of them is known, else the file name's stem."""
    parts = [p.strip() for p in (artist, title) if p and p.strip()]
    return " – ".join(parts) if parts else Path(path).stem


def tracks_by_id(store: Store, track_ids: Iterable[int]) -> list[TrackSummary]:
    """The tracks with these ids, in the order given (ids not in the store are left out)."""
    ids = [int(t) for t in track_ids]
    if not ids:
        return []
    rows = store.con.execute(
        f"SELECT {SUMMARY_SQL} FROM tracks WHERE track_id IN (SELECT unnest(?))", [ids]).fetchall()
    by_id = {r[0]: TrackSummary(*r) for r in rows}
    return [by_id[t] for t in ids if t in by_id]


# A track's title and "artist – title", lower-case and NFC, for matching what users type.
_TITLE_SQL = "lower(nfc_normalize(coalesce(title, '')))"
_LABEL_SQL = "lower(nfc_normalize(coalesce(artist, '') || ' – ' || coalesce(title, '')))"


def resolve_track(store: Store, text: str | int) -> TrackSummary:
    """The track that ``text`` names: a track id, a file path, a title or "artist – title",
    or a unique part of one of them.

    A number is tried as a track id first, then an exact path, then an exact title or
    "artist – title" (" - " works as the dash), then a part of any of them. Matching is
    case-insensitive, with Unicode normalised (NFC). Raises :class:`AmbiguousTrackError`
    (listing candidates) when a part matches several tracks, :class:`UnknownTrackError`
    when nothing does.
    """
    text = str(text).strip()
    if not text:
        raise UnknownTrackError("no track given: pass a track id, a file path or part of one")
    con = store.con
    if text.isdigit():
        row = con.execute(f"SELECT {SUMMARY_SQL} FROM tracks WHERE track_id = ?", [int(text)]).fetchall()
        if row:
            return TrackSummary(*row[0])
    expanded = os.path.expanduser(text)
    exact = {text, unicodedata.normalize("NFC", text), os.path.abspath(expanded)}
    try:
        exact.add(str(Path(expanded).resolve()))
    except (OSError, RuntimeError):
        pass
    rows = con.execute(
        f"SELECT {SUMMARY_SQL} FROM tracks WHERE path IN (SELECT unnest(?)) "
        "OR nfc_normalize(path) IN (SELECT unnest(?)) ORDER BY track_id",
        [sorted(exact), sorted(unicodedata.normalize("NFC", p) for p in exact)],
    ).fetchall()
    if len(rows) == 1:
        return TrackSummary(*rows[0])
    part = unicodedata.normalize("NFC", text).lower()
    label = part.replace(" - ", " – ")
    for condition, args in (
        (f"{_TITLE_SQL} = ? OR {_LABEL_SQL} = ?", [part, label]),
        (f"contains(lower(nfc_normalize(path)), ?) OR contains({_LABEL_SQL}, ?)", [part, label]),
    ):
        total = con.execute(f"SELECT count(*) FROM tracks WHERE {condition}", args).fetchone()[0]
        if total:
            break
    else:
        raise UnknownTrackError(
            f"no track in the store matches {text!r}: give a track id, a file path, a title, "
            "'artist – title', or a unique part of one"
        )
    rows = con.execute(
        f"SELECT {SUMMARY_SQL} FROM tracks WHERE {condition} ORDER BY path LIMIT {MAX_CANDIDATES}", args,
    ).fetchall()
    if total == 1:
        return TrackSummary(*rows[0])
    raise AmbiguousTrackError(text, [TrackSummary(*r) for r in rows], total)


def model_outcome(store: Store, track_id: int, space: str) -> tuple[bool | None, str | None]:
    """(``has_<space>``: True stored, False the model could not take the track, None not
    computed; the stored reason why not) of one track."""
    import duckdb

    try:
        row = store.con.execute(f"SELECT has_{space}, no_output_reason FROM tracks WHERE track_id = ?",
                                [int(track_id)]).fetchone()
    except duckdb.Error:  # a store written before no_output_reason existed
        return None, None
    return (row[0], row[1]) if row else (None, None)
