"""What a file's container says about itself, read from its bytes without decoding.

Two facts :mod:`engine.decode` checks that FFmpeg does not volunteer:

* :func:`pcm_layout`: how much audio a WAV or AIFF header declares, against what the
  file holds. A header that claims hours in a file of a few KB (damaged, or written by
  a recorder that died) makes FFmpeg fail with a misleading reason ("Operation not
  permitted" on an AIFF whose frame count is huge); a sparse file whose header and size
  claim hours holds only holes, which read as hours of silence.
* :func:`ogg_links`: where each link of a chained Ogg file starts. FFmpeg's Ogg
  demuxer stops at a link whose stream differs from the first (mono then stereo: "Not
  yet implemented in FFmpeg, patches welcome"), so the decoder reads link by link.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass

_HEAD_BYTES = 1 << 16  # chunks before the audio data (LIST, bext, pictures) fit in this


@dataclass(frozen=True)
class PcmLayout:
    """What a WAV/AIFF header declares: ``declared_bytes`` of audio from ``data_offset``
    (-1: up to the end of the file), at ``bytes_per_second``."""

    declared_bytes: int
    data_offset: int
    bytes_per_second: int

    def seconds(self, n_bytes: int) -> float:
        return n_bytes / self.bytes_per_second if self.bytes_per_second else 0.0


def pcm_layout(head: bytes) -> PcmLayout | None:
    """The declared audio size of a RIFF/WAVE or FORM/AIFF(-C) file from its first bytes
    (64 KiB is enough), or None for other files and headers that cannot be read."""
    try:
        if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            return _wave(head)
        if len(head) >= 12 and head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            return _aiff(head)
    except (struct.error, ValueError, OverflowError):
        return None
    return None


def _chunks(head: bytes, start: int, big_endian: bool):
    """(id, body offset, declared size) of each chunk header within ``head``."""
    fmt = ">I" if big_endian else "<I"
    pos = start
    while pos + 8 <= len(head):
        cid, size = head[pos:pos + 4], struct.unpack(fmt, head[pos + 4:pos + 8])[0]
        yield cid, pos + 8, size
        pos += 8 + size + (size & 1)  # chunks are padded to an even size


def _wave(head: bytes) -> PcmLayout | None:
    rate = align = 0
    for cid, body, size in _chunks(head, 12, big_endian=False):
        if cid == b"fmt " and body + 16 <= len(head):
            _tag, _channels, rate, _bps, align = struct.unpack("<HHIIH", head[body:body + 14])
        elif cid == b"data":
            if not rate or not align:
                return None
            # 0 or 0xFFFFFFFF: written while streaming, or over 4 GiB: up to the file's end.
            return PcmLayout(size if size not in (0, 0xFFFFFFFF) else -1, body, rate * align)
    return None


def _aiff(head: bytes) -> PcmLayout | None:
    frames = frame_bytes = rate = 0
    for cid, body, size in _chunks(head, 12, big_endian=True):
        if cid == b"COMM" and body + 18 <= len(head):
            channels, frames, bits = struct.unpack(">hIh", head[body:body + 8])
            rate = _extended(head[body + 8:body + 18])
            frame_bytes = max(0, channels) * ((bits + 7) // 8)
        elif cid == b"SSND" and body + 8 <= len(head):
            offset = struct.unpack(">I", head[body:body + 4])[0]
            if not frames or not frame_bytes or not rate:
                return None
            return PcmLayout(frames * frame_bytes, body + 8 + offset, int(rate * frame_bytes))
    return None


def _extended(b: bytes) -> float:
    """An 80-bit IEEE 754 extended float (AIFF's sample rate)."""
    exponent, mantissa = struct.unpack(">HQ", b)
    sign = -1.0 if exponent & 0x8000 else 1.0
    exponent &= 0x7FFF
    if exponent == 0 or exponent == 0x7FFF:
        return 0.0
    return sign * mantissa * 2.0 ** (exponent - 16383 - 63)


def read_head(path: str | os.PathLike) -> bytes:
    with open(path, "rb") as f:
        return f.read(_HEAD_BYTES)


# --- chained Ogg ---------------------------------------------------------------------------

_OGG_PAGE = struct.Struct("<4sBBqIIIB")  # capture, version, flags, granule, serial, seq, crc, segments
_BOS = 0x02


def ogg_links(path: str | os.PathLike, *, max_pages: int = 1_000_000) -> list[int]:
    """Byte offsets where the links of a chained Ogg file start ([0] for a plain one).

    A link starts with a run of beginning-of-stream pages; only page headers are read
    (27 bytes plus the segment table per page, the page bodies are skipped). Stops at
    the first byte that is not a page, so damaged files give the links before it.
    """
    links: list[int] = []
    previous_bos = False
    with open(path, "rb") as f:
        pos = 0
        for _ in range(max_pages):
            f.seek(pos)
            header = f.read(_OGG_PAGE.size)
            if len(header) < _OGG_PAGE.size or header[:4] != b"OggS":
                break
            flags, segments = header[5], header[26]
            table = f.read(segments)
            if len(table) < segments:
                break
            bos = bool(flags & _BOS)
            if bos and not previous_bos:
                links.append(pos)
            previous_bos = bos
            pos += _OGG_PAGE.size + segments + sum(table)
    return links or [0]


class FileSlice(io.RawIOBase):
    """Bytes ``start`` to ``end`` of a file as a file of their own (for ``av.open``)."""

    def __init__(self, path: str | os.PathLike, start: int, end: int):
        super().__init__()
        self._f = open(path, "rb")
        self._start, self._end = start, end
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = max(0, min(len(b), self._end - self._start - self._pos))
        self._f.seek(self._start + self._pos)
        data = self._f.read(n)
        b[:len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._end - self._start}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        self._f.close()
        super().close()
