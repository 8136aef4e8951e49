"""Listener profiles and their per-track predicted quality: the SQL behind ``engine listener``.

Two tables (index.schema): ``listeners(name, audiogram, added_at)`` and
``listener_quality(track_id, listener, haaqi, model, scored_at)``. A prediction is current
when it was made by the current model after the track was last analysed; the scoring
itself (models.hearing) is done by engine.listeners, which reads and writes through the
functions here. No click, no models: plain data in, dataclasses out.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from typing import Any, Sequence

from index.store import Store
from models.audiogram import Audiogram
from models.errors import EngineError

__all__ = [
    "NAME_PATTERN",
    "ListenerError",
    "UnknownListenerError",
    "Listener",
    "ListenerTrack",
    "check_name",
    "add_listener",
    "delete_listener",
    "get_listener",
    "list_listeners",
    "tracks_to_score",
    "write_scores",
    "worst_tracks",
    "track_scores",
]

#: Listener names: a letter, then letters, digits, '_' or '-', at most 40 in all (they
#: appear in SQL strings, file names and table headers).
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,39}")


class ListenerError(EngineError):
    """A listener profile that cannot be added or used; the message names it."""


class UnknownListenerError(ListenerError):
    pass


@dataclass(frozen=True)
class Listener:
    """One profile: ``scored`` tracks have a current prediction, ``tracks`` in the store."""

    name: str
    audiogram: Audiogram
    added_at: _dt.datetime | None
    scored: int = 0
    tracks: int = 0


@dataclass(frozen=True)
class ListenerTrack:
    """A track's predicted HAAQI for one listener, with what identifies the track."""

    track_id: int
    path: str
    artist: str | None
    title: str | None
    haaqi: float
    quality: float | None  # the engine's 0-100 reference-free quality score


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ListenerError(
            f"listener name {name!r} is not allowed: start with a letter, then letters, "
            "digits, '_' or '-', at most 40 characters (e.g. mum, grandad_left)"
        )
    return name


def add_listener(store: Store, name: str, audiogram: Audiogram) -> Listener:
    """Add a profile. Raises :class:`ListenerError` when the name (in any case) is taken."""
    check_name(name)
    taken = store.rows("SELECT name FROM listeners WHERE lower(name) = lower(?)", [name])
    if taken:
        raise ListenerError(
            f"a listener named {taken[0][0]!r} exists already: pick another name, or "
            f"`engine listener delete {taken[0][0]}` first"
        )
    now = _dt.datetime.now()
    store.rows("INSERT INTO listeners VALUES (?, ?, ?)", [name, list(audiogram.thresholds), now])
    return Listener(name, audiogram, now)


def delete_listener(store: Store, name: str) -> int:
    """Remove a profile and its predictions; returns how many predictions went with it."""
    get_listener(store, name)
    with store.transaction():
        count = store.rows("SELECT count(*) FROM listener_quality WHERE listener = ?", [name])[0][0]
        store.rows("DELETE FROM listener_quality WHERE listener = ?", [name])
        store.rows("DELETE FROM listeners WHERE name = ?", [name])
    return int(count)


def get_listener(store: Store, name: str) -> Listener:
    """The profile called ``name``; :class:`UnknownListenerError` lists the known ones."""
    rows = store.rows("SELECT name, audiogram, added_at FROM listeners WHERE name = ?", [name])
    if not rows:
        known = [r[0] for r in store.rows("SELECT name FROM listeners ORDER BY name")]
        hint = f"known: {', '.join(known)}" if known else (
            "there are none yet: add one with engine listener add NAME --audiogram "
            "20,20,25,30,40,50,60,65")
        raise UnknownListenerError(f"no listener named {name!r} in the store ({hint})")
    return Listener(rows[0][0], Audiogram(tuple(rows[0][1])), rows[0][2])


def list_listeners(store: Store, model: str | None = None) -> list[Listener]:
    """Every profile by name, with how many tracks have a current prediction from ``model``."""
    rows = store.rows(
        """SELECT l.name, l.audiogram, l.added_at,
                  (SELECT count(*) FROM listener_quality q JOIN tracks t USING (track_id)
                   WHERE q.listener = l.name AND (? IS NULL OR q.model = ?)
                     AND q.scored_at >= t.analysed_at),
                  (SELECT count(*) FROM tracks)
           FROM listeners l ORDER BY l.name""",
        [model, model],
    )
    return [Listener(r[0], Audiogram(tuple(r[1])), r[2], int(r[3]), int(r[4])) for r in rows]


def tracks_to_score(store: Store, listener: str, model: str,
                    columns: Sequence[str]) -> tuple[list[int], list[dict[str, Any]]]:
    """Tracks without a current prediction for ``listener`` from ``model``: their ids and
    the ``columns`` (tracks column names) the model reads. Tracks analysed before the band
    levels existed (NULL) are left out until the build analyses them again."""
    cols = ", ".join(f"t.{c}" for c in columns)
    rows = store.rows(
        f"""SELECT t.track_id, {cols} FROM tracks t
            WHERE t.band_levels IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM listener_quality q
                WHERE q.track_id = t.track_id AND q.listener = ? AND q.model = ?
                  AND q.scored_at >= t.analysed_at)
            ORDER BY t.track_id""",
        [listener, model],
    )
    return [r[0] for r in rows], [dict(zip(columns, r[1:])) for r in rows]


def write_scores(store: Store, listener: str, track_ids: Sequence[int], scores: Sequence[float],
                 model: str) -> None:
    """Insert or replace predictions, in one transaction; drop those of deleted tracks."""
    now = _dt.datetime.now()
    with store.transaction():
        if track_ids:
            store.rows(
                "INSERT OR REPLACE INTO listener_quality "
                "SELECT unnest(?), ?, unnest(?), ?, ?",
                [list(map(int, track_ids)), listener, [float(s) for s in scores], model, now],
            )
        store.rows("DELETE FROM listener_quality WHERE track_id NOT IN (SELECT track_id FROM tracks)")


def worst_tracks(store: Store, listener: str, limit: int | None = 20) -> list[ListenerTrack]:
    """Tracks by predicted HAAQI for ``listener``, worst first (ties by path)."""
    get_listener(store, listener)
    sql = """SELECT t.track_id, t.path, t.artist, t.title, q.haaqi, t.quality
             FROM listener_quality q JOIN tracks t USING (track_id)
             WHERE q.listener = ? ORDER BY q.haaqi, t.path"""
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [ListenerTrack(*r) for r in store.rows(sql, [listener])]


def track_scores(store: Store, track_id: int) -> list[tuple[str, float]]:
    """(listener, predicted HAAQI) of one track, by listener name."""
    return [(r[0], r[1]) for r in store.rows(
        "SELECT listener, haaqi FROM listener_quality WHERE track_id = ? ORDER BY listener",
        [int(track_id)])]
