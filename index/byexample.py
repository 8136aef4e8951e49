"""More like these: k-NN from several seed tracks, steering away from tracks to avoid.

Seeds are combined by one of three rules (``combine``), all on the normalised vectors of
the search space (index.query.Searcher):

- ``centroid``: cosine with the mean of the seeds' vectors;
- ``fusion``: reciprocal rank fusion of each seed's own neighbour list (score
  Σ 1/(60 + rank), the constant of Cormack et al. 2009);
- ``maxmin``: the lowest cosine with any seed (a track must be near all of them).

:data:`DEFAULT_COMBINE` is the rule measured best by ``bench/seeds_quality.py`` on the
library (docs/playlists.md). A track to avoid removes the candidates that are closer to
it than to every seed. The list keeps the rules of index.lists (no track twice, one of
each near-duplicate recording, optional caps); the seeds count towards the caps.
``similarity`` in the results is the mean cosine to the seeds (for one seed: the cosine).

Candidates are each seed's and the centroid's nearest tracks (4k + 20 each, then 4x as
many while the rules or the avoided tracks leave fewer than k), ranked exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from index.lists import ListBuilder, ListRules, pick
from index.query import Neighbour, Searcher, check_space
from index.queryerrors import AmbiguousTrackError, MissingEmbeddingsError, QueryError, UnknownTrackError
from index.tracks import TrackSummary, resolve_track
from index.trackfacts import track_facts

COMBINES = ("centroid", "fusion", "maxmin")
DEFAULT_COMBINE = "centroid"
FUSION_K = 60  # reciprocal rank fusion's constant


class SeedError(QueryError):
    """Named tracks that cannot be used: one line per track (the CLI prefixes each with
    ``error:``); an ambiguous one is followed by its candidates, indented."""

    def __init__(self, problems: Sequence[str]):
        self.problems = tuple(problems)
        super().__init__("\nerror: ".join(self.problems))


@dataclass(frozen=True)
class Named:
    """A track as the user named it: the option it came with and the text."""

    option: str  # e.g. "--track", "--not", "--from"
    text: str


def resolve_named(store, n: Named, problems: list[str]) -> TrackSummary | None:
    """The track ``n`` names, or None after adding to ``problems`` why it names none (an
    ambiguous one is followed by its candidates, indented)."""
    try:
        return resolve_track(store, n.text)
    except AmbiguousTrackError as exc:
        lines = [f"{n.option} {n.text!r} matches {exc.total} tracks: give more of the path or title, "
                 "or a track id:"]
        lines += [f"  {c.track_id:>6}  {c.path}" for c in exc.candidates]
        if exc.total > len(exc.candidates):
            lines.append(f"  … and {exc.total - len(exc.candidates)} more")
        problems.append("\n".join(lines))
    except UnknownTrackError as exc:
        problems.append(f"{n.option}: {exc}")  # names the text and what to give instead
    return None


def resolve_seeds(searcher: Searcher, space: str, named: Sequence[Named]) -> list[TrackSummary]:
    """The tracks ``named`` (ids, paths, path parts or titles), in order, each with a vector
    in ``space``. Raises :class:`SeedError` listing every one that is missing, ambiguous or
    without an embedding, one line each."""
    check_space(space)
    refs: list[TrackSummary] = []
    problems: list[str] = []
    for n in named:
        ref = resolve_named(searcher.store, n, problems)
        if ref is None:
            continue
        if not len(searcher.in_index(space, np.array([ref.track_id], np.int64))):
            try:
                searcher.query_vector(ref, space)  # names the reason (and the fix)
                reason = f"track {ref.track_id} ({ref.path}) has no {space} embedding"
            except MissingEmbeddingsError as exc:
                reason = str(exc)
            problems.append(f"{n.option} {n.text!r}: {reason}")
            continue
        refs.append(ref)
    if problems:
        raise SeedError(problems)
    return refs


def combine_scores(candidates: np.ndarray, seeds: np.ndarray, combine: str = DEFAULT_COMBINE) -> np.ndarray:
    """Score ``[c]`` of each candidate (higher is better) under a combination rule.

    Parameters
    ----------
    candidates : numpy.ndarray
        ``[c, d]`` normalised vectors.
    seeds : numpy.ndarray
        ``[s, d]`` normalised vectors, s >= 1.
    combine : str
        One of :data:`COMBINES`.
    """
    if combine not in COMBINES:
        raise QueryError(f"unknown combination {combine!r}: use one of {', '.join(COMBINES)}")
    sims = candidates @ seeds.T  # [c, s]
    if combine == "centroid":
        centre = seeds.mean(0)
        return candidates @ (centre / max(float(np.linalg.norm(centre)), 1e-12))
    if combine == "maxmin":
        return sims.min(1)
    ranks = np.argsort(np.argsort(-sims, axis=0, kind="stable"), axis=0, kind="stable") + 1
    return (1.0 / (FUSION_K + ranks)).sum(1)


def avoided(candidates: np.ndarray, seeds: np.ndarray, avoid: np.ndarray) -> np.ndarray:
    """bool ``[c]``: candidates closer (cosine) to a track to avoid than to every seed."""
    if not len(avoid):
        return np.zeros(len(candidates), bool)
    return (candidates @ avoid.T).max(1) > (candidates @ seeds.T).max(1)


def more_like(searcher: Searcher, seeds: Sequence[TrackSummary], space: str, k: int = 10, *,
              avoid: Sequence[TrackSummary] = (), where: str | None = None,
              combine: str = DEFAULT_COMBINE, rules: ListRules = ListRules()) -> list[Neighbour]:
    """The ``k`` tracks most like ``seeds`` (and unlike ``avoid``) in ``space``, best first.

    ``where`` (SQL over ``tracks``) restricts the candidates before ranking. The seeds,
    the tracks to avoid and copies of them are never returned.
    """
    check_space(space)
    if k < 1:
        raise QueryError(f"k must be at least 1, not {k}")
    if not seeds:
        raise QueryError("no seed track given")
    if combine not in COMBINES:
        raise QueryError(f"unknown combination {combine!r}: use one of {', '.join(COMBINES)}")
    seed_ids = [s.track_id for s in seeds]
    avoid_ids = [a.track_id for a in avoid]
    seed_vecs = searcher.vectors(space, seed_ids)
    avoid_vecs = searcher.vectors(space, avoid_ids)
    allowed = searcher.allowed(space, where)
    exclude = set(seed_ids) | set(avoid_ids)
    centre = seed_vecs.mean(0)
    queries = [centre / max(float(np.linalg.norm(centre)), 1e-12)] + (list(seed_vecs) if len(seeds) > 1 else [])
    total = searcher.index(space).ntotal if allowed is None else len(allowed)
    m = 4 * k + 20
    while True:
        found = [searcher.nearest(space, q, m, exclude=exclude, allowed=allowed)[0] for q in queries]
        cand = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
        exhausted = m >= total or all(len(f) < m for f in found)
        picked, vecs = _rank(searcher, space, cand, seed_ids, seed_vecs, avoid_vecs, combine, rules, k)
        if len(picked) >= k or exhausted:
            break
        m *= 4
    mean_sim = {t: float((vecs[t] @ seed_vecs.T).mean()) for t in picked}
    return searcher.neighbours([(t, mean_sim[t]) for t in picked])


def _rank(searcher: Searcher, space: str, cand: np.ndarray, seed_ids: list[int], seed_vecs: np.ndarray,
          avoid_vecs: np.ndarray, combine: str, rules: ListRules, k: int):
    """(up to k picked track ids in list order, id -> vector) for candidate ids ``cand``."""
    vecs = searcher.vectors(space, cand)
    keep = ~avoided(vecs, seed_vecs, avoid_vecs)
    cand, vecs = cand[keep], vecs[keep]
    scores = combine_scores(vecs, seed_vecs, combine) if len(cand) else np.zeros(0)
    order = np.lexsort((cand, -scores))  # best first, ties by track id
    facts = track_facts(searcher.store, [*seed_ids, *cand.tolist()])
    by_id = dict(zip(cand.tolist(), vecs))
    by_id.update(zip(seed_ids, seed_vecs))
    copies = {facts[s].content_hash for s in seed_ids if s in facts and facts[s].content_hash}
    builder = ListBuilder(rules, facts, by_id)
    for s in seed_ids:
        builder.add(s)
    ranked = [int(t) for t in cand[order] if not (int(t) in facts and facts[int(t)].content_hash in copies)]
    return pick(builder, ranked, k), by_id
