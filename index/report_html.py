"""The report as one self-contained HTML page: a section per question, figures inline.

No SQL here: every number comes from the :class:`index.report_data.Report`. The page's
frame and CSS are package data (``index/report_page.html``, a :class:`string.Template`);
figures are embedded as base64 PNG and the Content-Security-Policy forbids loading
anything else, so the page opens offline in any browser.
"""

from __future__ import annotations

import base64
import html
import re
from functools import cache
from importlib import resources
from pathlib import Path
from string import Template
from typing import Iterable, Sequence

from index.report_data import FAKE_LOSSLESS_HZ, PROBABILITY_CUT, Distribution, Report
from index.report_figures import Figure
from index.report_numbers import count, fmt, pct, smart


@cache
def _page() -> Template:
    """The page's frame: $title, $subtitle, $nav, $sections and $footer in the HTML and CSS."""
    return Template(resources.files("index").joinpath("report_page.html").read_text(encoding="utf-8"))


def _esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def _prose(text: str) -> str:
    """Escape, then show `backticked` commands as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _esc(text))


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
    return (f"median <b>{fmt(d.median, digits)}{u}</b>, middle half {fmt(d.q1, digits)} to {fmt(d.q3, digits)}{u}, "
            f"range {fmt(d.minimum, digits)} to {fmt(d.maximum, digits)}{u} over {count(d.n, 'track')}"
            + (f" ({fmt(d.missing)} without a value)" if d.missing else ""))


def _section(id_: str, title: str, question: str, body: str) -> tuple[str, str, str]:
    return id_, title, (f'<section id="{id_}"><h2>{_esc(title)}</h2><p class="q">{_esc(question)}</p>\n'
                        f"{body}\n</section>")


def _sec_collection(r: Report, figs: dict[str, Figure]) -> tuple[str, str, str]:
    f = r.facts
    codecs: dict[str, int] = {}
    for x in f.formats:
        codecs[x.codec] = codecs.get(x.codec, 0) + x.tracks
    cards = _cards([
        ("tracks", fmt(f.tracks)), ("hours of music", fmt(f.hours)), ("artists", fmt(f.artists)),
        ("albums", fmt(f.albums)), ("codecs", fmt(len(codecs))),
        ("with MusiCNN outputs", pct(f.with_musicnn, f.tracks, 0)),
        ("with EffNet outputs", pct(f.with_effnet, f.tracks, 0)),
    ])
    formats = _table(("codec", "container", "tracks", "share", "hours", "mean bit rate"),
                     [(_esc(x.codec), _esc(x.container).replace(",", ",\u200b"), fmt(x.tracks), pct(x.tracks, f.tracks),
                       fmt(x.hours, 2), f"{fmt(x.mean_bitrate_kbps, 0)} kbit/s" if x.mean_bitrate_kbps else "–")
                      for x in f.formats], numeric=(2, 3, 4, 5))
    rates = _table(("sample rate", "tracks"), [(f"{fmt(hz / 1000, 1)} kHz" if hz else "unknown", fmt(n))
                                               for hz, n in f.sample_rates], numeric=(1,))
    chans = _table(("channels", "tracks"), [({1: "mono", 2: "stereo"}.get(c, fmt(c) if c else "unknown"), fmt(n))
                                            for c, n in f.channels], numeric=(1,))
    extra = []
    if f.truncated:
        extra.append(f"{count(f.truncated, 'long track')} analysed from their start only "
                     f"({fmt(f.analysed_hours)} of {fmt(f.hours)} hours analysed).")
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
        [(i + 1, _esc(x.style), _esc(x.genre), f"{fmt(x.top_tracks)} ({pct(x.top_tracks, s.tracks)})",
          f"{fmt(x.present_tracks)} ({pct(x.present_tracks, s.tracks)})", f"{x.mean_activation:.3f}")
         for i, x in enumerate(top)], numeric=(0, 3, 4, 5))
    spt = s.styles_per_track
    body = (
        _note(s.note)
        + f"<p>Discogs-EffNet rates each track on 400 Discogs styles grouped in 15 parent genres. "
          f"The <b>top style</b> is a track's most activated style; a style is <b>present</b> when its "
          f"activation is at least <b>{s.threshold:g}</b>. Tracks with style outputs: {fmt(s.tracks)}; "
          f"styles present per track: median {fmt(spt.median, 0)}, mean {fmt(spt.mean)}.</p>"
        + "<h3>By parent genre</h3>"
        + _fig_html(figs, "genres", "Dark bar: tracks whose top style belongs to the genre. Light bar: tracks "
                    "with at least one of its styles present. Numbers: top / present. All genres: "
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
        body += (f"<p>EffNet danceability head: <b>{pct(rh.danceable_tracks, rh.danceable.n)}</b> of "
                 f"{count(rh.danceable.n, 'track')} are danceable (probability &gt; {PROBABILITY_CUT:g}).</p>")
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
                      [(f"<b>{_esc(p)}</b>", fmt(totals[i]), pct(minor[i], totals[i], 0), _esc(top[i]),
                        fmt(k.strength[i].median, 2)) for i, p in enumerate(k.profiles)], numeric=(1, 2, 4))
    agree = _table(("profiles", "agree on", "share"),
                   [("all three", fmt(k.all_agree), pct(k.all_agree, k.tracks))]
                   + [(f"{_esc(a)} = {_esc(b)}", fmt(n), pct(n, k.tracks)) for a, b, n in k.pairwise],
                   numeric=(1, 2))
    body = (_fig_html(figs, "keys", "Tracks per key (tonic × scale) for each of the three key profiles. "
                      'Counts with Camelot codes: <a href="keys.tsv">keys.tsv</a>.')
            + "<h3>Per profile</h3>" + profiles + "<h3>Agreement</h3>" + agree
            + f"<p>Over the {count(k.tracks, 'track')} with a key from all three profiles; agreeing means the "
              "same tonic and scale. Temperley is the most accurate on the test corpus (0.80 exact), "
              "EDMA is tuned for electronic music.</p>")
    return _section("keys", "Keys and scales", "Which keys and scales?", body)


def _sec_loudness(r: Report, figs: dict[str, Figure]) -> tuple[str, str, str]:
    lo = r.loudness
    if not lo.lufs.n:
        return _section("loudness", "Loudness", "How loud are the masters?", "<p>No track has a loudness value.</p>")
    labels = dict(lo.references)
    refs = _table(("target (LUFS)", "tracks louder than it", "share"),
                  [(_esc(labels[ref]).replace("-", "\u2212", 1), fmt(n), pct(n, lo.lufs.n))
                   for ref, n in lo.louder_than], numeric=(1, 2))
    body = (_fig_html(figs, "loudness", "Lines: common loudness targets. A streaming service turns tracks "
                      "louder than its target down, so heavily limited masters gain nothing there.")
            + f"<p>Integrated loudness: {_stats(lo.lufs, 'LUFS')}.<br>Loudness range: {_stats(lo.range_lu, 'LU')}.<br>"
              f"True peak above −1 dBTP (may clip once encoded lossily): <b>{count(lo.peak_over_minus1, 'track')}</b> "
              f"({pct(lo.peak_over_minus1, lo.true_peak.n)}).</p>" + refs)
    return _section("loudness", "Loudness", "How loud are the masters?", body)


def _sec_emotion(r: Report, figs: dict[str, Figure]) -> tuple[str, str, str]:
    e = r.emotion
    if e.missing:
        body = _missing(e.missing)
    else:
        quads = _table(("quadrant (split at 5)", "tracks", "share"),
                       [(_esc(n), fmt(c), pct(c, e.tracks)) for n, c in e.quadrants], numeric=(1, 2))
        body = (f'<div class="cols"><div>{_fig_html(figs, "emotion")}</div><div>'
                f"<p>Arousal and valence from the emoMusic head on MusiCNN, on 1–9 scales "
                f"(cells {e.width:g} × {e.width:g}; {count(e.tracks, 'track')}).</p>{quads}"
                f"<p>Arousal: {_stats(e.arousal, '', 2)}.<br>Valence: {_stats(e.valence, '', 2)}.</p></div></div>")
    moods = [(m, n, known) for m, n, known in e.moods if known]
    if moods:
        body += "<h3>Moods (EffNet heads)</h3>" + _table(
            ("mood", f"tracks with probability > {PROBABILITY_CUT:g}", "share"),
            [(_esc(m), fmt(n), pct(n, known)) for m, n, known in moods], numeric=(1, 2))
    return _section("emotion", "Emotion", "What mood is the music in?", body)


def _sec_vocals(r: Report, figs: dict[str, Figure]) -> tuple[str, str, str]:
    v = r.vocals
    if v.missing:
        return _section("vocals", "Vocal or instrumental", "How much of it has vocals?", _missing(v.missing))
    n = v.vocal + v.instrumental
    body = (_cards([("vocal", pct(v.vocal, n, 0)), ("instrumental", pct(v.instrumental, n, 0)),
                    ("vocal tracks", fmt(v.vocal)), ("instrumental tracks", fmt(v.instrumental))])
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
    bands = _table(("score", "tracks", "share"), [(b, fmt(n), pct(n, q.score.n)) for b, n in q.bands],
                   numeric=(1, 2))
    defects = _table(
        ("defect", "measure", "costs score when", "tracks", "share", "median"),
        [(_esc(_DEFECT_NAMES.get(d.column, d.column)), f"<code>{_esc(d.column)}</code>",
          f"{'&gt;' if d.worse_above else '&lt;'} {_esc(f'{d.onset:g}')}", fmt(d.tracks), pct(d.tracks, d.known),
          smart(d.median)) for d in q.defects],
        numeric=(3, 4, 5))
    worst = _table(("file", "score", "defects past their onset"),
                   [(f'<span class="err">{_esc(Path(t.path).name)}</span>', fmt(t.score),
                     _esc(", ".join(_DEFECT_SHORT.get(d, d) for d in t.defects.split(", ") if d) or "–"))
                    for t in q.worst], numeric=(1,))
    body = (_fig_html(figs, "quality", "The score multiplies one penalty per defect; 100 = no defect found.")
            + f"<p>Quality score: {_stats(q.score, '', 1)}.</p>"
            + '<div class="cols"><div><h3>Score ranges</h3>' + bands + "</div><div>"
            + (f"<h3>Lossless files made from lossy ones?</h3><p><b>{count(q.fake_lossless, 'lossless file')}</b> "
               f"of {fmt(q.lossless)} ({pct(q.fake_lossless, q.lossless)}) "
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
                       [(f'<span class="err">{_esc(Path(t.path).name)}</span>', fmt(t.haaqi, 3),
                         fmt(t.quality)) for t in x.worst], numeric=(1, 2))
        parts.append(f"<h3>Worst {len(x.worst)} tracks for {_esc(x.name)}</h3>"
                     f"<p>{_esc(x.hearing)} hearing (<code>{_esc(x.audiogram)}</code> dB HL at 250 Hz–8 kHz); "
                     f"{fmt(x.haaqi.n)} tracks scored, median {fmt(x.haaqi.median, 3)}.</p>"
                     + (worst if x.worst else "<p>No track scored yet: run <code>engine build</code>.</p>"))
    parts.append('<p>The same lists: <a href="listeners.tsv">listeners.tsv</a>; every track\'s score: '
                 '<code>engine quality --listener NAME</code>.</p>')
    return _section("listeners", title, question, "".join(parts))


def _sec_user_tags(r: Report, figs: dict[str, Figure]) -> tuple[str, str, str] | None:
    if not r.user_tags:
        return None
    title, question = "Your tags", "What do the tags you trained from examples find in the collection?"
    tags = [x.summary for x in r.user_tags]
    table = _table(
        ("tag", "space", "examples", "CV AUC", "CV balanced accuracy", "tracks scored", "score > 0.5"),
        [(f"<b>{_esc(s.tag)}</b>", _esc(s.space), f"{fmt(s.positives)} positive, {fmt(s.negatives)} negative",
          fmt(s.cv_auc, 2), fmt(s.cv_accuracy, 2),
          fmt(s.scored), f"{fmt(s.above_half)} ({pct(s.above_half, s.scored)})") for s in tags],
        numeric=(3, 4, 5, 6))
    parts = ["<p>Tags you trained with <code>engine tag train</code>: a linear probe on the stored embeddings "
             "of the space cross-validation chose (CV: stratified k-fold over the examples and random negatives; "
             "– where one positive leaves nothing to cross-validate). See docs/tags.md.</p>", table]
    for x in r.user_tags:
        s = x.summary
        top = _table(("#", "file", "score", "example"),
                     [(i, f'<span class="err">{_esc(Path(t.path).name)}</span>', fmt(t.score, 3), _esc(t.example))
                      for i, t in enumerate(x.top, 1)], numeric=(0, 2))
        parts.append(f"<h3>Top {len(x.top)} for {_esc(s.tag)}</h3>"
                     + "".join(_note(f"{s.tag}: {w}") for w in x.warnings)
                     + (top if x.top else "<p>No track scored yet: run <code>engine build</code>.</p>"))
    parts.append('<p>The same lists: <a href="user_tags.tsv">user_tags.tsv</a>; every track\'s score: '
                 "<code>engine tag show NAME</code>.</p>")
    return _section("user-tags", title, question, "".join(parts))


def _sec_failures(r: Report, figs: dict[str, Figure]) -> tuple[str, str, str]:
    fl = r.failures
    if not fl.count:
        return _section("failures", "Failures", "Which files could not be analysed?",
                        "<p>None: every file found was analysed.</p>")
    reasons = _table(("stage", "reason", "files", "for example"),
                     [(_esc(x.stage), _esc(x.reason), fmt(x.files), _esc(Path(x.example).name))
                      for x in fl.reasons[:40]], numeric=(2,), cls={1: "err", 3: "err"})
    more = f"<p>{len(fl.reasons) - 40} more reasons in the TSV.</p>" if len(fl.reasons) > 40 else ""
    body = (f"<p><b>{fmt(fl.count)}</b> {'file' if fl.count == 1 else 'files'} could not be analysed; they are skipped until they change "
            f"(or <code>engine build --retry-failed</code>). Every file with its error: "
            f'<a href="failures.tsv">failures.tsv</a>.</p>' + reasons + more)
    return _section("failures", "Failures", "Which files could not be analysed?", body)


def render_html(r: Report, figs: dict[str, Figure]) -> str:
    sections = [s for s in (
        _sec_collection(r, figs), _sec_styles(r, figs), _sec_rhythm(r, figs), _sec_keys(r, figs),
        _sec_loudness(r, figs), _sec_emotion(r, figs), _sec_vocals(r, figs), _sec_quality(r, figs),
        _sec_listeners(r, figs), _sec_user_tags(r, figs), _sec_failures(r, figs)) if s is not None]
    nav = "".join(f'<a href="#{id_}">{_esc(title)}</a>' for id_, title, _ in sections)
    f = r.facts
    subtitle = (f"{count(f.tracks, 'track')} · {fmt(f.hours)} hours · store <code>{_esc(r.store)}</code> · "
                f"generated {r.generated_at:%Y-%m-%d %H:%M}")
    footer = ("Made by <code>engine report</code>. Tables: "
              + ", ".join(f'<a href="{n}">{n}</a>' for n in (
                  "summary.tsv", "styles.tsv", "genres.tsv", "keys.tsv", "formats.tsv", "failures.tsv",
                  "histograms.tsv") + (("quality.tsv",) if r.quality else ())
                  + (("listeners.tsv",) if r.listeners else ()) + (("user_tags.tsv",) if r.user_tags else ()))
              + ". Shares are over the tracks where the value is known. Models: Essentia's pre-trained "
                "models, © MTG-UPF, CC BY-NC-SA 4.0.")
    return _page().substitute(title="Music collection report", subtitle=subtitle, nav=nav,
                            sections="\n".join(s for _, _, s in sections), footer=footer)
