"""Radio: an endless-feeling playlist that continues from seed tracks.

The seeds play first, in the order given. Each next track is taken among the nearest
tracks to a query that leans on the last track played and is anchored to the seeds:

    q = normalise((1 - ANCHOR) * last + ANCHOR * centroid(seeds))

so the radio moves on from track to track without drifting away from what was asked
for. ``variety`` (0-1) widens the choice: 0 always takes the nearest track (the same
list every time); otherwise one of the ``1 + round(variety * (WIDEST - 1))`` nearest is
drawn at random with weights falling off with rank (exp(-rank / (width / 3))), from
``random_seed`` when given (the same seed, the same list). Tracks already played,
near-duplicates of them, tracks outside ``where`` and tracks that would break the list
rules (caps, artist gap) are never drawn.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from index.lists import ListBuilder, ListRules, PlaylistEntry
from index.query import Searcher, check_space
from index.queryerrors import QueryError
from index.tracks import TrackSummary
from index.trackfacts import TrackFacts, track_facts

ANCHOR = 0.35  # weight of the seeds' centroid in each step's query
WIDEST = 50  # candidates drawn from at variety 1
PREFETCH = 1000  # tracks around the seeds whose facts are read up front
WIDEN = 8  # a step that reaches past them reads this many times its candidates
DEFAULT_LENGTH = 30
MAX_LENGTH = 1000


class RadioError(QueryError):
    pass


def radio(searcher: Searcher, seeds: Sequence[TrackSummary], space: str, *, length: int | None = None,
          minutes: float | None = None, variety: float = 0.3, where: str | None = None,
          rules: ListRules = ListRules(), random_seed: int | None = None) -> list[PlaylistEntry]:
    """A radio list of ``length`` tracks (the seeds included), or about ``minutes`` of music."""
    check_space(space)
    if not seeds:
        raise RadioError("no seed track given")
    if not 0.0 <= variety <= 1.0:
        raise RadioError(f"--variety must be between 0 and 1, not {variety}")
    if length is not None and minutes is not None:
        raise RadioError("give --length or --minutes, not both")
    if minutes is not None and minutes <= 0:
        raise RadioError(f"--minutes must be more than 0, not {minutes}")
    n = DEFAULT_LENGTH if length is None and minutes is None else length
    if n is not None and not len(seeds) <= n <= MAX_LENGTH:
        raise RadioError(f"--length must be between {len(seeds)} (the seeds) and {MAX_LENGTH}, not {n}")
    seed_ids = [s.track_id for s in seeds]
    if len(set(seed_ids)) < len(seed_ids):
        raise RadioError("a seed is given twice")
    rng = np.random.default_rng(random_seed)
    allowed = searcher.allowed(space, where)
    seed_vecs = searcher.vectors(space, seed_ids)
    centre = seed_vecs.mean(0)
    centre /= max(float(np.linalg.norm(centre)), 1e-12)
    # The radio stays near its seeds (ANCHOR): the tracks around them, fetched in one go,
    # serve most steps; a step that reaches further reads a wider neighbourhood (one
    # DuckDB query costs ≈3 ms of CPU at 100k tracks whatever it reads, and one per step
    # was half a radio's time; a row costs ≈6 µs).
    around, _ = searcher.nearest(space, centre, PREFETCH, exclude=set(seed_ids), allowed=allowed)
    near = [*seed_ids, *map(int, around)]
    vec = dict(zip(near, searcher.vectors(space, near)))
    facts: dict[int, TrackFacts] = track_facts(searcher.store, near)
    builder = ListBuilder(rules, facts, vec)
    for s in seed_ids:
        builder.add(s)
    width = 1 + round(variety * (WIDEST - 1))
    target = None if minutes is None else minutes * 60.0
    while True:
        if n is not None and len(builder) >= n:
            break
        if target is not None and _seconds(builder.tracks, facts) >= target - _typical(facts) / 2:
            break
        if len(builder) >= MAX_LENGTH:
            break
        nxt = _next(searcher, space, builder, vec, facts, centre, allowed, width, rng)
        if nxt is None:
            break
        builder.add(nxt)
    tracks = builder.tracks
    out = []
    for pos, tid in enumerate(tracks, 1):
        f = facts[tid]
        sim = None if pos == 1 else round(float(vec[tracks[pos - 2]] @ vec[tid]), 6)
        out.append(PlaylistEntry(pos, tid, f.path, f.artist, f.title, f.duration,
                              "seed" if pos <= len(seed_ids) else "next", sim))
    return out


def _next(searcher: Searcher, space: str, builder: ListBuilder, vec: dict, facts: dict,
          centre: np.ndarray, allowed: np.ndarray | None, width: int, rng) -> int | None:
    """The next track, or None when no track is left that the rules allow."""
    last = vec[builder.tracks[-1]]
    q = (1 - ANCHOR) * last + ANCHOR * centre
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    total = searcher.index(space).ntotal if allowed is None else len(allowed)
    m = 2 * width + 8
    while True:
        ids, _ = searcher.nearest(space, q, m, exclude=set(builder.tracks), allowed=allowed)
        new = [int(t) for t in ids if int(t) not in vec]
        if new:  # reaching past what was read: read the wider neighbourhood in the same query
            wide, _ = searcher.nearest(space, q, WIDEN * m, exclude=set(builder.tracks), allowed=allowed)
            new = list(dict.fromkeys(new + [int(t) for t in wide if int(t) not in vec]))
            vec.update(zip(new, searcher.vectors(space, new)))
            facts.update(track_facts(searcher.store, new))
        ok = builder.admissible(ids, width)  # the first ``width`` the rules allow
        if len(ok) >= width or len(ids) < m or m >= total:
            break
        m *= 4
    if not ok:
        return None
    ok = ok[:width]
    if len(ok) == 1:
        return ok[0]
    # Order by similarity to the query (the search returns that order); weights by rank.
    weights = np.exp(-np.arange(len(ok)) / (width / 3.0))
    return ok[int(rng.choice(len(ok), p=weights / weights.sum()))]


def _typical(facts: dict[int, TrackFacts]) -> float:
    d = [f.duration for f in facts.values() if f.duration]
    return float(np.median(d)) if d else 240.0


def _seconds(tracks: list[int], facts: dict[int, TrackFacts]) -> float:
    typical = _typical(facts)
    return float(sum(facts[t].duration if t in facts and facts[t].duration else typical for t in tracks))
