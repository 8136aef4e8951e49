"""Read the descriptive tags of an audio file: artist, title, album, year, genre, track.

:func:`read_tags` uses mutagen's easy interface (``mutagen.File(path, easy=True)``),
which gives the same keys (``artist``, ``title``, ``album``, ``albumartist``, ``date``,
``genre``, ``tracknumber``) for ID3 (MP3), MP4/M4A and Vorbis comments (Ogg, FLAC,
Opus). For the formats where the easy interface keeps the native keys, the same fields
are looked up under those: ASF/WMA (``Author``, ``WM/AlbumTitle``, ``WM/Year``, ...),
ID3 frames inside WAV/AIFF/DSF (``TPE1``, ``TIT2``, ...), APEv2 (WavPack, Monkey's Audio,
Musepack: ``Artist``, ``Year``, ``Track``) and Vorbis comments written by other taggers
(``YEAR``, ``TRACK``, ``ALBUM ARTIST``). Keys are compared case-insensitively. When
mutagen does not know the format (Matroska/WebM, for example) or cannot parse the file,
the tags FFmpeg reads (PyAV container and stream metadata) are used instead.

Values are normalised: text fields hold the distinct non-empty values joined by ``"; "``
(a tag may carry several artists); ``year`` is the first four-digit year in the date
("2004-05-01", "2016-03-18T12:24:48", "2004"); ``track_number`` is the leading number
("3/12" gives 3; 0 means unset and gives None).

Reading tags never raises: a file that cannot be read gives empty :class:`Tags`
(logged at debug level), since tags are optional to the analysis.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import mutagen

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tags:
    """Descriptive tags of one file; every field is None when absent.

    Attributes
    ----------
    artist, title, album, album_artist, genre : str or None
        Text, multiple values joined by ``"; "``.
    year : int or None
        Release year.
    track_number : int or None
        Position on the album, counted from 1.
    """

    artist: str | None = None
    title: str | None = None
    album: str | None = None
    album_artist: str | None = None
    year: int | None = None
    genre: str | None = None
    track_number: int | None = None

    def columns(self) -> dict[str, Any]:
        """The ``tracks`` columns it fills (names declared in :mod:`index.schema`)."""
        return dict(artist=self.artist, title=self.title, album=self.album,
                    album_artist=self.album_artist, year=self.year, tag_genre=self.genre,
                    track_number=self.track_number)


# Keys (lower case) that hold each field, in order of preference: mutagen easy keys
# first, then ASF, ID3 frame ids, MP4 atoms and the variants other taggers write.
_KEYS = {
    "artist": ("artist", "author", "tpe1", "©art"),
    "title": ("title", "tit2", "©nam"),
    "album": ("album", "wm/albumtitle", "talb", "©alb"),
    "album_artist": (
        "albumartist", "album artist", "album_artist", "wm/albumartist", "tpe2", "aart",
    ),
    "year": (
        "date", "year", "originaldate", "wm/year", "wm/originalreleaseyear", "tdrc",
        "tyer", "tdor", "©day",
    ),
    "genre": ("genre", "wm/genre", "tcon", "©gen"),
    "track_number": ("tracknumber", "track", "wm/tracknumber", "trck", "trkn"),
}
_YEAR = re.compile(r"(?<!\d)(\d{4})(?!\d)")
_LEADING_INT = re.compile(r"\s*(\d+)")


def read_tags(path: Path) -> Tags:
    """Read the tags of `path`; never raises.

    Parameters
    ----------
    path : Path
        Audio file.

    Returns
    -------
    Tags
        The file's tags; empty (all None) for an untagged, unreadable or non-audio file.
    """
    try:
        values = _mutagen_values(path)
    except Exception as e:  # mutagen raises many error types on bad files
        log.debug("mutagen cannot read tags of %s: %s", path, e)
        values = None
    if values is None:
        try:
            values = _pyav_values(path)
        except Exception as e:
            log.debug("no tags read from %s: %s", path, e)
            return Tags()
    return _to_tags(values)


def display_name(tags: Tags, path: Path) -> str:
    """A human name for a track: "artist – title", else the title, else the file stem.

    Parameters
    ----------
    tags : Tags
        The file's tags.
    path : Path
        The file, for its stem when there is no title.

    Returns
    -------
    str
    """
    if tags.artist and tags.title:
        return f"{tags.artist} – {tags.title}"
    if tags.title:
        return tags.title
    return Path(path).stem


def _mutagen_values(path: Path) -> dict[str, list[str]] | None:
    """Lower-cased tag key -> text values, {} if untagged, None if mutagen cannot parse."""
    m = mutagen.File(path, easy=True)
    if m is None:
        return None
    out: dict[str, list[str]] = {}
    if m.tags is None:
        return out
    tags = m.tags
    # ASF and Vorbis comments are lists of (key, value) pairs; as_dict() groups repeats.
    items = tags.as_dict().items() if hasattr(tags, "as_dict") else tags.items()
    for key, value in items:
        key = str(key).lower()
        texts = _texts(value)
        if key == "wm/track":  # ASF's older, zero-based track number
            key, texts = "wm/tracknumber", [str(int(t) + 1) for t in texts if t.isdigit()]
        out.setdefault(key, []).extend(texts)
    return out


def _pyav_values(path: Path) -> dict[str, list[str]]:
    """Tags as FFmpeg reads them, for formats mutagen does not know (e.g. Matroska)."""
    out: dict[str, list[str]] = {}
    with av.open(str(path), metadata_errors="replace") as c:
        metas = [c.metadata] + [s.metadata for s in c.streams.audio]
    for meta in metas:
        for key, value in meta.items():
            out.setdefault(key.lower(), []).append(str(value))
    return out


def _texts(value) -> list[str]:
    """Text of one tag value in any of mutagen's representations."""
    if hasattr(value, "genres"):  # ID3 TCON: resolves "(17)" style numeric genres
        items = value.genres
    elif hasattr(value, "text"):  # other ID3 text frames
        items = value.text
    elif isinstance(value, list):
        items = value
    else:
        items = [value]
    out = []
    for item in items:
        item = getattr(item, "value", item)  # ASF attributes, APEv2 values
        if isinstance(item, bytes):
            item = item.decode("utf-8", "replace")
        elif isinstance(item, tuple):  # MP4 'trkn' (track, total)
            item = "/".join(str(i) for i in item)
        # APEv2 separates multiple values with NUL.
        out.extend(str(item).split("\0"))
    return out


def _first(values: dict[str, list[str]], field: str) -> list[str]:
    for key in _KEYS[field]:
        texts = [t.strip() for t in values.get(key, ()) if t and t.strip()]
        if texts:
            return texts
    return []


def _join(texts: list[str]) -> str | None:
    return "; ".join(dict.fromkeys(texts)) or None  # distinct, in order


def _to_tags(values: dict[str, list[str]]) -> Tags:
    year = None
    for text in _first(values, "year"):
        if match := _YEAR.search(text):
            year = int(match.group(1))
            break
    track = None
    for text in _first(values, "track_number"):
        if (match := _LEADING_INT.match(text)) and int(match.group(1)) > 0:
            track = int(match.group(1))
            break
    return Tags(
        artist=_join(_first(values, "artist")),
        title=_join(_first(values, "title")),
        album=_join(_first(values, "album")),
        album_artist=_join(_first(values, "album_artist")),
        year=year,
        genre=_join(_first(values, "genre")),
        track_number=track,
    )
