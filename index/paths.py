"""Song paths: a playlist that moves steadily from one track to another, through waypoints.

``song_path(searcher, A, B, space, via=[C], length=20)`` returns tracks A … C … B whose
consecutive tracks are similar and which never step back: each track's *progress*
between the two fixed tracks around it,

    t(x) = d(x, P) / (d(x, P) + d(x, Q))        (d: angle between embeddings)

is 0 at P, 1 at Q and strictly increases along the path.

How (per segment P → Q with n tracks to pick):

1. Candidates: the nearest tracks (``POOL_PER_POINT`` each, doubled while too few) to
   n points spaced evenly on the great circle from P to Q (spherical interpolation),
   restricted by ``where``, minus tracks already used and near-duplicates.
2. The path is chosen exactly among them by dynamic programming over (track, number
   of steps): first the smallest possible *worst step* (the largest cosine distance
   1 - cos between consecutive tracks) for exactly n tracks in increasing progress,
   then, among paths within that worst step, the one with the smallest sum of squared
   steps (even steps rather than one small and one large).
3. List rules (index.lists: caps, artist gap, near-duplicates) are checked on the whole
   path; a track that breaks one is banned and its segment chosen again.

The peers' method (bliss, AudioMuse-AI: the nearest unused track to each of N evenly
spaced interpolation points) is what ``bench/path_quality.py`` compares against: it
can jump (a point whose nearest track is far) and step back (two nearby points served
by tracks out of order). Segment lengths follow the angles between the fixed tracks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from index.duplicates import is_near_duplicate
from index.lists import ListRules, PlaylistEntry, violations
from index.query import Searcher, check_space
from index.queryerrors import QueryError
from index.tracks import TrackSummary
from index.trackfacts import TrackFacts, track_facts

POOL_PER_POINT = 16  # candidates per interpolation point (then 2x while the DP finds no path)
MAX_REPAIRS = 40  # rounds of banning rule-breaking tracks before giving up
DEFAULT_LENGTH = 20
MAX_LENGTH = 1000


class PathError(QueryError):
    """No path can be made as asked; the message says why and what to change."""


@dataclass(frozen=True)
class PathStep(PlaylistEntry):
    """One track of a path: ``role`` is ``from``, ``via``, ``to`` (tracks the user gave) or
    ``step``; ``progress`` runs from 0 (the first track) to 1 (the last), each segment
    between two given tracks taking an equal share; it never decreases."""

    progress: float


@dataclass(frozen=True)
class SongPath:
    steps: tuple[PathStep, ...]
    space: str

    @property
    def worst_step(self) -> float:
        """Largest cosine distance (1 - cos) between consecutive tracks."""
        sims = [s.similarity for s in self.steps[1:] if s.similarity is not None]
        return round(1.0 - min(sims), 6) if sims else 0.0

    @property
    def seconds(self) -> float:
        return float(sum(s.duration or 0.0 for s in self.steps))


# -- geometry -----------------------------------------------------------------------------

def slerp(p: np.ndarray, q: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Points ``[len(t), d]`` on the great circle from unit vector ``p`` (t=0) to ``q`` (t=1)."""
    t = np.asarray(t, dtype=np.float64)[:, None]
    cos = float(np.clip(p @ q, -1.0, 1.0))
    omega = math.acos(cos)
    if math.sin(omega) < 1e-6:  # (anti)parallel: no unique great circle
        out = (1 - t) * p + t * q
    else:
        out = (np.sin((1 - t) * omega) * p + np.sin(t * omega) * q) / math.sin(omega)
    norms = np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return (out / norms).astype(np.float32)


def angle(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Angles (radians) between unit vectors (rows of ``x``) and ``y``."""
    return np.arccos(np.clip(x @ y, -1.0, 1.0))


def progress(x: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Progress 0-1 of unit vectors ``x`` ``[n, d]`` from ``p`` to ``q`` (see module doc)."""
    a, b = angle(x, p), angle(x, q)
    return a / np.maximum(a + b, 1e-12)


def best_path(dist: np.ndarray, n: int) -> list[int] | None:
    """The node order 0 → n interior nodes → last, minimising the worst step, then the sum
    of squared steps among the paths with that worst step; None when none exists.

    Parameters
    ----------
    dist : numpy.ndarray
        ``[m, m]`` step costs (cosine distances) between nodes sorted by progress; node 0
        is the start, node m-1 the end. Only steps i → j with i < j are allowed
        (progress never goes back); inf marks a forbidden step.
    n : int
        Interior nodes to visit, 0 <= n <= m - 2.
    """
    m = len(dist)
    if n > m - 2:
        return None
    forward = np.triu(np.ones((m, m), bool), 1)
    d = np.where(forward, dist, np.inf)
    # Pass 1: smallest worst step to reach each node in exactly c steps.
    worst = np.full(m, np.inf)
    worst[0] = 0.0
    for _ in range(n):
        worst = np.maximum(worst[:, None], d).min(0)
        worst[-1] = np.inf  # the end is reached last only
    limit = np.maximum(worst[:, None], d[:, -1:]).min()
    if not np.isfinite(limit):
        return None
    # Pass 2: least sum of squared steps, using only steps no larger than that worst step.
    sq = np.where(d <= limit * (1 + 1e-9) + 1e-12, d * d, np.inf)
    cost = np.full(m, np.inf)
    cost[0] = 0.0
    back = []
    for _ in range(n):
        total = cost[:, None] + sq
        arg = total.argmin(0)
        cost = total[arg, np.arange(m)]
        cost[-1] = np.inf
        back.append(arg)
    last = int((cost + sq[:, -1]).argmin())
    if not np.isfinite(cost[last] + sq[last, -1]):
        return None
    order = [m - 1, last]
    for arg in reversed(back):  # the node before, level by level, down to the start
        order.append(int(arg[order[-1]]))
    return order[::-1] if n else [0, m - 1]


# -- the path -------------------------------------------------------------------------------

def split_length(angles: Sequence[float], interior: int) -> list[int]:
    """Interior tracks per segment, proportional to each segment's angle (largest remainder)."""
    total = float(sum(angles))
    if total <= 0:
        shares = [interior / len(angles)] * len(angles)
    else:
        shares = [interior * a / total for a in angles]
    counts = [int(math.floor(s)) for s in shares]
    for i in sorted(range(len(shares)), key=lambda i: counts[i] - shares[i])[: interior - sum(counts)]:
        counts[i] += 1
    return counts


def song_path(searcher: Searcher, start: TrackSummary, end: TrackSummary, space: str, *,
              via: Sequence[TrackSummary] = (), length: int | None = None, minutes: float | None = None,
              where: str | None = None, rules: ListRules = ListRules()) -> SongPath:
    """A path from ``start`` to ``end`` through ``via`` (in order); see the module doc.

    ``length`` counts every track (the given ones included); ``minutes`` asks for about
    that much music instead (one track more or fewer). Raises :class:`PathError` when a
    given track repeats or is excluded by ``where``, or the filter leaves too few tracks.
    """
    check_space(space)
    fixed = [start, *via, end]
    ids = [f.track_id for f in fixed]
    if len(set(ids)) < len(ids):
        twice = next(f for f in fixed if ids.count(f.track_id) > 1)
        raise PathError(f"track {twice.track_id} ({twice.path}) is given twice: a path plays each track once")
    if length is not None and minutes is not None:
        raise PathError("give --length or --minutes, not both")
    allowed = searcher.allowed(space, where)
    if allowed is not None:
        kept = set(allowed.tolist())
        for role, f in zip(["--from", *["--via"] * len(via), "--to"], fixed):
            if f.track_id not in kept:
                raise PathError(f"{role} track {f.track_id} ({f.path}) does not match --where {where.strip()!r}: "
                                "a path starts, passes and ends at the tracks you give; change the filter "
                                "or the tracks")
    vecs = searcher.vectors(space, ids)
    planner = _Planner(searcher, space, fixed, vecs, allowed, rules)
    if minutes is not None:
        if minutes <= 0:
            raise PathError(f"--minutes must be more than 0, not {minutes}")
        n = planner.length_for(minutes * 60.0)
        order = planner.plan(n)
        typical = planner.typical_duration()
        n2 = max(len(fixed), n + round((minutes * 60.0 - planner.seconds(order)) / typical))
        if n2 != n:
            order = planner.plan(n2)
    else:
        n = DEFAULT_LENGTH if length is None else int(length)
        if n < len(fixed):
            raise PathError(f"a path through {len(fixed)} given tracks needs --length {len(fixed)} or more, not {n}")
        if n > MAX_LENGTH:
            raise PathError(f"--length {n} is more than {MAX_LENGTH}")
        order = planner.plan(n)
    return planner.result(order)


class _Planner:
    """Plans a path over fixed tracks; keeps the vectors and facts it has fetched."""

    def __init__(self, searcher: Searcher, space: str, fixed: list[TrackSummary], fixed_vecs: np.ndarray,
                 allowed: np.ndarray | None, rules: ListRules):
        self.searcher, self.space, self.fixed, self.allowed, self.rules = searcher, space, fixed, allowed, rules
        self.fixed_ids = [f.track_id for f in fixed]
        self.vec: dict[int, np.ndarray] = dict(zip(self.fixed_ids, fixed_vecs))
        self.facts: dict[int, TrackFacts] = track_facts(searcher.store, self.fixed_ids)
        self.angles = [float(angle(fixed_vecs[i][None], fixed_vecs[i + 1])[0]) for i in range(len(fixed) - 1)]
        self.available = searcher.index(space).ntotal if allowed is None else len(allowed)

    # -- candidates --------------------------------------------------------------------
    def _pool(self, seg: int, n: int, per_point: int, exclude: set[int]) -> list[int]:
        p, q = self.vec[self.fixed_ids[seg]], self.vec[self.fixed_ids[seg + 1]]
        points = slerp(p, q, (np.arange(n) + 1) / (n + 1))
        found: list[int] = []
        for point in points:
            ids, _ = self.searcher.nearest(self.space, point, per_point, exclude=exclude, allowed=self.allowed)
            found.extend(int(t) for t in ids)
        pool = list(dict.fromkeys(found))
        self._fetch(pool)
        return pool

    def _fetch(self, ids: list[int]) -> None:
        new = [t for t in ids if t not in self.vec]
        if new:
            self.vec.update(zip(new, self.searcher.vectors(self.space, new)))
            self.facts.update(track_facts(self.searcher.store, new))

    # -- one segment -----------------------------------------------------------------------
    def _segment(self, seg: int, n: int, used: set[int], banned: set[int]) -> list[int]:
        """n track ids strictly between fixed tracks seg and seg+1, in play order."""
        if n == 0:
            return []
        p_id, q_id = self.fixed_ids[seg], self.fixed_ids[seg + 1]
        per_point = POOL_PER_POINT
        while True:
            exclude = used | banned | set(self.fixed_ids)
            pool = self._pool(seg, n, per_point, exclude)
            pool = self._distinct(pool, used)
            order = self._choose(p_id, q_id, pool, n)
            if order is not None:
                return order
            if per_point * n >= self.available:
                raise PathError(self._too_few(seg, n, len(pool)))
            per_point *= 2

    def _distinct(self, pool: list[int], used: set[int]) -> list[int]:
        """The pool without near-duplicates of listed tracks or of each other."""
        if self.rules.keep_duplicates:
            return pool
        kept: list[int] = []
        listed = [*self.fixed_ids, *used]
        for t in pool:
            v, f = self.vec[t], self.facts.get(t)
            if any(is_near_duplicate(float(self.vec[o] @ v), f, self.facts.get(o))
                   for o in (*listed, *kept) if o in self.vec):
                continue
            kept.append(t)
        return kept

    def _choose(self, p_id: int, q_id: int, pool: list[int], n: int) -> list[int] | None:
        p, q = self.vec[p_id], self.vec[q_id]
        if not pool:
            return None
        x = np.stack([self.vec[t] for t in pool])
        t = progress(x, p, q)
        inside = (t > 0) & (t < 1)
        ids = np.array(pool)[inside]
        order = np.lexsort((ids, t[inside]))
        nodes = [p_id, *ids[order].tolist(), q_id]
        v = np.stack([self.vec[i] for i in nodes])
        dist = 1.0 - np.clip(v @ v.T, -1.0, 1.0)
        path = best_path(dist, n)
        return None if path is None else [nodes[i] for i in path[1:-1]]

    def _too_few(self, seg: int, n: int, found: int) -> str:
        a, b = self.fixed[seg], self.fixed[seg + 1]
        scope = "match --where" if self.allowed is not None else "are in the store"
        return (f"cannot place {n} tracks between {a.label} and {b.label}: only {found} other tracks "
                f"{scope} between them (none repeated, one of each near-duplicate); ask for a shorter "
                "path or a wider filter")

    # -- the whole path ---------------------------------------------------------------------
    def plan(self, total: int) -> list[int]:
        """Track ids of a path of ``total`` tracks keeping the list rules."""
        counts = split_length(self.angles, total - len(self.fixed))
        banned: set[int] = set()
        for _ in range(MAX_REPAIRS):
            segments: list[list[int]] = []
            used: set[int] = set()
            for seg, n in enumerate(counts):
                chosen = self._segment(seg, n, used, banned)
                used.update(chosen)
                segments.append(chosen)
            order = [self.fixed_ids[0]]
            for seg, chosen in enumerate(segments):
                order += chosen + [self.fixed_ids[seg + 1]]
            broken = violations(order, self.rules, self.facts, self.vec, fixed=self.fixed_ids)
            if not broken:
                return order
            banned.update(order[i] for i, _ in broken)
        raise PathError(f"no path of {total} tracks keeps the list rules after banning {len(banned)} tracks "
                        f"(e.g. {broken[0][1]}): loosen --max-per-artist / --max-per-album / --artist-gap")

    def typical_duration(self) -> float:
        durations = [f.duration for f in self.facts.values() if f.duration]
        return float(np.median(durations)) if durations else 240.0

    def seconds(self, order: list[int]) -> float:
        typical = self.typical_duration()
        return float(sum((self.facts[t].duration if t in self.facts and self.facts[t].duration else typical)
                         for t in order))

    def length_for(self, seconds: float) -> int:
        """Tracks for about ``seconds`` of music (the typical duration along the way)."""
        for seg in range(len(self.fixed) - 1):
            self._pool(seg, 4, 8, set(self.fixed_ids))  # fetches their durations
        n = round(seconds / self.typical_duration())
        return int(min(MAX_LENGTH, max(len(self.fixed), n)))

    def result(self, order: list[int]) -> SongPath:
        """The path as steps; progress runs 0-1 over the whole path (each segment an equal share)."""
        steps = []
        last_fixed = len(self.fixed_ids) - 1
        fixed_pos = {t: i for i, t in enumerate(self.fixed_ids)}
        seg = 0
        for pos, tid in enumerate(order, 1):
            f = self.facts[tid]
            if tid in fixed_pos:
                i = fixed_pos[tid]
                role = "from" if i == 0 else "to" if i == last_fixed else "via"
                where_on = float(i)
                seg = min(i, last_fixed - 1)
            else:
                role = "step"
                p, q = self.vec[self.fixed_ids[seg]], self.vec[self.fixed_ids[seg + 1]]
                where_on = seg + float(progress(self.vec[tid][None], p, q)[0])
            sim = None if pos == 1 else round(float(self.vec[order[pos - 2]] @ self.vec[tid]), 6)
            steps.append(PathStep(pos, tid, f.path, f.artist, f.title, f.duration, role, sim,
                                  round(where_on / last_fixed, 4)))
        return SongPath(tuple(steps), self.space)
