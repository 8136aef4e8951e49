"""Taking turns on the store's DuckDB file: one build writing, any number of readers.

DuckDB lets one process open a database file read-write *or* any number of processes
open it read-only, never both at once. A build used to hold the file for its whole run,
so ``engine sql``, ``knn`` and the TUI were locked out for hours. Now:

* the build holds the file only while it commits a batch (open, write, close: DuckDB
  checkpoints on close), planning, or updating the FAISS records; between those, readers
  open it (:class:`~index.store.StoreWriter`);
* before opening, the writer takes the *intent* lock (``flock`` exclusive on
  ``.writing`` in the store folder) and readers take it shared for the moment of their
  own opening, so a writer waiting for the file is not starved by a stream of new readers,
  and readers that keep a connection (the TUI) see :func:`writer_waiting` and let go;
* whoever finds the file taken retries: a reader for :data:`READ_WAIT_S`, a writer for
  :data:`WRITE_WAIT_S` (saying so after a second), then gives one line naming the
  process that holds it.

Cost, measured by ``bench/store_turns.py``: reopening per batch adds the open and the
checkpoint to each commit (see docs/reliability.md for the figures).
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

INTENT_NAME = ".writing"
# A reader waits this long for a writer to finish a commit (a batch: well under a second;
# the FAISS update at the end of a build at 1M tracks: tens of seconds).
READ_WAIT_S = 60.0
# A writer waits this long for readers to close the file (a long `engine sql` query, or
# another program that holds engine.duckdb open).
WRITE_WAIT_S = 120.0
# Set, this many seconds replace both waits (scripts that prefer to fail fast, tests).
WAIT_ENV = "ENGINE_STORE_WAIT"


def wait_s(default: float) -> float:
    """``default``, or the seconds in $ENGINE_STORE_WAIT."""
    try:
        return max(0.0, float(os.environ[WAIT_ENV]))
    except (KeyError, ValueError):
        return default
_POLL_S = 0.02
_SAY_AFTER_S = 1.0

T = TypeVar("T")


def is_lock_error(exc: BaseException) -> bool:
    """Whether a DuckDB error says another process holds the file."""
    text = str(exc).lower()
    return "could not set lock" in text or "conflicting lock" in text


def lock_holder(exc: BaseException) -> str:
    """'PID 1234 (/usr/bin/python3)' from DuckDB's lock error, or 'another process'."""
    m = re.search(r"held in (.+?) \(PID (\d+)\)", str(exc))
    return f"PID {m.group(2)} ({m.group(1)})" if m else "another process"


def _intent_fd(directory: Path, *, create: bool) -> int | None:
    path = Path(directory) / INTENT_NAME
    try:
        if create:
            return os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        return os.open(path, os.O_RDONLY)
    except OSError:  # no writer ever made it (or the folder is read-only): no turns to take
        return None


def _flock_until(fd: int, mode: int, deadline: float) -> bool:
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)


def writer_waiting(directory: Path) -> bool:
    """Whether a writer holds or waits for its turn (readers that keep a connection
    close it then)."""
    fd = _intent_fd(directory, create=False)
    if fd is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases the probe's shared lock


def reading_turn(directory: Path, connect: Callable[[], T], *, wait_s: float,
                 busy: Callable[[BaseException], Exception]) -> T:
    """``connect()`` (a read-only open of the store), retried while a writer holds the file.

    Waits at most ``wait_s`` seconds, then raises ``busy(last lock error)``. Other errors
    from ``connect`` pass through.
    """
    deadline = time.monotonic() + wait_s
    while True:
        fd = _intent_fd(directory, create=False)
        try:
            if fd is not None and not _flock_until(fd, fcntl.LOCK_SH, deadline):
                raise busy(TimeoutError("a build is committing"))
            try:
                return connect()
            except Exception as exc:
                if not is_lock_error(exc):
                    raise
                last = exc
        finally:
            if fd is not None:
                os.close(fd)
        if time.monotonic() >= deadline:
            raise busy(last)
        time.sleep(_POLL_S)


@contextmanager
def writing_turn(directory: Path, connect: Callable[[], T], *, wait_s: float,
                 on_wait: Callable[[str], None] | None = None,
                 busy: Callable[[BaseException], Exception]) -> Iterator[T]:
    """Hold the intent lock and yield ``connect()`` (a read-write open), retried while
    readers hold the file; the caller closes what it got before this returns.

    After a second of waiting ``on_wait`` gets one line saying why; after ``wait_s``
    seconds ``busy(last lock error)`` is raised.
    """
    fd = _intent_fd(directory, create=True)
    deadline = time.monotonic() + wait_s
    said = False
    try:
        if fd is not None and not _flock_until(fd, fcntl.LOCK_EX, deadline):
            raise busy(TimeoutError("another writer has the store"))
        start = time.monotonic()
        while True:
            try:
                got = connect()
                break
            except Exception as exc:
                if not is_lock_error(exc):
                    raise
                now = time.monotonic()
                if now >= deadline:
                    raise busy(exc) from None
                if not said and on_wait is not None and now - start >= _SAY_AFTER_S:
                    on_wait(f"waiting for {lock_holder(exc)} to close the store {directory} "
                            f"(at most {wait_s:.0f} s)...")
                    said = True
                time.sleep(_POLL_S)
        yield got
    finally:
        if fd is not None:
            os.close(fd)  # releases the intent lock
