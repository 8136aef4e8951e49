"""Which files are audio: the extensions known as audio and a sniff of a file's first bytes.

Here, in the lowest layer that uses them: ``index.playlist`` refuses to overwrite an
audio file with a playlist, and ``engine.scan`` finds the audio files of a collection.
"""

from __future__ import annotations

#: Extensions (lower case, without the dot) recognised as audio without reading the file.
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {
        # MPEG audio and raw AAC / AC-3 / DTS elementary streams
        "mp3", "mp2", "mp1", "mpa", "aac", "adts", "ac3", "eac3", "dts",
        # Ogg family
        "ogg", "oga", "opus", "spx",
        # lossless / PCM containers
        "flac", "wav", "wave", "w64", "rf64", "bwf", "aiff", "aif", "aifc", "caf",
        "au", "snd", "wv", "ape", "tta", "alac",
        # MP4 family, ASF, Matroska, Musepack, DSD, AMR
        "m4a", "m4b", "m4p", "mp4", "wma", "asf", "mka", "webm", "mpc", "mp+",
        "dsf", "dff", "amr",
    }
)

_ASF_GUID = bytes.fromhex("3026B2758E66CF11A6D900AA0062CE6C")
_MP4_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}
_SIMPLE_MAGIC = (
    b"ID3",  # ID3v2 tag, in front of MP3 (sometimes AAC/FLAC): audio either way
    b"OggS",
    b"fLaC",
    b"wvpk",  # WavPack
    b"MAC ",  # Monkey's Audio
    b"MPCK",  # Musepack SV8
    b"MP+",  # Musepack SV7
    b"TTA1",  # TrueAudio
    b"DSD ",  # DSF
    b"caff",  # Apple Core Audio Format
    b".snd",  # Sun/NeXT AU
    b"#!AMR",
)

# MPEG audio bitrates in kbit/s, indexed [version is MPEG-1][layer 1..3][bitrate index].
_MPEG_BITRATES = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_ADTS_RATES = 13  # valid sampling-frequency indices 0..12


def sniff_audio(head: bytes) -> bool:
    """Whether the first bytes of a file look like a known audio container or stream.

    Parameters
    ----------
    head : bytes
        The file's first bytes (4 KiB is enough for every check).

    Returns
    -------
    bool
        True for ID3/MPEG audio, ADTS AAC, Ogg, FLAC, RIFF/RF64/BW64 WAVE, AIFF/AIFC,
        MP4 with an audio brand (M4A/M4B/M4P), ASF (WMA), WavPack, Monkey's Audio,
        Musepack, TrueAudio, DSF/DSDIFF, CAF, AU and AMR. Generic MP4 brands and Matroska
        are not claimed from content, as they are usually video.
    """
    if head.startswith(_SIMPLE_MAGIC):
        return True
    if len(head) >= 12:
        if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
            return True
        if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            return True
        if head[:4] == b"FRM8" and head[12:16] == b"DSD ":
            return True
        if head[4:8] == b"ftyp":
            box_len = int.from_bytes(head[:4], "big")
            brands = head[8:12], *(head[i : i + 4] for i in range(16, min(box_len, len(head)), 4))
            if any(b in _MP4_AUDIO_BRANDS for b in brands):
                return True
    if head.startswith(_ASF_GUID):
        return True
    return _is_mpeg_audio(head) or _is_adts(head)


def _mpeg_frame_len(h: bytes, i: int) -> int:
    """Length in bytes of the MPEG audio frame whose header starts at h[i], or 0 if invalid."""
    if i + 4 > len(h) or h[i] != 0xFF or (h[i + 1] & 0xE0) != 0xE0:
        return 0
    version = (h[i + 1] >> 3) & 3  # 3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5, 1 = reserved
    layer = 4 - ((h[i + 1] >> 1) & 3)  # header value 0 (reserved) maps to 4
    br_idx = h[i + 2] >> 4
    sr_idx = (h[i + 2] >> 2) & 3
    if version == 1 or layer == 4 or br_idx in (0, 15) or sr_idx == 3:
        return 0  # reserved values, or free format (which we cannot length-check)
    v1 = version == 3
    bitrate = _MPEG_BITRATES[(v1, layer)][br_idx] * 1000
    rate = _MPEG_RATES[version][sr_idx]
    pad = (h[i + 2] >> 1) & 1
    if layer == 1:
        return (12 * bitrate // rate + pad) * 4
    if layer == 3 and not v1:
        return 72 * bitrate // rate + pad
    return 144 * bitrate // rate + pad


def _is_mpeg_audio(h: bytes) -> bool:
    # A two-byte sync pattern occurs by chance in binary data, so also require that a
    # second valid header follows exactly one frame later (when that is within `h`).
    n = _mpeg_frame_len(h, 0)
    if not n:
        return False
    return n + 4 > len(h) or _mpeg_frame_len(h, n) > 0


def _is_adts(h: bytes) -> bool:
    if len(h) < 7 or h[0] != 0xFF or (h[1] & 0xF6) != 0xF0 or ((h[2] >> 2) & 0xF) >= _ADTS_RATES:
        return False
    n = ((h[3] & 3) << 11) | (h[4] << 3) | (h[5] >> 5)
    if n < 7:
        return False
    return n + 2 > len(h) or (h[n] == 0xFF and (h[n + 1] & 0xF6) == 0xF0)
