"""Rules that hold wherever a list of tracks is made: k-NN lists, song paths, radio, SQL playlists.

- no track twice;
- near-duplicate recordings (the same audio in two files or formats, see
  index.duplicates) listed once, unless ``keep_duplicates``;
- optional caps: at most ``max_per_artist`` tracks of an artist, ``max_per_album`` of
  an album, and no artist again within ``artist_gap`` tracks.

Artists and albums are as index.trackfacts reads them: a track without artist tags has
no artist (no artist rule applies to it); its album falls back to its folder, so the
album cap works on untagged collections.

Tracks the user names (seeds, ``--from``/``--to``/``--via``) are always listed and count
towards the caps; the rules constrain the tracks the engine picks.

:class:`ListBuilder` keeps the state of a list under construction (what is listed, counts,
recent artists, vectors for the near-duplicate test) and answers whether a candidate may
come next; :func:`pick` fills a list from a ranked candidate order, deferring a track that
only the artist gap holds back so it comes as soon as the gap allows. No click here.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from index.duplicates import DUPLICATE_COSINE, DURATION_TOLERANCE, DURATION_TOLERANCE_S, is_near_duplicate
from index.trackfacts import TrackFacts


@dataclass(frozen=True)
class ListRules:
    """Caps and the duplicate rule for one list (None / 0: no cap)."""

    max_per_artist: int | None = None
    max_per_album: int | None = None
    artist_gap: int = 0  # the same artist is not listed again within this many tracks
    keep_duplicates: bool = False  # list near-duplicate recordings each time

    def __post_init__(self) -> None:
        for name in ("max_per_artist", "max_per_album"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1, not {v}")
        if self.artist_gap < 0:
            raise ValueError(f"artist-gap must be 0 or more, not {self.artist_gap}")


@dataclass(frozen=True)
class PlaylistEntry:
    """One track of a list in play order (``position`` from 1): a path or a radio.

    ``role`` says how it got there (``seed``, ``from``, ``via``, ``to``: given by the user;
    ``next``, ``step``: chosen); ``similarity`` is the cosine with the previous track
    (None for the first).
    """

    position: int
    track_id: int
    path: str
    artist: str | None
    title: str | None
    duration: float | None
    role: str
    similarity: float | None

    @property
    def label(self) -> str:
        from index.tracks import track_label

        return track_label(self.artist, self.title, self.path)


# Lists up to this long test a candidate against every listed vector at once; longer ones
# (a whole-collection SQL playlist) only against tracks of about its duration.
MATRIX_MAX = 2048


@dataclass
class ListBuilder:
    """A list under construction and the rules it keeps.

    Parameters
    ----------
    rules : ListRules
    facts : mapping of track id to TrackFacts
        For every track that may be offered (missing ones have no artist/album).
    vectors : mapping of track id to numpy.ndarray, optional
        Normalised embeddings ``[d]`` for the near-duplicate test; a track without one
        is only compared by content (never a near-duplicate).
    """

    rules: ListRules
    facts: Mapping[int, TrackFacts]
    vectors: Mapping[int, np.ndarray] = field(default_factory=dict)
    tracks: list[int] = field(default_factory=list, init=False)
    _artists: Counter = field(default_factory=Counter, init=False)
    _albums: Counter = field(default_factory=Counter, init=False)
    _listed: set[int] = field(default_factory=set, init=False)
    _hashes: dict[str, int] = field(default_factory=dict, init=False)  # content hash -> first listed
    _durations: list[tuple[float, int]] = field(default_factory=list, init=False)  # sorted
    _no_duration: list[int] = field(default_factory=list, init=False)
    _matrix: np.ndarray | None = field(default=None, init=False)  # listed vectors, by rows
    _matrix_ids: list[int] = field(default_factory=list, init=False)
    _count: int = field(default=0, init=False)  # listed tracks with a vector

    def __len__(self) -> int:
        return len(self.tracks)

    def __contains__(self, track_id: int) -> bool:
        return int(track_id) in self._listed

    def admissible(self, track_ids: Iterable[int], limit: int | None = None) -> list[int]:
        """The ``track_ids`` that may come next, each judged alone, in order, at most ``limit``.

        The near-duplicate test is one product of all their vectors with the listed ones
        (a radio step judges ~16 candidates: 45 µs each one by one).
        """
        ids = [int(t) for t in track_ids]
        close: set[int] | None = None
        if not self.rules.keep_duplicates and 0 < self._count <= MATRIX_MAX:
            have = [t for t in ids if t in self.vectors]
            close = set()
            if have:
                best = (np.stack([self.vectors[t] for t in have]) @ self._matrix[:self._count].T).max(1)
                close = {t for t, b in zip(have, best) if b >= DUPLICATE_COSINE}
        out = []
        for t in ids:
            if self.refusal(t, duplicates=close is None or t in close) is None:
                out.append(t)
                if limit is not None and len(out) >= limit:
                    break
        return out

    def refusal(self, track_id: int, *, gap: bool = True, duplicates: bool = True) -> str | None:
        """Why ``track_id`` may not come next, or None; ``gap=False`` leaves the artist gap
        out (would the track do a little later?), ``duplicates=False`` the near-duplicate
        test (done already)."""
        tid = int(track_id)
        if tid in self._listed:
            return "already listed"
        f = self.facts.get(tid)
        r = self.rules
        if f is not None:
            if r.max_per_artist and f.artist_key and self._artists[f.artist_key] >= r.max_per_artist:
                return f"{r.max_per_artist} tracks of this artist already"
            if r.max_per_album and self._albums[f.album_key] >= r.max_per_album:
                return f"{r.max_per_album} tracks of this album already"
            if gap and r.artist_gap and f.artist_key:
                recent = self.tracks[-r.artist_gap:]
                if any(self._artist(t) == f.artist_key for t in recent):
                    return f"same artist within {r.artist_gap} tracks"
        if duplicates and not r.keep_duplicates:
            dup = self.duplicate_of(tid)
            if dup is not None:
                return f"a near-duplicate of track {dup}"
        return None

    def duplicate_of(self, track_id: int) -> int | None:
        """A listed track that ``track_id`` is a near-duplicate recording of, or None.

        Compared only with listed tracks of a matching duration (kept sorted), so a list
        of n tracks costs n x (tracks of about the same length), not n².
        """
        tid = int(track_id)
        f = self.facts.get(tid)
        v = self.vectors.get(tid)
        if f is not None and f.content_hash and f.content_hash in self._hashes:
            return self._hashes[f.content_hash]
        if v is None or not self.tracks:
            return None
        if self._count <= MATRIX_MAX:
            # Short lists: one product with every listed vector finds the few close ones.
            sims = self._matrix[:self._count] @ v
            for i in np.flatnonzero(sims >= DUPLICATE_COSINE):
                t = self._matrix_ids[i]
                if is_near_duplicate(float(sims[i]), f, self.facts.get(t)):
                    return t
            return None
        d = f.duration if f is not None else None
        if d is None:
            near = [t for t in self.tracks if t in self.vectors]
        else:
            # |a - d| <= max(1 s, 1 % of the longer): the window that can match.
            lo = bisect.bisect_left(self._durations, (d - max(DURATION_TOLERANCE_S, DURATION_TOLERANCE * d), -1))
            top = max(d + DURATION_TOLERANCE_S, d / (1.0 - DURATION_TOLERANCE))
            hi = bisect.bisect_right(self._durations, (top, 1 << 62))
            near = [t for _, t in self._durations[lo:hi]] + self._no_duration
        near = [t for t in near if t in self.vectors]
        if not near:
            return None
        sims = np.stack([self.vectors[t] for t in near]) @ v
        for t, sim in zip(near, sims):
            if is_near_duplicate(float(sim), f, self.facts.get(t)):
                return t
        return None

    def _artist(self, track_id: int) -> str | None:
        f = self.facts.get(track_id)
        return f.artist_key if f else None

    def add(self, track_id: int) -> None:
        """List ``track_id`` next, whatever the rules say (seeds, fixed waypoints)."""
        tid = int(track_id)
        self.tracks.append(tid)
        self._listed.add(tid)
        f = self.facts.get(tid)
        if f is not None:
            if f.artist_key:
                self._artists[f.artist_key] += 1
            self._albums[f.album_key] += 1
            if f.content_hash:
                self._hashes.setdefault(f.content_hash, tid)
        if f is not None and f.duration is not None:
            bisect.insort(self._durations, (float(f.duration), tid))
        else:
            self._no_duration.append(tid)
        v = self.vectors.get(tid)
        if v is not None and self._count < MATRIX_MAX + 1:
            if self._matrix is None or self._count == len(self._matrix):
                grown = np.zeros((max(64, 2 * self._count), len(v)), np.float32)
                if self._matrix is not None:
                    grown[:self._count] = self._matrix[:self._count]
                self._matrix = grown
            self._matrix[self._count] = v
            self._matrix_ids.append(tid)
            self._count += 1
        elif v is not None:
            self._count += 1  # past MATRIX_MAX: the duration index serves

    def offer(self, track_id: int) -> bool:
        """List ``track_id`` next if the rules allow; whether it was listed."""
        if self.refusal(track_id) is None:
            self.add(track_id)
            return True
        return False


def pick(builder: ListBuilder, candidates: Iterable[int], n: int) -> list[int]:
    """Add up to ``n`` tracks from ``candidates`` (best first) to ``builder``; the ones added.

    A candidate held back only by the artist gap waits and is listed as soon as the gap
    allows (before later candidates), so the order stays as close to the ranking as the
    rules permit.
    """
    added: list[int] = []
    waiting: list[int] = []

    def try_waiting() -> bool:
        for i, t in enumerate(waiting):
            if builder.offer(t):
                added.append(t)
                del waiting[i]
                return True
        return False

    for tid in candidates:
        if len(added) >= n:
            break
        while len(added) < n and waiting and try_waiting():
            pass
        if len(added) >= n:
            break
        tid = int(tid)
        if builder.offer(tid):
            added.append(tid)
        elif builder.rules.artist_gap and tid not in builder and tid not in waiting:
            # Would the track be admitted without the gap? Then it only has to wait.
            if builder.refusal(tid, gap=False) is None:
                waiting.append(tid)
    while len(added) < n and waiting and try_waiting():
        pass
    return added


def violations(tracks: Sequence[int], rules: ListRules, facts: Mapping[int, TrackFacts],
               vectors: Mapping[int, np.ndarray] | None = None,
               fixed: Iterable[int] = ()) -> list[tuple[int, str]]:
    """(position, reason) of each track that breaks ``rules`` reading ``tracks`` in order;
    tracks in ``fixed`` (given by the user) are listed whatever the rules say."""
    fixed = {int(t) for t in fixed}
    b = ListBuilder(rules, facts, vectors or {})
    out = []
    for i, t in enumerate(tracks):
        reason = b.refusal(t)
        if reason is not None and int(t) not in fixed:
            out.append((i, reason))
        b.add(t)
    return out


def keep_rules(searcher, track_ids: Sequence[int], space: str, rules: ListRules,
               limit: int | None = None) -> list[int]:
    """``track_ids`` in order without the tracks that break ``rules``, at most ``limit``.

    For lists made another way (an SQL playlist): near-duplicates are found in ``space``
    (by content alone when the store has no embeddings there).
    """
    from index.queryerrors import MissingEmbeddingsError
    from index.trackfacts import track_facts

    ids = [int(t) for t in track_ids]
    try:
        present = set(searcher.in_index(space, np.array(ids, np.int64)).tolist()) if ids else set()
    except MissingEmbeddingsError:
        present = set()
    facts: dict[int, TrackFacts] = {}
    vecs: dict[int, np.ndarray] = {}
    builder = ListBuilder(rules, facts, vecs)  # both filled chunk by chunk below
    chunk = 512
    for start in range(0, len(ids), chunk):
        part = ids[start:start + chunk]
        facts.update(track_facts(searcher.store, part))
        with_vec = [t for t in part if t in present]
        if with_vec and not rules.keep_duplicates:
            vecs.update(zip(with_vec, searcher.vectors(space, with_vec)))
        for t in part:
            if limit is not None and len(builder) >= limit:
                return builder.tracks
            builder.offer(t)
    return builder.tracks
