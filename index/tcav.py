"""Which concepts push a head's prediction: TCAV (Kim et al. 2018) on the stored embeddings.

A **concept** is a direction in a space's embedding (a concept activation vector, CAV):
the normalised weights of a linear probe (index.usertags' logistic regression) that tells
the concept's example tracks from random others. Concepts come from the store:

- every MagnaTagATune / MSD tag (source ``mtt`` / ``musicnn``): its examples are the tracks
  at least :data:`EXAMPLE_Z` standard deviations above the collection's mean activation;
- descriptor extremes (fast/slow, loud/quiet, minor/major, ...): the same on a column;
- the user's own tags (score > 0.5) and, for checks, any list of example tracks.

A **head** is a model that reads the embedding (registry heads: ``moods_mirex`` and
``emomusic`` on MusiCNN, the EffNet heads such as ``genre_discogs400``), run through
onnxruntime on the track-mean embedding (the build averages the head over patches; the
head of the mean is within a few hundredths of it). The sensitivity of class ``c`` to a
concept ``v`` at ``x`` is the directional derivative ``(f_c(x + h v) - f_c(x - h v)) / 2h``
(a central finite difference, ``h`` = :data:`STEP` times the collection's median norm).

The **TCAV score** of a concept for ``c`` is the share of the tracks of class ``c`` (the
head's top class) whose derivative is positive. The concept is significant when its mean
derivative over those tracks is larger in size than all but 5 % of the mean derivatives
of :data:`RANDOM_CAVS` random directions, each learned the same way from random example
sets (a two-sided empirical test; the share alone saturates at 0 or 1 for random
directions too where the head is nearly linear, see :func:`p_values`).
No click here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from index.store import Store
from models.errors import EngineError

EXAMPLE_Z = 1.0
MIN_EXAMPLES = 3
RANDOM_CAVS = 40
RANDOM_EXAMPLES = 10  # example tracks per random direction
STEP = 1e-2
MAX_CLASS_TRACKS = 200  # tracks of the class the TCAV score is taken over (a sample beyond)
ALPHA = 0.05
TAG_SOURCES = ("mtt", "musicnn")
BACKBONE_TAG_HEADS = ("musicnn", "mtt")  # backbones whose tag layers can be cut off as a head  # instrument, mood and genre words of the two tag models
DESCRIPTOR_CONCEPTS = ("fast", "slow", "loud", "quiet", "danceable", "happy", "sad", "calm", "energetic")


class ExplainError(EngineError):
    """A head, class or track that cannot be explained (the message says which)."""


@dataclass(frozen=True)
class Head:
    """A prediction head over one space: ``predict(x [n, d]) -> [n, classes]``."""

    name: str
    space: str
    labels: tuple[str, ...]
    predict: Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ConceptVector:
    name: str  # e.g. "strings", "slow", "cinematic (yours)"
    direction: np.ndarray  # float32 [d], unit norm
    examples: int


@dataclass(frozen=True)
class ConceptEffect:
    """One concept's effect on the explained class.

    ``at_track``: directional derivative at the track (probability per unit of embedding
    norm); ``tcav``: share of the class's tracks it pushes up (0-1); ``p_value``: against
    the random directions."""

    concept: str
    at_track: float
    tcav: float
    p_value: float

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA


@dataclass(frozen=True)
class Explanation:
    track_id: int
    head: str
    label: str
    probability: float
    class_tracks: int
    effects: tuple[ConceptEffect, ...]  # significant first, then by |at_track|

    def text(self, most: int = 4) -> str:
        """``Classical (0.82): strings ↑↑, slow ↑, drums ↓`` (significant concepts only)."""
        sig = [e for e in self.effects if e.significant and e.at_track != 0][:most]
        if not sig:
            return f"{self.label} ({self.probability:.2f}): no concept of this store pushes it significantly"
        top = max(abs(e.at_track) for e in sig)
        parts = []
        for e in sig:
            arrow = "↑" if e.at_track > 0 else "↓"
            parts.append(f"{e.concept} {arrow * (2 if abs(e.at_track) >= top / 2 else 1)}")
        return f"{self.label} ({self.probability:.2f}): " + ", ".join(parts)


# -- heads ------------------------------------------------------------------------------------

def available_heads(store: Store) -> list[str]:
    """Registry heads whose backbone's embeddings the store holds and whose model is present."""
    from models import registry
    from models.paths import present

    have = {r[0] for r in store.con.execute("SELECT DISTINCT space FROM embeddings").fetchall()}
    return [s for s in BACKBONE_TAG_HEADS if s in have] + [
        h.name for s in ("musicnn", "effnet") if s in have for h in registry.heads_of(s) if present(h)]


def load_head(name: str) -> Head:
    """A registry head, or ``musicnn``/``mtt``: the tag layers of that backbone (MSD /
    MagnaTagATune tags) cut from its ONNX graph at the embedding (:func:`_tag_layers`)."""
    from models import paths, registry
    from models.inference import load

    try:
        spec = registry.get(name)
    except (KeyError, ValueError):
        spec = None
    if spec is not None and name in BACKBONE_TAG_HEADS:
        return _tag_layers(spec)
    if spec is None or spec.backbone is None:
        raise ExplainError(f"{name!r} is not a head on the embeddings: use one of "
                           f"{', '.join((*BACKBONE_TAG_HEADS, 'moods_mirex', 'emomusic', 'genre_discogs400'))}")
    model = load(spec)
    meta = paths.models_dir() / spec.metadata.filename if spec.metadata else None
    labels = registry.labels(spec, meta) if (meta is not None or spec.label_list) else tuple(
        f"output {i}" for i in range(spec.n_outputs or 1))
    return Head(name, spec.backbone, tuple(labels), lambda x: model.run(x)["predictions"])


def _tag_layers(spec) -> Head:
    """The backbone's layers from its embedding output to its tag output, as their own
    ONNX model (ReLU, batch norm, dense, sigmoid: 6 nodes for MusiCNN), cached beside the
    converted model. Cutting the graph needs the ``onnx`` package (installed with the
    ``export`` extra that converts the models)."""
    import onnxruntime as ort

    from models import paths, registry
    from models.export import ensure_onnx

    full = ensure_onnx(spec)
    cut = paths.cache_dir() / "onnx" / f"{full.stem}.tag-layers.onnx"
    if not cut.is_file():
        try:
            import onnx.utils
        except ImportError:
            raise ExplainError(f"explaining the {spec.name} tags needs the onnx package: "
                               "pip install 'music-engine[export]'") from None
        cut.parent.mkdir(parents=True, exist_ok=True)
        tmp = cut.with_name(cut.name + ".tmp")
        onnx.utils.extract_model(str(full), str(tmp), [spec.outputs["embeddings"]], [spec.outputs["predictions"]])
        tmp.replace(cut)
    session = ort.InferenceSession(str(cut), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0].name
    meta = paths.models_dir() / spec.metadata.filename if spec.metadata else None
    labels = registry.labels(spec, meta)
    return Head(spec.name, spec.name, tuple(labels),
                lambda x: session.run(None, {inp: np.ascontiguousarray(x, np.float32)})[0])


# -- concepts ---------------------------------------------------------------------------------

def _cav(x: np.ndarray, ids: np.ndarray, positives: np.ndarray, rng: np.random.Generator,
         negatives: np.ndarray | None = None) -> np.ndarray | None:
    """Unit direction of a probe telling ``positives`` (track ids) from random others."""
    from index.usertags import fit_logistic

    pos = np.isin(ids, positives)
    if pos.sum() < MIN_EXAMPLES:
        return None
    others = np.flatnonzero(~pos) if negatives is None else np.flatnonzero(np.isin(ids, negatives))
    if not len(others):
        return None
    neg = rng.choice(others, min(len(others), max(50, 5 * int(pos.sum()))), replace=False)
    rows = np.r_[np.flatnonzero(pos), neg]
    y = np.r_[np.ones(int(pos.sum())), np.zeros(len(neg))]
    w, _ = fit_logistic(x[rows], y)
    n = float(np.linalg.norm(w))
    return (w / n).astype(np.float32) if n > 0 else None


def store_concepts(store: Store, space: str, ids: np.ndarray, x: np.ndarray, *,
                   rng: np.random.Generator) -> list[ConceptVector]:
    """The concepts of the store (tags, descriptor words, user tags) as CAVs in ``space``."""
    from index import concepts as concept_cache
    from index.vocabulary import DESCRIPTOR_WORDS, TAG, USER_SOURCE, Concept, COLUMN

    table = concept_cache.ensure_table(store)
    pos = table.positions(ids)
    keep = np.isin(ids, table.ids)
    ids, x = ids[keep], x[keep]
    out: list[ConceptVector] = []
    seen: set[str] = set()

    def add(name: str, z: np.ndarray) -> None:
        if name.lower() in seen:
            return
        examples = ids[z >= EXAMPLE_Z]
        cav = _cav(x, ids, examples, rng)
        if cav is not None:
            seen.add(name.lower())
            out.append(ConceptVector(name, cav, len(examples)))

    for c in table.concepts:
        if c.kind == TAG and c.source == USER_SOURCE:
            raw = table.raw(c, pos)
            examples = ids[raw > 0.5]
            cav = _cav(x, ids, examples, rng)
            if cav is not None:
                out.append(ConceptVector(f"{c.name} (yours)", cav, len(examples)))
                seen.add(c.name.lower())
    for c in table.concepts:
        if c.kind == TAG and c.source in TAG_SOURCES:
            add(c.name, table.z(c, pos))
    for word in DESCRIPTOR_CONCEPTS:
        for col, sign in DESCRIPTOR_WORDS.get(word, [])[:1]:
            c = Concept(COLUMN, "tracks", col, sign)
            if c in table:
                add(word, table.z(c, pos))
    return out


def random_cavs(ids: np.ndarray, x: np.ndarray, rng: np.random.Generator, n: int = RANDOM_CAVS) -> list[np.ndarray]:
    """Directions learned from random example sets: what a concept's score is tested against."""
    out = []
    for _ in range(n):
        cav = _cav(x, ids, rng.choice(ids, min(len(ids) - 1, RANDOM_EXAMPLES), replace=False), rng)
        if cav is not None:
            out.append(cav)
    return out


# -- sensitivity --------------------------------------------------------------------------------

def derivatives(head: Head, points: np.ndarray, directions: np.ndarray, cls: int, h: float) -> np.ndarray:
    """``[len(points), len(directions)]`` directional derivatives of class ``cls``."""
    n, k = len(points), len(directions)
    plus = (points[:, None, :] + h * directions[None]).reshape(n * k, -1)
    minus = (points[:, None, :] - h * directions[None]).reshape(n * k, -1)
    f = head.predict(np.concatenate([plus, minus]).astype(np.float32))[:, cls]
    return ((f[: n * k] - f[n * k:]) / (2 * h)).reshape(n, k)


def tcav_scores(head: Head, class_points: np.ndarray, directions: np.ndarray, cls: int,
                h: float) -> tuple[np.ndarray, np.ndarray]:
    """(share of ``class_points`` each direction pushes class ``cls`` up, mean derivative),
    each ``[len(directions)]``."""
    d = derivatives(head, class_points, directions, cls, h)
    return (d > 0).mean(0), d.mean(0)


def p_values(effects: np.ndarray, random_effects: np.ndarray) -> np.ndarray:
    """Two-sided empirical p-value of each mean derivative's size among the random directions'.

    The share alone saturates: a head that is nearly linear where the class's tracks lie
    gives every direction a share of 0 or 1, random ones included; how strongly a
    direction moves the output tells a concept from chance."""
    r = np.abs(random_effects)
    return np.array([(1 + (r >= abs(e) - 1e-12).sum()) / (1 + len(r)) for e in effects])


def explain_track(store: Store, track_id: int, head: Head, *, label: str | None = None,
                  concepts: Sequence[ConceptVector] | None = None, seed: int = 0) -> Explanation:
    """Which concepts push ``head``'s top class (or ``label``) for the track (see the module doc)."""
    from index.usertags import fetch_vectors

    ids, x = fetch_vectors(store, head.space)
    if not len(ids):
        raise ExplainError(f"the store has no {head.space} embeddings for the {head.name} head")
    where = np.searchsorted(ids, track_id)
    if where >= len(ids) or ids[where] != track_id:
        raise ExplainError(f"track {track_id} has no {head.space} embedding for the {head.name} head")
    rng = np.random.default_rng(seed)
    probs = head.predict(x)
    if label is None:
        cls = int(np.argmax(probs[where]))
    elif label in head.labels:
        cls = head.labels.index(label)
    else:
        raise ExplainError(f"{head.name} has no class {label!r}; classes: {', '.join(head.labels[:12])}"
                           + (" …" if len(head.labels) > 12 else ""))
    concepts = list(concepts) if concepts is not None else store_concepts(store, head.space, ids, x, rng=rng)
    if not concepts:
        raise ExplainError("no concept has enough example tracks in this store")
    dirs = np.stack([c.direction for c in concepts])
    h = STEP * float(np.median(np.linalg.norm(x, axis=1)))
    n_members, scores, pv = class_scores(head, x, probs, cls, dirs, rng)
    at = derivatives(head, x[where:where + 1], dirs, cls, h)[0]
    effects = [ConceptEffect(c.name, float(a), float(s), float(p)) for c, a, s, p in zip(concepts, at, scores, pv)]
    effects.sort(key=lambda e: (not e.significant, -abs(e.at_track)))
    return Explanation(int(track_id), head.name, head.labels[cls], float(probs[where, cls]), n_members,
                       tuple(effects))


def class_scores(head: Head, x: np.ndarray, probs: np.ndarray, cls: int, dirs: np.ndarray,
                 rng: np.random.Generator) -> tuple[int, np.ndarray, np.ndarray]:
    """(tracks of class ``cls`` used, TCAV score ``[k]``, p-value ``[k]``) of the directions
    ``dirs`` ``[k, d]``, over the collection's vectors ``x`` and head outputs ``probs``."""
    members = np.flatnonzero(probs.argmax(1) == cls)
    if len(members) < 10:  # a rare top class: the tracks that hold it most
        members = np.argsort(-probs[:, cls])[:10]
    if len(members) > MAX_CLASS_TRACKS:
        members = rng.choice(members, MAX_CLASS_TRACKS, replace=False)
    h = STEP * float(np.median(np.linalg.norm(x, axis=1)))
    scores, mean_effect = tcav_scores(head, x[members], dirs, cls, h)
    rand = random_cavs(np.arange(len(x)), x, rng)
    rand_effect = tcav_scores(head, x[members], np.stack(rand), cls, h)[1] if rand else np.zeros(0)
    pv = p_values(mean_effect, rand_effect) if len(rand_effect) else np.ones(len(scores))
    return len(members), scores, pv


def shared_concepts(store: Store, a: int, b: int, space: str, *, seed: int = 0, most: int = 5) -> list[str]:
    """Concepts both tracks hold clearly: their embeddings' projections on the concept's
    direction at least :data:`EXAMPLE_Z` standard deviations above the collection's mean
    for both, the strongest (smaller of the two) first."""
    from index.usertags import fetch_vectors

    ids, x = fetch_vectors(store, space)
    pa, pb = np.searchsorted(ids, a), np.searchsorted(ids, b)
    for p, t in ((pa, a), (pb, b)):
        if p >= len(ids) or ids[p] != t:
            raise ExplainError(f"track {t} has no {space} embedding")
    concepts = store_concepts(store, space, ids, x, rng=np.random.default_rng(seed))
    if not concepts:
        return []
    proj = x @ np.stack([c.direction for c in concepts]).T  # [n, concepts]
    z = (proj - proj.mean(0)) / np.maximum(proj.std(0), 1e-9)
    both = np.minimum(z[pa], z[pb])
    order = [i for i in np.argsort(-both) if both[i] >= EXAMPLE_Z]
    return [concepts[i].name for i in order[:most]]


def default_head(store: Store) -> str:
    """The head explained when none is named (``engine explain``, the TUI's Explain pane):
    the first of :func:`available_heads`, so the MSD tags of MusiCNN when the store has its
    embeddings. Raises :class:`ExplainError` (one line, saying what to do) when none fits."""
    heads = available_heads(store)
    if not heads:
        raise ExplainError("no prediction head can read this store's embeddings: "
                           "`engine models fetch moods_mirex` and build again")
    return heads[0]


def push_arrows(effects: Sequence[ConceptEffect]) -> tuple[str, ...]:
    """One arrow per effect, as :meth:`Explanation.text` writes them: ``↑``/``↓`` by the
    sign of ``at_track``, doubled when its size is at least half the strongest significant
    effect's (of all effects when none is significant); ``·`` for no effect."""
    sig = [abs(e.at_track) for e in effects if e.significant and e.at_track != 0]
    top = max(sig or [abs(e.at_track) for e in effects] or [0.0])
    arrows = []
    for e in effects:
        if e.at_track == 0 or top == 0:
            arrows.append("·")
            continue
        arrow = "↑" if e.at_track > 0 else "↓"
        arrows.append(arrow * (2 if abs(e.at_track) >= top / 2 else 1))
    return tuple(arrows)
