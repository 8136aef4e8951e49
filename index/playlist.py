"""Playlists: select tracks with SQL and write them as an extended M3U (UTF-8) file.

The format is what mpv, VLC and most players read::

    #EXTM3U
    #EXTINF:213,Artist – Title
    /music/Artist/Title.flac

``#EXTINF`` carries the duration in whole seconds (-1 when unknown) and "artist –
title" (the file name's stem when both tags are missing). Paths are absolute unless
``relative=True``, then relative to the playlist's folder (a player resolves them
from there). The file is written to a temporary name and renamed, so a reader never
sees half a playlist.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol

from engine.errors import EngineError
from index.query import QueryError, run_select, select_sql, track_label
from index.store import Store


class PlaylistError(EngineError):
    pass


@dataclass(frozen=True)
class PlaylistTrack:
    track_id: int
    path: str
    duration: float | None
    artist: str | None
    title: str | None

    @property
    def label(self) -> str:
        return track_label(self.artist, self.title, self.path)


class _Playable(Protocol):
    path: str
    duration: float | None
    artist: str | None
    title: str | None


def select_tracks(store_dir: Path | str | None, where: str | None, order_by: str | None = None,
                  limit: int | None = None) -> list[PlaylistTrack]:
    """Tracks matching the SQL boolean ``where``, sorted by ``order_by`` (SQL), at most ``limit``.

    ``where`` and ``order_by`` are fragments over the ``tracks`` table, e.g.
    ``where="bpm BETWEEN 120 AND 130 AND voice < 0.5"``,
    ``order_by="style('Techno') DESC"`` (``style(name)`` is a style's activation,
    0-1). Ties (and no ``order_by``) are broken by path, so the order is stable.
    """
    import duckdb

    try:
        store = Store.open_read_only(Path(store_dir) if store_dir else None)
    except duckdb.IOException as exc:
        raise QueryError(f"cannot open the store: {str(exc).splitlines()[0]} (is a build running?)") from None
    with store:
        sql = select_sql(store, "track_id, path, duration, artist, title", where, order_by, limit,
                         then_by="path")
        rows = run_select(store, sql, where, order_by)
    return [PlaylistTrack(*r) for r in rows]


def m3u8_text(tracks: Iterable[_Playable], folder: Path | None = None) -> str:
    """The playlist as text; paths relative to ``folder`` when given."""
    lines = ["#EXTM3U"]
    for t in tracks:
        path = str(t.path)
        if "\n" in path or "\r" in path:
            raise PlaylistError(f"cannot write a path with a line break into a playlist: {path!r}")
        seconds = -1 if t.duration is None or t.duration != t.duration else int(round(t.duration))
        label = " ".join(track_label(t.artist, t.title, path).split())  # one line, no tabs
        lines.append(f"#EXTINF:{seconds},{label}")
        lines.append(os.path.relpath(path, folder) if folder is not None else path)
    return "\n".join(lines) + "\n"


def write_m3u8(tracks: Iterable[_Playable], path: Path | str, *, relative: bool = False) -> int:
    """Write ``tracks`` (objects with path, duration, artist, title) to ``path``; returns the count.

    Absolute paths by default; ``relative=True`` writes them relative to the playlist's
    folder. UTF-8 without BOM, LF line ends, atomic replace.
    """
    tracks = list(tracks)
    target = Path(path).expanduser().absolute()
    folder = target.parent
    if not folder.is_dir():
        raise PlaylistError(f"cannot write {target}: folder {folder} does not exist")
    text = m3u8_text(tracks, folder.resolve() if relative else None)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise PlaylistError(f"cannot write {target}: {exc.strerror or exc}") from None
    return len(tracks)
