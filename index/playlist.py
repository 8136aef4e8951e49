"""Playlists: select tracks with SQL and write them as an extended M3U (UTF-8) file.

The format is what mpv, VLC and most players read::

    #EXTM3U
    #EXTINF:213,Artist – Title
    /music/Artist/Title.flac

``#EXTINF`` carries the duration in whole seconds (-1 when unknown) and "artist –
title" (the file name's stem when both tags are missing). Paths are absolute unless
``relative=True``, then relative to the playlist's folder (a player resolves them
from there). Names a player would misread are written so that they survive
(:func:`path_line`): a relative name starting with ``#`` (a comment) or a space
(stripped) gets ``./`` in front; a name ending in white space, or not valid UTF-8,
becomes an absolute ``file://`` URI (percent-encoded bytes); a name with a line break
cannot be written at all and is left out with a warning.

Writing never destroys what it must not (:func:`check_target`): never into a store
folder, never over an audio file or anything that is not a regular file, over an
existing playlist only with ``force``; the file is written to a temporary name and
renamed, so a reader never sees half a playlist.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable

from index.pathnames import db_text, from_db, is_utf8
from index.store import DB_NAME, Store
from models.errors import EngineError
from index.tracks import SUMMARY_SQL, TrackSummary, track_label
from index.usersql import run_select, select_sql


class PlaylistError(EngineError):
    pass


class PlaylistExistsError(PlaylistError):
    """The target is an existing playlist: overwrite it only when asked (``force``)."""


@dataclass(frozen=True)
class WrittenPlaylist:
    """What :func:`write_m3u8` wrote: ``count`` tracks to ``path``; ``skipped`` holds
    one warning line per track left out (a path with a line break)."""

    path: Path
    count: int
    skipped: tuple[str, ...] = ()


def select_tracks(store_dir: Path | str | None, where: str | None, order_by: str | None = None,
                  limit: int | None = None) -> list[TrackSummary]:
    """Tracks matching the SQL boolean ``where``, sorted by ``order_by`` (SQL), at most ``limit``.

    ``where`` and ``order_by`` are fragments over the ``tracks`` table, e.g.
    ``where="bpm BETWEEN 120 AND 130 AND voice < 0.5"``,
    ``order_by="style('Techno') DESC"`` (``style(name)`` is a style's activation,
    0-1). Ties (and no ``order_by``) are broken by path, so the order is stable.
    """
    with Store.open_read_only(Path(store_dir) if store_dir else None) as store:
        sql = select_sql(store, SUMMARY_SQL, where, order_by, limit, then_by="path")
        rows = run_select(store, sql, where, order_by)
    return [TrackSummary(*r) for r in rows]


def path_line(path: str, folder: Path | None = None) -> str | None:
    """The playlist line naming ``path`` (a file system name), or None when no line can.

    Relative to ``folder`` when given. See the module docstring for the names that are
    written as ``./name`` or as a ``file://`` URI.
    """
    if "\n" in path or "\r" in path:
        return None
    absolute = os.path.abspath(path)
    if not is_utf8(path):
        return PurePosixPath(absolute).as_uri()
    line = os.path.relpath(absolute, folder) if folder is not None else path
    if line != line.rstrip():
        return PurePosixPath(absolute).as_uri()
    if line.startswith("#") or line != line.lstrip():
        line = "./" + line  # only a relative line can start so: absolute ones start with '/'
    return line


def m3u8_lines(tracks: Iterable[TrackSummary], folder: Path | None = None) -> tuple[str, list[str]]:
    """(the playlist as text, a warning per track left out); paths relative to ``folder``
    when given. Each track's file is ``from_db(path, path_bytes)`` (index.pathnames)."""
    lines = ["#EXTM3U"]
    skipped = []
    for t in tracks:
        path = from_db(str(t.path), getattr(t, "path_bytes", None))
        line = path_line(path, folder)
        if line is None:
            skipped.append(f"left out {db_text(path)!r}: a path with a line break cannot be "
                           "written in an M3U8 playlist")
            continue
        seconds = -1 if t.duration is None or t.duration != t.duration else int(round(t.duration))
        label = " ".join(db_text(track_label(t.artist, t.title, path)).split())  # one line, no tabs
        lines.append(f"#EXTINF:{seconds},{label}")
        lines.append(line)
    return "\n".join(lines) + "\n", skipped


def m3u8_text(tracks: Iterable[TrackSummary], folder: Path | None = None) -> str:
    """The playlist as text (tracks that cannot be written are left out, see m3u8_lines)."""
    return m3u8_lines(tracks, folder)[0]


def check_target(target: Path, *, force: bool = False, store_dir: Path | None = None) -> None:
    """Raise :class:`PlaylistError` unless a playlist may be written to ``target``.

    Refused: a store folder (``store_dir``, or any folder holding an engine store),
    anything that is not a regular file (folder, FIFO, device, socket), an audio file
    (by extension or content), and, without ``force``, any other existing file
    (:class:`PlaylistExistsError`).
    """
    from index.audiofiles import AUDIO_EXTENSIONS, sniff_audio

    real = Path(os.path.realpath(target))
    for where in {target.parent, real.parent}:
        if (store_dir is not None and where.resolve() == Path(store_dir).expanduser().resolve()) \
                or (where / DB_NAME).exists():
            raise PlaylistError(f"refusing to write {target}: {where} is an engine store folder; "
                                "write the playlist somewhere else")
    suffix = real.suffix.lower().lstrip(".")
    if suffix in AUDIO_EXTENSIONS or target.suffix.lower().lstrip(".") in AUDIO_EXTENSIONS:
        raise PlaylistError(f"refusing to write {target}: the name is an audio file's; "
                            "give the playlist a .m3u8 name")
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise PlaylistError(f"cannot write {target}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise PlaylistError(f"refusing to write {target}: it is {kind}")
    try:
        with open(real, "rb") as f:
            head = f.read(4096)
    except OSError:
        head = b""
    if sniff_audio(head):
        raise PlaylistError(f"refusing to write {target}: it is an audio file")
    if not force:
        raise PlaylistExistsError(f"{target} exists: pass --force to overwrite it")


def write_m3u8(tracks: Iterable[TrackSummary], path: Path | str, *, relative: bool = False,
               force: bool = False, store_dir: Path | None = None) -> WrittenPlaylist:
    """Write ``tracks`` (:class:`TrackSummary`, or anything with its path, duration,
    artist and title, e.g. index.search.SearchHit) to ``path``.

    Absolute paths by default; ``relative=True`` writes them relative to the playlist's
    folder. UTF-8 without BOM, LF line ends, atomic replace. ``path`` is checked first
    (:func:`check_target`): an existing playlist is replaced only with ``force``.
    """
    tracks = list(tracks)
    target = Path(path).expanduser().absolute()
    folder = target.parent
    if not folder.is_dir():
        raise PlaylistError(f"cannot write {target}: folder {folder} does not exist")
    check_target(target, force=force, store_dir=store_dir)
    text, skipped = m3u8_lines(tracks, folder.resolve() if relative else None)
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
    return WrittenPlaylist(target, len(tracks) - len(skipped), tuple(skipped))
