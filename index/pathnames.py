"""File names in and out of the store, including names that are not valid UTF-8.

POSIX file names are bytes. Python decodes them with ``surrogateescape``, so a name
holding e.g. the Latin-1 byte ``0xE9`` becomes a ``str`` with the lone surrogate
``'\\udce9'``, which DuckDB refuses ("cannot encode str as UTF-8") and which no UTF-8
text (a terminal line, JSON, an M3U8 playlist) can hold. Such names are stored twice:

* ``path``: readable text with each undecodable byte written as ``\\xNN``
  (``/music/caf\\xe9.ogg``), for display, SQL and path matching;
* ``path_bytes``: the exact bytes, so the file can be opened again (NULL for every
  name that is valid UTF-8, i.e. almost all).

:func:`to_db` splits a path for storing, :func:`from_db` gives the path back as the
``str`` that ``open()`` and ``os.stat()`` accept. Any other text bound for the store
(error messages that quote a path, tags) goes through :func:`db_text`.
"""

from __future__ import annotations

import os


def is_utf8(path: str) -> bool:
    """Whether ``path`` (a ``str`` from the file system) is valid UTF-8 text."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def db_text(text: str) -> str:
    """``text`` as valid UTF-8: undecodable bytes (lone surrogates) become ``\\xNN``."""
    if is_utf8(text):
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that is not an escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def to_db(path: str) -> tuple[str, bytes | None]:
    """``(path text, raw bytes or None)`` for storing ``path`` (see the module doc)."""
    if is_utf8(path):
        return path, None
    return db_text(path), os.fsencode(path)


def from_db(text: str, raw: bytes | bytearray | memoryview | None) -> str:
    """The path as the file system names it: from ``raw`` when stored, else ``text``."""
    return os.fsdecode(bytes(raw)) if raw is not None else text


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_CONTROL = {c: _ESCAPES.get(chr(c), f"\\x{c:02x}") for c in [*range(0x20), 0x7F]}


def one_line(text: str) -> str:
    """``text`` as valid UTF-8 on one line: line breaks and other control characters (a
    file name may hold any) written as ``\\n``, ``\\x1b`` ..., so a reason that quotes a
    path stays one line and cannot drive a terminal."""
    return db_text(text).translate(_CONTROL)
