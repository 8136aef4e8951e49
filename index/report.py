"""The collection overview behind ``engine report``: every number, computed with SQL.

:func:`compute_report` asks the store one question per section and returns a frozen
:class:`index.report_data.Report` (the result types and conventions are there); rendering
lives in :mod:`index.report_tables`, :mod:`index.report_figures` and :mod:`index.report_html`
and asks the store nothing (at most it divides or sums numbers held here). All aggregation
happens in DuckDB, so a 100k-track store (40M style rows) takes seconds, and every number
here is what the same plain SQL over the store gives (``tests/test_report.py`` checks
several that way).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Sequence

from index.report_data import (
    FAKE_LOSSLESS_HZ, LOUDNESS_REFERENCES, PROBABILITY_CUT, SCALES, STYLE_THRESHOLD,
    Defect, Distribution, Emotion, Facts, Failure, FailureReason, Failures, FormatRow, GenreRow, KeyRow, Keys,
    ListenerSummary, Loudness, PoorTrack, Quality, Report, Rhythm, Styles, StyleRow, TOP_FOR_USER_TAG,
    UserTagSummary, Vocals,
)
from index.schema import KEY_PROFILES, SCORE_TERMS, TONICS
from index.store import Store
from models.errors import models_hint

_PITCH_CLASS = {
    "C": 0, "B#": 0, "C#": 1, "Db": 1, "D": 2, "D#": 3, "Eb": 3, "E": 4, "Fb": 4, "E#": 5,
    "F": 5, "F#": 6, "Gb": 6, "G": 7, "G#": 8, "Ab": 8, "A": 9, "A#": 10, "Bb": 10, "B": 11, "Cb": 11,
}

EFFNET_MISSING = (
    "No track in this store has Discogs-EffNet outputs: the EffNet backbone was missing "
    f"when it was built. To get it, {models_hint('effnet')}; then "
    "`engine build <music folder>` computes just the missing outputs."
)
MUSICNN_MISSING = (
    "No track in this store has arousal/valence: the MusiCNN backbone or its emoMusic "
    f"head was missing when it was built. To get them, {models_hint('musicnn emomusic')}; "
    "then `engine build <music folder>` computes just the missing outputs."
)


def _effnet_missing(facts: Facts, head: str) -> str:
    """Why an EffNet head's outputs are absent: no backbone at all, or just that head."""
    if not facts.with_effnet:
        return EFFNET_MISSING
    return (f"The store has EffNet outputs but none from its `{head}` head: the head was missing "
            f"when the store was built. To get it, {models_hint(head)}; then "
            "`engine build <music folder>` computes just the missing outputs.")


def _effnet_partial(with_effnet: int, tracks: int) -> str | None:
    if 0 < with_effnet < tracks:
        return (f"Only {with_effnet} of {tracks} tracks have EffNet outputs; the numbers here "
                "are over those. `engine build` fills in the rest once the backbone is present.")
    return None


# -- queries ----------------------------------------------------------------------------
def _q(store: Store, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    return store.rows(sql, params)


def _one(store: Store, sql: str, params: Sequence[Any] = ()) -> tuple:
    return _q(store, sql, params)[0]


def tracks_columns(store: Store) -> dict[str, str]:
    """The ``tracks`` table's columns and their SQL types, as the store has them now."""
    return dict(_q(store, "SELECT column_name, data_type FROM information_schema.columns "
                          "WHERE table_name = 'tracks' ORDER BY ordinal_position"))


def distribution(store: Store, column: str, *, lo: float, hi: float, width: float) -> Distribution:
    """Summary and histogram of one ``tracks`` column (or SQL expression over it)."""
    bins = max(1, int(round((hi - lo) / width)))
    n, missing, mean, quartiles, mn, mx = _one(store, f"""
        SELECT count({column}), count(*) - count({column}), avg({column}),
               quantile_cont({column}, [0.25, 0.5, 0.75]), min({column}), max({column})
        FROM tracks""")
    counts = [0] * bins
    for b, c in _q(store, f"""
            SELECT least(greatest(floor(({column} - ?) / ?), 0), ?)::INTEGER AS b, count(*)
            FROM tracks WHERE {column} IS NOT NULL GROUP BY b""",
                   [lo, width, bins - 1]):
        counts[b] = c
    q1, median, q3 = quartiles if quartiles else (None, None, None)
    return Distribution(column, float(lo), float(width), tuple(counts), n, missing,
                        mean, median, q1, q3, mn, mx)


def _facts(store: Store) -> Facts:
    (tracks, seconds, analysed, artists, albums, truncated, musicnn, effnet, first,
     last) = _one(store, """
        SELECT count(*), coalesce(sum(duration), 0), coalesce(sum(analysed_seconds), 0),
               count(DISTINCT artist),
               count(DISTINCT (coalesce(album_artist, artist), album)) FILTER (WHERE album IS NOT NULL),
               count(*) FILTER (WHERE truncated), count(*) FILTER (WHERE has_musicnn),
               count(*) FILTER (WHERE has_effnet), min(analysed_at), max(analysed_at)
        FROM tracks""")
    formats = tuple(FormatRow(*r) for r in _q(store, """
        SELECT coalesce(codec, '(unknown)'), coalesce(container, '(unknown)'), count(*),
               coalesce(sum(duration), 0) / 3600, avg(bitrate) / 1000
        FROM tracks GROUP BY ALL ORDER BY 3 DESC, 1, 2"""))
    rates = tuple(_q(store, "SELECT sample_rate, count(*) FROM tracks GROUP BY ALL ORDER BY 2 DESC, 1"))
    channels = tuple(_q(store, "SELECT channels, count(*) FROM tracks GROUP BY ALL ORDER BY 2 DESC, 1"))
    return Facts(tracks, seconds / 3600, analysed / 3600, artists, albums, truncated, musicnn,
                 effnet, first, last, formats, rates, channels)


def _styles(store: Store, facts: Facts, threshold: float) -> Styles:
    # Two scans of the styles table (400 rows per track): one per style, and one over
    # the rows at or above the threshold for the per-genre and per-track counts.
    rows = tuple(StyleRow(*r) for r in _q(store, """
        WITH s AS (
            SELECT genre, style, count(*) FILTER (WHERE activation >= ?) AS present,
                   avg(activation) AS mean_activation
            FROM styles GROUP BY genre, style),
        t AS (
            SELECT genre, top_style AS style, count(*) AS top, count(DISTINCT artist) AS artists
            FROM tracks WHERE top_style IS NOT NULL GROUP BY genre, top_style)
        SELECT s.genre, s.style, coalesce(t.top, 0), s.present, s.mean_activation,
               coalesce(t.artists, 0)
        FROM s LEFT JOIN t USING (genre, style)
        ORDER BY 3 DESC, 4 DESC, 5 DESC, 1, 2""", [threshold]))
    present_by_genre, per_track, tracks, mean, quartiles, mn, mx = _one(store, """
        WITH p AS MATERIALIZED (
            SELECT track_id, genre, count(*) AS n FROM styles WHERE activation >= ?
            GROUP BY track_id, genre),
        t AS MATERIALIZED (
            SELECT s.track_id, coalesce(sum(p.n), 0) AS present
            FROM (SELECT DISTINCT track_id FROM styles) s LEFT JOIN p USING (track_id)
            GROUP BY s.track_id)
        SELECT (SELECT list((genre, n)) FROM (SELECT genre, count(*) AS n FROM p GROUP BY genre)),
               (SELECT list((k, n)) FROM (SELECT present AS k, count(*) AS n FROM t GROUP BY present)),
               count(*), avg(present), quantile_cont(present, [0.25, 0.5, 0.75]),
               min(present), max(present)
        FROM t""", [threshold])
    present = {g: n for g, n in present_by_genre or ()}
    top = {g: n for g, n in _q(store, "SELECT genre, count(*) FROM tracks WHERE genre IS NOT NULL GROUP BY genre")}
    n_styles: dict[str, int] = {}
    for r in rows:
        n_styles[r.genre] = n_styles.get(r.genre, 0) + 1
    genres = tuple(sorted(
        (GenreRow(g, k, top.get(g, 0), present.get(g, 0)) for g, k in n_styles.items()),
        key=lambda g: (-g.top_tracks, -g.present_tracks, g.genre)))
    cap = 15  # the per-track histogram's last bin holds 15 styles or more
    hist = [0] * (cap + 1)
    for k, n in per_track or ():
        hist[min(int(k), cap)] += n
    q1, median, q3 = quartiles if quartiles else (None, None, None)
    spt = Distribution("styles present", 0, 1, tuple(hist), tracks, 0, mean, median, q1, q3, mn, mx)
    return Styles(threshold, tracks, rows, genres, spt, None if tracks else _effnet_missing(facts, "genre_discogs400"),
                  _effnet_partial(facts.with_effnet, facts.tracks))


def _rhythm(store: Store, facts: Facts) -> Rhythm:
    bpm = distribution(store, "bpm", lo=40, hi=212, width=4)
    dsp = distribution(store, "danceability", lo=0, hi=3, width=0.1)
    prob = distribution(store, "danceable", lo=0, hi=1, width=0.05)
    danceable = _one(store, "SELECT count(*) FROM tracks WHERE danceable > ?", [PROBABILITY_CUT])[0]
    missing = None if prob.n else _effnet_missing(facts, "danceability")
    return Rhythm(bpm, dsp, prob, danceable, missing, _effnet_partial(facts.with_effnet, facts.tracks))


def _pitch_order(tonic: str) -> int:
    return _PITCH_CLASS.get(tonic, 99)


def camelot(tonic: str, scale: str) -> str:
    """Camelot wheel code of a key (C major = 8B, A minor = 8A); '' for unknown spellings."""
    pc = _PITCH_CLASS.get(tonic)
    if pc is None or scale not in SCALES:
        return ""
    major_pc = pc if scale == "major" else (pc + 3) % 12
    return f"{(7 * major_pc + 7) % 12 + 1}{'B' if scale == 'major' else 'A'}"


def _keys(store: Store) -> Keys:
    union = " UNION ALL ".join(
        f"SELECT '{p}' AS profile, key_{p} AS tonic, scale_{p} AS scale, count(*) AS n FROM tracks "
        f"WHERE key_{p} IS NOT NULL AND scale_{p} IS NOT NULL GROUP BY ALL" for p in KEY_PROFILES)
    counts: dict[tuple[str, str], list[int]] = {(t, s): [0] * len(KEY_PROFILES) for s in SCALES for t in TONICS}
    for profile, tonic, scale, n in _q(store, union):
        counts.setdefault((tonic, scale), [0] * len(KEY_PROFILES))[KEY_PROFILES.index(profile)] = n
    order = sorted(counts, key=lambda k: (SCALES.index(k[1]) if k[1] in SCALES else 9, _pitch_order(k[0]), k[0]))
    rows = tuple(KeyRow(t, s, camelot(t, s), tuple(counts[(t, s)])) for t, s in order)

    def same(a: str, b: str) -> str:
        return f"(key_{a} = key_{b} AND scale_{a} = scale_{b})"

    pairs = [(a, b) for i, a in enumerate(KEY_PROFILES) for b in KEY_PROFILES[i + 1:]]
    known = " AND ".join(f"key_{p} IS NOT NULL AND scale_{p} IS NOT NULL" for p in KEY_PROFILES)
    agree_all = " AND ".join(same(a, b) for a, b in pairs[:2])
    res = _one(store, f"SELECT count(*), count(*) FILTER (WHERE {agree_all}), "
                      + ", ".join(f"count(*) FILTER (WHERE {same(a, b)})" for a, b in pairs)
                      + f" FROM tracks WHERE {known}")
    strength = tuple(distribution(store, f"key_strength_{p}", lo=0, hi=1, width=0.05) for p in KEY_PROFILES)
    return Keys(KEY_PROFILES, rows, res[0], res[1],
                tuple((a, b, n) for (a, b), n in zip(pairs, res[2:])), strength)


def _loudness(store: Store) -> Loudness:
    lo_hi = _one(store, "SELECT min(loudness_lufs), max(loudness_lufs) FROM tracks")
    lo = max(-40.0, float(int(lo_hi[0]) - 1)) if lo_hi[0] is not None else -30.0
    lo = min(lo, -26.0)  # always show the broadcast references
    hi = min(0.0, float(int(lo_hi[1]) + 1)) if lo_hi[1] is not None else -5.0
    hi = max(hi, -6.0)
    lufs = distribution(store, "loudness_lufs", lo=lo, hi=hi, width=1.0)
    lra = distribution(store, "loudness_range_lu", lo=0, hi=30, width=1.0)
    peak = distribution(store, "true_peak_dbtp", lo=-20, hi=3, width=0.5)
    refs = [r for r, _ in LOUDNESS_REFERENCES]
    louder = _one(store, "SELECT " + ", ".join(
        f"count(*) FILTER (WHERE loudness_lufs > {r})" for r in refs) + " FROM tracks")
    over = _one(store, "SELECT count(*) FROM tracks WHERE true_peak_dbtp > -1")[0]
    return Loudness(lufs, lra, peak, LOUDNESS_REFERENCES, tuple(zip(refs, louder)), over)


_MOODS = ("mood_happy", "mood_sad", "mood_relaxed", "mood_aggressive")


def _emotion(store: Store) -> Emotion:
    both = "arousal IS NOT NULL AND valence IS NOT NULL"
    tracks = _one(store, f"SELECT count(*) FROM tracks WHERE {both}")[0]
    lo, width = 1.0, (0.5 if tracks < 2000 else 0.25)
    bins = int(round(8 / width))
    grid = [[0] * bins for _ in range(bins)]
    for a, v, c in _q(store, f"""
            SELECT least(greatest(floor((arousal - ?) / ?), 0), ?)::INTEGER AS a,
                   least(greatest(floor((valence - ?) / ?), 0), ?)::INTEGER AS v, count(*)
            FROM tracks WHERE {both} GROUP BY a, v""", [lo, width, bins - 1] * 2):
        grid[a][v] = c
    quadrants = _one(store, f"""
        SELECT count(*) FILTER (WHERE arousal >= 5 AND valence >= 5),
               count(*) FILTER (WHERE arousal >= 5 AND valence < 5),
               count(*) FILTER (WHERE arousal < 5 AND valence < 5),
               count(*) FILTER (WHERE arousal < 5 AND valence >= 5)
        FROM tracks WHERE {both}""")
    names = ("excited, happy (high arousal, positive)", "tense, angry (high arousal, negative)",
             "sad, depressed (low arousal, negative)", "calm, relaxed (low arousal, positive)")
    moods = _one(store, "SELECT " + ", ".join(
        f"count(*) FILTER (WHERE {m} > {PROBABILITY_CUT}), count({m})" for m in _MOODS) + " FROM tracks")
    return Emotion(lo, width, tuple(tuple(r) for r in grid), tracks, tuple(zip(names, quadrants)),
                   distribution(store, "arousal", lo=1, hi=9, width=0.25),
                   distribution(store, "valence", lo=1, hi=9, width=0.25),
                   tuple((m.removeprefix("mood_"), moods[2 * i], moods[2 * i + 1]) for i, m in enumerate(_MOODS)),
                   None if tracks else MUSICNN_MISSING)


def _vocals(store: Store, facts: Facts) -> Vocals:
    voice = distribution(store, "voice", lo=0, hi=1, width=0.05)
    vocal, instrumental = _one(store, "SELECT count(*) FILTER (WHERE voice > ?), count(*) FILTER (WHERE voice <= ?) "
                                      "FROM tracks", [PROBABILITY_CUT, PROBABILITY_CUT])
    return Vocals(voice, vocal, instrumental, None if voice.n else _effnet_missing(facts, "voice_instrumental"),
                  _effnet_partial(facts.with_effnet, facts.tracks))


def _failures(store: Store) -> Failures:
    count = _one(store, "SELECT count(*) FROM failures")[0]
    reasons = tuple(FailureReason(*r) for r in _q(store, """
        SELECT coalesce(stage, '?'), replace(coalesce(error, ''), path, '<file>') AS reason,
               count(*), min(path)
        FROM failures GROUP BY ALL ORDER BY 3 DESC, 1, 2"""))
    rows = tuple(Failure(*r) for r in _q(store, """
        SELECT path, coalesce(stage, '?'), coalesce(error, ''), "at" FROM failures
        ORDER BY "at" DESC NULLS LAST, path"""))
    return Failures(count, reasons, rows)


#: Lossless codecs (as the decoder names them) for the "made from a lossy file" check.
LOSSLESS_CODECS = ("flac", "alac", "wavpack", "ape", "tta", "mlp", "truehd")
#: Score ranges of the quality summary (lower bound inclusive).
QUALITY_BANDS = ((95.0, 100.0), (80.0, 95.0), (50.0, 80.0), (0.0, 50.0))


def _score_terms() -> tuple[tuple[str, float, float], ...]:
    """(column, onset, ruin) of each scored defect of the quality score."""
    return tuple((t[0], float(t[2]), float(t[3])) for t in SCORE_TERMS)


def _quality(store: Store, columns: dict[str, str]) -> Quality | None:
    """Quality summary; None when the store has no ``quality`` values (an older store, whose
    column was added empty when it was first read, has none)."""
    if "quality" not in columns or not any(
            t in columns["quality"].upper() for t in ("INT", "DOUBLE", "FLOAT", "DECIMAL", "REAL")):
        return None
    if not _one(store, "SELECT count(quality) FROM tracks")[0]:
        return None
    score = distribution(store, "quality", lo=0, hi=100, width=5)
    bands = tuple((f"{lo:g}–{hi:g}", n) for (lo, hi), n in zip(QUALITY_BANDS, _one(store, "SELECT " + ", ".join(
        f"count(*) FILTER (WHERE quality >= {lo} AND quality {'<=' if hi == 100 else '<'} {hi})"
        for lo, hi in QUALITY_BANDS) + " FROM tracks")))
    terms = [(c, onset, ruin) for c, onset, ruin in _score_terms() if c in columns]

    def past(c: str, onset: float, ruin: float) -> str:
        return f"{c} {'>' if ruin > onset else '<'} {onset!r}"

    defects: list[Defect] = []
    if terms:
        res = _one(store, "SELECT " + ", ".join(
            f"count(*) FILTER (WHERE {past(c, o, r)}), count({c}), median({c})" for c, o, r in terms)
            + " FROM tracks")
        defects = [Defect(c, o, r > o, *res[3 * i:3 * i + 3]) for i, (c, o, r) in enumerate(terms)]
    lossless = fake = 0
    if "bandwidth_hz" in columns:
        lossless, fake = _one(store, """
            SELECT count(*), count(*) FILTER (WHERE bandwidth_hz < ?) FROM tracks
            WHERE bandwidth_hz IS NOT NULL AND (codec IN (SELECT unnest(?)) OR codec LIKE 'pcm%')""",
                              [FAKE_LOSSLESS_HZ, list(LOSSLESS_CODECS)])
    flags = ", ".join(f"CASE WHEN {past(c, o, r)} THEN '{c}' END" for c, o, r in terms) or "NULL"
    worst = tuple(PoorTrack(*r) for r in _q(store, f"""
        SELECT track_id, path, quality, coalesce(concat_ws(', ', {flags}), '') FROM tracks
        WHERE quality < ? ORDER BY quality, path LIMIT 15""", [QUALITY_BANDS[0][0]]))
    return Quality(score, bands, tuple(defects), lossless, fake, worst)


WORST_FOR_LISTENER = 20  # tracks listed per listener


def _listeners(store: Store) -> tuple[ListenerSummary, ...]:
    """Per listener profile: the predicted HAAQI's spread and the worst tracks."""
    from index.listeners import list_listeners, worst_tracks

    if "listener_quality" not in {r[0] for r in _q(store, "SELECT table_name FROM duckdb_tables()")}:
        return ()  # a store made before listener profiles existed
    out = []
    for p in list_listeners(store):
        haaqi = _listener_distribution(store, p.name)
        out.append(ListenerSummary(p.name, p.audiogram.label, p.audiogram.text(), haaqi,
                                   tuple(worst_tracks(store, p.name, WORST_FOR_LISTENER))))
    return tuple(out)


def _listener_distribution(store: Store, name: str) -> Distribution:
    import dataclasses

    # The name is safe inside the SQL string: index.listeners.NAME_PATTERN allows only
    # letters, digits, '_' and '-'.
    column = f"(SELECT haaqi FROM listener_quality q WHERE q.track_id = tracks.track_id AND q.listener = '{name}')"
    return dataclasses.replace(distribution(store, column, lo=0.0, hi=1.0, width=0.05), column=f"haaqi {name}")


def _user_tags(store: Store) -> tuple[UserTagSummary, ...]:
    """The user's tags as ``engine tag list`` shows them (index.usertags.summaries), with
    their warnings and top tracks; () in a store without any (or made before they existed)."""
    from index import usertags

    probes = {p.tag: p for p in usertags.load_all(store)}
    return tuple(UserTagSummary(s, tuple(probes[s.tag].warnings()),
                                tuple(usertags.ranked(store, s.tag, TOP_FOR_USER_TAG)))
                 for s in usertags.summaries(store))


def compute_report(store: Store, *, style_threshold: float = STYLE_THRESHOLD) -> Report:
    """Everything ``engine report`` shows, from one store.

    Parameters
    ----------
    store : Store
        An open store (read-only is enough).
    style_threshold : float, keyword-only
        Activation (0–1, exclusive) from which a style counts as present in a track.
    """
    if not 0.0 < style_threshold < 1.0:
        raise ValueError(f"style_threshold must be between 0 and 1, not {style_threshold}")
    columns = tracks_columns(store)
    facts = _facts(store)
    return Report(
        store=str(store.directory),
        generated_at=_dt.datetime.now().replace(microsecond=0),
        facts=facts,
        styles=_styles(store, facts, style_threshold),
        rhythm=_rhythm(store, facts),
        keys=_keys(store),
        loudness=_loudness(store),
        emotion=_emotion(store),
        vocals=_vocals(store, facts),
        failures=_failures(store),
        quality=_quality(store, columns),
        listeners=_listeners(store),
        user_tags=_user_tags(store),
    )
