# One file (≈500 lines) on purpose: a user tag's whole life (train, save, score, export) over the two tables it owns (probes, user_tags).
"""The user's own tags: a linear probe trained from example tracks, and its stored scores.

A tag ("cinematic") is learned from a few positive tracks (and optionally negative ones)
by logistic regression on the stored track-mean embeddings; the collection is then
scored, 0-1, into the ``user_tags`` table (``track_id, tag, score``), which SQL,
``--where``, playlists and the report can join. The probe itself (one weight vector over
the chosen space, or the concatenation of several) is saved in the ``probes`` table with
the SHA-256 of each embedding model it was trained on, so ``engine build`` scores tracks
added later without retraining (:func:`score_missing`), and a probe moves between stores
through :func:`export_probes` / :func:`import_probes` only when the models match.

Training (:func:`train`):

- negatives are the given ones plus a random sample of the rest of the collection
  (:data:`RANDOM_NEGATIVES_PER_POSITIVE` per positive, at least
  :data:`MIN_RANDOM_NEGATIVES`, at most :data:`MAX_RANDOM_NEGATIVES`; seeded by the tag
  name, so a retrain on the same examples gives the same probe). A random track is
  rarely of the tag, and when it is the probe only loses a little sharpness;
- features are each space's embedding standardised per dimension, concatenated for a
  combination; scikit-learn's ``LogisticRegression`` (L2, ``C`` = :data:`C`,
  ``class_weight="balanced"`` so 3 positives count as much as 300 negatives);
- every available space and their concatenation are cross-validated (stratified
  k-fold, k = min(5, positives, negatives)); the best AUC wins (ties: fewer dimensions),
  and its CV AUC and accuracy are reported with the counts. Fewer than
  :data:`TRUST_POSITIVES` positives or a CV AUC under :data:`TRUST_AUC` gives a warning.

The standardisation is folded into the weights, so scoring a track is one dot product
plus a sigmoid (:meth:`Probe.score`). No click here.
"""

from __future__ import annotations

import datetime as _dt
import json
import zlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from index.query import SPACES
from index.store import Store
from models.errors import EngineError

C = 1.0  # inverse L2 strength on standardised features (bench/tag_quality.py)
RANDOM_NEGATIVES_PER_POSITIVE = 20
MIN_RANDOM_NEGATIVES = 100
MAX_RANDOM_NEGATIVES = 1000
MAX_FOLDS = 5
TRUST_POSITIVES = 5  # fewer positives than this: warn that the score is a rough guide
TRUST_AUC = 0.75  # cross-validated AUC below this: warn that the examples do not separate
EXPORT_FORMAT = 1  # version of the export file's layout
TAG_CHARS = "letters, digits, spaces, '-', '_' and '.'"


class TagError(EngineError):
    """A tag that cannot be trained, found, exported or imported (the message says which)."""


@dataclass(frozen=True)
class SpaceQuality:
    """Cross-validated quality of the probe on one space or combination."""

    spaces: tuple[str, ...]
    auc: float | None  # None: too few examples to cross-validate
    accuracy: float | None  # balanced accuracy at score 0.5

    @property
    def name(self) -> str:
        return "+".join(self.spaces)


@dataclass(frozen=True)
class Probe:
    """A trained tag.

    Attributes
    ----------
    tag : str
        The tag's name.
    spaces : tuple of str
        Embedding spaces whose vectors are concatenated, in this order.
    versions : dict
        space -> SHA-256 (first 16 hex digits) of the embedding model the probe reads.
    weights : numpy.ndarray
        float32 ``[sum of the spaces' dimensions]``, on the raw (not standardised) vectors.
    bias : float
        Added to the dot product; score = sigmoid(x @ weights + bias), in 0-1.
    positives, negatives : tuple of int
        The example track ids given (negatives: the explicit ones only).
    random_negatives : int
        Random collection tracks used as further negatives.
    quality : tuple of SpaceQuality
        Every candidate tried, the chosen one first.
    trained_at : datetime.datetime
    """

    tag: str
    spaces: tuple[str, ...]
    versions: dict[str, str]
    weights: np.ndarray
    bias: float
    positives: tuple[int, ...]
    negatives: tuple[int, ...]
    random_negatives: int
    quality: tuple[SpaceQuality, ...]
    trained_at: _dt.datetime = field(default_factory=_dt.datetime.now)

    @property
    def chosen(self) -> SpaceQuality:
        return self.quality[0]

    def score(self, x: np.ndarray) -> np.ndarray:
        """Scores 0-1 ``[n]`` of raw vectors ``x`` ``[n, len(weights)]`` (float32)."""
        z = np.asarray(x, np.float32) @ self.weights + np.float32(self.bias)
        return (1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))).astype(np.float32)

    def warnings(self) -> list[str]:
        """Why the scores may not be trusted (empty when they may)."""
        out = []
        if len(self.positives) < TRUST_POSITIVES:
            out.append(f"only {len(self.positives)} positive example{'s' if len(self.positives) != 1 else ''}: "
                       f"the scores are a rough guide; mark {TRUST_POSITIVES}-10 to trust them")
        auc = self.chosen.auc
        if auc is not None and auc < TRUST_AUC:
            out.append(f"cross-validated AUC {auc:.2f}: the examples are not well told apart from the rest "
                       "in any space; add clearer positives or some negatives")
        return out


@dataclass(frozen=True)
class TagSummary:
    """One row of ``engine tag list``."""

    tag: str
    space: str
    positives: int
    negatives: int
    cv_auc: float | None
    cv_accuracy: float | None
    scored: int
    above_half: int
    trained_at: _dt.datetime


@dataclass(frozen=True)
class TagScore:
    """One scored track of ``engine tag show``."""

    track_id: int
    path: str
    score: float
    example: str  # "positive", "negative" or ""


def model_version(space: str) -> str:
    """The SHA-256 (16 hex digits) of the model that makes ``space``'s embeddings."""
    from models import registry

    spec = registry.get(space)
    return (spec.official_onnx or spec.graph).sha256[:16]


def check_name(tag: str) -> str:
    name = tag.strip()
    if not name or len(name) > 64 or not all(ch.isalnum() or ch in " -_." for ch in name):
        raise TagError(f"tag name {tag!r} is not usable: 1-64 characters, {TAG_CHARS}")
    return name


# -- training ----------------------------------------------------------------------------------

def examples(store: Store, positives: Sequence, negatives: Sequence = (), *, positive_where: str | None = None,
             negative_where: str | None = None) -> tuple[list[int], list[int]]:
    """Track ids of the examples: ``positives``/``negatives`` are index.byexample.Named
    (ids, paths, titles), the ``*_where`` SQL conditions on ``tracks``. Raises
    index.byexample.SeedError listing every name that matches no track or several."""
    from index.byexample import SeedError, resolve_named
    from index.usersql import filter_ids

    problems: list[str] = []
    ids: list[list[int]] = [[], []]
    for out, named in zip(ids, (positives, negatives)):
        for n in named:
            ref = resolve_named(store, n, problems)
            if ref is not None:
                out.append(ref.track_id)
    if problems:
        raise SeedError(problems)
    for out, where, option in ((ids[0], positive_where, "--positive-where"), (ids[1], negative_where, "--negative-where")):
        if where:
            found = filter_ids(store, where).tolist()
            if not found:
                raise TagError(f"{option} {where!r} matches no track")
            out.extend(found)
    return ids[0], ids[1]


def train(store: Store, tag: str, positives: Sequence[int], negatives: Sequence[int] = (), *,
          spaces: Sequence[str] | None = None, seed: int | None = None, holdout: Sequence[int] = ()) -> Probe:
    """Train a probe for ``tag`` from example track ids (see the module doc); not saved.

    ``spaces`` restricts the candidates (default: every space with embeddings);
    ``holdout`` tracks are never drawn as random negatives (an evaluation keeps them). Raises
    :class:`TagError` when no positive has an embedding or there is nothing to contrast.
    """
    tag = check_name(tag)
    pos_ids = list(dict.fromkeys(int(t) for t in positives))
    neg_ids = [t for t in dict.fromkeys(int(t) for t in negatives) if t not in set(pos_ids)]
    if not pos_ids:
        raise TagError(f"tag {tag!r}: give at least one positive example (--positive or --positive-where)")
    space_ids = _space_ids(store, spaces)
    if not space_ids:
        raise TagError("the store has no embeddings to learn from: run `engine build` with the models present")
    salt = zlib.crc32(tag.encode()) if seed is None else int(seed)
    held = np.asarray(list(holdout), np.int64)
    plans = []  # (combo, training track ids, labels, random negatives drawn)
    for combo in _candidates(list(space_ids)):
        ids = space_ids[combo[0]]
        for s in combo[1:]:
            ids = np.intersect1d(ids, space_ids[s])
        pos = np.isin(ids, pos_ids)
        neg_given = np.isin(ids, neg_ids)
        rest = ids[~pos & ~neg_given & ~np.isin(ids, held)]
        n_random = int(min(len(rest), MAX_RANDOM_NEGATIVES,
                           max(MIN_RANDOM_NEGATIVES, RANDOM_NEGATIVES_PER_POSITIVE * int(pos.sum()))))
        # A fixed pseudo-random order of the track ids (seeded by the tag): every
        # combination draws the same negatives where it has the same tracks.
        pick = np.sort(rest[np.argsort(_shuffle_key(rest, salt), kind="stable")[:n_random]])
        if pos.any() and (neg_given.any() or len(pick)):
            plans.append((combo, np.r_[ids[pos], ids[neg_given], pick],
                          np.r_[np.ones(int(pos.sum())), np.zeros(int(neg_given.sum()) + len(pick))], len(pick)))
    if not plans:
        names = ", ".join(map(str, pos_ids[:5]))
        raise TagError(f"tag {tag!r}: none of the positive tracks ({names}) has an embedding in "
                       f"{', '.join(space_ids)}, or no other track has one to contrast them with")
    # Only the training rows are read: at 100k tracks, all vectors would cost seconds.
    fetched = {s: fetch_vectors(store, s, np.unique(np.concatenate([p[1] for p in plans if s in p[0]])))
               for s in space_ids}
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # ≤ 1100 rows: BLAS threads only wait on each other
        return _choose_and_fit(tag, plans, fetched, neg_ids)


def _choose_and_fit(tag: str, plans, fetched, neg_ids: list[int]) -> Probe:
    results = []
    for combo, train_ids, y, n_random in plans:
        x = np.hstack([fetched[s][1][np.searchsorted(fetched[s][0], train_ids)] for s in combo])
        results.append((_cross_validate(x, y, combo), combo, train_ids, y, x, n_random))
    # Best cross-validated AUC (ties: fewer dimensions); without CV (one positive) all spaces together.
    results.sort(key=lambda r: (-(r[0].auc if r[0].auc is not None else -1.0),
                                -r[4].shape[1] if r[0].auc is None else r[4].shape[1]))
    quality, combo, train_ids, y, x, n_random = results[0]
    weights, bias = fit_logistic(x, y)
    versions = {s: model_version(s) for s in combo}
    used_neg = set(train_ids[y == 0].tolist())
    return Probe(tag, combo, versions, weights, bias, tuple(int(t) for t in train_ids[y == 1]),
                 tuple(t for t in neg_ids if t in used_neg), n_random, (quality,) + tuple(r[0] for r in results[1:]))


def _space_ids(store: Store, spaces: Sequence[str] | None) -> dict[str, np.ndarray]:
    """space -> sorted int64 ids of the tracks with a vector there, for each space that has any."""
    wanted = list(spaces) if spaces else list(SPACES)
    for s in wanted:
        if s not in SPACES:
            raise TagError(f"unknown embedding space {s!r}: use one of {', '.join(SPACES)}")
    out = {}
    for s in wanted:
        ids = np.asarray(store.con.execute("SELECT track_id FROM embeddings WHERE space = ? ORDER BY track_id",
                                           [s]).fetchnumpy()["track_id"], np.int64)
        if len(ids):
            out[s] = ids
    return out


def fetch_vectors(store: Store, space: str, ids: np.ndarray | None = None, *,
                  unscored: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(track ids ``[n]`` ascending, float32 vectors ``[n, d]``) of ``space``: of the tracks
    ``ids`` (default all), or of those without a score for the tag ``unscored``."""
    dims = store.con.execute("SELECT DISTINCT len(vector) FROM embeddings WHERE space = ?", [space]).fetchall()
    if len(dims) != 1:  # none, or mixed sizes (which a rebuild of the index reports)
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    dim = int(dims[0][0])
    where, params = "", [space]
    if ids is not None:
        where, params = "AND track_id IN (SELECT unnest(?))", params + [np.asarray(ids, np.int64).tolist()]
    if unscored is not None:
        where += " AND track_id NOT IN (SELECT track_id FROM user_tags WHERE tag = ?)"
        params.append(unscored)
    got = store.con.execute(f"SELECT track_id, vector::FLOAT[{dim}] AS v FROM embeddings WHERE space = ? {where} "
                            "ORDER BY track_id", params).fetchnumpy()
    v = got["v"]
    x = np.stack(v) if v.dtype == object and len(v) else np.asarray(v, np.float32)
    return np.asarray(got["track_id"], np.int64), np.ascontiguousarray(x, np.float32).reshape(len(v), dim)


def _shuffle_key(ids: np.ndarray, salt: int) -> np.ndarray:
    """A pseudo-random uint64 per track id, fixed for a salt (a multiplicative hash)."""
    with np.errstate(over="ignore"):
        return (ids.astype(np.uint64) + np.uint64(salt)) * np.uint64(0x9E3779B97F4A7C15) >> np.uint64(17)


def _candidates(spaces: list[str]) -> list[tuple[str, ...]]:
    """Each space alone, then all of them together."""
    return [(s,) for s in spaces] + ([tuple(spaces)] if len(spaces) > 1 else [])


def fit_logistic(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Logistic regression on standardised ``x``; the weights and bias on raw ``x``."""
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(0)
    scale = x.std(0)
    scale[scale < 1e-6] = 1.0
    model = LogisticRegression(C=C, class_weight="balanced", max_iter=500)
    model.fit((x - mean) / scale, y)
    w = (model.coef_[0] / scale).astype(np.float32)
    return w, float(model.intercept_[0] - mean @ w)


def _cross_validate(x: np.ndarray, y: np.ndarray, combo: tuple[str, ...]) -> SpaceQuality:
    """Stratified k-fold AUC and balanced accuracy; None when a class has under 2 examples."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    folds = int(min(MAX_FOLDS, (y == 1).sum(), (y == 0).sum()))
    if folds < 2:
        return SpaceQuality(combo, None, None)
    scores = np.zeros(len(y))
    for train_rows, test_rows in StratifiedKFold(folds, shuffle=True, random_state=0).split(x, y):
        w, b = fit_logistic(x[train_rows], y[train_rows])
        scores[test_rows] = x[test_rows] @ w + b
    return SpaceQuality(combo, float(roc_auc_score(y, scores)),
                        float(balanced_accuracy_score(y, scores > 0)))


# -- storing and scoring ------------------------------------------------------------------------

def save(store: Store, probe: Probe) -> int:
    """Store ``probe`` (replacing one of the same name) and score the collection; tracks scored."""
    with store.transaction():
        store.con.execute("DELETE FROM probes WHERE tag = ?", [probe.tag])
        store.con.execute("DELETE FROM user_tags WHERE tag = ?", [probe.tag])
        store.con.execute(
            "INSERT INTO probes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [probe.tag, list(probe.spaces), json.dumps(probe.versions), probe.weights.tolist(), probe.bias,
             list(probe.positives), list(probe.negatives), probe.random_negatives,
             json.dumps([[list(q.spaces), q.auc, q.accuracy] for q in probe.quality]), probe.trained_at])
        return _score_into(store, probe, only_missing=False)


def scores(store: Store, probe: Probe, *, only_missing: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(track ids ``[n]``, scores 0-1 ``[n]``) of the tracks with every space of the probe
    (only those without a stored score when ``only_missing``); nothing is written."""
    parts = [fetch_vectors(store, s, unscored=probe.tag if only_missing else None) for s in probe.spaces]
    if any(not len(p[0]) for p in parts):
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    width = sum(p[1].shape[1] for p in parts)
    if width != len(probe.weights):
        raise TagError(f"tag {probe.tag!r} reads {len(probe.weights)}-dimensional {'+'.join(probe.spaces)} "
                       f"vectors; this store's are {width}-dimensional")
    ids = parts[0][0]
    for p in parts[1:]:
        ids = np.intersect1d(ids, p[0])
    x = np.hstack([p[1][np.searchsorted(p[0], ids)] for p in parts])
    return ids, probe.score(x)


def _score_into(store: Store, probe: Probe, *, only_missing: bool) -> int:
    """Score the tracks with every space of the probe (only those without a score when
    ``only_missing``) and insert their rows; how many."""
    ids, got = scores(store, probe, only_missing=only_missing)
    if not len(ids):
        return 0
    store.con.register("_tag_scores", {"track_id": ids.astype(np.int32), "score": got})
    try:
        store.con.execute("INSERT INTO user_tags SELECT track_id, ?, score FROM _tag_scores", [probe.tag])
    finally:
        store.con.unregister("_tag_scores")
    return len(ids)


def score_missing(store: Store) -> list[str]:
    """Score the tracks that have no score for a stored tag (new or re-analysed ones), at
    the end of a build; notes for the probes that cannot be used (another model version)."""
    notes = []
    for probe in load_all(store):
        stale = [s for s in probe.spaces if probe.versions.get(s) != model_version(s)]
        if stale:
            notes.append(f"tag {probe.tag!r} was trained on another {'/'.join(stale)} model: new tracks are "
                         f"not scored; retrain it with `engine tag train {probe.tag} ...`")
            continue
        with store.transaction():
            _score_into(store, probe, only_missing=True)
    return notes


def _has_tables(store: Store) -> bool:
    """False for a store made before user tags existed, opened read-only."""
    return bool(store.con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'probes'").fetchone()[0])


def _probe_from_row(row) -> Probe:
    tag, spaces, versions, weights, bias, pos, neg, n_random, quality, at = row
    return Probe(tag, tuple(spaces), json.loads(versions), np.asarray(weights, np.float32), float(bias),
                 tuple(pos), tuple(neg), int(n_random),
                 tuple(SpaceQuality(tuple(s), a, c) for s, a, c in json.loads(quality)), at)


def load_all(store: Store) -> list[Probe]:
    if not _has_tables(store):
        return []
    return [_probe_from_row(r) for r in store.con.execute("SELECT * FROM probes ORDER BY tag").fetchall()]


def load(store: Store, tag: str) -> Probe:
    """The stored probe of ``tag``; :class:`TagError` naming the tags there are if none."""
    rows = store.con.execute("SELECT * FROM probes WHERE tag = ?", [tag]).fetchall() if _has_tables(store) else []
    if not rows:
        have = [p.tag for p in load_all(store)]
        raise TagError(f"no tag named {tag!r} in the store; "
                       + (f"tags: {', '.join(have)}" if have else "train one with `engine tag train NAME --positive TRACK`"))
    return _probe_from_row(rows[0])


def delete(store: Store, tag: str) -> None:
    load(store, tag)  # names the tags there are when it is not one
    with store.transaction():
        store.con.execute("DELETE FROM probes WHERE tag = ?", [tag])
        store.con.execute("DELETE FROM user_tags WHERE tag = ?", [tag])


def summaries(store: Store) -> list[TagSummary]:
    out = []
    for p in load_all(store):
        scored, above = store.con.execute(
            "SELECT count(*), count(*) FILTER (WHERE score > 0.5) FROM user_tags WHERE tag = ?", [p.tag]).fetchone()
        out.append(TagSummary(p.tag, p.chosen.name, len(p.positives), len(p.negatives), p.chosen.auc,
                              p.chosen.accuracy, scored, above, p.trained_at))
    return out


def ranked(store: Store, tag: str, limit: int | None = None) -> list[TagScore]:
    """The tracks scored for ``tag``, highest first (ties by track id)."""
    probe = load(store, tag)
    rows = store.con.execute(
        "SELECT u.track_id, t.path, u.score FROM user_tags u JOIN tracks t USING (track_id) "
        "WHERE u.tag = ? ORDER BY u.score DESC, u.track_id" + (" LIMIT ?" if limit is not None else ""),
        [tag] + ([int(limit)] if limit is not None else [])).fetchall()
    role = {t: "positive" for t in probe.positives} | {t: "negative" for t in probe.negatives}
    return [TagScore(int(t), p, float(s), role.get(int(t), "")) for t, p, s in rows]


# -- moving between stores ----------------------------------------------------------------------

def export_probes(store: Store, tags: Sequence[str]) -> dict:
    """A JSON-ready document holding the probes ``tags`` (all when empty)."""
    probes = [load(store, t) for t in tags] if tags else load_all(store)
    if not probes:
        raise TagError("the store has no tags to export; train one with `engine tag train NAME --positive TRACK`")
    paths = dict(store.con.execute("SELECT track_id, path FROM tracks").fetchall())
    return {"engine_tags": EXPORT_FORMAT, "tags": [{
        "tag": p.tag, "spaces": list(p.spaces), "versions": p.versions, "weights": p.weights.tolist(),
        "bias": p.bias, "random_negatives": p.random_negatives,
        "quality": [[list(q.spaces), q.auc, q.accuracy] for q in p.quality],
        "trained_at": p.trained_at.isoformat(),
        # Paths, not ids: ids mean nothing in another store; kept to say what it learned from.
        "positives": [paths.get(t) for t in p.positives], "negatives": [paths.get(t) for t in p.negatives],
    } for p in probes]}


def import_probes(store: Store, document: dict, *, source: str, replace: bool = False) -> list[tuple[str, int]]:
    """Store the probes of an exported ``document`` (from ``source``, named in errors) and
    score the collection with them; (tag, tracks scored) each. Every probe is checked
    before any is stored: a tag already here needs ``replace``; the models must match."""
    if not isinstance(document, dict) or document.get("engine_tags") != EXPORT_FORMAT:
        raise TagError(f"{source} is not an engine tag export (format {EXPORT_FORMAT})")
    probes = []
    have = {p.tag for p in load_all(store)}
    for d in document.get("tags", []):
        try:
            tag = check_name(str(d["tag"]))
            spaces = tuple(d["spaces"])
            versions = dict(d["versions"])
            weights = np.asarray(d["weights"], np.float32)
            quality = tuple(SpaceQuality(tuple(s), a, c) for s, a, c in d["quality"])
            bias = float(d["bias"])
        except (KeyError, TypeError, ValueError) as exc:
            raise TagError(f"{source}: a tag entry is damaged ({exc})") from None
        if tag in have and not replace:
            raise TagError(f"{source}: tag {tag!r} is already in the store; delete it first or pass --replace")
        for s in spaces:
            if s not in SPACES:
                raise TagError(f"{source}: tag {tag!r} uses an unknown space {s!r}")
            if versions.get(s) != model_version(s):
                raise TagError(f"{source}: tag {tag!r} was trained on another {s} model "
                               f"({versions.get(s)}, this engine has {model_version(s)}); retrain it here")
        probes.append(Probe(tag, spaces, versions, weights, bias, (), (), int(d.get("random_negatives", 0)), quality,
                            _dt.datetime.fromisoformat(d["trained_at"]) if d.get("trained_at") else _dt.datetime.now()))
    if not probes:
        raise TagError(f"{source} holds no tags")
    return [(p.tag, save(store, p)) for p in probes]
