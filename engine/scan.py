"""Find the audio files under a folder, and fingerprint them cheaply for move detection.

:func:`scan` walks a folder tree and yields one :class:`FoundFile` per audio file:

* Audio is recognised by file extension (case-insensitive, see
  :data:`index.audiofiles.AUDIO_EXTENSIONS`) and, for files whose extension is unknown or
  missing, by content: the first 4 KiB are sniffed for the magic bytes of common audio
  containers (:func:`index.audiofiles.sniff_audio`). Files with a well-known non-audio
  extension (images, text, playlists, archives, video: see :data:`NON_AUDIO_EXTENSIONS`)
  are skipped without being opened, so a large collection costs one ``stat`` per file
  plus a 4 KiB read only for oddly named files.
* A file is judged by its name, not decoded: a text file named ``x.mp3`` is found here
  and rejected later by :func:`engine.decode.decode` with a readable error.
* Hidden entries (name starts with ``.``) below the root are skipped, files and folders.
* Symlinks are followed, to folders and to files. Each folder is walked at most once
  (tracked by ``(st_dev, st_ino)``), so symlink loops terminate and a folder linked twice
  is listed once, under the first path reached in walk order. Files are likewise yielded
  once per ``(st_dev, st_ino)``: a symlink or hard link to a file already found is skipped.
* Only regular files are yielded (never FIFOs, sockets or devices, which could block).
* Whatever could be audio but is not yielded is reported to ``on_skip`` with a one-line
  reason (the build records it in the ``failures`` table as stage ``skipped``): folders
  that cannot be listed, entries that cannot be stat'ed (broken links), FIFOs, sockets
  and devices, files that cannot be read for sniffing, and files whose extension is
  missing or unknown and whose content is not audio. Hidden entries, files with a
  non-audio extension and second names of a file or folder already seen are not
  reported: they are left out on purpose.
* The order is deterministic: entries of each folder are visited in sorted name order,
  depth first, i.e. paths come out sorted by their tuple of components.
* A folder that cannot be listed (permissions, I/O error, vanished) is skipped with a
  logged warning (and reported); the scan goes on. A missing root raises
  :class:`~engine.errors.ScanError`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ScanError
from index.audiofiles import AUDIO_EXTENSIONS, sniff_audio

log = logging.getLogger(__name__)

#: Extensions that are never audio: skipped without opening (no content sniffing).
NON_AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {
        # images (cover art)
        "jpg", "jpeg", "png", "gif", "bmp", "tif", "tiff", "webp", "heic", "svg", "ico",
        # text, rip logs, playlists, lyrics, checksums, documents
        "txt", "nfo", "log", "cue", "m3u", "m3u8", "pls", "xspf", "lrc", "srt", "md",
        "rst", "pdf", "doc", "docx", "rtf", "htm", "html", "xml", "json", "yaml",
        "yml", "ini", "cfg", "conf", "csv", "sfv", "md5", "sha1", "sha256", "ffp",
        "accurip", "db", "sqlite", "url",
        # archives, executables, scripts
        "zip", "rar", "7z", "tar", "gz", "bz2", "xz", "zst", "iso", "exe", "dll", "so",
        "py", "sh", "bat",
        # video: a music scanner leaves films alone even though they carry audio
        "mkv", "avi", "mov", "wmv", "flv", "m4v", "mpg", "mpeg", "ts", "vob", "3gp",
    }
)

_SNIFF_BYTES = 4096  # enough for an ID3/RIFF/ftyp header and two MPEG frames
_HASH_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FoundFile:
    """One audio file found by :func:`scan`.

    Attributes
    ----------
    path : Path
        Absolute path: the resolved scan root joined with the names by which the walk
        reached the file (symlinks below the root are not resolved).
    size : int
        Size in bytes (of the link target for a symlink).
    mtime_ns : int
        Modification time in nanoseconds since the epoch (``st_mtime_ns``).
    """

    path: Path
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class SkippedEntry:
    """Something under the root that might be audio but is not analysed, and why."""

    path: Path
    reason: str
    folder: bool = False  # a folder that could not be listed: what it holds is unknown


def scan(root: Path, *, on_skip: Callable[[SkippedEntry], None] | None = None) -> Iterator[FoundFile]:
    """Yield every audio file under `root`, recursively, in sorted deterministic order.

    Parameters
    ----------
    root : Path
        Folder to scan. It is resolved first (made absolute, symlinks in its own path
        resolved, as ``Path.resolve``), and every yielded path lies under that.
    on_skip : callable, optional
        Called with a :class:`SkippedEntry` for each entry left out for a reason the
        user may want to know (see the module docstring).

    Yields
    ------
    FoundFile
        One per audio file (see the module docstring for the rules).

    Raises
    ------
    ScanError
        If `root` does not exist or is not a folder. Problems below the root are logged
        and skipped, never raised.
    """
    # Resolved, so that paths are the same however the root was named (relative, or via
    # a symlink); entries below the root keep the names they are reached by.
    root = Path(root).resolve()
    try:
        root_st = os.stat(root)
    except OSError as e:
        raise ScanError(f"cannot scan {root}: {e.strerror or e}") from None
    if not stat.S_ISDIR(root_st.st_mode):
        raise ScanError(f"cannot scan {root}: not a folder")

    def skip(path: str | Path, reason: str, folder: bool = False) -> None:
        if on_skip is not None:
            on_skip(SkippedEntry(Path(path), reason, folder))

    visited_dirs = {(root_st.st_dev, root_st.st_ino)}
    seen_files: set[tuple[int, int]] = set()
    # An explicit stack of per-folder iterators instead of recursion: deep trees cannot
    # hit Python's recursion limit.
    stack = [iter(_list_dir(root, skip))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        if entry.name.startswith("."):
            continue
        try:
            st = entry.stat()  # follows symlinks
        except OSError as e:
            # Broken symlink, or the entry vanished between listing and stat.
            log.debug("skipping %s: %s", entry.path, e.strerror or e)
            if _extension(entry.name) not in NON_AUDIO_EXTENSIONS:
                what = "broken link" if entry.is_symlink() else "cannot stat"
                skip(entry.path, f"{what}: {e.strerror or e}")
            continue
        key = (st.st_dev, st.st_ino)
        if stat.S_ISDIR(st.st_mode):
            if key in visited_dirs:
                log.debug("skipping %s: folder already visited (symlink loop or alias)", entry.path)
                continue
            visited_dirs.add(key)
            stack.append(iter(_list_dir(Path(entry.path), skip)))
        elif stat.S_ISREG(st.st_mode):
            if key in seen_files:
                continue
            why = _not_audio(entry.name, entry.path)
            if why is not None:
                if why:
                    skip(entry.path, why)
                continue
            seen_files.add(key)
            yield FoundFile(Path(entry.path), st.st_size, st.st_mtime_ns)
        elif _extension(entry.name) not in NON_AUDIO_EXTENSIONS:
            skip(entry.path, f"not a regular file ({_kind(st.st_mode)})")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def _list_dir(path: Path, skip: Callable[..., None]) -> list[os.DirEntry]:
    """Entries of one folder sorted by name; [] with a warning if it cannot be listed."""
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as e:
        log.warning("skipping unreadable folder %r: %s", str(path), e.strerror or e)
        skip(path, f"folder cannot be listed: {e.strerror or e}", folder=True)
        return []


def _extension(name: str) -> str:
    _, dot, ext = name.rpartition(".")
    return ext.lower() if dot else ""


def _not_audio(name: str, path: str) -> str | None:
    """None for audio; else why not: '' for a non-audio extension (left out silently),
    a one-line reason for a file that was sniffed or could not be."""
    ext = _extension(name)
    if ext in AUDIO_EXTENSIONS:
        return None
    if ext in NON_AUDIO_EXTENSIONS:
        return ""
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError as e:
        log.warning("skipping unreadable file %r: %s", str(path), e.strerror or e)
        return f"cannot be read: {e.strerror or e}"
    if sniff_audio(head):
        return None
    kind = f"extension .{ext} unknown" if ext else "no extension"
    return f"not audio ({kind} and the content is not a known audio format)"


# --- fingerprint ------------------------------------------------------------------------


def content_hash(path: Path) -> str:
    """A cheap fingerprint that identifies the same content, for move/rename detection.

    It hashes (BLAKE2b, 128-bit digest) the file size and three 64 KiB windows: the
    start, the middle and the end (files up to 192 KiB are hashed whole). That reads at
    most 192 KiB per file whatever its size, so a moved or renamed file is recognised
    without re-reading or re-decoding it: equal fingerprints mean, for practical
    purposes, the same file content. It is *not* a full-content hash: two files of equal
    size that differ only outside the three windows get the same fingerprint, which
    does not happen between different recordings, while tag edits change the start or
    end window (or the size) and so do change the fingerprint.

    Parameters
    ----------
    path : Path
        File to fingerprint.

    Returns
    -------
    str
        32 lower-case hex digits. The algorithm is fixed: stored values stay comparable.

    Raises
    ------
    ScanError
        If the file cannot be read.
    """
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            h.update(size.to_bytes(8, "little"))
            if size <= 3 * _HASH_CHUNK:
                h.update(f.read())
            else:
                for offset in (0, size // 2 - _HASH_CHUNK // 2, size - _HASH_CHUNK):
                    f.seek(offset)
                    h.update(f.read(_HASH_CHUNK))
    except OSError as e:
        raise ScanError(f"cannot read {path}: {e.strerror or e}") from None
    return h.hexdigest()
