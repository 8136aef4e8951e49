"""The store: one directory holding the DuckDB file (source of truth) and FAISS indexes.

Only this module holds a DuckDB connection. Writers take an exclusive lock on the
store directory, so two builds cannot interleave; each batch of tracks is written
in one transaction, so a build killed at any moment leaves whole tracks or none.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import platformdirs

from engine.errors import EngineError
from index.schema import SCHEMA_VERSION, TABLES_DDL, TRACK_COLUMN_NAMES, TRACK_COLUMNS

DB_NAME = "engine.duckdb"
LOCK_NAME = ".lock"


class StoreError(EngineError):
    pass


class NoStoreError(StoreError):
    pass


class StoreBusyError(StoreError):
    pass


def default_store_dir() -> Path:
    """``$ENGINE_STORE`` if set, else the user data dir, so every command finds the same store."""
    env = os.environ.get("ENGINE_STORE")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("music-engine")) / "store"


@dataclass(frozen=True)
class KnownFile:
    """What the store remembers about an analysed file, to decide whether to redo it."""

    track_id: int
    path: str
    file_size: int
    mtime_ns: int
    content_hash: str
    # True: outputs stored; False: the model cannot take the track (too short);
    # None: not computed yet (the model was missing).
    has_musicnn: bool | None
    has_effnet: bool | None
    has_quality: bool  # False for tracks analysed before the quality measures existed
    has_mtt: bool | None = None  # as has_musicnn


@dataclass(frozen=True)
class FailedFile:
    path: str
    file_size: int | None
    mtime_ns: int | None
    stage: str
    error: str


@dataclass
class TrackRecord:
    """Everything stored for one track.

    ``columns`` holds ``tracks`` columns by their schema name (see index.schema);
    missing names are NULL. ``styles`` rows are (genre, style, activation), ``tags``
    rows (source, tag, activation), ``embeddings`` maps a space to its mean vector.
    ``replace_models`` lists the model sources whose styles/tags/embeddings this
    record replaces when it only adds outputs to an existing track.
    """

    path: str
    columns: dict[str, Any]
    styles: list[tuple[str, str, float]] = field(default_factory=list)
    tags: list[tuple[str, str, float]] = field(default_factory=list)
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.columns) - set(TRACK_COLUMN_NAMES)
        if unknown:
            raise ValueError(f"not tracks columns: {sorted(unknown)}")


class Store:
    """A store directory. Use :meth:`open` (read-write, locked) or :meth:`open_read_only`."""

    def __init__(self, directory: Path, con, lock_fd: int | None):
        self.directory = directory
        self.con = con
        self._lock_fd = lock_fd

    # -- opening -------------------------------------------------------------------
    @classmethod
    def open(cls, directory: Path | None = None) -> "Store":
        import duckdb

        directory = Path(directory or default_store_dir()).expanduser().resolve()
        directory.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(directory / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise StoreBusyError(f"store {directory} is in use by another build") from None
        con = duckdb.connect(str(directory / DB_NAME))
        store = cls(directory, con, lock_fd)
        store._create()
        return store

    @classmethod
    def open_read_only(cls, directory: Path | None = None) -> "Store":
        import duckdb

        directory = Path(directory or default_store_dir()).expanduser().resolve()
        db = directory / DB_NAME
        if not db.is_file():
            raise NoStoreError(
                f"no store at {directory}: run `engine build <music folder>` first "
                "(or pass --store / set ENGINE_STORE)"
            )
        try:
            con = duckdb.connect(str(db), read_only=True)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise StoreError(f"cannot open store {directory}: {str(exc).splitlines()[0]}") from None
            # DuckDB lets one process write or many read, not both at once.
            raise StoreBusyError(
                f"store {directory} is being written by a build; query it when the build ends"
            ) from None
        return cls(directory, con, None)

    def close(self) -> None:
        self.con.close()
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _create(self) -> None:
        for ddl in TABLES_DDL.values():
            self._exec(ddl)
        self._exec("CREATE SEQUENCE IF NOT EXISTS track_ids START 1")
        # Columns added to the schema since the store was made are added empty, so
        # an older store keeps working (its tracks show NULL there).
        have = {r[0] for r in self._exec(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'tracks'")}
        for col in TRACK_COLUMNS:
            if col.name not in have:
                self._exec(f"ALTER TABLE tracks ADD COLUMN {col.name} {col.sql_type}")
        version = self.meta("schema_version")
        if version is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))
        elif int(version) != SCHEMA_VERSION:
            raise StoreError(
                f"store {self.directory} has schema version {version}, this engine "
                f"expects {SCHEMA_VERSION}: rebuild it into a new --store"
            )

    # -- small helpers ---------------------------------------------------------------
    def _exec(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        # DuckDB refuses new work while a result is unfetched, so always drain.
        return self.con.execute(sql, params or []).fetchall()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._exec("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self._exec("ROLLBACK")
            raise
        self._exec("COMMIT")

    def meta(self, key: str) -> str | None:
        row = self._exec("SELECT value FROM meta WHERE key = ?", [key])
        return row[0][0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._exec("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])

    def generation(self, space: str) -> int:
        """Counter bumped whenever ``space``'s embeddings change (FAISS sync check)."""
        return int(self.meta(f"generation:{space}") or 0)

    def _bump(self, spaces: Iterable[str]) -> None:
        for space in set(spaces):
            self.set_meta(f"generation:{space}", str(self.generation(space) + 1))

    # -- reading state for incremental builds -------------------------------------
    def known_files(self) -> dict[str, KnownFile]:
        rows = self._exec(
            "SELECT track_id, path, file_size, mtime_ns, content_hash, "
            "has_musicnn, has_effnet, quality IS NOT NULL, has_mtt "
            "FROM tracks"
        )
        return {r[1]: KnownFile(*r) for r in rows}

    def failed_files(self) -> dict[str, FailedFile]:
        rows = self._exec("SELECT path, file_size, mtime_ns, stage, error FROM failures")
        return {r[0]: FailedFile(*r) for r in rows}

    def count(self, table: str = "tracks") -> int:
        if table not in TABLES_DDL:
            raise StoreError(f"unknown table {table!r}")
        return self._exec(f"SELECT count(*) FROM {table}")[0][0]

    # -- writing ---------------------------------------------------------------------
    def write_tracks(self, records: Sequence[TrackRecord], failures: Sequence[FailedFile] = ()) -> None:
        """Insert or replace whole tracks and record failures, in one transaction.

        A record whose path is already stored keeps its ``track_id``; its old
        styles/tags/embeddings are replaced by the record's for every model source
        the record carries, so adding EffNet outputs later keeps the MusiCNN rows.
        """
        if not records and not failures:
            return
        now = _dt.datetime.now()
        with self.transaction():
            known = self._track_ids([r.path for r in records])
            spaces: set[str] = set()
            for rec in records:
                track_id = known.get(rec.path)
                cols = dict(rec.columns, path=rec.path, analysed_at=now)
                if track_id is None:
                    track_id = self._exec("SELECT nextval('track_ids')")[0][0]
                    cols["track_id"] = track_id
                    names = list(cols)
                    self._exec(
                        f"INSERT INTO tracks ({', '.join(names)}) VALUES "
                        f"({', '.join('?' for _ in names)})",
                        [_sql_value(cols[n]) for n in names],
                    )
                else:
                    cols.pop("track_id", None)
                    names = list(cols)
                    self._exec(
                        f"UPDATE tracks SET {', '.join(f'{n} = ?' for n in names)} "
                        "WHERE track_id = ?",
                        [_sql_value(cols[n]) for n in names] + [track_id],
                    )
                self._replace_outputs(track_id, rec)
                spaces.update(rec.embeddings)
            if records:
                self._exec(
                    "DELETE FROM failures WHERE path IN (SELECT unnest(?))",
                    [[r.path for r in records]],
                )
            for f in failures:
                self._exec(
                    "INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?, ?)",
                    [f.path, f.stage, f.error, now, f.file_size, f.mtime_ns],
                )
            self._bump(spaces)

    def _track_ids(self, paths: list[str]) -> dict[str, int]:
        if not paths:
            return {}
        rows = self._exec("SELECT path, track_id FROM tracks WHERE path IN (SELECT unnest(?))", [paths])
        return dict(rows)

    def _replace_outputs(self, track_id: int, rec: TrackRecord) -> None:
        if rec.styles:
            self._exec("DELETE FROM styles WHERE track_id = ?", [track_id])
            genres, styles, acts = zip(*rec.styles)
            self._exec(
                "INSERT INTO styles SELECT ?, unnest(?), unnest(?), unnest(?)",
                [track_id, list(genres), list(styles), [float(a) for a in acts]],
            )
        sources = sorted({t[0] for t in rec.tags})
        if sources:
            self._exec(
                "DELETE FROM tags WHERE track_id = ? AND source IN (SELECT unnest(?))",
                [track_id, sources],
            )
            src, tag, act = zip(*rec.tags)
            self._exec(
                "INSERT INTO tags SELECT ?, unnest(?), unnest(?), unnest(?)",
                [track_id, list(src), list(tag), [float(a) for a in act]],
            )
        if rec.embeddings:  # new vectors: its user-tag scores are redone (index.usertags.score_missing)
            self._exec("DELETE FROM user_tags WHERE track_id = ?", [track_id])
        for space, vector in rec.embeddings.items():
            self._exec(
                "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)",
                [track_id, space, np.asarray(vector, dtype=np.float32).tolist()],
            )

    def move(self, track_id: int, new_path: str, file_size: int, mtime_ns: int) -> None:
        """A file moved with its content unchanged: keep its analysis under the new path."""
        self._exec(
            "UPDATE tracks SET path = ?, file_size = ?, mtime_ns = ? WHERE track_id = ?",
            [new_path, file_size, mtime_ns, track_id],
        )

    def touch(self, track_id: int, file_size: int, mtime_ns: int) -> None:
        """Same content, new mtime (e.g. copied back): nothing to analyse again."""
        self._exec(
            "UPDATE tracks SET file_size = ?, mtime_ns = ? WHERE track_id = ?",
            [file_size, mtime_ns, track_id],
        )

    def delete(self, paths: Sequence[str]) -> int:
        """Forget tracks whose files are gone; returns how many were removed."""
        if not paths:
            return 0
        with self.transaction():
            ids = [r[0] for r in self._exec(
                "SELECT track_id FROM tracks WHERE path IN (SELECT unnest(?))", [list(paths)])]
            if ids:
                spaces = [r[0] for r in self._exec(
                    "SELECT DISTINCT space FROM embeddings WHERE track_id IN (SELECT unnest(?))", [ids])]
                for table in ("styles", "tags", "embeddings", "user_tags", "tracks"):
                    self._exec(f"DELETE FROM {table} WHERE track_id IN (SELECT unnest(?))", [ids])
                self._bump(spaces)
            self._exec("DELETE FROM failures WHERE path IN (SELECT unnest(?))", [list(paths)])
        return len(ids)

    # -- reading vectors ---------------------------------------------------------------
    def embedding_matrix(self, space: str) -> tuple[np.ndarray, np.ndarray]:
        """(track_ids int64 [n], vectors float32 [n, d]) of one space, ordered by track_id."""
        dims = self._exec("SELECT DISTINCT len(vector) FROM embeddings WHERE space = ?", [space])
        if not dims:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        if len(dims) > 1:
            raise StoreError(f"embeddings of space {space!r} have mixed sizes {sorted(d[0] for d in dims)}")
        dim = int(dims[0][0])
        # A fixed-size array column comes back from DuckDB as one numpy block; a
        # Python list per row would cost seconds per 100k tracks and many GB at 1M.
        cols = self.con.execute(
            f"SELECT track_id, vector::FLOAT[{dim}] AS v FROM embeddings WHERE space = ? "
            "ORDER BY track_id",
            [space],
        ).fetchnumpy()
        ids = np.asarray(cols["track_id"], dtype=np.int64)
        v = cols["v"]
        vectors = np.stack(v) if v.dtype == object else np.asarray(v)
        return ids, np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), dim)

def _sql_value(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v != v:  # NaN -> NULL: "not measurable" reads better in SQL
        return None
    return v
