"""Every value a search word can name, for every track, as one array cached beside the store.

Text search ranks tracks by tag activations, style activations and descriptor columns.
Read from DuckDB per query that is a scan of the ``tags`` table (≈300 rows per track
with EffNet's heads: 30M rows at 100k tracks) for each word; so the values are pivoted
once into ``concepts.npy`` ([concepts, tracks], float16, NaN where a track has no
value) with a sidecar ``concepts.json`` (the concept list, track ids, per-concept mean
and standard deviation, and the store state it was made from). A search memory-maps
the file and reads only the rows of the words it has.

The cache is redone when the store changes: its state is the track count, the latest
``analysed_at`` and the embedding generations (every write of model outputs bumps one).
Made at the end of ``engine build`` and, if missing or stale, by the first search (in
memory when the store folder is read-only).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from index.store import Store
from index.vocabulary import (COLUMN, DESCRIPTOR_COLUMNS, STYLE, TAG, USER_SOURCE, Concept, Vocabulary,
                              build_vocabulary, pitch_class)
from models.registry import SPACES  # their generations mark model outputs as changed

CACHE_VERSION = 1
VALUES_NAME = "concepts.npy"
INFO_NAME = "concepts.json"
# Internal columns behind "in D minor": the key's pitch class (0-11) and 1 for minor.
KEY_PC = Concept(COLUMN, "tracks", "key_pitch_class")
KEY_MINOR = Concept(COLUMN, "tracks", "key_is_minor")


def store_state(store: Store) -> str:
    """A string that changes whenever tracks or their model outputs change."""
    count, latest = store.con.execute("SELECT count(*), max(analysed_at) FROM tracks").fetchone()
    gens = ",".join(str(store.generation(s)) for s in SPACES)
    return f"{count}|{latest}|{gens}|{_user_tags_state(store)}"


def _user_tags_state(store: Store) -> str:
    """Changes when the user trains, imports or deletes a tag (index.usertags)."""
    has = store.con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'probes'").fetchone()[0]
    if not has:  # a store made before user tags, opened read-only
        return ""
    n, latest = store.con.execute("SELECT count(*), max(trained_at) FROM probes").fetchone()
    return f"{n}:{latest}"


@dataclass
class ConceptTable:
    """Values of every concept for every track.

    Attributes
    ----------
    ids : numpy.ndarray
        int64 ``[n]`` track ids, ascending; column ``j`` of ``values`` is track ``ids[j]``.
    concepts : list of Concept
        Row order of ``values``.
    values : numpy.ndarray
        ``[len(concepts), n]`` float16 (a memory map when read from disk); NaN = no value.
    mean, std : numpy.ndarray
        float32 ``[len(concepts)]`` over the tracks with a value (std 1 where constant).
    state : str
        :func:`store_state` of the store it was made from.
    """

    ids: np.ndarray
    concepts: list[Concept]
    values: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    state: str
    index: dict[Concept, int] = field(init=False)

    def __post_init__(self) -> None:
        self.index = {c: i for i, c in enumerate(self.concepts)}

    @property
    def model_state(self) -> str:
        """:attr:`state` without the user's tags: what the learned text space depends on."""
        return self.state.rsplit("|", 1)[0]

    def __contains__(self, concept: Concept) -> bool:
        return Concept(concept.kind, concept.source, concept.name) in self.index

    def raw(self, concept: Concept, positions: np.ndarray | None = None) -> np.ndarray:
        """float32 values of ``concept`` (its sign ignored) at ``positions`` (default all)."""
        row = self.values[self.index[Concept(concept.kind, concept.source, concept.name)]]
        return np.asarray(row if positions is None else row[positions], dtype=np.float32)

    def z(self, concept: Concept, positions: np.ndarray | None = None) -> np.ndarray:
        """Standardised values, times the concept's sign; 0 where a track has none."""
        i = self.index[Concept(concept.kind, concept.source, concept.name)]
        z = (self.raw(concept, positions) - self.mean[i]) / self.std[i]
        return np.nan_to_num(z * concept.sign, nan=0.0).astype(np.float32)

    def vocabulary(self) -> Vocabulary:
        tags = [(c.source, c.name) for c in self.concepts if c.kind == TAG]
        styles = [(c.source, c.name) for c in self.concepts if c.kind == STYLE]
        columns = [c.name for c in self.concepts if c.kind == COLUMN and self.mean[self.index[c]] == self.mean[self.index[c]]]
        return build_vocabulary(tags, styles, columns)

    def positions(self, track_ids: np.ndarray) -> np.ndarray:
        """Column positions of ``track_ids`` (those in the table; order kept)."""
        if not len(self.ids):
            return np.zeros(0, np.int64)
        pos = np.minimum(np.searchsorted(self.ids, track_ids), len(self.ids) - 1)
        return pos[self.ids[pos] == track_ids]


def build_table(store: Store) -> ConceptTable:
    """Pivot the store's tags, styles and descriptor columns into a :class:`ConceptTable`."""
    con = store.con
    state = store_state(store)
    ids = np.asarray(con.execute("SELECT track_id FROM tracks ORDER BY track_id").fetchnumpy()["track_id"],
                     dtype=np.int64)
    n = len(ids)
    # The user's own tags join the model tags under source "user" (index.vocabulary.USER_SOURCE).
    tags_sql = "SELECT track_id, source, tag, activation FROM tags"
    if _user_tags_state(store):
        tags_sql += f" UNION ALL SELECT track_id, '{USER_SOURCE}', tag, score FROM user_tags"
    tag_keys = con.execute(f"SELECT DISTINCT source, tag FROM ({tags_sql}) ORDER BY ALL").fetchall()
    style_keys = con.execute("SELECT DISTINCT genre, style FROM styles ORDER BY ALL").fetchall()
    concepts = ([Concept(TAG, s, t) for s, t in tag_keys] + [Concept(STYLE, g, s) for g, s in style_keys]
                + [Concept(COLUMN, "tracks", c) for c in DESCRIPTOR_COLUMNS] + [KEY_PC, KEY_MINOR])
    values = np.full((len(concepts), n), np.nan, dtype=np.float16)
    for table, a, b, keys, offset in ((f"({tags_sql})", "source", "tag", tag_keys, 0),
                                      ("styles", "genre", "style", style_keys, len(tag_keys))):
        if not keys or not n:
            continue
        con.register("_concept_keys", {"ka": np.array([k[0] for k in keys], dtype=object),
                                       "kb": np.array([k[1] for k in keys], dtype=object),
                                       "c": np.arange(len(keys), dtype=np.int32)})
        try:
            got = con.execute(
                f"SELECT k.c AS c, t.pos::INTEGER AS pos, x.activation::FLOAT AS v FROM {table} x "
                f"JOIN _concept_keys k ON x.{a} = k.ka AND x.{b} = k.kb "
                "JOIN (SELECT track_id, row_number() OVER (ORDER BY track_id) - 1 AS pos FROM tracks) t "
                "USING (track_id)"
            ).fetchnumpy()
        finally:
            con.unregister("_concept_keys")
        values[offset + np.asarray(got["c"], np.int64), np.asarray(got["pos"], np.int64)] = got["v"]
    cols = con.execute(f"SELECT {', '.join(DESCRIPTOR_COLUMNS)}, key_temperley, scale_temperley "
                       "FROM tracks ORDER BY track_id").fetchnumpy()
    base = len(tag_keys) + len(style_keys)
    for j, c in enumerate(DESCRIPTOR_COLUMNS):
        values[base + j] = _floats(cols[c])
    keys = cols["key_temperley"]
    values[base + len(DESCRIPTOR_COLUMNS)] = [np.nan if (p := pitch_class(k if isinstance(k, str) else None)) is None
                                              else p for k in keys]
    scales = cols["scale_temperley"]
    values[base + len(DESCRIPTOR_COLUMNS) + 1] = [1.0 if s == "minor" else 0.0 if s == "major" else np.nan
                                                  for s in scales]
    mean, std = _stats(values)
    return ConceptTable(ids, concepts, values, mean, std, state)


def _floats(column) -> np.ndarray:
    """A DuckDB numeric column (masked where NULL) as float32 with NaN."""
    if isinstance(column, np.ma.MaskedArray):
        return column.astype(np.float32).filled(np.nan)
    return np.asarray([np.nan if v is None else v for v in column], dtype=np.float32) \
        if column.dtype == object else column.astype(np.float32)


def _stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = np.zeros(len(values), np.float32)
    std = np.ones(len(values), np.float32)
    for i, row in enumerate(values):
        r = row.astype(np.float32)
        ok = r[~np.isnan(r)]
        if len(ok):
            mean[i] = ok.mean()
            s = ok.std()
            std[i] = s if s > 1e-6 else 1.0
        else:
            mean[i] = np.nan
    return mean, std


def save(table: ConceptTable, directory: Path) -> None:
    """Write the table beside the store, atomically (temporary names, then rename)."""
    values_path, info_path = directory / VALUES_NAME, directory / INFO_NAME
    tmp_values = values_path.with_name(values_path.name + ".tmp.npy")
    np.save(tmp_values, np.ascontiguousarray(table.values))
    info = {
        "version": CACHE_VERSION,
        "state": table.state,
        "concepts": [[c.kind, c.source, c.name] for c in table.concepts],
        "ids": table.ids.tolist(),
        "mean": [None if m != m else float(m) for m in table.mean],
        "std": table.std.tolist(),
    }
    tmp_info = info_path.with_name(info_path.name + ".tmp")
    tmp_info.write_text(json.dumps(info))
    os.replace(tmp_values, values_path)
    os.replace(tmp_info, info_path)


def load(directory: Path) -> ConceptTable | None:
    """The cached table, memory-mapped; None when absent, unreadable or of another version."""
    try:
        info = json.loads((directory / INFO_NAME).read_text())
        if info.get("version") != CACHE_VERSION:
            return None
        values = np.load(directory / VALUES_NAME, mmap_mode="r")
    except (OSError, ValueError):
        return None
    concepts = [Concept(*c) for c in info["concepts"]]
    ids = np.asarray(info["ids"], dtype=np.int64)
    if values.shape != (len(concepts), len(ids)):
        return None
    mean = np.asarray([np.nan if m is None else m for m in info["mean"]], dtype=np.float32)
    return ConceptTable(ids, concepts, values, mean, np.asarray(info["std"], np.float32), info["state"])


def ensure_table(store: Store) -> ConceptTable:
    """The store's concept table: the cached one when fresh, else built (and saved if the folder allows)."""
    cached = load(store.directory)
    state = store_state(store)
    if cached is not None and cached.state == state:
        return cached
    table = build_table(store)
    try:
        save(table, store.directory)
    except OSError:  # a read-only store folder: keep it in memory
        pass
    return table
