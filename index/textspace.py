"""A learned text–audio space: audio embeddings projected into the sentence model's space.

The idea of Schindler et al. (music representations tied to words through tags),
trained on the user's own collection with no labels: each track's tag and style
activations, standardised per concept (``z``, so a tag active everywhere says nothing),
weight the sentence embeddings of the concepts' names (``E``: "piano", "female
vocalists", "Drum n Bass", ...), giving the track a target point ``y = z E`` in the
384-d text space. A ridge regression from the track's audio embeddings (each space
L2-normalised, concatenated, standardised) to ``y`` is the projection ``W``. A query
is embedded by the same sentence model, and tracks rank by cosine between ``x W`` and
the query: a track with no strong tag still gets a point (from its sound), and a word
no tag names ("lullaby") still finds the tracks whose sound predicts the words near it.

Cost: the fit uses at most :data:`FIT_TRACKS` tracks (the ridge's normal equations on
400-1,680 dimensions); the projection of all tracks is one matrix product. The
projected points are kept in their first :data:`RANK` principal directions (the
targets ``z E`` span few directions: see docs/search.md for the energy kept), so a
query reads ``n x 64`` floats, 25 MB at 100k tracks.

Saved beside the store as ``textspace.npz`` with the store state and the sentence
model's SHA-256; retrained when either changes (``engine build``, or the first search).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from index.concepts import ConceptTable
from index.vocabulary import STYLE, TAG, USER_SOURCE, Concept

FILE_NAME = "textspace.npz"
VERSION = 2
# What the sentence model reads for a name or a query: in a music context, "brass" and
# "organ" are instruments, not a metal and a body part (organ's nearest names: "piano",
# "instrumental", "synth" rather than "soul"). Measured in docs/search.md.
TEMPLATE = "{} music"
FIT_TRACKS = 20_000  # rows of the ridge fit (a seeded sample beyond that)
RANK = 64  # principal directions of the projected tracks kept for search
RIDGE = 1.0  # ridge penalty per fitted track, on standardised inputs


@dataclass
class TextSpace:
    """The projection and every track's point in it.

    Attributes
    ----------
    ids : numpy.ndarray
        int64 ``[n]`` track ids (ascending) with a point.
    points : numpy.ndarray
        float32 ``[n, r]``: projected tracks in the principal basis, of norm 1 (so
        ``points @ (basis.T @ q)`` is the cosine with ``q`` within that subspace).
    basis : numpy.ndarray
        float32 ``[384, r]`` orthonormal principal directions.
    spaces : tuple of str
        Audio embedding spaces the projection reads, in order.
    labels : list of Concept
        Concepts whose names the space was trained on; ``label_vectors`` are the
        sentence embeddings ``[len(labels), 384]`` of their names in :data:`TEMPLATE`,
        ``name_vectors`` of the bare names (for telling a word from noise).
    state, model_sha256 : str
        Store state and sentence model it was made from.
    """

    ids: np.ndarray
    points: np.ndarray
    basis: np.ndarray
    spaces: tuple[str, ...]
    labels: list[Concept]
    label_vectors: np.ndarray
    name_vectors: np.ndarray
    state: str
    model_sha256: str
    energy: float = float("nan")  # share of the projected fit tracks' energy the basis keeps

    def cosine(self, q: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Cosine between query ``q`` ([384], unit) and the tracks (``rows`` of ``ids``, default all)."""
        qr = (self.basis.T @ q).astype(np.float32)
        pts = self.points if rows is None else self.points[rows]
        return pts @ qr


def label_text(concept: Concept) -> str:
    """What the sentence model reads for a concept: its name in :data:`TEMPLATE`."""
    return TEMPLATE.format(concept.name)


def trainable_labels(table: ConceptTable) -> list[Concept]:
    """Tag and style concepts with values in the store (their names become text targets)."""
    # The user's own tags are left out: training a tag must not retrain the space.
    return [c for c in table.concepts if c.kind in (TAG, STYLE) and c.source != USER_SOURCE
            and table.mean[table.index[c]] == table.mean[table.index[c]]]


def train(table: ConceptTable, embeddings: Mapping[str, tuple[np.ndarray, np.ndarray]],
          encode: Callable[[Sequence[str]], np.ndarray], model_sha256: str, *,
          fit_tracks: int = FIT_TRACKS, rank: int = RANK, seed: int = 0) -> TextSpace | None:
    """Fit the projection on the collection (see the module doc).

    Parameters
    ----------
    table : ConceptTable
        The store's concept values (index.concepts).
    embeddings : mapping of space -> (ids int64 [m], vectors float32 [m, d])
        Track-mean embeddings per space (``Store.embedding_matrix``).
    encode : callable
        Texts -> unit sentence embeddings ``[len, 384]``.

    Returns
    -------
    TextSpace or None
        None when the store has no embedding or no tag to learn from.
    """
    labels = trainable_labels(table)
    spaces = tuple(s for s, (ids, v) in embeddings.items() if len(ids))
    if not labels or not spaces or not len(table.ids):
        return None
    inputs = _Inputs(table, embeddings, spaces)
    has = np.nonzero(inputs.present)[0]
    if not len(has):
        return None
    rng = np.random.default_rng(seed)
    fit = has if len(has) <= fit_tracks else np.sort(rng.choice(has, fit_tracks, replace=False))
    Xf = inputs.standardise(inputs.rows(fit), fit_stats=True)
    E = np.asarray(encode([label_text(c) for c in labels]), dtype=np.float32)
    names = np.asarray(encode([c.name for c in labels]), dtype=np.float32)
    Yf = np.stack([table.z(c, fit) for c in labels], axis=1) @ E  # [fit, 384]
    d = Xf.shape[1]
    gram = Xf.T @ Xf
    gram[np.diag_indices(d)] += RIDGE * len(fit)
    W = np.linalg.solve(gram.astype(np.float64), (Xf.T @ Yf).astype(np.float64)).astype(np.float32)
    # Principal directions of the projected fit tracks (uncentred: cosines need the
    # origin); every track is then projected straight into them (X (W B): n x d x r
    # operations, not n x d x 384), and its cosine taken within that subspace.
    Pf = Xf @ W
    vals, vecs = np.linalg.eigh((Pf.T @ Pf).astype(np.float64))
    energy = float(vals[::-1][:rank].sum() / max(vals.sum(), 1e-12))
    basis = np.ascontiguousarray(vecs[:, ::-1][:, :rank], dtype=np.float32)
    WB = W @ basis
    points = np.empty((len(has), basis.shape[1]), np.float32)
    for start in range(0, len(has), 32_768):  # in blocks: never all n x d inputs at once
        chunk = has[start : start + 32_768]
        points[start : start + len(chunk)] = inputs.standardise(inputs.rows(chunk)) @ WB
    norms = np.linalg.norm(points, axis=1)
    norms[norms < 1e-12] = 1.0
    points /= norms[:, None]
    return TextSpace(table.ids[has], points, basis, spaces, labels, E, names, table.model_state, model_sha256, energy)


class _Inputs:
    """Audio inputs aligned with ``table.ids``: each space's vectors L2-normalised and
    concatenated (zeros where a track has none in a space), then standardised with the
    fit tracks' column statistics."""

    def __init__(self, table: ConceptTable, embeddings, spaces):
        n = len(table.ids)
        self.parts = []  # (vectors, row of each table column or -1)
        self.present = np.zeros(n, bool)
        for space in spaces:
            ids, vecs = embeddings[space]
            pos = np.searchsorted(table.ids, ids)
            ok = (pos < n) & (table.ids[np.minimum(pos, n - 1)] == ids)
            where = np.full(n, -1, np.int64)
            where[pos[ok]] = np.nonzero(ok)[0]
            self.parts.append((vecs, where))
            self.present[pos[ok]] = True
        self.mean = self.std = None

    def rows(self, columns: np.ndarray) -> np.ndarray:
        from index.vectormath import normalise

        blocks = []
        for vecs, where in self.parts:
            block = np.zeros((len(columns), vecs.shape[1]), np.float32)
            r = where[columns]
            block[r >= 0] = normalise(vecs[r[r >= 0]])
            blocks.append(block)
        return np.concatenate(blocks, axis=1)

    def standardise(self, x: np.ndarray, *, fit_stats: bool = False) -> np.ndarray:
        if fit_stats:
            self.mean, self.std = x.mean(0), x.std(0)
            self.std[self.std < 1e-6] = 1.0
        return (x - self.mean) / self.std


def save(space: TextSpace, directory: Path) -> None:
    path = directory / FILE_NAME
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, version=VERSION, ids=space.ids, points=space.points, basis=space.basis,
             spaces=np.array(space.spaces), label_vectors=space.label_vectors, name_vectors=space.name_vectors,
             labels=np.array([[c.kind, c.source, c.name] for c in space.labels]).reshape(-1, 3),
             state=space.state, model_sha256=space.model_sha256)
    os.replace(tmp, path)


def load(directory: Path) -> TextSpace | None:
    """The saved space, or None when absent, unreadable or of another version."""
    try:
        with np.load(directory / FILE_NAME) as f:
            if int(f["version"]) != VERSION:
                return None
            return TextSpace(f["ids"], f["points"], f["basis"], tuple(str(s) for s in f["spaces"]),
                             [Concept(str(k), str(s), str(n)) for k, s, n in f["labels"]],
                             f["label_vectors"], f["name_vectors"], str(f["state"]), str(f["model_sha256"]))
    except (OSError, ValueError, KeyError):
        return None
