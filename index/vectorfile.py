"""The vectors a compressed index re-ranks with: one float16 row per track, memory-mapped.

A compressed index (index.compressed) ranks by approximate scores read from its codes; the
top candidates are then ordered by these rows: the track's prepared vector (centred on the
collection's centre and L2-normalised, index.vectors.prepare) rounded to float16,
renormalised when read. Rounding moves a cosine similarity by at most ≈1e-4 and
changed no recall@10 figure at the third decimal in bench/vectors_scale.py, at half the
bytes of float32 (1280-d: 2.56 GB per million tracks instead of 5.12). DuckDB keeps the
float32 vectors; this file is derived from them and rebuilt from them.

Two files per space, next to its FAISS index:

- ``<space>.f16``: rows of ``dim`` float16 values. Rows are only ever appended (a new or
  re-analysed track gets a new row), never rewritten in place.
- ``<space>.f16.map.npy``: int64 ``[2, n]``: the track ids, ascending, and the row of each.

An update appends rows, then writes the map to a temporary name and renames it, so a crash
at any point leaves the previous map, which still points at valid rows (rows past it are
ignored). Rows no longer mapped (deleted or re-analysed tracks) are dead until the file is
rewritten, on retraining or once they are :data:`MAX_DEAD_SHARE` of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

# Rewrite the row file once this share of its rows is dead (deleted or superseded).
MAX_DEAD_SHARE = 0.25
# Rows read per block when streaming the whole file (32 MiB of float16 at 1280-d).
BLOCK_ROWS = 1 << 13


def rows_path(directory: Path, space: str) -> Path:
    return Path(directory) / f"{space}.f16"


def map_path(directory: Path, space: str) -> Path:
    return Path(directory) / f"{space}.f16.map.npy"


def _renormalised(x16: np.ndarray) -> np.ndarray:
    x = x16.astype(np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    np.maximum(norms, np.float32(1e-12), out=norms)
    x /= norms
    return x


@dataclass
class VectorFile:
    """One space's float16 rows, mapped read-only. ``ids`` (ascending) and ``rows`` are
    memory-mapped too, so opening costs milliseconds at any size."""

    directory: Path
    space: str
    dim: int
    ids: np.ndarray  # int64 [n], ascending
    rows: np.ndarray  # int64 [n]: the row of each id
    data: np.ndarray  # float16 [rows in the file, dim]

    @classmethod
    def open(cls, directory: Path, space: str, dim: int) -> "VectorFile":
        """Raises OSError or ValueError when a file is missing or does not fit ``dim``."""
        directory = Path(directory)
        mapping = np.load(map_path(directory, space), mmap_mode="r")
        if mapping.ndim != 2 or mapping.shape[0] != 2 or mapping.dtype != np.int64:
            raise ValueError(f"{map_path(directory, space)} is not a [2, n] int64 map")
        path = rows_path(directory, space)
        size = path.stat().st_size
        count = size // (2 * dim)
        data = (np.memmap(path, dtype=np.float16, mode="r", shape=(count, dim)) if count
                else np.zeros((0, dim), np.float16))
        rows = mapping[1]
        if len(rows) and int(rows.max()) >= count:
            raise ValueError(f"{path} holds {count} rows, its map points past them")
        return cls(directory, space, dim, mapping[0], rows, data)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def file_rows(self) -> int:
        return len(self.data)

    @property
    def dead_rows(self) -> int:
        return self.file_rows - len(self.ids)

    def bytes_on_disk(self) -> int:
        return sum(p.stat().st_size for p in (rows_path(self.directory, self.space),
                                               map_path(self.directory, self.space)) if p.exists())

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """The row of each of ``ids`` (int64), -1 where the track has none."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(self.ids) or not len(ids):
            return np.full(len(ids), -1, np.int64)
        at = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        return np.where(self.ids[at] == ids, self.rows[at], -1)

    def _rows_of(self, ids: np.ndarray) -> np.ndarray:
        """:meth:`lookup`, with a KeyError naming the first of ``ids`` without a row."""
        rows = self.lookup(ids)
        if (rows < 0).any():
            raise KeyError(int(np.asarray(ids)[np.argmax(rows < 0)]))
        return rows

    def contains(self, ids: np.ndarray) -> np.ndarray:
        return self.lookup(ids) >= 0

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Unit float32 vectors ``[len(ids), dim]`` of ``ids``; KeyError names the first one
        without a row."""
        rows = self._rows_of(ids)
        if not len(rows):
            return np.zeros((0, self.dim), np.float32)
        # Rows read in file order: neighbouring candidates share pages.
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows), self.dim), np.float32)
        out[order] = _renormalised(self.data[rows[order]])
        return out

    def similarities(self, ids: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Cosine similarity of each of ``ids``' rows to the unit query ``q`` [dim] (float32):
        :meth:`vectors` @ ``q`` without the renormalised matrix, and in one thread (einsum,
        not BLAS, whose threads spin on a busy machine: a 1,000 x 1280 product cost 0.4 to
        11 ms of CPU)."""
        rows = self._rows_of(ids)
        if not len(rows):
            return np.zeros(0, np.float32)
        order = np.argsort(rows, kind="stable")  # file order: neighbouring rows share pages
        x = self.data[rows[order]].astype(np.float32)
        dots = np.einsum("ij,j->i", x, np.asarray(q, np.float32))
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))
        np.maximum(norms, np.float32(1e-12), out=norms)
        out = np.empty(len(rows), np.float32)
        out[order] = dots / norms
        return out

    def read(self, rows: np.ndarray, *, gap: int = 16) -> np.ndarray:
        """The float16 rows at these row numbers ``[len(rows), dim]``, read with ``pread`` in
        spans of at most ``2 * BLOCK_ROWS`` rows (rows less than ``gap`` apart share a read),
        not through the mapping: an update compares every row of the space, and pages read
        through the mapping would all count in its RSS (see :meth:`blocks`)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.dim), np.float16)
        if not len(rows):
            return out
        order = np.argsort(rows, kind="stable")
        at = rows[order]
        breaks = np.flatnonzero(np.diff(at) > gap) + 1  # a new read starts at each
        row_bytes = 2 * self.dim
        with open(rows_path(self.directory, self.space), "rb") as f:
            i = 0
            while i < len(at):
                after = int(np.searchsorted(breaks, i, side="right"))
                j = min(int(breaks[after]) if after < len(breaks) else len(at),
                        int(np.searchsorted(at, at[i] + 2 * BLOCK_ROWS)))
                lo, hi = int(at[i]), int(at[j - 1]) + 1
                raw = os.pread(f.fileno(), (hi - lo) * row_bytes, lo * row_bytes)
                if len(raw) != (hi - lo) * row_bytes:
                    raise ValueError(f"{rows_path(self.directory, self.space)} ended before row {hi}")
                span = np.frombuffer(raw, dtype=np.float16).reshape(hi - lo, self.dim)
                out[order[i:j]] = span[at[i:j] - lo]
                i = j
        return out

    def read_vectors(self, ids: np.ndarray) -> np.ndarray:
        """:meth:`vectors` read with ``pread`` (:meth:`read`): for many ids at once, where
        :meth:`vectors` (through the mapping) suits a search's few scattered rows."""
        rows = self._rows_of(ids)
        return _renormalised(self.read(rows))

    def blocks(self, rows: int = BLOCK_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, unit float32 vectors) of every mapped track, in file order, ``rows`` at a time.

        Read with ``pread``, not through the mapping: a pass over a mapped 10M x 1280 file
        leaves its 26 GB of pages counted in the process's RSS (reclaimable, but the build's
        peak RSS is what the memory bound is judged by); read, they stay in the page cache only.
        """
        order = np.argsort(self.rows, kind="stable")
        in_file = np.asarray(self.rows)[order]
        row_bytes = 2 * self.dim
        with open(rows_path(self.directory, self.space), "rb") as f:
            i = 0
            while i < len(order):
                # At most ``rows`` tracks, spanning at most 2 * ``rows`` rows of the file
                # (dead rows between them are read and skipped).
                j = min(i + rows, int(np.searchsorted(in_file, in_file[i] + 2 * rows)))
                at = in_file[i:j]
                lo, hi = int(at[0]), int(at[-1]) + 1
                raw = os.pread(f.fileno(), (hi - lo) * row_bytes, lo * row_bytes)
                if len(raw) != (hi - lo) * row_bytes:
                    raise ValueError(f"{rows_path(self.directory, self.space)} ended before row {hi}")
                span = np.frombuffer(raw, dtype=np.float16).reshape(hi - lo, self.dim)
                yield np.asarray(self.ids[order[i:j]]), _renormalised(span[at - lo])
                i = j


class VectorFileWriter:
    """Writes a space's rows: a new file (``base`` None) or rows appended to ``base``'s.

    ``add`` rows, ``drop`` ids, then ``commit``; nothing is visible before the commit.
    """

    def __init__(self, directory: Path, space: str, dim: int, base: VectorFile | None = None):
        self.directory, self.space, self.dim, self.base = Path(directory), space, dim, base
        final = rows_path(self.directory, space)
        self._path = final if base is not None else final.with_name(final.name + ".tmp")
        self._file = open(self._path, "r+b" if base is not None else "wb")
        self._file.seek(0, os.SEEK_END)
        self._next_row = self._file.tell() // (2 * dim)
        if self._file.tell() != self._next_row * 2 * dim:  # a torn row from a crash: cut it off
            self._file.truncate(self._next_row * 2 * dim)
            self._file.seek(0, os.SEEK_END)
        self._new_ids: list[np.ndarray] = []
        self._new_rows: list[np.ndarray] = []
        self._dropped: list[np.ndarray] = []

    def add(self, ids: np.ndarray, unit_vectors: np.ndarray) -> None:
        """Rows for ``ids`` (each once per writer): unit vectors, float32 or float16."""
        if not len(ids):
            return
        block = np.ascontiguousarray(unit_vectors, dtype=np.float16)
        self._file.write(block.tobytes())
        self._new_ids.append(np.asarray(ids, dtype=np.int64))
        self._new_rows.append(np.arange(self._next_row, self._next_row + len(ids), dtype=np.int64))
        self._next_row += len(ids)

    def drop(self, ids: np.ndarray) -> None:
        """Forget these ids' rows (deleted tracks)."""
        self._dropped.append(np.asarray(ids, dtype=np.int64))

    def commit(self) -> VectorFile:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        ids = np.concatenate([np.zeros(0, np.int64)] + self._new_ids)
        rows = np.concatenate([np.zeros(0, np.int64)] + self._new_rows)
        if self.base is not None and len(self.base):
            keep = np.ones(len(self.base), bool)
            gone = np.concatenate([np.zeros(0, np.int64)] + self._dropped + [ids])
            if len(gone):
                keep &= ~np.isin(self.base.ids, gone)
            ids = np.concatenate([np.asarray(self.base.ids[keep]), ids])
            rows = np.concatenate([np.asarray(self.base.rows[keep]), rows])
        order = np.argsort(ids, kind="stable")
        mapping = np.stack([ids[order], rows[order]])
        final_map = map_path(self.directory, self.space)
        tmp_map = final_map.with_name(final_map.name + ".tmp.npy")
        np.save(tmp_map, mapping)
        with open(tmp_map, "rb") as f:
            os.fsync(f.fileno())
        if self.base is None:
            # No map while the rows are swapped: a crash in between leaves no index (built
            # anew), never an old map over new rows.
            final_map.unlink(missing_ok=True)
            os.replace(self._path, rows_path(self.directory, self.space))
        os.replace(tmp_map, final_map)
        return VectorFile.open(self.directory, self.space, self.dim)

    def abort(self) -> None:
        self._file.close()
        if self.base is None:
            self._path.unlink(missing_ok=True)


def remove(directory: Path, space: str) -> None:
    """Delete a space's row files (its index is no longer a compressed one)."""
    for path in (rows_path(directory, space), map_path(directory, space)):
        path.unlink(missing_ok=True)
