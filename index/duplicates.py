"""Near-duplicate recordings: the same audio in two files or formats (an album track and its
single, a FLAC and its MP3), found from embeddings and durations.

Two tracks are near-duplicates when the cosine of their vectors in the search space
(centred, as the index holds them: index.vectors) reaches :data:`DUPLICATE_COSINE`,
their durations agree within :data:`DURATION_TOLERANCE_S` or :data:`DURATION_TOLERANCE`
(the larger), and, where both were measured, their tempi agree within
:data:`BPM_TOLERANCE` and their keys are the same. Files with the same content hash are
duplicates whatever the rest says.

Measured with ``bench/duplicates_threshold.py`` (MusiCNN track means centred on the
library and the rendered clips; docs/playlists.md): a clip re-encoded as MP3 at 32 and
64 kbit/s keeps cosine 0.988 and 0.986, with hum or dropouts 0.998 and 0.983; among the
2,850 pairs of distinct recordings, 99.9 % stay below 0.948. Three pairs of Bach
chorales rendered with the same General MIDI choir reach 0.96-0.99: all 30.0 s long,
they differ in tempo (85 / 61 / 97 BPM) and key, which is why tempo and key are
compared too. The tempo and key of the clean clip and of its re-encodes, hiss, hum,
vinyl and telephone-band copies agree (95 BPM, D major); hiss and 8-bit copies (0.957,
0.953) count as the same recording, a 24 kbit/s AAC copy (0.265) does not.

:func:`find_duplicates` groups a whole space (``engine duplicates``): tracks sorted by
duration, each compared only with the tracks whose duration is within the tolerance,
so 100k tracks cost ≈100k x 700 products rather than 100k².
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from index.trackfacts import TrackFacts

DUPLICATE_COSINE = 0.95
DURATION_TOLERANCE_S = 1.0
DURATION_TOLERANCE = 0.01
BPM_TOLERANCE = 0.04


def durations_match(a: float | None, b: float | None) -> bool:
    """Whether two durations (seconds) could be the same recording's; True when either is unknown."""
    if a is None or b is None or a != a or b != b:
        return True
    return abs(a - b) <= max(DURATION_TOLERANCE_S, DURATION_TOLERANCE * max(a, b))


def is_near_duplicate(similarity: float, a: TrackFacts | None, b: TrackFacts | None) -> bool:
    """Whether two tracks whose embeddings have cosine ``similarity`` are one recording."""
    if a is not None and b is not None and a.content_hash and a.content_hash == b.content_hash:
        return True
    if similarity < DUPLICATE_COSINE:
        return False
    if a is None or b is None:
        return True
    if not durations_match(a.duration, b.duration):
        return False
    if a.bpm and b.bpm and abs(a.bpm - b.bpm) > BPM_TOLERANCE * max(a.bpm, b.bpm):
        return False
    if a.key and b.key and a.key != b.key:
        return False
    return True


@dataclass(frozen=True)
class DuplicateGroup:
    """Tracks that hold the same recording, by track id; ``similarity`` is the lowest
    cosine between a track and the first (1.0 for identical content)."""

    tracks: tuple[TrackFacts, ...]
    similarity: float


def find_duplicates(track_ids: np.ndarray, vectors: np.ndarray, facts: dict[int, TrackFacts],
                    *, block: int = 2048) -> list[DuplicateGroup]:
    """Groups of near-duplicate recordings among ``track_ids``.

    Parameters
    ----------
    track_ids : numpy.ndarray
        int64 ``[n]``.
    vectors : numpy.ndarray
        float32 ``[n, d]``, L2-normalised, row i for ``track_ids[i]``.
    facts : dict
        Track id -> TrackFacts (duration, tempo, key, content hash: equal hashes are
        duplicates whatever the vectors say).

    Returns
    -------
    list of DuplicateGroup
        Largest groups first, then by the first track's path; each group's tracks by path.
    """
    n = len(track_ids)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    dur = np.array([_duration(facts.get(int(t))) for t in track_ids])
    known = ~np.isnan(dur)
    order = np.flatnonzero(known)[np.argsort(dur[known], kind="stable")]
    unknown = np.flatnonzero(~known)
    sorted_dur = dur[order]
    # Tracks with a duration: each against the later ones within the tolerance.
    for start in range(0, len(order), block):
        rows = order[start:start + block]
        hi_dur = sorted_dur[min(start + block, len(order)) - 1]
        stop = np.searchsorted(sorted_dur, hi_dur + max(DURATION_TOLERANCE_S, DURATION_TOLERANCE * hi_dur),
                               side="right")
        cols = order[start:stop]
        sims = vectors[rows] @ vectors[cols].T
        # rows are cols' first len(rows): keep each pair once (column after row).
        sims[np.arange(len(rows))[:, None] >= np.arange(len(cols))[None, :]] = -np.inf
        for r, c in zip(*np.nonzero(sims >= DUPLICATE_COSINE)):
            i, j = int(rows[r]), int(cols[c])
            if is_near_duplicate(float(sims[r, c]), facts.get(int(track_ids[i])), facts.get(int(track_ids[j]))):
                union(i, j)
    # Tracks without a duration: against everything.
    for i in unknown:
        sims = vectors @ vectors[i]
        for j in np.flatnonzero(sims >= DUPLICATE_COSINE):
            if j != i and is_near_duplicate(float(sims[j]), facts.get(int(track_ids[i])),
                                            facts.get(int(track_ids[j]))):
                union(int(i), int(j))
    first: dict[str, int] = {}
    for i, t in enumerate(track_ids):
        f = facts.get(int(t))
        if f is not None and f.content_hash:
            union(first.setdefault(f.content_hash, i), i)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    out = []
    for members in groups.values():
        if len(members) < 2:
            continue
        members.sort(key=lambda i: facts[int(track_ids[i])].path if int(track_ids[i]) in facts else "")
        sims = vectors[members] @ vectors[members[0]]
        out.append(DuplicateGroup(tuple(facts[int(track_ids[i])] for i in members if int(track_ids[i]) in facts),
                                  round(float(min(1.0, sims.min())), 6)))
    out.sort(key=lambda g: (-len(g.tracks), g.tracks[0].path if g.tracks else ""))
    return out


def _duration(f: TrackFacts | None) -> float:
    return float("nan") if f is None or f.duration is None else float(f.duration)


def drop_duplicates(track_ids: Sequence[int], vectors: dict[int, np.ndarray],
                    facts: dict[int, TrackFacts]) -> list[int]:
    """``track_ids`` in order, each near-duplicate of an earlier one left out."""
    kept: list[int] = []
    for t in track_ids:
        v = vectors.get(int(t))
        if v is not None and any(
                vectors.get(k) is not None and is_near_duplicate(float(vectors[k] @ v), facts.get(int(t)), facts.get(k))
                for k in kept):
            continue
        kept.append(int(t))
    return kept
