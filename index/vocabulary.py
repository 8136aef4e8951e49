"""What the words of a text query mean: tags, styles and descriptors, negations, tempi, keys.

:func:`parse` turns "calm piano, no vocals, 90 bpm" into :class:`Term` objects that
name stored values (:class:`Concept`), plus the words no vocabulary knows, which the
sentence model handles (index.search). No store access here: the concepts a store
holds are passed in (index.concepts reads them).

Matching is on normalised words: lower case, ``-``/``_``/``/`` as spaces, and a plural
``s`` dropped ("drums" finds the tag "drums" and "drum"; "vocals" finds "vocal",
"vocals"). The longest phrase wins ("female vocal" before "female"), and a phrase that is
itself a tag ("no vocals", an MTT tag) is taken as that tag rather than as a negation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from index.schema import TONICS

# Concept kinds.
TAG = "tag"  # tags table: (source, tag)
STYLE = "style"  # styles table: (genre, style)
COLUMN = "column"  # a numeric tracks column
KEY = "key"  # tonic + mode (key_temperley, scale_temperley)
BPM = "bpm"  # closeness to a tempo
# Tag source of the user's own tags (index.usertags: the user_tags table): a phrase that
# names one of them means it, before any model's tag, style or descriptor of that name.
USER_SOURCE = "user"


@dataclass(frozen=True)
class Concept:
    """One stored quantity a word can name.

    ``kind`` is :data:`TAG`, :data:`STYLE`, :data:`COLUMN`, :data:`KEY` or :data:`BPM`;
    ``source`` / ``name`` are (tag source, tag), (genre, style), ("tracks", column),
    ("tonic pitch class 0-11", "major"/"minor") or ("bpm", target tempo).
    ``sign`` is -1 when low values mean the word (``slow`` is low ``bpm``).
    """

    kind: str
    source: str
    name: str
    sign: int = 1

    @property
    def label(self) -> str:
        """How the concept reads in an explanation: ``piano``, ``bpm``, ``D minor``."""
        if self.kind == KEY:
            return f"{TONICS[int(self.source)]} {self.name}"
        if self.kind == BPM:
            return f"{self.name} bpm"
        return self.name


@dataclass(frozen=True)
class Term:
    """A phrase of the query that names stored values; negated by "no", "not", "without"."""

    text: str
    concepts: tuple[Concept, ...]
    negated: bool = False


@dataclass(frozen=True)
class ParsedQuery:
    """The query as understood: vocabulary terms and the rest, for the sentence model.

    ``free_text`` is the query without its negated phrases (what the sentence model
    embeds); ``negated_free`` the negated phrases that no vocabulary knows.
    """

    text: str
    terms: tuple[Term, ...]
    free_words: tuple[str, ...]
    free_text: str
    negated_free: tuple[str, ...] = ()

    def describe(self) -> list[str]:
        """Lines for ``--explain``."""
        lines = []
        for t in self.terms:
            names = ", ".join(_concept_line(c) for c in t.concepts)
            lines.append(f"{'NOT ' if t.negated else ''}{t.text!r} -> {names}")
        if self.free_words:
            lines.append(f"words no vocabulary knows: {' '.join(self.free_words)}")
        for n in self.negated_free:
            lines.append(f"NOT {n!r} (no vocabulary knows it: sentence model only)")
        return lines


def _concept_line(c: Concept) -> str:
    if c.kind == TAG:
        return f"tag {c.name!r} ({c.source})"
    if c.kind == STYLE:
        return f"style {c.source}---{c.name}"
    if c.kind == COLUMN:
        return f"{'low ' if c.sign < 0 else 'high '}{c.name}"
    if c.kind == KEY:
        return f"key {c.label}"
    return f"tempo near {c.name} bpm"


# Descriptor words: tracks columns they rank by (sign -1: low values mean the word).
# Model tags with the same word (MTT "fast", "quiet", "vocal"; Jamendo "calm") join in
# through the store's own vocabulary.
DESCRIPTOR_WORDS: Mapping[str, tuple[tuple[str, int], ...]] = {
    "fast": (("bpm", 1),), "uptempo": (("bpm", 1),), "slow": (("bpm", -1),),
    "downtempo": (("bpm", -1),),
    "loud": (("loudness_lufs", 1),), "quiet": (("loudness_lufs", -1),),
    "danceable": (("danceable", 1), ("danceability", 1)),
    "dance": (("danceable", 1), ("danceability", 1)),
    "instrumental": (("voice", -1),), "vocal": (("voice", 1),), "voice": (("voice", 1),),
    "singing": (("voice", 1),), "singer": (("voice", 1),),
    "happy": (("valence", 1), ("mood_happy", 1)), "cheerful": (("valence", 1), ("mood_happy", 1)),
    "sad": (("valence", -1), ("mood_sad", 1)), "melancholic": (("valence", -1), ("mood_sad", 1)),
    "calm": (("arousal", -1), ("mood_relaxed", 1)), "relaxed": (("arousal", -1), ("mood_relaxed", 1)),
    "relaxing": (("arousal", -1), ("mood_relaxed", 1)), "peaceful": (("arousal", -1), ("mood_relaxed", 1)),
    "chill": (("arousal", -1), ("mood_relaxed", 1)), "mellow": (("arousal", -1), ("mood_relaxed", 1)),
    "energetic": (("arousal", 1),), "intense": (("arousal", 1),),
    "aggressive": (("mood_aggressive", 1), ("arousal", 1)), "angry": (("mood_aggressive", 1), ("arousal", 1)),
}
# The tracks columns descriptor words read (index.concepts caches them).
DESCRIPTOR_COLUMNS = tuple(sorted({c for cols in DESCRIPTOR_WORDS.values() for c, _ in cols}))

NEGATIONS = frozenset({"no", "not", "without", "non", "nothing", "never"})
STOP_WORDS = frozenset({
    "a", "an", "the", "and", "or", "with", "some", "music", "song", "songs", "track", "tracks",
    "tune", "tunes", "piece", "pieces", "sound", "sounds", "sounding", "like", "very", "really",
    "bit", "lot", "lots", "of", "for", "in", "on", "by", "that", "is", "are", "to", "me",
    "something", "kind", "sort", "style", "plus", "but", "&", "+", ",", ".", "!", "?", ";", "mood",
})
_PITCH = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
_BPM = re.compile(r"\b(\d{2,3}(?:\.\d+)?)\s*bpm\b")
_KEY = re.compile(r"\b(?:in\s+)?([a-g])\s*(#|♯|b|♭|\s+sharp|\s+flat)?\s+(major|minor|maj|min)\b")
_WORD = re.compile(r"[\w#♯♭']+|[^\w\s]")
MAX_PHRASE = 3


def pitch_class(name: str | None) -> int | None:
    """0-11 for a tonic spelled C, C#, Db, ..., B (as Essentia writes keys); None if unknown."""
    if not name:
        return None
    name = name.strip()
    base = _PITCH.get(name[:1].lower())
    if base is None:
        return None
    rest = name[1:].strip().lower()
    shift = {"": 0, "#": 1, "♯": 1, "sharp": 1, "b": -1, "♭": -1, "flat": -1}.get(rest)
    return None if shift is None else (base + shift) % 12


def normalise(text: str) -> str:
    """Lower case, separators as spaces, single spaces: the form vocabulary keys take."""
    text = re.sub(r"[-_/]+", " ", text.lower())
    return " ".join(text.split())


def _singular(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def phrase_key(text: str) -> str:
    """The lookup key of a phrase: normalised, each word without a plural s, and "and"
    / "&" inside a phrase read as "n" ("drum and bass" is the style "Drum n Bass")."""
    words = normalise(text).split()
    if len(words) > 1:
        words = ["n" if w in ("and", "&", "'n'") else w for w in words]
    return " ".join(_singular(w) for w in words)


@dataclass
class Vocabulary:
    """Phrase key -> concepts, from the labels a store holds plus the descriptor words."""

    phrases: dict[str, list[Concept]] = field(default_factory=dict)

    def add(self, phrase: str, concept: Concept) -> None:
        key = phrase_key(phrase)
        if key and concept not in self.phrases.setdefault(key, []):
            self.phrases[key].append(concept)

    def lookup(self, words: Sequence[str]) -> list[Concept]:
        return self.phrases.get(phrase_key(" ".join(words)), [])


def build_vocabulary(tags: Iterable[tuple[str, str]], styles: Iterable[tuple[str, str]],
                     columns: Iterable[str]) -> Vocabulary:
    """The vocabulary of a store.

    Parameters
    ----------
    tags : iterable of (source, tag)
        The store's tag labels (MIREX cluster labels "passionate, rousing, ..." give one
        phrase per adjective).
    styles : iterable of (genre, style)
        Discogs styles.
    columns : iterable of str
        Descriptor columns the store has values in (others are left out).
    """
    v = Vocabulary()
    for source, tag in tags:
        concept = Concept(TAG, source, tag)
        v.add(tag, concept)
        if "," in tag:  # a MIREX cluster: each adjective ("tense/anxious": each alternative)
            for part in re.split(r"[,/]", tag):
                v.add(part, concept)
    for genre, style in styles:
        v.add(style, Concept(STYLE, genre, style))
    present = set(columns)
    for word, cols in DESCRIPTOR_WORDS.items():
        for col, sign in cols:
            if col in present:
                v.add(word, Concept(COLUMN, "tracks", col, sign))
    for key, concepts in v.phrases.items():
        own = [c for c in concepts if c.kind == TAG and c.source == USER_SOURCE]
        if own:
            v.phrases[key] = own
    return v


def parse(text: str, vocabulary: Vocabulary) -> ParsedQuery:
    """Read a query into vocabulary terms and free words (see the module doc).

    Raises
    ------
    ValueError
        The query is empty or holds only stop words and punctuation.
    """
    original = text
    low = text.lower()
    terms: list[Term] = []

    def negated_before(start: int) -> bool:
        before = _WORD.findall(low[:start])[-2:]
        return any(w in NEGATIONS for w in before)

    spans: list[tuple[int, int]] = []
    for m in _BPM.finditer(low):
        terms.append(Term(m.group(0), (Concept(BPM, BPM, m.group(1)),), negated_before(m.start())))
        spans.append(m.span())
    for m in _KEY.finditer(low):
        pc = pitch_class(m.group(1) + (m.group(2) or "").strip())
        mode = "minor" if m.group(3).startswith("min") else "major"
        if pc is not None:
            terms.append(Term(m.group(0).strip(), (Concept(KEY, str(pc), mode),), negated_before(m.start())))
            spans.append(m.span())
    for a, b in sorted(spans, reverse=True):
        low = low[:a] + " " + low[b:]

    words = [w for w in _WORD.findall(normalise(low.replace(",", " , ")))]
    free: list[str] = []
    kept: list[str] = []  # words for the sentence model (negated phrases left out)
    negated_free: list[str] = []
    i, negate = 0, False
    while i < len(words):
        w = words[i]
        found = None
        for n in range(min(MAX_PHRASE, len(words) - i), 0, -1):
            span = words[i : i + n]
            concepts = vocabulary.lookup(span)
            if concepts and not (n == 1 and w in STOP_WORDS):
                found = (n, concepts)
                break
        if found:
            n, concepts = found
            phrase = " ".join(words[i : i + n])
            terms.append(Term(phrase, tuple(concepts), negate))
            if not negate:
                kept.append(phrase)
            i += n
            negate = False
            continue
        if w in NEGATIONS:
            negate = True
        elif w in STOP_WORDS or not re.search(r"\w", w):
            if w in (",", ";", "and", "but", "."):
                negate = False
        else:
            free.append(w)
            if negate:
                negated_free.append(w)
            else:
                kept.append(w)
        i += 1
    if not terms and not free:
        if not original.strip():
            raise ValueError("empty query: type words such as \"calm piano\" or \"fast drums, no vocals\"")
        raise ValueError(f"query {original.strip()!r} has no word to search for (only stop words)")
    return ParsedQuery(original.strip(), tuple(terms), tuple(free), " ".join(kept), tuple(negated_free))
