"""The report's figures: one PNG per section that has data, drawn with matplotlib.

No SQL here: every number comes from the :class:`index.report_data.Report`. matplotlib
is imported lazily and used through its object API with the Agg canvas (no pyplot, no
global backend switch), so the figures are the same whatever backend the user set.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable, Sequence

from index.report_data import PROBABILITY_CUT, SCALES, Distribution, Report
from index.schema import TONICS
from index.report_numbers import fmt, num, pct


@dataclass(frozen=True)
class Figure:
    """One drawn figure: its PNG and how the page shows it."""

    name: str        # file stem, e.g. 'tempo'
    title: str       # alt text
    png: bytes
    width_px: int    # CSS width at which the page shows it


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
    ax.set_title(f"median {num(d.median, digits)}{unit} (line), middle half {num(d.q1, digits)} to "
                 f"{num(d.q3, digits)} (shaded)", loc="right", color=WARM, fontsize=9, fontweight="normal")


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
        ax.annotate(f"{fmt(g.top_tracks)} / {fmt(g.present_tracks)}", (max(present[i], top[i]), i),
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
            ax.set_title(f"danceable (> {PROBABILITY_CUT:g}): {pct(r.rhythm.danceable_tracks, d.n, 0)}",
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
        ax.text(x, y, f"{name.split(' (')[0]}\n{pct(n, e.tracks, 0)}", ha=ha, va=va, fontsize=8,
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
    ax.set_title(f"instrumental {pct(v.instrumental, n, 0)}", loc="left", color=ACCENT)
    ax.set_title(f"vocal {pct(v.vocal, n, 0)}", loc="right", color=WARM)
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
