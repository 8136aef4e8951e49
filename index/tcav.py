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
concept ``v`` at ``x`` is the directional derivative ``∇f_c(x) · v``. The gradient is taken
by central finite differences along the ``d`` axes (``h`` = :data:`STEP` times the
collection's median norm), once per track: a directional derivative is linear in the
direction, so every concept and every random direction costs one dot product after that.

The **TCAV score** of a concept for ``c`` is the share of the tracks of class ``c`` whose
derivative is positive: the tracks whose top class ``c`` is, or for a multi-label tagger
one of their :data:`TOP_TAGS` strongest tags (:func:`class_members`). A class that fewer
than :data:`MIN_CLASS_TRACKS` tracks of the collection belong to is not tested at all. Its significance is a Monte Carlo test
against :data:`RANDOM_CAVS` random directions, each learned the same way from
:data:`RANDOM_EXAMPLES` random example tracks: the p-value is ``(1 + #random directions
whose mean derivative is at least as large in size) / (1 + RANDOM_CAVS)`` (two-sided; valid
for any number of directions, Phipson & Smyth 2010). The mean derivative is tested, not
the share: the share saturates at 0 or 1 for random directions too where the head is
nearly linear (see :func:`p_values`).

**Multiple testing.** One explanation tests every concept of the store against one class
(≈100 concepts), and ``bench/concept_check.py`` one concept against many classes; at
p < 0.05 each, a few chance "significant" rows per explanation would be expected. The
reported p-values are Holm-adjusted over the family reported together (the concepts of
one explanation; the classes of one check), which keeps the chance of *any* false
"significant" row at or under :data:`ALPHA` whatever the dependence between the tests
(they share the random directions, so they are dependent). Holm rather than Bonferroni
(which Kim et al. use): it controls the same family-wise error and rejects everything
Bonferroni does, and more. Family-wise rather than false-discovery control because the
claims read row by row ("strings pushes classical; it does not push rock"). Holm needs
``(1 + RANDOM_CAVS) > family / ALPHA`` for its smallest p-value to pass at all: 3000
random directions allow families of up to 150 concepts.

**Cache.** Learning the CAVs costs one probe fit each (≈1 ms batched, index.probes), 3000+
per space, so the concepts and random directions of each space are kept beside the
store (``cavs-<space>.npy`` + ``.json``), keyed by :func:`index.concepts.store_state`
and the settings here; redone when stale, kept in memory when the folder is read-only.
No click here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from index.store import Store
from models.errors import EngineError

EXAMPLE_Z = 1.0
MIN_EXAMPLES = 3
RANDOM_CAVS = 3000  # Holm over a family of m concepts needs 1 + RANDOM_CAVS > m / ALPHA
RANDOM_EXAMPLES = 10  # example tracks per random direction
STEP = 1e-2
MAX_CLASS_TRACKS = 200  # tracks of the class the TCAV score is taken over (a sample beyond)
MIN_CLASS_TRACKS = 3  # fewer tracks of a class in the collection: its concepts are not tested
TOP_TAGS = 3  # multi-label heads: a track is "of" each of its 3 strongest tags
ALPHA = 0.05
RANDOM_FOR_FEW = 200  # random directions for a call's own few concepts (explain_track(concepts=...))
CAV_CACHE_VERSION = 1
BATCHED_ROWS = 512  # probes of up to this many rows are fitted together (n x n solves)
CHUNK_ROWS = 65536  # head inputs per onnxruntime call, at most (bounds memory)
TAG_SOURCES = ("mtt", "musicnn")
BACKBONE_TAG_HEADS = ("musicnn", "mtt")  # backbones whose tag layers can be cut off as a head  # instrument, mood and genre words of the two tag models
DESCRIPTOR_CONCEPTS = ("fast", "slow", "loud", "quiet", "danceable", "happy", "sad", "calm", "energetic")


class ExplainError(EngineError):
    """A head, class or track that cannot be explained (the message says which)."""


@dataclass(frozen=True)
class Head:
    """A prediction head over one space: ``predict(x [n, d]) -> [n, classes]``.

    ``multi_label``: independent (sigmoid) outputs, a track holding several classes at
    once (the MSD and MagnaTagATune tags); else one class per track (softmax, regression)."""

    name: str
    space: str
    labels: tuple[str, ...]
    predict: Callable[[np.ndarray], np.ndarray]
    multi_label: bool = False


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
    the random directions, Holm-adjusted over the concepts explained together
    (``p_uncorrected`` before the adjustment). ``tcav`` and both p-values are NaN when
    the collection holds under :data:`MIN_CLASS_TRACKS` tracks of the class (not tested)."""

    concept: str
    at_track: float
    tcav: float
    p_value: float  # Holm-adjusted over the explanation's concepts
    p_uncorrected: float = float("nan")

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

    @property
    def testable(self) -> bool:
        """Whether the collection holds enough tracks of the class to test concepts on."""
        return self.class_tracks >= MIN_CLASS_TRACKS

    def text(self, most: int = 4) -> str:
        """``Classical (0.82): strings ↑↑, slow ↑, drums ↓`` (significant concepts only)."""
        sig = [e for e in self.effects if e.significant and e.at_track != 0][:most]
        if not self.testable:
            return (f"{self.label} ({self.probability:.2f}): only {self.class_tracks} track"
                    f"{'s' if self.class_tracks != 1 else ''} of this class in the collection, "
                    f"too few to test concepts (needs {MIN_CLASS_TRACKS})")
        if not sig:
            return f"{self.label} ({self.probability:.2f}): no concept of this store pushes it significantly"
        parts = [f"{e.concept} {arrow}" for e, arrow in zip(sig, push_arrows(sig))]
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
    return Head(name, spec.backbone, tuple(labels), lambda x: model.run(x)["predictions"],
                multi_label=spec.output_kind is registry.Output.SIGMOID)


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
                lambda x: session.run(None, {inp: np.ascontiguousarray(x, np.float32)})[0], multi_label=True)


# -- concepts ---------------------------------------------------------------------------------

def _probe_rows(ids: np.ndarray, positives: np.ndarray, rng: np.random.Generator,
                negatives: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The rows (positions in ``ids``) and 0/1 labels of a probe telling ``positives``
    (track ids) from random others: at least 50 others, 5 per example beyond 10. None
    under :data:`MIN_EXAMPLES` examples or with no others."""
    pos = np.isin(ids, positives)
    if pos.sum() < MIN_EXAMPLES:
        return None
    others = np.flatnonzero(~pos) if negatives is None else np.flatnonzero(np.isin(ids, negatives))
    if not len(others):
        return None
    neg = rng.choice(others, min(len(others), max(50, 5 * int(pos.sum()))), replace=False)
    return np.r_[np.flatnonzero(pos), neg], np.r_[np.ones(int(pos.sum())), np.zeros(len(neg))]


def _unit(w: np.ndarray) -> np.ndarray | None:
    n = float(np.linalg.norm(w))
    return (w / n).astype(np.float32) if n > 0 else None


def _cav(x: np.ndarray, ids: np.ndarray, positives: np.ndarray, rng: np.random.Generator,
         negatives: np.ndarray | None = None) -> np.ndarray | None:
    """Unit direction of a probe telling ``positives`` (track ids) from random others."""
    probe = _probe_rows(ids, positives, rng, negatives)
    return None if probe is None else _unit(_fit_direction(x[probe[0]], probe[1]))


def _cavs(x: np.ndarray, probes: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray | None]:
    """:func:`_cav` of many probes (``_probe_rows`` each): those of up to
    :data:`BATCHED_ROWS` rows fitted together, by size (index.probes), the rest one by one."""
    from index.probes import fit_directions

    out: list[np.ndarray | None] = [None] * len(probes)
    by_size: dict[int, list[int]] = {}
    for i, (rows, _) in enumerate(probes):
        if len(rows) <= BATCHED_ROWS:
            by_size.setdefault(len(rows), []).append(i)
        else:
            out[i] = _unit(_fit_direction(x[rows], probes[i][1]))
    for members in by_size.values():
        fitted = fit_directions(x[np.stack([probes[i][0] for i in members])],
                                np.stack([probes[i][1] for i in members]))
        for i, w in zip(members, fitted):
            out[i] = _unit(w)
    return out


def _fit_direction(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The probe's weights ``[d]`` (index.usertags.fit_logistic); one place to count fits."""
    from index.usertags import fit_logistic

    return fit_logistic(x, y)[0]


def store_concepts(store: Store, space: str, ids: np.ndarray, x: np.ndarray, *,
                   rng: np.random.Generator) -> list[ConceptVector]:
    """The concepts of the store (tags, descriptor words, user tags) as CAVs in ``space``
    (learned here; :func:`space_directions` is the cached form)."""
    from threadpoolctl import threadpool_limits

    from index import concepts as concept_cache
    from index.vocabulary import DESCRIPTOR_WORDS, TAG, USER_SOURCE, Concept, COLUMN

    table = concept_cache.ensure_table(store)
    pos = table.positions(ids)
    keep = np.isin(ids, table.ids)
    ids, x = ids[keep], x[keep]
    planned: list[tuple[str, int, tuple[np.ndarray, np.ndarray]]] = []  # (name, examples, probe)
    seen: set[str] = set()

    def plan(name: str, examples: np.ndarray, shown: str | None = None) -> None:
        """Learn ``name`` from ``examples`` unless a concept of that name is planned."""
        if name.lower() in seen:
            return
        probe = _probe_rows(ids, examples, rng)
        if probe is not None:
            seen.add(name.lower())
            planned.append((shown or name, len(examples), probe))

    for c in table.concepts:  # the user's tags first: a tag model's word of the same name gives way
        if c.kind == TAG and c.source == USER_SOURCE:
            plan(c.name, ids[table.raw(c, pos) > 0.5], shown=f"{c.name} (yours)")
    for c in table.concepts:
        if c.kind == TAG and c.source in TAG_SOURCES:
            plan(c.name, ids[table.z(c, pos) >= EXAMPLE_Z])
    for word in DESCRIPTOR_CONCEPTS:
        for col, sign in DESCRIPTOR_WORDS.get(word, [])[:1]:
            c = Concept(COLUMN, "tracks", col, sign)
            if c in table:
                plan(word, ids[table.z(c, pos) >= EXAMPLE_Z])
    with threadpool_limits(1):  # small fits: one BLAS thread is 5x less CPU than two
        directions = _cavs(x, [p for _, _, p in planned])
    return [ConceptVector(name, d, n) for (name, n, _), d in zip(planned, directions) if d is not None]


def random_cavs(ids: np.ndarray, x: np.ndarray, rng: np.random.Generator, n: int | None = None) -> list[np.ndarray]:
    """``n`` (default :data:`RANDOM_CAVS`) directions learned from random example sets:
    what a concept's score is tested against. Each set is drawn as :func:`_cav` draws a
    concept's (:data:`RANDOM_EXAMPLES` tracks against random others) and fitted by the same
    probe, all sets of a batch at once (index.probes: ≈10x less CPU than one by one)."""
    from threadpoolctl import threadpool_limits

    from index.probes import fit_directions

    count = RANDOM_CAVS if n is None else n
    k = min(len(ids) - 1, RANDOM_EXAMPLES)
    if count <= 0 or k < MIN_EXAMPLES:
        return []
    rows = []
    for _ in range(count):
        pos = rng.choice(len(ids), k, replace=False)
        others = np.setdiff1d(np.arange(len(ids)), pos, assume_unique=True)
        rows.append(np.r_[pos, rng.choice(others, min(len(others), max(50, 5 * k)), replace=False)])
    rows = np.array(rows)
    y = np.zeros(rows.shape, np.float64)
    y[:, :k] = 1
    per_batch = max(1, int(3e7 // (rows.shape[1] * x.shape[1] * 8)))  # ~30 MB of float64 rows a batch
    out = []
    with threadpool_limits(1):  # many tiny products: threads cost more than they give
        for i in range(0, count, per_batch):
            out.extend(fit_directions(x[rows[i:i + per_batch]], y[i:i + per_batch]))
    return out


# -- the cache of directions --------------------------------------------------------------------

@dataclass(frozen=True)
class SpaceDirections:
    """The learned directions of one space.

    Attributes
    ----------
    concepts : tuple of ConceptVector
        The store's concepts (:func:`store_concepts`).
    random : numpy.ndarray
        float32 ``[RANDOM_CAVS, d]`` unit directions learned from random example sets.
    state : str
        What they were learned from (:func:`_directions_state`).
    random_state : str
        What the random directions were learned from: the same without the user's tags,
        so that training a tag relearns its ~100 concepts (≈1 s), not 3000 random fits.
    """

    concepts: tuple[ConceptVector, ...]
    random: np.ndarray
    state: str
    random_state: str = ""


_MEMORY: dict[tuple[str, str], SpaceDirections] = {}  # (store folder, space) -> latest, this process


def cache_paths(directory: Path, space: str) -> tuple[Path, Path]:
    """(``cavs-<space>.npy``: ``[concepts + random, d]`` float32, ``cavs-<space>.json``)."""
    return directory / f"cavs-{space}.npy", directory / f"cavs-{space}.json"


def _directions_state(store: Store, space: str, seed: int) -> tuple[str, str]:
    """(the store's state and every setting the concepts depend on, the same for the
    random directions: without the user's tags, which only the concepts read)."""
    from index.concepts import store_state

    state = store_state(store)
    settings = f"|{space}|v{CAV_CACHE_VERSION}|seed {seed}|min {MIN_EXAMPLES}|random {RANDOM_CAVS}x{RANDOM_EXAMPLES}"
    return f"{state}{settings}|z {EXAMPLE_Z}", f"{state.rsplit('|', 1)[0]}{settings}"


def space_directions(store: Store, space: str, *, seed: int = 0, ids: np.ndarray | None = None,
                     x: np.ndarray | None = None) -> SpaceDirections:
    """The concepts and random directions of ``space``: from this process's memory or the
    file beside the store when they match the store's state, else learned (batched
    probes, ≈1 ms a fit) and saved (kept in memory only when the store folder is read-only). ``ids``/``x``:
    the space's vectors when the caller has them (:func:`index.usertags.fetch_vectors`)."""
    state, random_state = _directions_state(store, space, seed)
    key = (str(Path(store.directory).resolve()), space)
    got = _MEMORY.get(key)
    if got is None or got.state != state:
        got = _load_directions(Path(store.directory), space) or got
    if got is None or got.state != state:
        if ids is None or x is None:
            from index.usertags import fetch_vectors

            ids, x = fetch_vectors(store, space)
        concepts = store_concepts(store, space, ids, x, rng=np.random.default_rng(seed))
        if got is not None and got.random_state == random_state:
            rand = got.random  # only the user's tags changed
        else:
            r = random_cavs(np.arange(len(x)), x, np.random.default_rng([seed, 1]), RANDOM_CAVS) if len(x) > 1 else []
            rand = np.stack(r) if r else np.zeros((0, x.shape[1]), np.float32)
        got = SpaceDirections(tuple(concepts), rand, state, random_state)
        try:
            _save_directions(got, Path(store.directory), space)
        except OSError:  # a read-only store folder: in memory only
            pass
    _MEMORY[key] = got
    return got


def space_concepts(store: Store, space: str, *, seed: int = 0, ids: np.ndarray | None = None,
                   x: np.ndarray | None = None) -> tuple[ConceptVector, ...]:
    """The concepts of ``space`` (:func:`space_directions`: cached, else learned with the
    random directions, ≈3 CPU-s for a small collection, and saved for later calls)."""
    return space_directions(store, space, seed=seed, ids=ids, x=x).concepts


def _save_directions(d: SpaceDirections, directory: Path, space: str) -> None:
    """Write the two files atomically (temporary names, then rename; the array first)."""
    values, info = cache_paths(directory, space)
    rows = [c.direction for c in d.concepts] + list(d.random)
    dim = d.random.shape[1] if d.random.ndim == 2 else 0
    tmp_values = values.with_name(values.name + ".tmp.npy")
    np.save(tmp_values, np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32))
    tmp_info = info.with_name(info.name + ".tmp")
    tmp_info.write_text(json.dumps({"version": CAV_CACHE_VERSION, "state": d.state, "random_state": d.random_state,
                                    "concepts": [[c.name, c.examples] for c in d.concepts],
                                    "random": len(d.random)}))
    os.replace(tmp_values, values)
    os.replace(tmp_info, info)


def _load_directions(directory: Path, space: str) -> SpaceDirections | None:
    """The saved directions; None when absent, unreadable or of another version."""
    values, info = cache_paths(directory, space)
    try:
        meta = json.loads(info.read_text())
        if meta.get("version") != CAV_CACHE_VERSION:
            return None
        rows = np.load(values)
    except (OSError, ValueError):
        return None
    k = len(meta["concepts"])
    if rows.ndim != 2 or len(rows) != k + meta["random"]:
        return None
    concepts = tuple(ConceptVector(name, rows[i], int(n)) for i, (name, n) in enumerate(meta["concepts"]))
    return SpaceDirections(concepts, rows[k:], meta["state"], meta.get("random_state", ""))


# -- sensitivity --------------------------------------------------------------------------------

def derivatives(head: Head, points: np.ndarray, directions: np.ndarray, cls: int, h: float) -> np.ndarray:
    """``[len(points), len(directions)]`` directional derivatives of class ``cls`` (central
    finite differences along each direction), :data:`CHUNK_ROWS` head inputs at a time
    (200 tracks x 1280 EffNet axes at once would be 2.6 GB)."""
    n, k = len(points), len(directions)
    step = max(1, CHUNK_ROWS // (2 * max(k, 1)))
    out = np.zeros((n, k), np.float64)
    for i in range(0, n, step):
        p = points[i:i + step]
        plus = (p[:, None, :] + h * directions[None]).reshape(len(p) * k, -1)
        minus = (p[:, None, :] - h * directions[None]).reshape(len(p) * k, -1)
        f = head.predict(np.concatenate([plus, minus]).astype(np.float32))[:, cls]
        out[i:i + step] = ((f[: len(p) * k] - f[len(p) * k:]) / (2 * h)).reshape(len(p), k)
    return out


def gradients(head: Head, points: np.ndarray, cls: int, h: float) -> np.ndarray:
    """``[len(points), d]`` gradients of class ``cls`` (central differences along the axes):
    ``gradients(...) @ v`` is the derivative along any direction ``v``."""
    return derivatives(head, points, np.eye(points.shape[1], dtype=np.float32), cls, h)


def p_values(effects: np.ndarray, random_effects: np.ndarray) -> np.ndarray:
    """Two-sided empirical p-value of each mean derivative's size among the random directions'.

    The share alone saturates: a head that is nearly linear where the class's tracks lie
    gives every direction a share of 0 or 1, random ones included; how strongly a
    direction moves the output tells a concept from chance."""
    r = np.sort(np.abs(random_effects))
    at_least = len(r) - np.searchsorted(r, np.abs(np.asarray(effects)) - 1e-12, side="left")
    return (1 + at_least) / (1 + len(r))


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of the family ``p`` ``[m]``: adjusted p-values (≥ ``p``,
    ≤ 1) such that rejecting those under ``ALPHA`` keeps the family-wise error ≤ ``ALPHA``
    under any dependence (Holm 1979)."""
    p = np.asarray(p, dtype=float)
    m = len(p)
    if not m:
        return p
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


def explain_track(store: Store, track_id: int, head: Head, *, label: str | None = None,
                  concepts: Sequence[ConceptVector] | None = None, seed: int = 0) -> Explanation:
    """Which concepts push ``head``'s top class (or ``label``) for the track (see the module doc).

    ``concepts``: explain these instead of the store's (random directions are then learned
    for the call, not cached: :data:`RANDOM_FOR_FEW`, or two per ``ALPHA`` per concept)."""
    from index.usertags import fetch_vectors

    ids, x = fetch_vectors(store, head.space)
    if not len(ids):
        raise ExplainError(f"the store has no {head.space} embeddings for the {head.name} head")
    where = np.searchsorted(ids, track_id)
    if where >= len(ids) or ids[where] != track_id:
        raise ExplainError(f"track {track_id} has no {head.space} embedding for the {head.name} head")
    probs = head.predict(x)
    if label is None:
        cls = int(np.argmax(probs[where]))
    elif label in head.labels:
        cls = head.labels.index(label)
    else:
        raise ExplainError(f"{head.name} has no class {label!r}; classes: {', '.join(head.labels[:12])}"
                           + (" …" if len(head.labels) > 12 else ""))
    if concepts is None:
        cached = space_directions(store, head.space, seed=seed, ids=ids, x=x)
        concepts, rand = list(cached.concepts), cached.random
    else:
        concepts = list(concepts)
        # Enough for Holm over these concepts to reach ALPHA with room (the cached set is for ~100).
        n = min(RANDOM_CAVS, max(RANDOM_FOR_FEW, int(np.ceil(2 * len(concepts) / ALPHA))))
        r = random_cavs(np.arange(len(x)), x, np.random.default_rng([seed, 1]), n)
        rand = np.stack(r) if r else None
    if not concepts:
        raise ExplainError("no concept has enough example tracks in this store")
    dirs = np.stack([c.direction for c in concepts])
    h = STEP * float(np.median(np.linalg.norm(x, axis=1)))
    n_members, scores, pv = class_scores(head, x, probs, cls, dirs, np.random.default_rng(seed), random_dirs=rand)
    adjusted = holm(pv) if np.isfinite(pv).all() else pv
    at = derivatives(head, x[where:where + 1], dirs, cls, h)[0]
    effects = [ConceptEffect(c.name, float(a), float(s), float(q), float(p))
               for c, a, s, p, q in zip(concepts, at, scores, pv, adjusted)]
    effects.sort(key=lambda e: (not e.significant, -abs(e.at_track)))
    return Explanation(int(track_id), head.name, head.labels[cls], float(probs[where, cls]), n_members,
                       tuple(effects))


def class_members(probs: np.ndarray, cls: int, multi_label: bool) -> np.ndarray:
    """Rows of ``probs`` ``[n, classes]`` that are tracks of class ``cls``: those whose top
    class it is, or, for a multi-label head, one of their :data:`TOP_TAGS` strongest.

    Never the tracks that merely hold the class most: in a collection without hard rock
    the ten "most hard rock" tracks (outputs 0.01-0.08, half of them string chorales) are
    not hard rock, and a concept's effect on them says nothing about the class."""
    if not multi_label or probs.shape[1] <= TOP_TAGS:
        return np.flatnonzero(probs.argmax(1) == cls)
    top = np.argpartition(-probs, TOP_TAGS - 1, axis=1)[:, :TOP_TAGS]
    return np.flatnonzero((top == cls).any(1))


def class_scores(head: Head, x: np.ndarray, probs: np.ndarray, cls: int, dirs: np.ndarray,
                 rng: np.random.Generator, *, random_dirs: np.ndarray | None = None
                 ) -> tuple[int, np.ndarray, np.ndarray]:
    """(tracks of class ``cls`` used, TCAV score ``[k]``, uncorrected p-value ``[k]``) of the
    directions ``dirs`` ``[k, d]``, over the collection's vectors ``x`` and head outputs
    ``probs``, against ``random_dirs`` ``[r, d]`` (default: :data:`RANDOM_CAVS` learned now
    with ``rng``; :attr:`SpaceDirections.random` is the cached set). Adjust the p-values
    over the family reported together (:func:`holm`). The class's tracks are
    :func:`class_members`; under :data:`MIN_CLASS_TRACKS` of them, scores and p-values are
    NaN (not tested)."""
    members = class_members(probs, cls, head.multi_label)
    if len(members) < MIN_CLASS_TRACKS:
        nan = np.full(len(dirs), np.nan)
        return len(members), nan, nan.copy()
    if len(members) > MAX_CLASS_TRACKS:
        members = rng.choice(members, MAX_CLASS_TRACKS, replace=False)
    h = STEP * float(np.median(np.linalg.norm(x, axis=1)))
    grad = gradients(head, x[members], cls, h)  # [members, d]
    effect = grad @ dirs.T
    scores, mean_effect = (effect > 0).mean(0), effect.mean(0)
    if random_dirs is None:
        rand = random_cavs(np.arange(len(x)), x, rng)
        random_dirs = np.stack(rand) if rand else None
    if random_dirs is None or not len(random_dirs):
        return len(members), scores, np.ones(len(scores))
    return len(members), scores, p_values(mean_effect, (grad @ random_dirs.T).mean(0))


def shared_concepts(store: Store, a: int, b: int, space: str, *, seed: int = 0, most: int = 5) -> list[str]:
    """Concepts both tracks hold clearly: their embeddings' projections on the concept's
    direction at least :data:`EXAMPLE_Z` standard deviations above the collection's mean
    for both, the strongest (smaller of the two) first."""
    return shared_concepts_of_pairs(store, [(a, b)], space, seed=seed, most=most)[0]


def shared_concepts_of_pairs(store: Store, pairs: Sequence[tuple[int, int]], space: str, *, seed: int = 0,
                             most: int = 5) -> list[list[str]]:
    """:func:`shared_concepts` for many ``(a, b)`` track pairs, learning the concepts once.

    The concepts (:func:`space_concepts`: cached, else learned and saved, seconds)
    are the whole cost; each pair after that is a row lookup. A pair of a
    track with itself gets ``[]``.

    Returns
    -------
    list of list of str
        Per pair, in order: the concepts both tracks hold (z >= :data:`EXAMPLE_Z`), the
        strongest (smaller z of the two) first, at most ``most``.
    """
    from index.usertags import fetch_vectors

    if not pairs:
        return []
    ids, x = fetch_vectors(store, space)
    wanted = np.unique(np.asarray(pairs, np.int64))
    pos = np.searchsorted(ids, wanted)
    for p, t in zip(pos, wanted):
        if p >= len(ids) or ids[p] != t:
            raise ExplainError(f"track {int(t)} has no {space} embedding")
    concepts = space_concepts(store, space, seed=seed, ids=ids, x=x)
    if not concepts:
        return [[] for _ in pairs]
    proj = x @ np.stack([c.direction for c in concepts]).T  # [n, concepts]
    z = (proj - proj.mean(0)) / np.maximum(proj.std(0), 1e-9)
    out = []
    for a, b in pairs:
        if a == b:
            out.append([])
            continue
        both = np.minimum(z[np.searchsorted(ids, a)], z[np.searchsorted(ids, b)])
        order = [i for i in np.argsort(-both) if both[i] >= EXAMPLE_Z]
        out.append([concepts[i].name for i in order[:most]])
    return out


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
