"""``engine search TEXT``: rank tracks by what a few words say, and say why each matched.

Three signals, each a per-track score standardised over the collection (z-scores, so
a tag activation, a tempo and a cosine add up):

1. **Vocabulary** (index.vocabulary): words that name a tag (MTT, MSD, MIREX,
   MTG-Jamendo), a Discogs style or a descriptor ("fast", "120 bpm", "in D minor",
   "loud", "danceable", "instrumental", "calm" via arousal...) rank by the stored values;
   each term is the mean of the concepts it names, a negated term counts against.
2. **Nearest names**: the sentence model (models.text) embeds the query; tag and style
   names within :data:`EXPAND_MIN` cosine of it join in, weighted by their similarity
   ("lullaby" ≈ "soft", "quiet").
3. **Learned text–audio space** (index.textspace): cosine between the query and each
   track's projected audio embedding, so tracks without a strong tag still rank.

``mode="tags"`` uses 1 only, ``"text"`` 2+3 only (the sentence model alone, on the
whole query), ``"combined"`` all three: vocabulary terms plus ``TEXT_WEIGHT`` times the
sentence-model part (more when some words are unknown to every vocabulary). The
figures behind these choices are in docs/search.md (``bench/search_accuracy.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from index import concepts as concept_cache
from index import textspace
from index.concepts import KEY_MINOR, KEY_PC, ConceptTable
from index.queryerrors import QueryError
from index.tracks import track_label
from index.usersql import filter_ids
from index.store import Store
from index.vocabulary import BPM, COLUMN, KEY, TAG, Concept, ParsedQuery, Term, parse

DEFAULT_K = 20
MODES = ("combined", "tags", "text")
# Tag/style names whose sentence-embedding cosine with the query reaches this join the
# ranking. MiniLM gives 0.45-0.7 between related music words ("lullaby"/"soft" 0.47,
# "violin"/"cello" 0.68) and 0.1-0.35 between unrelated ones.
EXPAND_MIN = 0.55
EXPAND_MAX = 4  # nearest names used at most
# Softmax temperature over the near names' cosines: a name 0.05 less similar than the
# nearest counts e^-1 as much ("piano music" -> piano 1.0 dominates instrumental 0.71).
NAME_SHARPNESS = 0.05
# Weight of the learned text–audio space beside the nearest names (1). On the corpus
# (77 tracks to learn from) the names rank instruments better; the space is what still
# ranks tracks without a strong tag (docs/search.md).
LEARNED_WEIGHT = 0.5
# Below this best cosine with every tag/style name, a query without vocabulary words
# matches nothing ("xqzt"), and search says so rather than rank arbitrary tracks.
MATCH_MIN = 0.35
# Weight of the sentence-model part when every word named a vocabulary concept (it
# then only orders tracks the vocabulary ties), and when some words named nothing.
TEXT_WEIGHT = 0.1
TEXT_WEIGHT_FREE = 1.0


class NoMatchError(QueryError):
    """No word of the query names anything this store can rank by."""


@dataclass(frozen=True)
class SearchHit:
    """One result, best first; ``score`` is the sum of standardised signals (higher is better)."""

    rank: int
    track_id: int
    path: str
    score: float
    why: str
    artist: str | None
    title: str | None
    duration: float | None
    bpm: float | None
    key: str | None
    scale: str | None
    top_style: str | None

    @property
    def label(self) -> str:
        return track_label(self.artist, self.title, self.path)


@dataclass
class SearchResult:
    query: ParsedQuery
    mode: str
    hits: list[SearchHit]
    nearest: list[tuple[str, float]] = field(default_factory=list)  # (name, cosine) used
    notes: list[str] = field(default_factory=list)

    def explain(self) -> list[str]:
        """How the query was read, for ``--explain``."""
        lines = [f"query {self.query.text!r} ({self.mode}):"] + ["  " + s for s in self.query.describe()]
        if self.nearest:
            lines.append("  nearest tag/style names (sentence model): "
                         + ", ".join(f"{n} {s:.2f}" for n, s in self.nearest))
        lines += ["  " + n for n in self.notes]
        return lines


_HIT_SQL = "track_id, path, artist, title, duration, bpm, key_temperley, scale_temperley, top_style"


class TextSearcher:
    """Text search over one store, keeping its caches and the sentence model loaded.

    ``with TextSearcher(store_dir) as s: s.search("calm piano", k=10)``. The sentence
    model is loaded on first use (``encoder`` replaces it, e.g. in tests); when it is
    missing, vocabulary words still work and the result notes what is lost.
    """

    def __init__(self, store_dir: Path | str | None = None, *, store: Store | None = None,
                 encoder: Callable[[Sequence[str]], np.ndarray] | None = None, retrain: bool = False):
        from index.query import Searcher

        # Opens the store read-only (one error path); given a ``store``, the caller owns it.
        self._knn = Searcher(store_dir, store=store)
        self.store: Store = self._knn.store
        self.table: ConceptTable = concept_cache.ensure_table(self.store)
        self.vocabulary = self.table.vocabulary()
        self._encoder = encoder
        self._encoder_error: str | None = None
        self._space: textspace.TextSpace | None = None
        self._space_ready = False
        self._retrain = retrain
        self._space_columns: np.ndarray | None = None  # table column of each point of the space
        self._space_rows: np.ndarray | None = None  # point of each table column, -1 for none
        self._last_text = None

    def close(self) -> None:
        self._knn.close()

    def rebind(self, store: Store) -> None:
        """Search through ``store`` from now on (a newer connection to the same store, as
        the TUI takes between a build's commits); caches are rebuilt when it has changed."""
        self._knn.rebind(store)
        self.store = store
        if concept_cache.store_state(store) != self.table.state:
            self.table = concept_cache.ensure_table(store)
            self.vocabulary = self.table.vocabulary()
            self._space, self._space_ready = None, False
            self._space_columns = self._space_rows = None

    def __enter__(self) -> "TextSearcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- models -----------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> np.ndarray | None:
        """Sentence embeddings, or None when the sentence model is missing (noted once)."""
        if self._encoder is None and self._encoder_error is None:
            from models.errors import ModelError
            from models.text import load_encoder

            try:
                self._encoder = load_encoder().encode
            except ModelError as exc:
                self._encoder_error = str(exc)
        if self._encoder is None:
            return None
        with one_blas_thread():
            return np.asarray(self._encoder(list(texts)), dtype=np.float32)

    def space(self) -> textspace.TextSpace | None:
        """The learned text–audio space: loaded, or trained when missing or stale."""
        if not self._space_ready:
            self._space_ready = True
            self._space = ensure_space(self.store, self.table, self.encode, retrain=self._retrain)
        return self._space

    # -- search -----------------------------------------------------------------------
    def search(self, text: str, k: int = DEFAULT_K, where: str | None = None,
               mode: str = "combined") -> SearchResult:
        """The ``k`` tracks that best match ``text``, best first (see the module doc).

        ``where`` (SQL over ``tracks``) restricts the candidates before ranking.
        Raises :class:`QueryError` for an empty query, :class:`NoMatchError` when no word
        names anything here.
        """
        if mode not in MODES:
            raise QueryError(f"unknown search mode {mode!r}: use one of {', '.join(MODES)}")
        if k < 1:
            raise QueryError(f"k must be at least 1, not {k}")
        self._last_text = None
        try:
            parsed = parse(text, self.vocabulary)
        except ValueError as exc:
            raise QueryError(str(exc)) from None
        result = SearchResult(parsed, mode, [])
        positions = np.arange(len(self.table.ids))
        if where is not None and where.strip():
            positions = self.table.positions(filter_ids(self.store, where))
        terms = list(parsed.terms) if mode != "text" else []
        with one_blas_thread():
            score = np.zeros(len(positions), np.float32)
            for term in terms:
                score += self._term_score(term, positions)
            if terms:
                score /= len(terms)
            text_part, used = (None, False) if mode == "tags" else self._text_score(parsed, positions, result, mode)
        if mode == "tags" and not terms:
            raise NoMatchError(f"no word of {parsed.text!r} names a tag, style or descriptor of this store "
                               "(try without --only tags: the sentence model matches other words)")
        if text_part is not None and used:
            weight = 1.0 if not terms else (TEXT_WEIGHT_FREE if parsed.free_words else TEXT_WEIGHT)
            score = score + weight * text_part
        elif not terms:
            best = f" (nearest name {result.nearest[0][0]!r})" if result.nearest else ""
            raise NoMatchError(self._no_match_message(parsed, best))
        result.hits = self._hits(score, positions, k, terms, result)
        return result

    def _no_match_message(self, parsed: ParsedQuery, best: str) -> str:
        if self._encoder_error:
            return (f"no word of {parsed.text!r} names a tag, style or descriptor of this store, and "
                    f"the sentence model that matches other words is missing: {self._encoder_error}")
        return (f"nothing matches {parsed.text!r}: no word names a tag, style or descriptor of this "
                f"store, and no tag or style name is close to it in meaning{best}")

    def _concept_z(self, c: Concept, positions: np.ndarray) -> np.ndarray | None:
        t = self.table
        if c.kind == BPM:
            bpm = t.raw(Concept(COLUMN, "tracks", "bpm"))
            target = float(c.name)
            closeness = -np.abs(bpm - target) / target
            mu, sd = np.nanmean(closeness), np.nanstd(closeness)
            if not math.isfinite(mu):
                return None
            z = (closeness[positions] - mu) / (sd if sd > 1e-6 else 1.0)
            return np.nan_to_num(z * c.sign, nan=0.0).astype(np.float32)
        if c.kind == KEY:
            pc, minor = t.raw(KEY_PC), t.raw(KEY_MINOR)
            hit = ((pc == float(c.source)) & (minor == (1.0 if c.name == "minor" else 0.0))).astype(np.float32)
            hit[np.isnan(pc)] = np.nan
            mu, sd = np.nanmean(hit), np.nanstd(hit)
            if not math.isfinite(mu):
                return None
            return np.nan_to_num((hit[positions] - mu) / (sd if sd > 1e-6 else 1.0), nan=0.0).astype(np.float32)
        if c not in t or t.mean[t.index[Concept(c.kind, c.source, c.name)]] != t.mean[t.index[Concept(c.kind, c.source, c.name)]]:
            return None
        return t.z(c, positions)

    def _term_score(self, term: Term, positions: np.ndarray) -> np.ndarray:
        parts = [z for z in (self._concept_z(c, positions) for c in term.concepts) if z is not None]
        if not parts:
            return np.zeros(len(positions), np.float32)
        s = np.mean(parts, axis=0)
        return -s if term.negated else s

    def _text_score(self, parsed: ParsedQuery, positions: np.ndarray, result: SearchResult,
                    mode: str) -> tuple[np.ndarray | None, bool]:
        """Nearest names + learned space, standardised; (None, False) without the sentence model."""
        text = parsed.free_text if mode == "combined" else _positive_text(parsed)
        if not text.strip():
            text = ""
        space = self.space()
        if not text or space is None:
            if self._encoder_error:
                result.notes.append(f"sentence model unavailable: {self._encoder_error}")
            elif space is None and text:
                result.notes.append("no learned text space (the store has no embeddings or no tags)")
            return None, False
        tmpl = textspace.TEMPLATE
        # Names near the query join in; in combined mode only for the words no vocabulary
        # knows (the known ones are ranked by their own values already).
        unknown = (" ".join(w for w in parsed.free_words if w not in parsed.negated_free)
                   if mode == "combined" else text)
        vecs = self.encode([tmpl.format(text)] + ([tmpl.format(unknown), unknown] if unknown else []))
        if vecs is None:
            return None, False
        q = vecs[0]
        near: list[tuple[Concept, float]] = []
        if unknown and len(space.labels):
            # A word or noise? Bare words against bare names: the music context would
            # lift "xqzvj music" near every name.
            plain = space.name_vectors @ vecs[2]
            best_plain = int(np.argmax(plain))
            if plain[best_plain] < MATCH_MIN and not parsed.terms:
                result.nearest = [(space.labels[best_plain].name, float(plain[best_plain]))]
                return None, False
            sims = space.label_vectors @ vecs[1]
            order = np.argsort(-sims)
            seen: set[str] = set()
            for i in order:
                if len(near) == EXPAND_MAX or sims[i] < EXPAND_MIN:
                    break
                if space.labels[i].name.lower() not in seen:  # "metal" of MTT and of MSD: one
                    seen.add(space.labels[i].name.lower())
                    near.append((space.labels[i], float(sims[i])))
            result.nearest = [(c.name, s) for c, s in near] or [(space.labels[order[0]].name, float(sims[order[0]]))]
        score = LEARNED_WEIGHT * self._learned_z(space, q, positions)
        total = LEARNED_WEIGHT
        if near:
            # The nearest name dominates; others count as they come close to it.
            s = np.array([s for _, s in near], np.float32)
            w = np.exp((s - s.max()) / NAME_SHARPNESS)
            zs = np.stack([self.table.z(c, positions) for c, _ in near])
            score = score + (w[:, None] * zs).sum(0) / w.sum()
            total += 1.0
        for neg in parsed.negated_free if mode == "combined" else ():
            qn = self.encode([tmpl.format(neg)])
            if qn is not None:
                score = score - 0.5 * LEARNED_WEIGHT * self._learned_z(space, qn[0], positions)
        self._last_text = (space, q, near)
        return (score / total).astype(np.float32), True

    def _learned_z(self, space: textspace.TextSpace, q: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Standardised cosine of every track (0 for those without a point) at ``positions``."""
        if self._space_columns is None:
            self._space_columns = np.searchsorted(self.table.ids, space.ids)  # once: 5 ms at 100k
            self._space_rows = np.full(len(self.table.ids), -1, np.int64)
            self._space_rows[self._space_columns] = np.arange(len(space.ids))
        cos = space.cosine(q)
        mu, sd = float(cos.mean()), float(cos.std()) or 1.0
        z = np.zeros(len(self.table.ids), np.float32)
        z[self._space_columns] = (cos - mu) / sd
        return z[positions]

    def _hits(self, score: np.ndarray, positions: np.ndarray, k: int, terms: list[Term],
              result: SearchResult) -> list[SearchHit]:
        if not len(positions):
            return []
        kk = min(k, len(positions))
        top = np.argpartition(-score, kk - 1)[:kk]
        top = top[np.argsort(-score[top], kind="stable")]
        ids = self.table.ids[positions[top]]
        id_list = ", ".join(str(int(i)) for i in ids)
        rows = {r[0]: r for r in self.store.con.execute(
            f"SELECT {_HIT_SQL} FROM tracks WHERE track_id IN ({id_list})").fetchall()}
        hits = []
        for rank, (j, tid) in enumerate(zip(top, ids), 1):
            r = rows.get(int(tid))
            if r is None:  # deleted since the cache was made
                continue
            why = self._why(int(positions[j]), terms, result)
            hits.append(SearchHit(rank, int(tid), r[1], round(float(score[j]), 4), why, *r[2:]))
        return hits

    def _why(self, pos: int, terms: list[Term], result: SearchResult) -> str:
        """``piano 0.81 · quiet 0.64 · bpm 72``: the stored values behind a result."""
        parts = []
        p = np.array([pos])
        for term in terms:
            shown = []
            for c in term.concepts:
                if c.kind == BPM:
                    v = self.table.raw(Concept(COLUMN, "tracks", "bpm"), p)[0]
                    shown.append(f"bpm {v:.0f}" if v == v else "bpm ?")
                elif c.kind == KEY:
                    shown.append(self._key_text(pos))
                elif c in self.table:
                    v = self.table.raw(c, p)[0]
                    if v == v:
                        shown.append(_value_text(c, float(v)))
            if shown:
                text = " ".join(dict.fromkeys(shown))
                parts.append(f"not {text}" if term.negated else text)
        last = getattr(self, "_last_text", None)
        if last is not None:
            space, q, near = last
            for c, _ in near[:2]:
                v = self.table.raw(c, p)[0]
                if v == v:
                    parts.append(f"≈{_value_text(c, float(v))}")
            row = self._space_rows[pos]
            if row >= 0:
                parts.append(f"text space {float(space.cosine(q, np.array([row]))[0]):.2f}")
        return " · ".join(parts)

    def _key_text(self, pos: int) -> str:
        from index.schema import TONICS

        p = np.array([pos])
        pc, minor = self.table.raw(KEY_PC, p)[0], self.table.raw(KEY_MINOR, p)[0]
        if pc != pc:
            return "key ?"
        return f"{TONICS[int(pc)]} {'minor' if minor == 1.0 else 'major'}"


def _value_text(c: Concept, v: float) -> str:
    if c.kind == COLUMN:
        name = {"loudness_lufs": "LUFS", "bpm": "bpm"}.get(c.name, c.name)
        return f"{name} {v:.0f}" if c.name in ("bpm", "loudness_lufs") else f"{name} {v:.2f}"
    if c.kind == TAG and "," in c.name:  # a MIREX cluster: its first adjective
        return f"{c.name.split(',')[0]} {v:.2f}"
    return f"{c.name} {v:.2f}"


def _positive_text(parsed: ParsedQuery) -> str:
    """The query without its negated phrases: what the sentence model alone reads."""
    words = [t.text for t in parsed.terms if not t.negated]
    return " ".join(words + [w for w in parsed.free_words if w not in parsed.negated_free]) or parsed.free_text


def ensure_space(store: Store, table: ConceptTable, encode, *, retrain: bool = False) -> textspace.TextSpace | None:
    """The store's learned text space: the saved one when it fits the store and the
    sentence model, else trained now (and saved when the store folder is writable)."""
    from models import registry

    sha = registry.get("minilm").graph.sha256
    if not retrain:
        saved = textspace.load(store.directory)
        if saved is not None and saved.state == table.model_state and saved.model_sha256 == sha:
            return saved
    if encode(["probe"]) is None:
        return None
    embeddings = {s: store.embedding_matrix(s) for s in concept_cache.SPACES}
    space = textspace.train(table, embeddings, lambda texts: encode(texts), sha)
    if space is not None:
        try:
            textspace.save(space, store.directory)
        except OSError:
            pass
    return space


def train_for_build(store: Store) -> str | None:
    """Refresh the concept cache and retrain the text space after a build; a note or None.

    Called by ``engine build`` so the first search is fast. A missing sentence model
    is not an error here: vocabulary search works without it.
    """
    from models.errors import ModelError
    from models.text import load_encoder

    table = concept_cache.ensure_table(store)
    try:
        encoder = load_encoder()
    except ModelError as exc:
        return f"text search will use tags and descriptors only: {exc}"

    def encode(texts):
        with one_blas_thread():
            return encoder.encode(list(texts))

    ensure_space(store, table, encode)
    return None


_CONTROLLER = None


class one_blas_thread:
    """Run numpy's BLAS on one thread inside: a query's small products are 40x slower
    when OpenBLAS spreads them over cores that other work holds (4x384 @ 384x1152:
    0.11 ms on one thread, 4.7 ms on two on the loaded 2-core machine)."""

    def __enter__(self):
        global _CONTROLLER
        try:
            if _CONTROLLER is None:
                from threadpoolctl import ThreadpoolController

                _CONTROLLER = ThreadpoolController()
            self._ctx = _CONTROLLER.limit(limits=1, user_api="blas")
            self._ctx.__enter__()
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency
            self._ctx = None
        return self

    def __exit__(self, *exc):
        if self._ctx is not None:
            self._ctx.__exit__(*exc)


def search(store_dir: Path | str | None, text: str, k: int = DEFAULT_K, where: str | None = None,
           mode: str = "combined", *, retrain: bool = False) -> SearchResult:
    """One search; opens the store read-only for it (use :class:`TextSearcher` for many)."""
    with TextSearcher(store_dir, retrain=retrain) as s:
        return s.search(text, k, where, mode)


