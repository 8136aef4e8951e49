"""What ``engine report`` shows: its result types and the thresholds it states.

Frozen dataclasses, one per section of the report, filled by :func:`index.report.compute_report`
(the SQL) and drawn by :mod:`index.report_tables`, :mod:`index.report_figures` and
:mod:`index.report_html` (no SQL there). Conventions, stated once:

- a *share* is a fraction 0–1 of the tracks where the value is known (not NULL);
- a style is *present* in a track when its activation is at least ``style_threshold``
  (default :data:`STYLE_THRESHOLD`); the *top style* is the most activated one;
- two key profiles *agree* on a track when tonic and scale are both equal;
- histogram bins are half-open ``[lo + i·width, lo + (i+1)·width)``; values outside
  the plotted range are counted in the first or last bin.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

#: Activation at or above which a Discogs style counts as present in a track. The
#: genre_discogs400 head is multi-label: 400 independent sigmoids, nearly all close to 0
#: on real music; 0.1 keeps the few styles that stand out and drops the long tail.
#: (The tests' stand-in backbone saturates them, so it says nothing about this choice.)
#: ``engine report --threshold`` changes it.
STYLE_THRESHOLD = 0.1

#: A track is vocal when the EffNet voice/instrumental head's ``voice`` probability is
#: above this, instrumental otherwise; likewise ``danceable`` for the danceability head.
PROBABILITY_CUT = 0.5

#: Integrated-loudness targets drawn on the loudness plot (LUFS, label).
LOUDNESS_REFERENCES: tuple[tuple[float, str], ...] = (
    (-9.0, "-9 loud club/CD master"),
    (-14.0, "-14 Spotify, YouTube, Tidal"),
    (-16.0, "-16 Apple Music, AES streaming"),
    (-23.0, "-23 EBU R128 broadcast"),
    (-24.0, "-24 ATSC A/85 (US TV)"),
)

SCALES = ("major", "minor")
#: A lossless file whose spectrum stops below this was most likely made from a lossy one.
FAKE_LOSSLESS_HZ = 19000.0


@dataclass(frozen=True)
class Distribution:
    """One numeric column: summary statistics and counts in equal-width bins.

    ``counts[i]`` counts values in ``[lo + i*width, lo + (i+1)*width)``, the first and
    last bins also holding values beyond the range. Statistics are over the ``n``
    non-NULL values (None when n is 0); ``missing`` counts NULLs.
    """

    column: str
    lo: float
    width: float
    counts: tuple[int, ...]
    n: int
    missing: int
    mean: float | None
    median: float | None
    q1: float | None
    q3: float | None
    minimum: float | None
    maximum: float | None

    @property
    def edges(self) -> tuple[float, ...]:
        return tuple(self.lo + i * self.width for i in range(len(self.counts) + 1))


@dataclass(frozen=True)
class FormatRow:
    codec: str
    container: str
    tracks: int
    hours: float
    mean_bitrate_kbps: float | None


@dataclass(frozen=True)
class Facts:
    """What the collection is: size, time, formats, how complete the analysis is."""

    tracks: int
    hours: float
    analysed_hours: float
    artists: int
    albums: int
    truncated: int
    with_musicnn: int
    with_effnet: int
    first_analysed: _dt.datetime | None
    last_analysed: _dt.datetime | None
    formats: tuple[FormatRow, ...]
    sample_rates: tuple[tuple[int | None, int], ...]   # (Hz, tracks)
    channels: tuple[tuple[int | None, int], ...]       # (channels, tracks)


@dataclass(frozen=True)
class StyleRow:
    """One Discogs style: how many tracks have it on top / present, and its mean activation."""

    genre: str
    style: str
    top_tracks: int
    present_tracks: int
    mean_activation: float
    top_artists: int  # distinct artists among its top-style tracks


@dataclass(frozen=True)
class GenreRow:
    """A Discogs parent genre: tracks whose top style belongs to it, or with any of its styles present."""

    genre: str
    styles: int
    top_tracks: int
    present_tracks: int


@dataclass(frozen=True)
class Styles:
    threshold: float
    tracks: int        # tracks with style activations (EffNet)
    rows: tuple[StyleRow, ...]     # every style, by top_tracks, present_tracks, mean_activation
    genres: tuple[GenreRow, ...]   # by top_tracks, present_tracks
    styles_per_track: Distribution  # number of styles present per track
    missing: str | None   # why the section is empty
    note: str | None      # e.g. only part of the tracks have EffNet outputs


@dataclass(frozen=True)
class Rhythm:
    bpm: Distribution
    danceability: Distribution      # Essentia DSP, 0–3
    danceable: Distribution         # EffNet probability, 0–1
    danceable_tracks: int           # danceable > PROBABILITY_CUT
    effnet_missing: str | None
    effnet_note: str | None


@dataclass(frozen=True)
class KeyRow:
    tonic: str
    scale: str
    camelot: str
    counts: tuple[int, ...]  # tracks per profile, in KEY_PROFILES order


@dataclass(frozen=True)
class Keys:
    profiles: tuple[str, ...]
    rows: tuple[KeyRow, ...]       # 24 keys (12 major, then 12 minor) + any unknown spellings
    tracks: int                    # tracks with a key from all three profiles
    all_agree: int                 # ... on which all three agree
    pairwise: tuple[tuple[str, str, int], ...]   # (profile, profile, tracks that agree)
    strength: tuple[Distribution, ...]  # key strength per profile


@dataclass(frozen=True)
class Loudness:
    lufs: Distribution
    range_lu: Distribution
    true_peak: Distribution
    references: tuple[tuple[float, str], ...]
    louder_than: tuple[tuple[float, int], ...]  # (reference LUFS, tracks louder than it)
    peak_over_minus1: int    # true peak above -1 dBTP (clips after lossy encoding)


@dataclass(frozen=True)
class Emotion:
    """Arousal/valence (1–9) as a 2-D histogram: ``grid[i][j]`` counts arousal bin i, valence bin j."""

    lo: float
    width: float
    grid: tuple[tuple[int, ...], ...]
    tracks: int
    quadrants: tuple[tuple[str, int], ...]   # (name, tracks), split at 5
    arousal: Distribution
    valence: Distribution
    moods: tuple[tuple[str, int, int], ...]   # (EffNet mood, tracks > cut, tracks known)
    missing: str | None


@dataclass(frozen=True)
class Vocals:
    voice: Distribution
    vocal: int          # voice > PROBABILITY_CUT
    instrumental: int   # voice <= PROBABILITY_CUT
    missing: str | None
    note: str | None


@dataclass(frozen=True)
class FailureReason:
    stage: str
    reason: str      # the error with the file's own path replaced by <file>
    files: int
    example: str


@dataclass(frozen=True)
class Failure:
    path: str
    stage: str
    error: str
    at: _dt.datetime | None


@dataclass(frozen=True)
class Failures:
    count: int
    reasons: tuple[FailureReason, ...]
    rows: tuple[Failure, ...]   # every failure, newest first


@dataclass(frozen=True)
class Defect:
    """One measured defect: how many tracks are past the level from which it costs score."""

    column: str
    onset: float        # value from which the quality score is reduced
    worse_above: bool   # True when larger values are worse (clicks), False otherwise (SNR)
    tracks: int         # tracks past the onset
    known: int          # tracks with a value
    median: float | None


@dataclass(frozen=True)
class PoorTrack:
    track_id: int
    path: str
    score: float
    defects: str   # the measures past their onset, comma-separated


@dataclass(frozen=True)
class Quality:
    """The audio-quality columns (score 0–100, defect measures), when the store has them."""

    score: Distribution
    bands: tuple[tuple[str, int], ...]   # (score range, tracks)
    defects: tuple[Defect, ...]
    lossless: int         # tracks in a lossless codec with a bandwidth
    fake_lossless: int    # ... of which cut below FAKE_LOSSLESS_HZ (likely made from lossy)
    worst: tuple[PoorTrack, ...]   # lowest scores first


@dataclass(frozen=True)
class ListenerSummary:
    """One listener profile's predicted HAAQI over the collection (index.listeners)."""

    name: str
    hearing: str          # class, e.g. 'moderate sloping'
    audiogram: str        # thresholds, dB HL at 250..8k Hz
    haaqi: Distribution   # predicted HAAQI 0-1 of the scored tracks
    worst: tuple          # index.listeners.ListenerTrack, worst first


#: Tracks listed per user tag (its highest scores).
TOP_FOR_USER_TAG = 10


@dataclass(frozen=True)
class UserTagSummary:
    """One of the user's own tags (index.usertags): what ``engine tag list`` shows of it
    (``summary``: an index.usertags.TagSummary, with the CV quality and how many tracks
    score above 0.5), why it may not be trusted, and its highest-scored tracks."""

    summary: object        # index.usertags.TagSummary
    warnings: tuple[str, ...]
    top: tuple             # index.usertags.TagScore, highest score first


@dataclass(frozen=True)
class Report:
    store: str
    generated_at: _dt.datetime
    facts: Facts
    styles: Styles
    rhythm: Rhythm
    keys: Keys
    loudness: Loudness
    emotion: Emotion
    vocals: Vocals
    failures: Failures
    quality: Quality | None   # None when the store has no quality columns
    listeners: tuple[ListenerSummary, ...] = ()   # one per listener profile
    user_tags: tuple[UserTagSummary, ...] = ()    # one per tag the user trained, by name

