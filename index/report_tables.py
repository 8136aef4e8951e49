"""The report's TSV tables: ``summary.tsv`` (every single number) and one table per section.

No SQL here: every value comes from the :class:`index.report_data.Report`; shares are
divided here (k / n of the tracks where the value is known).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Sequence

from index.report_data import FAKE_LOSSLESS_HZ, Distribution, Report
from index.schema import KEY_PROFILES


def _share(k: int, n: int) -> float | None:
    return k / n if n else None


def _tsv_cell(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}" if abs(v) >= 1e-4 or v == 0 else f"{v:.6e}"
    return re.sub(r"[\t\r\n]+", " ", str(v))


def _write_tsv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    lines = ["\t".join(header)] + ["\t".join(_tsv_cell(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


_STATS = (("n", "n"), ("missing", "missing"), ("mean", "mean"), ("median", "median"),
          ("q1", "q1"), ("q3", "q3"), ("min", "minimum"), ("max", "maximum"))


def _stat_rows(section: str, name: str, d: Distribution) -> list[tuple[str, str, object]]:
    return [(section, f"{name}_{stat}", getattr(d, attr)) for stat, attr in _STATS]


def summary_rows(r: Report) -> list[tuple[str, str, object]]:
    """(section, name, value): every single number of the report, for summary.tsv (names are unique)."""
    f, s, rh, k, lo, e, v = r.facts, r.styles, r.rhythm, r.keys, r.loudness, r.emotion, r.vocals
    rows: list[tuple[str, str, object]] = [
        ("collection", "tracks", f.tracks), ("collection", "hours", f.hours),
        ("collection", "analysed_hours", f.analysed_hours), ("collection", "artists", f.artists),
        ("collection", "albums", f.albums), ("collection", "truncated", f.truncated),
        ("collection", "with_musicnn", f.with_musicnn), ("collection", "with_effnet", f.with_effnet),
        ("styles", "threshold", s.threshold), ("styles", "tracks_with_styles", s.tracks),
        ("styles", "styles_present_mean", s.styles_per_track.mean),
        ("styles", "styles_present_median", s.styles_per_track.median),
    ]
    for name, d in (("bpm", rh.bpm), ("danceability", rh.danceability), ("danceable", rh.danceable),
                    ("loudness_lufs", lo.lufs), ("loudness_range_lu", lo.range_lu),
                    ("true_peak_dbtp", lo.true_peak), ("arousal", e.arousal), ("valence", e.valence),
                    ("voice", v.voice)):
        section = {"bpm": "tempo", "danceability": "danceability", "danceable": "danceability",
                   "arousal": "emotion", "valence": "emotion", "voice": "vocals"}.get(name, "loudness")
        rows += _stat_rows(section, name, d)
    rows += [("danceability", "danceable_tracks", rh.danceable_tracks),
             ("keys", "tracks_with_keys", k.tracks), ("keys", "all_agree", k.all_agree),
             ("keys", "all_agree_share", _share(k.all_agree, k.tracks))]
    rows += [("keys", f"agree_{a}_{b}", n) for a, b, n in k.pairwise]
    rows += [("keys", f"agree_{a}_{b}_share", _share(n, k.tracks)) for a, b, n in k.pairwise]
    rows += [("loudness", f"louder_than_{ref:g}", n) for ref, n in lo.louder_than]
    rows += [("loudness", "true_peak_over_minus1", lo.peak_over_minus1)]
    rows += [("emotion", "tracks_with_arousal_valence", e.tracks)]
    rows += [("emotion", name.split(" (")[0].replace(", ", "_"), n) for name, n in e.quadrants]
    rows += [("emotion", f"mood_{m}_tracks", n) for m, n, _ in e.moods]
    rows += [("vocals", "vocal", v.vocal), ("vocals", "instrumental", v.instrumental),
             ("vocals", "vocal_share", _share(v.vocal, v.vocal + v.instrumental)),
             ("failures", "failures", r.failures.count)]
    if r.quality is not None:
        q = r.quality
        rows += _stat_rows("quality", "quality", q.score)
        rows += [("quality", f"{d.column}_past_onset", d.tracks) for d in q.defects]
        rows += [("quality", "lossless_cut_below_19khz", q.fake_lossless)]
    names = [name for _, name, _ in rows]
    assert len(names) == len(set(names)), "summary.tsv names must be unique"
    return rows


def write_tables(r: Report, out: Path) -> list[Path]:
    """Write every TSV table of the report into ``out`` (an existing folder); their paths."""
    s, n = r.styles, r.styles.tracks
    paths = [
        _write_tsv(out / "summary.tsv", ("section", "name", "value"), summary_rows(r)),
        _write_tsv(out / "styles.tsv",
                   ("genre", "style", "top_tracks", "top_share", "present_tracks", "present_share",
                    "mean_activation", "top_artists"),
                   [(x.genre, x.style, x.top_tracks, _share(x.top_tracks, n), x.present_tracks,
                     _share(x.present_tracks, n), x.mean_activation, x.top_artists) for x in s.rows]),
        _write_tsv(out / "genres.tsv",
                   ("genre", "styles", "top_tracks", "top_share", "present_tracks", "present_share"),
                   [(g.genre, g.styles, g.top_tracks, _share(g.top_tracks, n), g.present_tracks,
                     _share(g.present_tracks, n)) for g in s.genres]),
        _write_tsv(out / "keys.tsv", ("tonic", "scale", "camelot") + KEY_PROFILES,
                   [(x.tonic, x.scale, x.camelot) + x.counts for x in r.keys.rows]),
        _write_tsv(out / "formats.tsv", ("codec", "container", "tracks", "hours", "mean_bitrate_kbps"),
                   [(x.codec, x.container, x.tracks, x.hours, x.mean_bitrate_kbps) for x in r.facts.formats]),
        _write_tsv(out / "failures.tsv", ("path", "stage", "error", "at"),
                   [(x.path, x.stage, x.error, x.at.isoformat(sep=" ") if x.at else None)
                    for x in r.failures.rows]),
        _write_tsv(out / "histograms.tsv", ("column", "bin_lo", "bin_hi", "tracks"),
                   [(d.column, d.edges[i], d.edges[i + 1], c) for d in _distributions(r)
                    for i, c in enumerate(d.counts)]),
    ]
    if r.quality is not None:
        q = r.quality
        paths.append(_write_tsv(
            out / "quality.tsv", ("measure", "condition", "tracks", "share", "tracks_measured", "median"),
            [(d.column, f"{'>' if d.worse_above else '<'} {d.onset:g}", d.tracks, _share(d.tracks, d.known),
              d.known, d.median) for d in q.defects]
            + [("quality", band, n, _share(n, q.score.n), q.score.n, None) for band, n in q.bands]
            + [("lossless_cut_below_19khz", f"< {FAKE_LOSSLESS_HZ:g}", q.fake_lossless,
                _share(q.fake_lossless, q.lossless), q.lossless, None)]))
    if r.listeners:
        paths.append(_write_tsv(
            out / "listeners.tsv", ("listener", "hearing", "rank", "track_id", "path", "predicted_haaqi", "quality"),
            [(x.name, x.hearing, i, t.track_id, t.path, t.haaqi, t.quality)
             for x in r.listeners for i, t in enumerate(x.worst, 1)]))
    if r.user_tags:
        paths.append(_write_tsv(
            out / "user_tags.tsv",
            ("tag", "space", "positives", "negatives", "cv_auc", "cv_accuracy", "scored", "above_half",
             "rank", "track_id", "path", "score", "example"),
            [(s.tag, s.space, s.positives, s.negatives, s.cv_auc, s.cv_accuracy, s.scored, s.above_half)
             + ((i, t.track_id, t.path, t.score, t.example) if t else (None,) * 5)
             for s, top in ((x.summary, x.top) for x in r.user_tags) for i, t in enumerate(top or (None,), 1)]))
    return paths


def _distributions(r: Report) -> list[Distribution]:
    return [r.rhythm.bpm, r.rhythm.danceability, r.rhythm.danceable, *r.keys.strength,
            r.loudness.lufs, r.loudness.range_lu, r.loudness.true_peak,
            r.emotion.arousal, r.emotion.valence, r.vocals.voice] + ([r.quality.score] if r.quality else [])
