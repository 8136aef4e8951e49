"""Lists made from marks and the cursor: more like the seeds, a song path, a radio. No textual.

:func:`build_list` turns a :class:`ListRequest` into a :class:`ListMade` over an open
``index.query.Searcher``: the track ids in play order, a title for the list and, for each
track, why it is there (index.explain: what it shares with the seeds, or with the track
before it in a path or radio). The app calls it from a thread worker (tui.data.Catalog
holds the searcher's lock).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from index.query import DEFAULT_SPACE, SPACES, Searcher
from index.queryerrors import MissingEmbeddingsError, QueryError
from index.tracks import TrackSummary

KINDS = ("more", "path", "radio", "tag")
LIST_LENGTH = 30  # tracks in a list made from marks (a path: from, via, to included)
TAG_LENGTH = 100  # tracks shown by score for a tag learned from the marks
MARKED_TAG = "marked"  # name of the (unsaved) tag learned in the TUI


@dataclass(frozen=True)
class ListRequest:
    """``kind`` is ``more`` (like the seeds, unlike ``avoid``), ``path`` (from the first
    seed, through the others, to ``target``) or ``radio`` (from the seeds)."""

    kind: str
    seeds: tuple[int, ...]
    avoid: tuple[int, ...] = ()
    target: int | None = None
    where: str | None = None  # SQL over tracks (the panel's filters), None: the whole store
    length: int = LIST_LENGTH


@dataclass(frozen=True)
class ListMade:
    track_ids: tuple[int, ...]
    title: str  # e.g. "path of 30 from A to B (musicnn)"
    space: str
    why: dict[int, str] = field(default_factory=dict)


def _spaces() -> tuple[str, ...]:
    return (DEFAULT_SPACE, *(s for s in SPACES if s != DEFAULT_SPACE))


def build_list(searcher: Searcher, request: ListRequest) -> ListMade:
    """The list ``request`` asks for, in the best space the store has (index.query.DEFAULT_SPACE
    first). Raises QueryError (one line) when it cannot be made."""
    if request.kind not in KINDS:
        raise QueryError(f"unknown list kind {request.kind!r}")
    if not request.seeds:
        raise QueryError("mark a seed first (or select a track)")
    if request.kind == "tag":
        return _learned_tag(searcher, request)
    error = None
    for space in _spaces():
        try:
            return _build(searcher, request, space)
        except MissingEmbeddingsError as exc:  # try the next space
            error = exc
    raise QueryError(str(error))


def _learned_tag(searcher: Searcher, request: ListRequest) -> ListMade:
    """The collection by the score of a tag learned from the seeds (positives) and the
    avoided tracks (negatives): index.usertags on the read-only store, nothing saved."""
    import numpy as np

    from index import usertags
    from index.usersql import filter_ids

    store = searcher.store
    try:
        probe = usertags.train(store, MARKED_TAG, request.seeds, request.avoid)
    except usertags.TagError as exc:
        raise QueryError(str(exc)) from None
    ids, scores = usertags.scores(store, probe)
    if request.where:
        keep = np.isin(ids, filter_ids(store, request.where))
        ids, scores = ids[keep], scores[keep]
    order = np.lexsort((ids, -scores))[:TAG_LENGTH]
    q = probe.chosen
    quality = f"CV AUC {q.auc:.2f}" if q.auc is not None else "too few to cross-validate"
    warn = " — " + probe.warnings()[0].split(":")[0] if probe.warnings() else ""
    title = (f"tag from {len(probe.positives)}+ / {len(probe.negatives)}− marked: {len(order)} highest "
             f"({q.name}, {quality}){warn}")
    role = {t: "positive" for t in probe.positives} | {t: "negative" for t in probe.negatives}
    why = {int(ids[i]): f"score {scores[i]:.2f}" + (f" ({role[int(ids[i])]})" if int(ids[i]) in role else "")
           for i in order}
    return ListMade(tuple(int(ids[i]) for i in order), title, q.name, why)


def _ref(searcher: Searcher, track_id: int) -> TrackSummary:
    from index.tracks import resolve_track

    return resolve_track(searcher.store, int(track_id))


def _build(searcher: Searcher, request: ListRequest, space: str) -> ListMade:
    from index.explain import Explainer

    seeds = [_ref(searcher, t) for t in request.seeds]
    names = ", ".join(s.label for s in seeds[:3]) + (" …" if len(seeds) > 3 else "")
    if request.kind == "more":
        from index.byexample import more_like

        avoid = [_ref(searcher, t) for t in request.avoid]
        found = more_like(searcher, seeds, space, request.length, avoid=avoid, where=request.where)
        ids = tuple(n.track_id for n in found)
        title = f"{len(ids)} most like {names}" + (f", not {len(avoid)} avoided" if avoid else "") + f" ({space})"
        ex = Explainer(searcher.store)
        return ListMade(ids, title, space, {t: ex.why(t, list(request.seeds)) for t in ids})
    if request.kind == "path":
        from index.paths import song_path

        if request.target is None or request.target in request.seeds:
            raise QueryError("put the cursor on the track the path should end at (not a seed)")
        end = _ref(searcher, request.target)
        length = max(request.length, len(seeds) + 1)
        made = song_path(searcher, seeds[0], end, space, via=seeds[1:], length=length, where=request.where)
        ids = tuple(s.track_id for s in made.steps)
        title = f"path of {len(ids)} from {seeds[0].label} to {end.label} ({space})"
    else:
        from index.radio import radio

        made = radio(searcher, seeds, space, length=max(request.length, len(seeds)), where=request.where)
        ids = tuple(t.track_id for t in made)
        title = f"radio of {len(ids)} from {names} ({space})"
    ex = Explainer(searcher.store)
    return ListMade(ids, title, space, {t: ex.why(t, [p]) for p, t in zip(ids, ids[1:])})
