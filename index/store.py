# One file (≈650 lines) on purpose: the one adapter that holds the DuckDB connection (readers, the build's writer, their errors); split, the connection would be shared again.
"""The store: one directory holding the DuckDB file (source of truth) and FAISS indexes.

Only this module opens the store's DuckDB connection. The other ``index/`` modules run
their SQL on it (``store.con``) behind named functions that return dataclasses; nothing
outside ``index/`` touches it (tests/test_layers.py checks). Writers take an exclusive lock on the
store directory, so two builds cannot interleave; each batch of tracks is written
in one transaction, so a build killed at any moment leaves whole tracks or none.
A build (:class:`StoreWriter`) opens the file read-write only for each commit, so
readers (:meth:`Store.open_read_only`) get their turns in between (index.turns).
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

from index import turns
from index.pathnames import db_text, from_db, one_line, to_db
from index.schema import SCHEMA_VERSION, TABLES_DDL, TRACK_COLUMN_NAMES, TRACK_COLUMNS
from models.errors import EngineError

DB_NAME = "engine.duckdb"
LOCK_NAME = ".lock"
# Tracks per chunk when a space's vectors are streamed (256 MiB of float32 at 1280-d).
EMBEDDING_CHUNK = 1 << 16
# DuckDB's buffer pool while streaming vectors (see Store.embedding_chunks).
STREAM_MEMORY = "1GB"


class StoreError(EngineError):
    pass


class NoStoreError(StoreError):
    pass


class StoreBusyError(StoreError):
    pass


class StoreDamagedError(StoreError):
    """The DuckDB file is corrupt; the message says how to rebuild it from the music.
    ``reason`` is DuckDB's own first line."""

    reason: str = ""


# Words of DuckDB's errors for a damaged file (a flipped byte: "Corrupt database file:
# computed checksum … does not match stored checksum …"; a damaged header: "not a valid
# DuckDB database file").
_DAMAGE_MARKS = ("corrupt database file", "not a valid duckdb database",
                 "does not match stored checksum", "invalid database file")


def is_damaged(exc: BaseException) -> bool:
    """Whether ``exc`` (any DuckDB error) says the database file is corrupt."""
    text = str(exc).lower()
    return any(mark in text for mark in _DAMAGE_MARKS)


def damaged_error(directory: Path | None, exc: BaseException | str, *,
                  music: Path | None = None) -> StoreDamagedError:
    """The one line for a damaged store: what DuckDB found and how to rebuild (the
    command names ``music`` when known)."""
    where = f"{Path(directory) / DB_NAME}" if directory is not None else "the store's database"
    reason = exc if isinstance(exc, str) else " ".join(str(exc).split("\n")[0].split())
    folder = f" --store {directory}" if directory is not None else ""
    error = StoreDamagedError(
        f"{where} is damaged ({reason}); run `engine build {music or '<music folder>'}{folder} "
        "--rebuild-store` to set it aside and analyse the music again (FAISS indexes are "
        "rebuilt from it)")
    error.reason = reason
    return error


def set_aside(directory: Path) -> Path:
    """Rename a damaged ``engine.duckdb`` (and its WAL) to ``engine.duckdb.damaged-<time>``;
    returns the new name. Nothing is deleted."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    db = Path(directory) / DB_NAME
    aside = db.with_name(f"{DB_NAME}.damaged-{stamp}")
    os.replace(db, aside)
    wal = db.with_name(DB_NAME + ".wal")
    if wal.exists():
        os.replace(wal, aside.with_name(aside.name + ".wal"))
    return aside


def busy_reading(directory: Path, exc: BaseException, wait_s: float) -> StoreBusyError:
    """The one line for a reader that waited ``wait_s`` for the file in vain."""
    return StoreBusyError(
        f"store {directory} is held for writing by {turns.lock_holder(exc)} and did not "
        f"become free within {wait_s:.0f} s; try again in a moment")


def default_store_dir() -> Path:
    """``$ENGINE_STORE`` if set, else the user data dir, so every command finds the same store."""
    env = os.environ.get("ENGINE_STORE")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("music-engine")) / "store"


@dataclass(frozen=True)
class KnownFile:
    """What the store remembers about an analysed file, to decide whether to redo it.

    ``path`` is the file system's name (see index.pathnames), ready for ``open()``.
    """

    track_id: int
    path: str
    file_size: int
    mtime_ns: int
    content_hash: str
    # True: outputs stored; False: the model cannot take the track (too short);
    # None: not computed yet (the model was missing).
    has_musicnn: bool | None
    has_effnet: bool | None
    has_quality: bool  # False for tracks analysed before the quality measures (or band levels, or the
    # defect profile) existed
    has_mtt: bool | None = None  # as has_musicnn


@dataclass(frozen=True)
class FailedFile:
    """A file not analysed: ``stage`` 'skipped' (see index.schema), 'read', or the
    analysis stage that failed; ``error`` the one-line reason."""

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


def missing_schema(con, catalog: str | None = None) -> list[str]:
    """Tables and ``tracks`` columns of this engine's schema that the store on ``con`` lacks
    (a store made by an older engine); empty when it is current."""
    where = "" if catalog is None else f" AND table_catalog = '{catalog}'"
    have = {(t, c) for t, c in con.execute(
        f"SELECT table_name, column_name FROM information_schema.columns WHERE true{where}").fetchall()}
    tables = {t for t, _ in have}
    missing = [t for t in TABLES_DDL if t not in tables]
    if "tracks" in tables:
        missing += [f"tracks.{c.name}" for c in TRACK_COLUMNS if ("tracks", c.name) not in have]
    return missing


def upgrade_older_store(directory: Path, missing: list[str]) -> None:
    """Add what a store made by an older engine lacks (empty tables and columns; nothing
    is removed or rewritten), so reading commands work on it as they are."""
    import duckdb

    try:
        Store.open(directory).close()  # Store._create adds the missing tables and columns
    except (StoreError, OSError, duckdb.Error) as exc:
        raise StoreError(
            f"store {directory} was made by an older engine and lacks {', '.join(missing)}; it could not be "
            f"brought up to date now ({str(exc).splitlines()[0]}): run `engine build` on its "
            "folder once") from None


class _Closes:
    """``with``: closes the object at the end of the block."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _release(lock_fd: int | None) -> None:
    """Unlock and close the store's lock file (None: nothing held); returns None to store."""
    if lock_fd is not None:
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
        os.close(lock_fd)


class Store(_Closes):
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
        try:
            con = duckdb.connect(str(directory / DB_NAME))
            store = cls(directory, con, lock_fd)
            store._create()
        except duckdb.Error as exc:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)
            os.close(lock_fd)
            if is_damaged(exc):
                raise damaged_error(directory, exc) from None
            raise
        return store

    @classmethod
    def open_read_only(cls, directory: Path | None = None, *,
                       wait_s: float | None = None) -> "Store":
        """Open for reading; while a build commits, wait for it (at most ``wait_s``,
        default index.turns.READ_WAIT_S or $ENGINE_STORE_WAIT)."""
        import duckdb

        wait_s = turns.wait_s(turns.READ_WAIT_S) if wait_s is None else wait_s
        directory = Path(directory or default_store_dir()).expanduser().resolve()
        db = directory / DB_NAME
        if not db.is_file():
            raise NoStoreError(
                f"no store at {directory}: run `engine build <music folder>` first "
                "(or pass --store / set ENGINE_STORE)"
            )

        def connect():
            try:
                return turns.reading_turn(directory, lambda: duckdb.connect(str(db), read_only=True),
                                          wait_s=wait_s, busy=lambda e: busy_reading(directory, e, wait_s))
            except duckdb.Error as exc:
                if is_damaged(exc):
                    raise damaged_error(directory, exc) from None
                raise StoreError(f"cannot open store {directory}: {str(exc).splitlines()[0]}") from None

        con = connect()
        missing = missing_schema(con)
        if missing:
            con.close()  # DuckDB allows one configuration per file per process
            upgrade_older_store(directory, missing)
            con = connect()
        return cls(directory, con, None)

    def close(self) -> None:
        self.con.close()
        self._lock_fd = _release(self._lock_fd)

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
        if not self._exec("SELECT 1 FROM information_schema.columns "
                          "WHERE table_name = 'failures' AND column_name = 'path_bytes'"):
            self._exec("ALTER TABLE failures ADD COLUMN path_bytes BLOB")
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

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Every row of one query, for the index/ modules that keep their own SQL (report, listeners)."""
        return self._exec(sql, list(params))

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

    def read_only(self) -> bool:
        """Whether this connection cannot write (:meth:`open_read_only`). While it is open no
        other connection can write either (DuckDB's file lock), so its tables do not change."""
        return self._exec("SELECT current_setting('access_mode')")[0][0] == "read_only"

    def generation(self, space: str) -> int:
        """Counter bumped whenever ``space``'s embeddings change (FAISS sync check)."""
        return int(self.meta(f"generation:{space}") or 0)

    def bump_generations(self, spaces: Iterable[str]) -> None:
        """Count ``spaces``' embeddings as changed (their FAISS files are then out of step)."""
        for space in set(spaces):
            self.set_meta(f"generation:{space}", str(self.generation(space) + 1))

    _bump = bump_generations  # the name the tests use

    # -- reading state for incremental builds -------------------------------------
    def known_files(self) -> dict[str, KnownFile]:
        rows = self._exec(
            "SELECT track_id, path, file_size, mtime_ns, content_hash, "
            "has_musicnn, has_effnet, quality IS NOT NULL AND band_levels IS NOT NULL AND quality_profile IS NOT NULL, "
            "has_mtt, path_bytes "
            "FROM tracks"
        )
        known = (KnownFile(r[0], from_db(r[1], r[9]), *r[2:9]) for r in rows)
        return {k.path: k for k in known}

    def failed_files(self) -> dict[str, FailedFile]:
        rows = self._exec("SELECT path, file_size, mtime_ns, stage, error, path_bytes FROM failures")
        failed = (FailedFile(from_db(r[0], r[5]), *r[1:5]) for r in rows)
        return {f.path: f for f in failed}

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
        Paths are file system names (index.pathnames stores those that are not UTF-8).
        """
        if not records and not failures:
            return
        now = _dt.datetime.now()
        with self.transaction():
            known = self._track_ids([to_db(r.path)[0] for r in records])
            spaces: set[str] = set()
            for rec in records:
                text, raw = to_db(rec.path)
                track_id = known.get(text)
                cols = dict(rec.columns, path=text, path_bytes=raw, analysed_at=now)
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
            if records:  # matched by text and bytes: a failure of a namesake is kept
                texts, raws = zip(*(to_db(r.path) for r in records))
                self._exec(
                    "DELETE FROM failures f USING (SELECT unnest(?) AS p, unnest(?) AS b) x "
                    "WHERE f.path = x.p AND f.path_bytes IS NOT DISTINCT FROM x.b",
                    [list(texts), list(raws)],
                )
            for f in failures:
                text, raw = to_db(f.path)
                self._exec(
                    "INSERT OR REPLACE INTO failures (path, stage, error, \"at\", file_size, "
                    "mtime_ns, path_bytes) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [text, f.stage, one_line(f.error), now, f.file_size, f.mtime_ns, raw],
                )
            self.bump_generations(spaces)

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
        text, raw = to_db(new_path)
        self._exec(
            "UPDATE tracks SET path = ?, path_bytes = ?, file_size = ?, mtime_ns = ? "
            "WHERE track_id = ?",
            [text, raw, file_size, mtime_ns, track_id],
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
        paths = [to_db(p)[0] for p in paths]
        with self.transaction():
            ids = [r[0] for r in self._exec(
                "SELECT track_id FROM tracks WHERE path IN (SELECT unnest(?))", [list(paths)])]
            if ids:
                spaces = [r[0] for r in self._exec(
                    "SELECT DISTINCT space FROM embeddings WHERE track_id IN (SELECT unnest(?))", [ids])]
                for table in ("styles", "tags", "embeddings", "listener_quality", "user_tags", "tracks"):
                    self._exec(f"DELETE FROM {table} WHERE track_id IN (SELECT unnest(?))", [ids])
                self.bump_generations(spaces)
            self._exec("DELETE FROM failures WHERE path IN (SELECT unnest(?))", [list(paths)])
        return len(ids)

    def forget_failures(self, paths: Sequence[str]) -> None:
        """Drop the failure records of ``paths`` (files gone, or now analysable)."""
        if paths:
            self._exec("DELETE FROM failures WHERE path IN (SELECT unnest(?))",
                       [[to_db(p)[0] for p in paths]])

    def insert_columns(self, table: str, columns: dict[str, Any]) -> None:
        """Append rows given column by column (numpy arrays of one length, by column name)
        to ``table`` in one statement: synthetic stores for tests and benchmarks."""
        if table not in TABLES_DDL:
            raise StoreError(f"unknown table {table!r}")
        self.con.register("_src", columns)
        try:
            names = ", ".join(columns)
            self._exec(f"INSERT INTO {table} ({names}) SELECT {names} FROM _src")
        finally:
            self.con.unregister("_src")

    def insert_embeddings(self, space: str, track_ids: Iterable[int], vectors: Iterable[np.ndarray]) -> None:
        """Add one vector per track to ``space`` (synthetic stores; a build uses write_tracks)."""
        self.con.executemany("INSERT INTO embeddings VALUES (?, ?, ?)",
                             [(int(i), space, np.asarray(v).tolist()) for i, v in zip(track_ids, vectors)])

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

    def embedding(self, track_id: int, space: str) -> np.ndarray | None:
        """One track's vector in ``space`` (float32 [d]) as stored, or None without one."""
        row = self._exec("SELECT vector FROM embeddings WHERE track_id = ? AND space = ?",
                         [int(track_id), space])
        return np.asarray(row[0][0], dtype=np.float32) if row else None

    def embedding_shape(self, space: str) -> tuple[int, int]:
        """(how many vectors ``space`` holds, their dimension; 0 when empty), without reading them."""
        dims = self._exec("SELECT len(vector), count(*) FROM embeddings WHERE space = ? "
                          "GROUP BY ALL", [space])
        if not dims:
            return 0, 0
        if len(dims) > 1:
            raise StoreError(f"embeddings of space {space!r} have mixed sizes {sorted(d[0] for d in dims)}")
        return int(dims[0][1]), int(dims[0][0])

    def embedding_chunks(self, space: str, rows: int = EMBEDDING_CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(track_ids int64 [m], vectors float32 [m, d]) of one space, ``rows`` tracks at a
        time in track_id order, so a space of any size is read in bounded memory.

        Each chunk is a range of track ids: DuckDB skips the row groups outside it by their
        min/max track_id (a random fetch of 200 vectors took 2 s on 200k x 1280; a range
        of 65,536 reads at ≈20 µs a vector). The buffer pool is capped meanwhile
        (:data:`STREAM_MEMORY`), else it keeps the scanned blocks, up to 80 % of the RAM.
        """
        count, dim = self.embedding_shape(space)
        if not count:
            return
        ids = self.con.execute("SELECT track_id FROM embeddings WHERE space = ? ORDER BY track_id",
                               [space]).fetchnumpy()["track_id"].astype(np.int64)
        with self.memory_limit(STREAM_MEMORY):
            for start in range(0, len(ids), rows):
                lo, hi = int(ids[start]), int(ids[min(start + rows, len(ids)) - 1])
                cols = self.con.execute(
                    f"SELECT track_id, vector::FLOAT[{dim}] AS v FROM embeddings "
                    "WHERE space = ? AND track_id BETWEEN ? AND ? ORDER BY track_id",
                    [space, lo, hi]).fetchnumpy()
                v = cols["v"]
                vectors = np.stack(v) if v.dtype == object else np.asarray(v)
                yield (np.asarray(cols["track_id"], dtype=np.int64),
                       np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, dim))

    @contextmanager
    def memory_limit(self, limit: str) -> Iterator[None]:
        """DuckDB's ``memory_limit`` set to ``limit`` (e.g. '1GB') inside the block."""
        before = self._exec("SELECT current_setting('memory_limit')")[0][0]
        self._exec(f"SET memory_limit = '{limit}'")
        try:
            yield
        finally:
            self._exec(f"SET memory_limit = '{before}'")

    def embedding_sample(self, space: str, n: int) -> tuple[int, list[tuple[int, np.ndarray]]]:
        """(how many vectors ``space`` holds, up to ``n`` of them at random as
        (track_id, float32 [d]))."""
        count = self._exec("SELECT count(*) FROM embeddings WHERE space = ?", [space])[0][0]
        rows = self._exec(f"SELECT track_id, vector FROM embeddings WHERE space = ? "
                          f"USING SAMPLE {int(n)} ROWS", [space])
        return count, [(r[0], np.asarray(r[1], dtype=np.float32)) for r in rows]


class StoreWriter(_Closes):
    """A build's hold on a store: the build lock for the whole run, the DuckDB file only
    for short :meth:`session` s (a batch commit), so readers get turns in between.

    ``with StoreWriter.acquire(directory) as writer: with writer.session() as store: ...``
    """

    def __init__(self, directory: Path, lock_fd: int, on_wait=None):
        self.directory = directory
        self._lock_fd: int | None = lock_fd
        self._created = False
        self.on_wait = on_wait  # told, one line, when a session waits for readers

    @classmethod
    def acquire(cls, directory: Path | None = None, *, on_wait=None) -> "StoreWriter":
        directory = Path(directory or default_store_dir()).expanduser().resolve()
        directory.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(directory / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise StoreBusyError(f"store {directory} is in use by another build") from None
        return cls(directory, lock_fd, on_wait)

    @contextmanager
    def session(self, *, wait_s: float | None = None) -> Iterator[Store]:
        """The store open read-write; closed (and checkpointed) when the block ends.
        Waits for readers at most ``wait_s`` (default index.turns.WRITE_WAIT_S or
        $ENGINE_STORE_WAIT)."""
        import duckdb

        wait_s = turns.wait_s(turns.WRITE_WAIT_S) if wait_s is None else wait_s
        def busy(exc: BaseException) -> StoreBusyError:
            return StoreBusyError(
                f"store {self.directory} is held open by {turns.lock_holder(exc)}: waited "
                f"{wait_s:.0f} s for it to close; close it (e.g. quit `engine tui`) and run the "
                "build again, what was written so far is kept")

        db = str(self.directory / DB_NAME)
        try:
            with turns.writing_turn(self.directory, lambda: duckdb.connect(db), wait_s=wait_s,
                                    on_wait=self.on_wait, busy=busy) as con:
                store = Store(self.directory, con, None)
                try:
                    if not self._created:
                        store._create()
                        self._created = True
                    yield store
                finally:
                    con.close()
        except duckdb.Error as exc:
            if is_damaged(exc):
                raise damaged_error(self.directory, exc) from None
            raise

    def set_aside(self) -> Path:
        """Move the damaged database file aside (see :func:`set_aside`); the next session
        makes a new one."""
        self._created = False
        return set_aside(self.directory)

    def close(self) -> None:
        self._lock_fd = _release(self._lock_fd)


def _sql_value(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    # NaN and ±inf -> NULL: "not measurable" reads better in SQL, and -inf printed as
    # '-inf' in tables, null in JSON and '' in CSV (engine.records notes why).
    if isinstance(v, float) and not np.isfinite(v):
        return None
    if isinstance(v, str):
        return db_text(v)
    return v
