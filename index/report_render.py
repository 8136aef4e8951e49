"""Render a :class:`index.report.Report`: figures (PNG), TSV tables and one self-contained HTML page.

No SQL here: every number comes from the report's dataclasses (shares are divided
and per-profile totals summed for display). matplotlib is imported lazily and used through its object API with the
Agg canvas (no pyplot, no global backend switch). The HTML page embeds its figures as
base64 PNG and its CSS inline, and its Content-Security-Policy forbids loading
anything else, so it opens offline in any browser.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Callable, Iterable, Sequence

from index.report import (
    FAKE_LOSSLESS_HZ, KEY_PROFILES, PROBABILITY_CUT, SCALES, TONICS, Distribution, Report,
)
from models.errors import EngineError


class ReportWriteError(EngineError):
    """The report folder cannot be written."""


@dataclass(frozen=True)
class Figure:
    name: str        # file stem, e.g. 'tempo'
    title: str       # alt text
    png: bytes
    width_px: int    # CSS width at which the page shows it


@dataclass(frozen=True)
class WrittenReport:
    folder: Path
    html: Path
    figures: tuple[Path, ...]
    tables: tuple[Path, ...]


# -- formatting ----------------------------------------------------------------------------
def _fmt(x: float | int | None, digits: int = 1) -> str:
    if x is None:
        return "–"
    if isinstance(x, int):
        text = f"{x:,}"
    else:
        text = f"{x:,.{digits}f}"
        if float(text.replace(",", "")) == 0:
            text = text.lstrip("-")
    return text.replace(",", "\u202f").replace("-", "\u2212")


def _smart(x: float | None) -> str:
    """A measured value with as many digits as its size deserves: 17 300, 49.1, 4.81, 0.0013."""
    if x is None:
        return "–"
    a = abs(x)
    if a == 0:
        return "0"
    if a >= 1:
        return _fmt(x, 0 if a >= 1000 else 1 if a >= 10 else 2)
    return f"{x:.2g}".replace("-", "\u2212")


def _count(n: int, word: str, plural: str | None = None) -> str:
    """'1 track', '2 tracks', '1 000 tracks'."""
    return f"{_fmt(n)} {word if n == 1 else plural or word + 's'}"


def _pct(k: int, n: int, digits: int = 1) -> str:
    return "–" if not n else f"{100.0 * k / n:.{digits}f}\u00a0%"


def _share(k: int, n: int) -> float | None:
    return k / n if n else None


def _esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def _prose(text: str) -> str:
    """Escape, then show `backticked` commands as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _esc(text))


# -- TSV ---------------------------------------------------------------------------------------
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
    return paths


def _distributions(r: Report) -> list[Distribution]:
    return [r.rhythm.bpm, r.rhythm.danceability, r.rhythm.danceable, *r.keys.strength,
            r.loudness.lufs, r.loudness.range_lu, r.loudness.true_peak,
            r.emotion.arousal, r.emotion.valence, r.vocals.voice] + ([r.quality.score] if r.quality else [])


# -- figures -----------------------------------------------------------------------------------
ACCENT = "#2f6690"
ACCENT_LIGHT = "#a9c8e0"
WARM = "#d1495b"
MUTED = "#8a8f98"
INK = "#22262e"

_RC = {
    "font.size": 10, "axes.titlesize": 11, "axes.titleweight": "bold", "axes.labelsize": 10,
    "axes.edgecolor": "#b8bcc4", "axes.labelcolor": INK, "xtick.color": INK, "ytick.color": INK,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.color": "#e6e8ec", "grid.linewidth": 0.8, "axes.axisbelow": True,
    "figure.facecolor": "white", "axes.facecolor": "white", "savefig.facecolor": "white",
    "legend.frameon": False, "font.family": "DejaVu Sans",
}
W = 9.0     # figure width, inches
_DPI = 150  # PNGs are drawn at 150 dpi and shown at 96 px per inch: sharp on HiDPI screens


def _figure(w: float, h: float):
    from matplotlib.figure import Figure as MplFigure

    return MplFigure(figsize=(w, h), dpi=_DPI, layout="constrained")


def _done(fig, name: str, title: str) -> Figure:
    """Render a matplotlib figure to PNG; the page shows it at 96 CSS px per inch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return Figure(name, title, buf.getvalue(), int(round(fig.get_figwidth() * 96)))


def _num(x: float | None, digits: int) -> str:
    return "–" if x is None else f"{x:.{digits}f}".replace("-", "\u2212")


def _bars(ax, d: Distribution, color: str = ACCENT, colors: Sequence[str] | None = None) -> None:
    edges = d.edges
    ax.bar(edges[:-1], d.counts, width=d.width, align="edge", color=colors or color,
           edgecolor="white", linewidth=0.5)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylabel("tracks")
    ax.grid(axis="x", visible=False)
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
    ax.yaxis.set_major_formatter(_thousands())


def _thousands():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: f"{v:,.0f}".replace(",", "\u2009"))


def _median_line(ax, d: Distribution, unit: str = "", digits: int = 1) -> None:
    if d.median is None:
        return
    if d.q1 is not None and d.q3 is not None and d.q3 > d.q1:
        ax.axvspan(d.q1, d.q3, color=WARM, alpha=0.08, lw=0)
    ax.axvline(d.median, color=WARM, lw=1.5)
    ax.set_title(f"median {_num(d.median, digits)}{unit} (line), middle half {_num(d.q1, digits)} to "
                 f"{_num(d.q3, digits)} (shaded)", loc="right", color=WARM, fontsize=9, fontweight="normal")


def _fig_genres(r: Report) -> Figure | None:
    s = r.styles
    genres = [g for g in s.genres if g.top_tracks or g.present_tracks]
    if not s.tracks or not genres:
        return None
    genres = genres[::-1]
    fig = _figure(W, 0.32 * len(genres) + 1.1)
    ax = fig.add_subplot()
    y = range(len(genres))
    present = [100 * g.present_tracks / s.tracks for g in genres]
    top = [100 * g.top_tracks / s.tracks for g in genres]
    ax.barh(y, present, height=0.8, color=ACCENT_LIGHT, label=f"any of its styles ≥ {s.threshold:g}")
    ax.barh(y, top, height=0.45, color=ACCENT, label="top style in this genre")
    for i, g in enumerate(genres):
        ax.annotate(f"{_fmt(g.top_tracks)} / {_fmt(g.present_tracks)}", (max(present[i], top[i]), i),
                    xytext=(4, 0), textcoords="offset points", va="center", fontsize=8, color=MUTED)
    ax.set_yticks(list(y), [g.genre for g in genres])
    ax.set_xlabel("share of tracks (%)")
    ax.set_xlim(0, min(100, max(present + top) * 1.18 + 1))
    ax.grid(axis="y", visible=False)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncols=2, fontsize=8)
    return _done(fig, "genres", "Tracks by parent genre")


def _fig_styles(r: Report, top: int = 25) -> Figure | None:
    s = r.styles
    rows = [x for x in s.rows if x.top_tracks or x.present_tracks][:top]
    if not s.tracks or not rows:
        return None
    rows = rows[::-1]
    fig = _figure(W, 0.27 * len(rows) + 1.1)
    ax = fig.add_subplot()
    y = range(len(rows))
    ax.barh(y, [x.present_tracks for x in rows], height=0.8, color=ACCENT_LIGHT,
            label=f"style present (≥ {s.threshold:g})")
    ax.barh(y, [x.top_tracks for x in rows], height=0.45, color=ACCENT, label="top style")
    ax.set_yticks(list(y), [f"{x.style}  ·  {x.genre}" for x in rows], fontsize=9)
    ax.set_xlabel("tracks")
    ax.grid(axis="y", visible=False)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncols=2, fontsize=8)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_formatter(_thousands())
    return _done(fig, "styles", f"Top {len(rows)} styles")


def _fig_tempo(r: Report) -> Figure | None:
    d = r.rhythm.bpm
    if not d.n:
        return None
    fig = _figure(W, 2.8)
    ax = fig.add_subplot()
    _bars(ax, d)
    _median_line(ax, d, " BPM", 0)
    ax.set_xlabel("tempo (BPM)")
    ax.set_xticks(range(40, 213, 20))
    return _done(fig, "tempo", "Tempo distribution")


def _fig_danceability(r: Report) -> Figure | None:
    dsp, prob = r.rhythm.danceability, r.rhythm.danceable
    if not dsp.n and not prob.n:
        return None
    panels = [p for p in (dsp, prob) if p.n]
    fig = _figure(W, 2.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, d in zip(axes, panels):
        if d is dsp:
            _bars(ax, d)
            _median_line(ax, d, "", 2)
            ax.set_xlabel("danceability, Essentia DSP (0–3)")
        else:
            colors = [WARM if lo >= PROBABILITY_CUT else ACCENT_LIGHT for lo in d.edges[:-1]]
            _bars(ax, d, colors=colors)
            ax.axvline(PROBABILITY_CUT, color=MUTED, lw=1, ls="--")
            ax.set_xlabel("danceable probability, EffNet (0–1)")
            ax.set_title(f"danceable (> {PROBABILITY_CUT:g}): {_pct(r.rhythm.danceable_tracks, d.n, 0)}",
                         fontsize=9, loc="right", color=WARM, fontweight="normal")
    return _done(fig, "danceability", "Danceability distributions")


def _fig_keys(r: Report) -> Figure | None:
    k = r.keys
    rows = {(x.tonic, x.scale): x.counts for x in k.rows}
    if not any(sum(c) for c in rows.values()):
        return None
    import numpy as np

    fig = _figure(W, 4.6)
    axes = fig.subplots(len(k.profiles), 1, sharex=True)
    peak = max(max(c) for c in rows.values())
    for i, (ax, profile) in enumerate(zip(axes, k.profiles)):
        m = np.array([[rows.get((t, s), (0,) * len(k.profiles))[i] for t in TONICS] for s in SCALES])
        ax.imshow(m, cmap="Blues", vmin=0, vmax=max(peak, 1) * 1.15, aspect="auto")
        for (y, x), v in np.ndenumerate(m):
            if v:
                ax.text(x, y, f"{v:,}", ha="center", va="center", fontsize=8,
                        color="white" if v > 0.6 * peak else INK)
        ax.set_yticks([0, 1], ["major", "minor"])
        ax.set_ylabel(profile, rotation=0, ha="right", va="center", fontweight="bold")
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.tick_params(length=0)
        ax.set_xticks(np.arange(12) - 0.5, minor=True)
        ax.set_yticks([0.5], minor=True)
        ax.grid(which="minor", color="white", linewidth=2)
    axes[-1].set_xticks(range(12), TONICS)
    return _done(fig, "keys", "Keys by profile")


def _fig_loudness(r: Report) -> Figure | None:
    d = r.loudness.lufs
    if not d.n:
        return None
    fig = _figure(W, 3.1)
    ax = fig.add_subplot()
    _bars(ax, d)
    _median_line(ax, d, " LUFS")
    styles = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)))
    colors = ("#8c6d31", "#2a9d8f", "#7b5ea7", "#555b66", "#b5838d")
    for i, (ref, label) in enumerate(r.loudness.references):
        if d.edges[0] <= ref <= d.edges[-1]:
            ax.axvline(ref, color=colors[i % 5], lw=1.6, ls=styles[i % 5],
                       label=label.replace("-", "\u2212", 1))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="reference (LUFS)",
              title_fontsize=8, alignment="left")
    ax.set_xlabel("integrated loudness (LUFS, EBU R128)")
    return _done(fig, "loudness", "Integrated loudness")


def _fig_emotion(r: Report) -> Figure | None:
    e = r.emotion
    if not e.tracks:
        return None
    import numpy as np
    from matplotlib.colors import LinearSegmentedColormap

    grid = np.array(e.grid, dtype=float)
    grid[grid == 0] = np.nan
    hi = e.lo + e.width * grid.shape[0]
    fig = _figure(5.6, 4.8)
    ax = fig.add_subplot()
    cmap = LinearSegmentedColormap.from_list("emo", ["#dbe9f6", ACCENT, "#0b1f33"]).with_extremes(bad="white")
    im = ax.imshow(grid, origin="lower", extent=(e.lo, hi, e.lo, hi), cmap=cmap, aspect="equal",
                   interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.75, label="tracks per cell")
    ax.axhline(5, color=MUTED, lw=0.8, ls="--")
    ax.axvline(5, color=MUTED, lw=0.8, ls="--")
    corners = {0: (8.9, 8.9, "right", "top"), 1: (1.1, 8.9, "left", "top"),
               2: (1.1, 1.1, "left", "bottom"), 3: (8.9, 1.1, "right", "bottom")}
    for i, (name, n) in enumerate(e.quadrants):
        x, y, ha, va = corners[i]
        ax.text(x, y, f"{name.split(' (')[0]}\n{_pct(n, e.tracks, 0)}", ha=ha, va=va, fontsize=8,
                color=INK, bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "none", "alpha": 0.8})
    ax.set_xlabel("valence (1 negative – 9 positive)")
    ax.set_ylabel("arousal (1 calm – 9 energetic)")
    ax.set_xticks(range(1, 10))
    ax.set_yticks(range(1, 10))
    ax.grid(False)
    return _done(fig, "emotion", "Arousal and valence density")


def _fig_voice(r: Report) -> Figure | None:
    v = r.vocals
    if not v.voice.n:
        return None
    fig = _figure(W, 2.6)
    ax = fig.add_subplot()
    colors = [WARM if lo >= PROBABILITY_CUT else ACCENT for lo in v.voice.edges[:-1]]
    _bars(ax, v.voice, colors=colors)
    ax.axvline(PROBABILITY_CUT, color=MUTED, lw=1, ls="--")
    n = v.vocal + v.instrumental
    ax.set_title(f"instrumental {_pct(v.instrumental, n, 0)}", loc="left", color=ACCENT)
    ax.set_title(f"vocal {_pct(v.vocal, n, 0)}", loc="right", color=WARM)
    ax.set_xlabel("voice probability, EffNet (0 instrumental – 1 vocal)")
    return _done(fig, "voice", "Vocal and instrumental tracks")


def _fig_quality(r: Report) -> Figure | None:
    q = r.quality
    if q is None or not q.score.n:
        return None
    fig = _figure(W, 2.6)
    ax = fig.add_subplot()
    colors = [WARM if lo < 50 else "#e0a030" if lo < 80 else ACCENT_LIGHT if lo < 95 else ACCENT
              for lo in q.score.edges[:-1]]
    _bars(ax, q.score, colors=colors)
    _median_line(ax, q.score, "", 1)
    nonzero = [c for c in q.score.counts if c]
    if max(nonzero) > 50 * min(nonzero):  # defects are rare: a log scale keeps them visible
        ax.set_yscale("log")
        ax.set_ylim(0.7, max(nonzero) * 1.5)
        ax.yaxis.set_major_formatter(_thousands())
        ax.set_ylabel("tracks (log scale)")
    ax.set_xlabel("quality score (0 broken – 100 no defect found)")
    ax.set_xticks(range(0, 101, 10))
    return _done(fig, "quality", "Quality score distribution")


FIGURES: tuple[Callable[[Report], Figure | None], ...] = (
    _fig_genres, _fig_styles, _fig_tempo, _fig_danceability, _fig_keys, _fig_loudness,
    _fig_emotion, _fig_voice, _fig_quality,
)


def make_figures(r: Report) -> dict[str, Figure]:
    """Every figure the data allows, by name (sections with no data have none)."""
    import matplotlib

    out = {}
    with matplotlib.rc_context(_RC):
        for make in FIGURES:
            fig = make(r)
            if fig is not None:
                out[fig.name] = fig
    return out


# -- HTML --------------------------------------------------------------------------------------
_PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>$title</title>
<style>
:root { --ink: #22262e; --muted: #6b717c; --line: #e3e6eb; --accent: #2f6690; --warm: #d1495b;
        --bg: #f6f7f9; --card: #fff; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header { background: #1d3b53; color: #fff; padding: 28px 0 22px; }
header h1 { margin: 0 0 4px; font-size: 26px; font-weight: 650; }
header p { margin: 0; color: #c9d6e2; font-size: 13.5px; }
header code { color: #fff; background: rgba(255,255,255,.12); }
.wrap { max-width: 1040px; margin: 0 auto; padding: 0 24px; }
nav { position: sticky; top: 0; z-index: 1; background: rgba(255,255,255,.96); border-bottom: 1px solid var(--line); }
nav .wrap { display: flex; flex-wrap: wrap; gap: 4px 18px; padding-top: 9px; padding-bottom: 9px; font-size: 13.5px; }
nav a { color: var(--accent); text-decoration: none; }
nav a:hover { text-decoration: underline; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 10px; margin: 22px 0;
          padding: 6px 26px 20px; }
h2 { font-size: 20px; margin: 16px 0 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.q { color: var(--muted); margin: 0 0 12px; font-style: italic; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 12px; margin: 10px 0 16px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.card b { display: block; font-size: 22px; font-weight: 650; font-variant-numeric: tabular-nums; }
.card span { color: var(--muted); font-size: 12.5px; }
figure { margin: 14px 0; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 13.5px; }
th, td { padding: 4px 12px 4px 0; text-align: left; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: 12.5px; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfc; }
.missing { border-left: 4px solid var(--warm); background: #fdf3f4; padding: 10px 14px; border-radius: 4px; }
.note { border-left: 4px solid #e0a030; background: #fdf8ee; padding: 8px 14px; border-radius: 4px; font-size: 14px; }
.cols { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 0 32px; }
.err { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12.5px; word-break: break-word; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .92em; background: #eef1f4;
       padding: 1px 4px; border-radius: 3px; }
footer { color: var(--muted); font-size: 13px; padding: 6px 0 40px; }
a { color: var(--accent); }
details { margin: 6px 0 10px; }
summary { cursor: pointer; color: var(--accent); font-size: 14px; }
</style>
</head>
<body>
<header><div class="wrap">
<h1>$title</h1>
<p>$subtitle</p>
</div></header>
<nav><div class="wrap">$nav</div></nav>
<main class="wrap">
$sections
</main>
<footer class="wrap">$footer</footer>
</body>
</html>
""")


def _table(header: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[int] = (),
           cls: dict[int, str] | None = None) -> str:
    cls = cls or {}

    def cell(tag: str, i: int, v: object) -> str:
        c = " ".join(filter(None, ["n" if i in numeric else "", cls.get(i, "")]))
        return f"<{tag}{f' class={chr(34)}{c}{chr(34)}' if c else ''}>{v if tag == 'td' else _esc(v)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "\n".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _fig_html(figs: dict[str, Figure], name: str, caption: str = "") -> str:
    f = figs.get(name)
    if f is None:
        return ""
    data = base64.b64encode(f.png).decode("ascii")
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_esc(f.title)}" '
            f'width="{f.width_px}">{cap}</figure>')


def _missing(text: str | None) -> str:
    return f'<p class="missing">{_prose(text)}</p>' if text else ""


def _note(text: str | None) -> str:
    return f'<p class="note">{_prose(text)}</p>' if text else ""


def _cards(items: Iterable[tuple[str, str]]) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card"><b>{_esc(v)}</b><span>{_esc(k)}</span></div>' for k, v in items) + "</div>"


def _stats(d: Distribution, unit: str = "", digits: int = 1) -> str:
    if not d.n:
        return ""
    u = f" {unit}" if unit else ""
    return (f"median <b>{_fmt(d.median, digits)}{u}</b>, middle half {_fmt(d.q1, digits)} to {_fmt(d.q3, digits)}{u}, "
            f"range {_fmt(d.minimum, digits)} to {_fmt(d.maximum, digits)}{u} over {_count(d.n, 'track')}"
            + (f" ({_fmt(d.missing)} without a value)" if d.missing else ""))


def _section(id_: str, title: str, question: str, body: str) -> tuple[str, str, str]:
    return id_, title, (f'<section id="{id_}"><h2>{_esc(title)}</h2><p class="q">{_esc(question)}</p>\n'
                        f"{body}\n</section>")


def _sec_collection(r: Report, figs: dict[str, Figure]) -> tuple[str, str, str]:
    f = r.facts
    codecs: dict[str, int] = {}
    for x in f.formats:
        codecs[x.codec] = codecs.get(x.codec, 0) + x.tracks
    cards = _cards([
        ("tracks", _fmt(f.tracks)), ("hours of music", _fmt(f.hours)), ("artists", _fmt(f.artists)),
        ("albums", _fmt(f.albums)), ("codecs", _fmt(len(codecs))),
        ("with MusiCNN outputs", _pct(f.with_musicnn, f.tracks, 0)),
        ("with EffNet outputs", _pct(f.with_effnet, f.tracks, 0)),
    ])
    formats = _table(("codec", "container", "tracks", "share", "hours", "mean bit rate"),
                     [(_esc(x.codec), _esc(x.container).replace(",", ",\u200b"), _fmt(x.tracks), _pct(x.tracks, f.tracks),
                       _fmt(x.hours, 2), f"{_fmt(x.mean_bitrate_kbps, 0)} kbit/s" if x.mean_bitrate_kbps else "–")
                      for x in f.formats], numeric=(2, 3, 4, 5))
    rates = _table(("sample rate", "tracks"), [(f"{_fmt(hz / 1000, 1)} kHz" if hz else "unknown", _fmt(n))
                                               for hz, n in f.sample_rates], numeric=(1,))
    chans = _table(("channels", "tracks"), [({1: "mono", 2: "stereo"}.get(c, _fmt(c) if c else "unknown"), _fmt(n))
                                            for c, n in f.channels], numeric=(1,))
    extra = []
    if f.truncated:
        extra.append(f"{_count(f.truncated, 'long track')} analysed from their start only "
                     f"({_fmt(f.analysed_hours)} of {_fmt(f.hours)} hours analysed).")
    if f.first_analysed:
        extra.append(f"Analysed between {f.first_analysed:%Y-%m-%d %H:%M} and {f.last_analysed:%Y-%m-%d %H:%M}."
                     .replace("-", "\u2011"))  # non-breaking hyphens: dates stay on one line
    body = (cards + ("<p>" + _esc(" ".join(extra)) + "</p>" if extra else "")
            + '<h3>Formats</h3><div class="cols"><div>' + formats + "</div><div>" + rates + chans + "</div></div>"
            + '<p>All formats: <a href="formats.tsv">formats.tsv</a>.</p>')
    if not f.tracks:
        body = '<p class="missing">The store holds no tracks yet: run <code>engine build &lt;music folder&gt;</code>.</p>'
    return _section("collection", "Collection", "What is in the store?", body)


def _sec_styles(r: Report, figs: dict[str, Figure]) -> tuple[str, str, str]:
    s = r.styles
    if s.missing:
        return _section("styles", "Music styles", "Which music styles are present?", _missing(s.missing))
    top = [x for x in s.rows if x.top_tracks or x.present_tracks][:25]
    table = _table(
        ("#", "style", "genre", "top style of", "present in", "mean activation"),
        [(i + 1, _esc(x.style), _esc(x.genre), f"{_fmt(x.top_tracks)} ({_pct(x.top_tracks, s.tracks)})",
          f"{_fmt(x.present_tracks)} ({_pct(x.present_tracks, s.tracks)})", f"{x.mean_activation:.3f}")
         for i, x in enumerate(top)], numeric=(0, 3, 4, 5))
    spt = s.styles_per_track
    body = (
        _note(s.note)
        + f"<p>Discogs-EffNet rates each track on 400 Discogs styles grouped in 15 parent genres. "
          f"The <b>top style</b> is a track's most activated style; a style is <b>present</b> when its "
          f"activation is at least <b>{s.threshold:g}</b>. Tracks with style outputs: {_fmt(s.tracks)}; "
          f"styles present per track: median {_fmt(spt.median, 0)}, mean {_fmt(spt.mean)}.</p>"
        + "<h3>By parent genre</h3>"
        + _fig_html(figs, "genres", "Dark bar: tracks whose top style belongs to the genre. Light bar: tracks "
                    f"with at least one of its styles present. Numbers: top / present. All genres: "
                    '<a href="genres.tsv">genres.tsv</a>.')
        + "<h3>Top styles</h3>"
        + _fig_html(figs, "styles", 'All 400 styles, with mean activation and artists: <a href="styles.tsv">styles.tsv</a>.')
        + f"<details><summary>The top {len(top)} styles as a table</summary>{table}</details>")
    return _section("styles", "Music styles", "Which music styles are present?", body)


def _sec_rhythm(r: Report, figs: dict[str, Figure]) -> tuple[str, str, str]:
    rh = r.rhythm
    body = "<h3>Tempo</h3>"
    body += _fig_html(figs, "tempo") + (f"<p>{_stats(rh.bpm, 'BPM', 0)}. RhythmExtractor2013 (multifeature), "
                                         "40–208 BPM; slow pieces are sometimes read at double tempo.</p>"
                                         if rh.bpm.n else "<p>No track has a tempo.</p>")
    body += "<h3>Danceability</h3>" + _fig_html(figs, "danceability")
    if rh.danceability.n:
        body += f"<p>Essentia's signal-processing danceability (0–3): {_stats(rh.danceability, '', 2)}.</p>"
    if rh.danceable.n:
        body += (f"<p>EffNet danceability head: <b>{_pct(rh.danceable_tracks, rh.danceable.n)}</b> of "
                 f"{_count(rh.danceable.n, 'track')} are danceable (probability &gt; {PROBABILITY_CUT:g}).</p>")
        body += _note(rh.effnet_note)
    else:
        body += _missing("The EffNet `danceable` probability is not shown. " + (rh.effnet_missing or ""))
    return _section("rhythm", "Tempo and danceability", "How fast and how danceable is the music?", body)


def _sec_keys(r: Report, figs: dict[str, Figure]) -> tuple[str, str, str]:
    k = r.keys
    if not any(sum(x.counts) for x in k.rows):
        return _section("keys", "Keys and scales", "Which keys and scales?", "<p>No track has a key.</p>")
    totals = [sum(x.counts[i] for x in k.rows) for i in range(len(k.profiles))]
    minor = [sum(x.counts[i] for x in k.rows if x.scale == "minor") for i in range(len(k.profiles))]
    top = []
    for i in range(len(k.profiles)):
        best = sorted(k.rows, key=lambda x: -x.counts[i])[:3]
        top.append(", ".join(f"{x.tonic} {x.scale} ({x.counts[i]})" for x in best if x.counts[i]))
    profiles = _table(("profile", "tracks", "minor", "most common keys", "median key strength"),
                      [(f"<b>{_esc(p)}</b>", _fmt(totals[i]), _pct(minor[i], totals[i], 0), _esc(top[i]),
                        _fmt(k.strength[i].median, 2)) for i, p in enumerate(k.profiles)], numeric=(1, 2, 4))
    agree = _table(("profiles", "agree on", "share"),
                   [("all three", _fmt(k.all_agree), _pct(k.all_agree, k.tracks))]
                   + [(f"{_esc(a)} = {_esc(b)}", _fmt(n), _pct(n, k.tracks)) for a, b, n in k.pairwise],
                   numeric=(1, 2))
    body = (_fig_html(figs, "keys", "Tracks per key (tonic × scale) for each of the three key profiles. "
                      'Counts with Camelot codes: <a href="keys.tsv">keys.tsv</a>.')
            + "<h3>Per profile</h3>" + profiles + "<h3>Agreement</h3>" + agree
            + f"<p>Over the {_count(k.tracks, 'track')} with a key from all three profiles; agreeing means the "
              "same tonic and scale. Temperley is the most accurate on the test corpus (0.80 exact), "
              "EDMA is tuned for electronic music.</p>")
    return _section("keys", "Keys and scales", "Which keys and scales?", body)


def _sec_loudness(r: Report, figs: dict[str, Figure]) -> tuple[str, str, str]:
    lo = r.loudness
    if not lo.lufs.n:
        return _section("loudness", "Loudness", "How loud are the masters?", "<p>No track has a loudness value.</p>")
    labels = dict(lo.references)
    refs = _table(("target (LUFS)", "tracks louder than it", "share"),
                  [(_esc(labels[ref]).replace("-", "\u2212", 1), _fmt(n), _pct(n, lo.lufs.n))
                   for ref, n in lo.louder_than], numeric=(1, 2))
    body = (_fig_html(figs, "loudness", "Lines: common loudness targets. A streaming service turns tracks "
                      "louder than its target down, so heavily limited masters gain nothing there.")
            + f"<p>Integrated loudness: {_stats(lo.lufs, 'LUFS')}.<br>Loudness range: {_stats(lo.range_lu, 'LU')}.<br>"
              f"True peak above −1 dBTP (may clip once encoded lossily): <b>{_count(lo.peak_over_minus1, 'track')}</b> "
              f"({_pct(lo.peak_over_minus1, lo.true_peak.n)}).</p>" + refs)
    return _section("loudness", "Loudness", "How loud are the masters?", body)


def _sec_emotion(r: Report, figs: dict[str, Figure]) -> tuple[str, str, str]:
    e = r.emotion
    if e.missing:
        body = _missing(e.missing)
    else:
        quads = _table(("quadrant (split at 5)", "tracks", "share"),
                       [(_esc(n), _fmt(c), _pct(c, e.tracks)) for n, c in e.quadrants], numeric=(1, 2))
        body = (f'<div class="cols"><div>{_fig_html(figs, "emotion")}</div><div>'
                f"<p>Arousal and valence from the emoMusic head on MusiCNN, on 1–9 scales "
                f"(cells {e.width:g} × {e.width:g}; {_count(e.tracks, 'track')}).</p>{quads}"
                f"<p>Arousal: {_stats(e.arousal, '', 2)}.<br>Valence: {_stats(e.valence, '', 2)}.</p></div></div>")
    moods = [(m, n, known) for m, n, known in e.moods if known]
    if moods:
        body += "<h3>Moods (EffNet heads)</h3>" + _table(
            ("mood", f"tracks with probability > {PROBABILITY_CUT:g}", "share"),
            [(_esc(m), _fmt(n), _pct(n, known)) for m, n, known in moods], numeric=(1, 2))
    return _section("emotion", "Emotion", "What mood is the music in?", body)


def _sec_vocals(r: Report, figs: dict[str, Figure]) -> tuple[str, str, str]:
    v = r.vocals
    if v.missing:
        return _section("vocals", "Vocal or instrumental", "How much of it has vocals?", _missing(v.missing))
    n = v.vocal + v.instrumental
    body = (_cards([("vocal", _pct(v.vocal, n, 0)), ("instrumental", _pct(v.instrumental, n, 0)),
                    ("vocal tracks", _fmt(v.vocal)), ("instrumental tracks", _fmt(v.instrumental))])
            + _fig_html(figs, "voice", f"A track counts as vocal when the EffNet voice/instrumental head's "
                        f"<code>voice</code> probability is above {PROBABILITY_CUT:g}.")
            + _note(v.note))
    return _section("vocals", "Vocal or instrumental", "How much of it has vocals?", body)


_DEFECT_NAMES = {
    "bandwidth_hz": "bandwidth (lossy source)", "snr_db": "hiss (signal to noise)",
    "clicks_per_min": "clicks, crackle", "clipping_share": "clipping, brick-wall limiting",
    "hum_db": "mains hum", "dropouts": "dropouts", "dc_offset": "DC offset",
}


_DEFECT_SHORT = {"bandwidth_hz": "bandwidth", "snr_db": "hiss", "clicks_per_min": "clicks",
                 "clipping_share": "clipping", "hum_db": "hum", "dropouts": "dropouts", "dc_offset": "DC offset"}


def _sec_quality(r: Report, figs: dict[str, Figure]) -> tuple[str, str, str] | None:
    q = r.quality
    if q is None:
        return None
    title, question = "Audio quality", "Are there technical problems in the files?"
    if not q.score.n:
        return _section("quality", title, question, "<p>No track has a quality score yet: the store was "
                        "analysed before quality measures existed.</p>")
    bands = _table(("score", "tracks", "share"), [(b, _fmt(n), _pct(n, q.score.n)) for b, n in q.bands],
                   numeric=(1, 2))
    defects = _table(
        ("defect", "measure", "costs score when", "tracks", "share", "median"),
        [(_esc(_DEFECT_NAMES.get(d.column, d.column)), f"<code>{_esc(d.column)}</code>",
          f"{'&gt;' if d.worse_above else '&lt;'} {_esc(f'{d.onset:g}')}", _fmt(d.tracks), _pct(d.tracks, d.known),
          _smart(d.median)) for d in q.defects],
        numeric=(3, 4, 5))
    worst = _table(("file", "score", "defects past their onset"),
                   [(f'<span class="err">{_esc(Path(t.path).name)}</span>', _fmt(t.score),
                     _esc(", ".join(_DEFECT_SHORT.get(d, d) for d in t.defects.split(", ") if d) or "–"))
                    for t in q.worst], numeric=(1,))
    body = (_fig_html(figs, "quality", "The score multiplies one penalty per defect; 100 = no defect found.")
            + f"<p>Quality score: {_stats(q.score, '', 1)}.</p>"
            + '<div class="cols"><div><h3>Score ranges</h3>' + bands + "</div><div>"
            + (f"<h3>Lossless files made from lossy ones?</h3><p><b>{_count(q.fake_lossless, 'lossless file')}</b> "
               f"of {_fmt(q.lossless)} ({_pct(q.fake_lossless, q.lossless)}) "
               f"{'stops' if q.fake_lossless == 1 else 'stop'} below {FAKE_LOSSLESS_HZ / 1000:g} kHz, where lossy encoders "
               "cut (<code>bandwidth_hz</code>).</p>"
               if q.lossless else "")
            + "</div></div>"
            + ("<h3>Defects</h3>" + defects if q.defects else "")
            + (f"<h3>Lowest scores</h3>{worst}" if q.worst else "")
            + '<p>The same numbers: <a href="quality.tsv">quality.tsv</a>.</p>')
    return _section("quality", title, question, body)


def _sec_listeners(r: Report, figs: dict[str, Figure]) -> tuple[str, str, str] | None:
    if not r.listeners:
        return None
    title, question = "Listeners", "Which tracks will sound worst to each listener with hearing loss?"
    parts = ["<p>Predicted HAAQI, 0–1: how close each track, heard through a hearing aid fitted to "
             "the listener's audiogram, comes to its clean version (1 = no audible damage). "
             "Predicted from the stored measures, without a reference; see docs/hearing.md.</p>"]
    for x in r.listeners:
        worst = _table(("file", "predicted HAAQI", "quality score"),
                       [(f'<span class="err">{_esc(Path(t.path).name)}</span>', _fmt(t.haaqi, 3),
                         _fmt(t.quality)) for t in x.worst], numeric=(1, 2))
        parts.append(f"<h3>Worst {len(x.worst)} tracks for {_esc(x.name)}</h3>"
                     f"<p>{_esc(x.hearing)} hearing (<code>{_esc(x.audiogram)}</code> dB HL at 250 Hz–8 kHz); "
                     f"{_fmt(x.haaqi.n)} tracks scored, median {_fmt(x.haaqi.median, 3)}.</p>"
                     + (worst if x.worst else "<p>No track scored yet: run <code>engine build</code>.</p>"))
    parts.append('<p>The same lists: <a href="listeners.tsv">listeners.tsv</a>; every track\'s score: '
                 '<code>engine quality --listener NAME</code>.</p>')
    return _section("listeners", title, question, "".join(parts))


def _sec_failures(r: Report, figs: dict[str, Figure]) -> tuple[str, str, str]:
    fl = r.failures
    if not fl.count:
        return _section("failures", "Failures", "Which files could not be analysed?",
                        "<p>None: every file found was analysed.</p>")
    reasons = _table(("stage", "reason", "files", "for example"),
                     [(_esc(x.stage), _esc(x.reason), _fmt(x.files), _esc(Path(x.example).name))
                      for x in fl.reasons[:40]], numeric=(2,), cls={1: "err", 3: "err"})
    more = f"<p>{len(fl.reasons) - 40} more reasons in the TSV.</p>" if len(fl.reasons) > 40 else ""
    body = (f"<p><b>{_fmt(fl.count)}</b> {'file' if fl.count == 1 else 'files'} could not be analysed; they are skipped until they change "
            f"(or <code>engine build --retry-failed</code>). Every file with its error: "
            f'<a href="failures.tsv">failures.tsv</a>.</p>' + reasons + more)
    return _section("failures", "Failures", "Which files could not be analysed?", body)


def render_html(r: Report, figs: dict[str, Figure]) -> str:
    sections = [s for s in (
        _sec_collection(r, figs), _sec_styles(r, figs), _sec_rhythm(r, figs), _sec_keys(r, figs),
        _sec_loudness(r, figs), _sec_emotion(r, figs), _sec_vocals(r, figs), _sec_quality(r, figs),
        _sec_listeners(r, figs), _sec_failures(r, figs)) if s is not None]
    nav = "".join(f'<a href="#{id_}">{_esc(title)}</a>' for id_, title, _ in sections)
    f = r.facts
    subtitle = (f"{_count(f.tracks, 'track')} · {_fmt(f.hours)} hours · store <code>{_esc(r.store)}</code> · "
                f"generated {r.generated_at:%Y-%m-%d %H:%M}")
    footer = ("Made by <code>engine report</code>. Tables: "
              + ", ".join(f'<a href="{n}">{n}</a>' for n in (
                  "summary.tsv", "styles.tsv", "genres.tsv", "keys.tsv", "formats.tsv", "failures.tsv",
                  "histograms.tsv") + (("quality.tsv",) if r.quality else ())
                  + (("listeners.tsv",) if r.listeners else ()))
              + ". Shares are over the tracks where the value is known. Models: Essentia's pre-trained "
                "models, © MTG-UPF, CC BY-NC-SA 4.0.")
    return _PAGE.substitute(title="Music collection report", subtitle=subtitle, nav=nav,
                            sections="\n".join(s for _, _, s in sections), footer=footer)


def write_report(r: Report, out: Path) -> WrittenReport:
    """Write report.html, one PNG per figure and the TSV tables into ``out`` (created if needed).

    Files of an earlier report in ``out`` are overwritten; other files are left alone.
    """
    out = Path(out).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
        figs = make_figures(r)
        fig_paths = []
        for f in figs.values():
            p = out / f"{f.name}.png"
            p.write_bytes(f.png)
            fig_paths.append(p)
        tables = write_tables(r, out)
        page = out / "report.html"
        page.write_text(render_html(r, figs), encoding="utf-8")
    except OSError as e:
        raise ReportWriteError(f"cannot write the report into {out}: {e.strerror or e}") from None
    return WrittenReport(out, page, tuple(fig_paths), tuple(tables))
