"""Why a track is in a list, in words the user knows: what it shares with the track(s) it
was chosen for — ``similar: piano, calm, 72 vs 75 bpm, same key``.

Reads the store's concept cache (index.concepts: every tag, style and descriptor of
every track, with its collection mean and spread) and names:

- tags and Discogs styles both tracks hold clearly: activation >= :data:`SHARED_MIN`
  and at least :data:`SHARED_Z` standard deviations above the collection's mean for
  both, the most unusual first (the smaller of the two z-scores; a MIREX mood cluster by
  its first adjective; a word shown once when several models have it);
- descriptor words of engine search (index.vocabulary: ``calm``, ``loud``, ``instrumental``,
  ``danceable``, ``sad``...) whose measure is at least :data:`WORD_Z` standard deviations
  on the word's side of the mean for both;
- the tempi when they are within :data:`BPM_CLOSE` of each other, and the key when it
  is the same.

With several seeds, each part compares with the seed nearest on it (the tag with the
seed that holds it most, the tempo with the closest tempo). No click here.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from index import concepts as concept_cache
from index.concepts import KEY_MINOR, KEY_PC
from index.store import Store
from index.vocabulary import COLUMN, DESCRIPTOR_WORDS, STYLE, TAG, Concept

SHARED_MIN = 0.25  # activation both tracks must reach for a tag or style to be named
SHARED_Z = 0.5  # ... and standard deviations above the collection's mean
WORD_Z = 0.75  # descriptor words: standard deviations on the word's side, for both
BPM_CLOSE = 0.06  # tempi within 6 % are named ("72 vs 75 bpm")
MAX_NAMES = 4  # tags/styles named at most
MAX_WORDS = 2  # descriptor words named at most


def _word_concepts() -> list[tuple[str, Concept]]:
    """One word per (column, direction): the first the vocabulary lists ("calm" before
    "relaxed"). Tempo words are left out: the tempi are shown as numbers."""
    seen, out = set(), []
    for word, cols in DESCRIPTOR_WORDS.items():
        col, sign = cols[0]
        if col == "bpm" or (col, sign) in seen:
            continue
        seen.add((col, sign))
        out.append((word, Concept(COLUMN, "tracks", col, sign)))
    return out


WORDS = _word_concepts()


class Explainer:
    """Explanations over one store (loads or builds its concept cache once)."""

    def __init__(self, store: Store):
        self.table = concept_cache.ensure_table(store)
        t = self.table
        self._names = [i for i, c in enumerate(t.concepts)
                       if c.kind in (TAG, STYLE) and t.mean[i] == t.mean[i]]
        self._words = [(w, c) for w, c in WORDS
                       if c in t and not np.isnan(t.mean[t.index[Concept(c.kind, c.source, c.name)]])]
        self._bpm = Concept(COLUMN, "tracks", "bpm")

    def why(self, track_id: int, like: Sequence[int]) -> str:
        """``similar: …`` naming what ``track_id`` shares with the tracks ``like``; "" if nothing."""
        t = self.table
        pos = t.positions(np.array([int(track_id)], np.int64))
        others = t.positions(np.array([int(x) for x in like if int(x) != int(track_id)], np.int64))
        if not len(pos) or not len(others):
            return ""
        p = int(pos[0])
        parts = self._shared_names(p, others)
        parts += [w for w in self._shared_words(p, others) if w.lower() not in {n.lower() for n in parts}]
        bpm = self._tempo(p, others)
        if bpm:
            parts.append(bpm)
        if self._same_key(p, others):
            parts.append("same key")
        return "similar: " + ", ".join(parts) if parts else ""

    def _shared_names(self, p: int, others: np.ndarray) -> list[str]:
        t = self.table
        if not self._names:
            return []
        rows = np.array(self._names)
        # Columns first: the cache is [concepts, tracks], a memory map at 100k tracks.
        values = np.asarray(t.values[:, np.r_[p, others]][rows], dtype=np.float32)  # [names, 1 + seeds]
        values = np.nan_to_num(values, nan=0.0)
        z = (values - t.mean[rows][:, None]) / t.std[rows][:, None]
        mine, theirs = values[:, 0], values[:, 1:]
        best = theirs.argmax(1)  # the seed that holds each name most
        other_v = theirs[np.arange(len(rows)), best]
        other_z = z[:, 1:][np.arange(len(rows)), best]
        ok = (mine >= SHARED_MIN) & (other_v >= SHARED_MIN) & (z[:, 0] >= SHARED_Z) & (other_z >= SHARED_Z)
        # Most distinctive first: a tag both hold far above the collection's usual level
        # ("choir" on two chorales) says more than one every track holds a bit of.
        strength = np.minimum(z[:, 0], other_z)
        names: list[str] = []
        for i in np.flatnonzero(ok)[np.argsort(-strength[ok], kind="stable")]:
            c = t.concepts[rows[i]]
            name = c.name.split(",")[0].strip() if c.kind == TAG and "," in c.name else c.name
            if name.lower() not in (n.lower() for n in names):
                names.append(name)
            if len(names) == MAX_NAMES:
                break
        return names

    def _shared_words(self, p: int, others: np.ndarray) -> list[str]:
        t = self.table
        words = []
        for word, c in self._words:
            z_me = float(t.z(c, np.array([p]))[0])
            z_them = float(t.z(c, others).max())
            if z_me >= WORD_Z and z_them >= WORD_Z:
                words.append((min(z_me, z_them), word))
        return [w for _, w in sorted(words, reverse=True)[:MAX_WORDS]]

    def _tempo(self, p: int, others: np.ndarray) -> str | None:
        t = self.table
        if self._bpm not in t:
            return None
        mine = float(t.raw(self._bpm, np.array([p]))[0])
        theirs = t.raw(self._bpm, others)
        theirs = theirs[~np.isnan(theirs)]
        if mine != mine or not len(theirs):
            return None
        near = float(theirs[np.argmin(np.abs(theirs - mine))])
        if abs(near - mine) > BPM_CLOSE * max(near, mine):
            return None
        return f"{mine:.0f} vs {near:.0f} bpm" if round(mine) != round(near) else f"both {mine:.0f} bpm"

    def _same_key(self, p: int, others: np.ndarray) -> bool:
        t = self.table
        if KEY_PC not in t:
            return False
        pc, minor = t.raw(KEY_PC), t.raw(KEY_MINOR)
        if pc[p] != pc[p]:
            return False
        return bool(((pc[others] == pc[p]) & (minor[others] == minor[p])).any())

