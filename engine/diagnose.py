"""One line for the failures that come from the machine, not from the user's input.

A damaged store, a full disk and a lack of memory surface from deep inside DuckDB,
onnxruntime, numpy or the file system, as whatever exception those raise (a 35-line
traceback ending in ``_duckdb.Error: Corrupt database file``, ``No space left on
device`` in DuckDB's WAL, ``MemoryError``, ``std::bad_alloc``, ``failed to map segment
from shared object``). :func:`explain` recognises them by type and text and says in one
line what happened and what to do; the CLI prints that instead of a traceback. Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path

_DISK_FULL = ("no space left on device", "disk quota exceeded")
_NO_MEMORY = ("bad_alloc", "bad allocation", "failed to allocate", "out of memory",
              "failed to map segment", "cannot allocate memory", "could not allocate")


def explain(exc: BaseException, *, store_dir: Path | None = None) -> str | None:
    """What happened and what to do, in one line; None when ``exc`` is none of these."""
    from index.store import damaged_error, is_damaged

    text = str(exc)
    low = text.lower()
    if type(exc).__module__.split(".")[0] in ("duckdb", "_duckdb") and is_damaged(exc):
        return str(damaged_error(store_dir, exc))
    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT) or any(m in low for m in _DISK_FULL):
        where = getattr(exc, "filename", None) or _quoted_file(text)
        return (f"no space left on the device{f' (writing {where})' if where else ''}: free some "
                "space and run the command again; the store keeps everything committed so far")
    if (isinstance(exc, MemoryError) or code == errno.ENOMEM
            or type(exc).__name__ == "OutOfMemoryException" or any(m in low for m in _NO_MEMORY)):
        reason = " ".join(text.split("\n")[0].split())[:160] or type(exc).__name__
        return (f"out of memory ({reason}): close other programs, or for `engine build` use fewer "
                "--workers and a smaller --batch (or --max-seconds)")
    return None


# Address space (``ulimit -v``) the engine needs, measured under ``prlimit --as`` on the
# 2-core machine. Below LOAD_ADDRESS_SPACE, loading FAISS and OpenBLAS did not fail with
# an exception: it crashed (SIGSEGV at 1.2 GB) or glibc aborted ("cannot allocate memory
# for thread-local data") at random, without a word; `engine knn` ran at 1.3 GB. A build
# (models, DuckDB, FAISS and their threads) ran at 1.6 GB and ran short at 1.3 GB.
LOAD_ADDRESS_SPACE = 1_300_000_000
BUILD_ADDRESS_SPACE = 1_500_000_000


def check_address_space(needed: int, what: str) -> None:
    """Refuse up front, in one line, when ``ulimit -v`` is below what ``what`` needs."""
    from engine.errors import EngineError

    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise EngineError(
            f"out of memory (ulimit -v): this process may map {soft / 1e9:.1f} GB, {what} needs "
            f"about {needed / 1e9:.1f} GB; raise the limit (ulimit -v unlimited)")


def _quoted_file(text: str) -> str | None:
    """The file DuckDB names in 'Could not write file "…": …', if any."""
    m = re.search(r'file "([^"]+)"', text)
    return m.group(1) if m else None
