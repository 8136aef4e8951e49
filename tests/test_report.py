"""`engine report`: the numbers equal plain SQL over the store, the page is self-contained
and renders in a browser, and sections without their model outputs say why."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import pytest
from click.testing import CliRunner

from engine.cli import cli
from index.schema import TRACK_COLUMN_NAMES
from index.store import Store, TrackRecord

EFFNET_FIX = "engine models fetch effnet"
HAS_QUALITY = "quality" in TRACK_COLUMN_NAMES  # the audio-quality columns are in the schema
FIGURES = 8 + HAS_QUALITY  # figures of a store with every output


# -- helpers ---------------------------------------------------------------------------------
def _report(store: Path, out: Path, *args: str):
    result = CliRunner().invoke(cli, ["report", "--store", str(store), "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out / "report.html")
    return result


def _tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def _summary(out: Path) -> dict[str, str]:
    rows = _tsv(out / "summary.tsv")
    values = {r["name"]: r["value"] for r in rows}
    assert len(values) == len(rows), "summary.tsv repeats a name"
    return values


def _section(html: str, id_: str) -> str:
    m = re.search(rf'<section id="{id_}">(.*?)</section>', html, re.S)
    assert m, f"no section {id_}"
    return m.group(1)


def _close(a: str | float | None, b: float | None, rel: float = 1e-5) -> bool:
    if b is None:
        return a in ("", None)
    return abs(float(a) - b) <= rel * max(1.0, abs(b))


def _sql(store: Path, query: str, params=()):
    con = duckdb.connect(str(store / "engine.duckdb"), read_only=True)
    try:
        return con.execute(query, list(params)).fetchall()
    finally:
        con.close()


def _labels() -> list[tuple[str, str]]:
    from bench.report_speed import style_labels

    return style_labels()


def _record(i: int, rng: np.random.Generator, *, effnet: bool = True, labels=None) -> TrackRecord:
    """A plausible analysed track, written through the store's own write path."""
    keys = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
    k = [keys[rng.integers(12)] for _ in range(3)]
    s = [("major", "minor")[rng.integers(2)] for _ in range(3)]
    cols = dict(
        file_size=1000 + i, mtime_ns=i, content_hash=f"h{i}", duration=float(rng.uniform(60, 400)),
        analysed_seconds=30.0, truncated=True, sample_rate=44100, channels=2,
        codec=("mp3", "flac", "vorbis")[i % 3], container=("mp3", "flac", "ogg")[i % 3],
        bitrate=(320_000, None, 160_000)[i % 3], artist=f"Artist {i % 4}", title=f"Song {i}",
        album=f"Album {i % 2}", bpm=float(rng.uniform(60, 180)), bpm_confidence=0.5,
        key_temperley=k[0], scale_temperley=s[0], key_strength_temperley=0.6,
        key_krumhansl=k[0] if i % 2 else k[1], scale_krumhansl=s[0] if i % 2 else s[1],
        key_strength_krumhansl=0.7, key_edma=k[2], scale_edma=s[2], key_strength_edma=0.5,
        loudness_lufs=float(rng.uniform(-24, -6)), loudness_range_lu=float(rng.uniform(2, 12)),
        true_peak_dbtp=float(rng.uniform(-3, 0.5)), danceability=float(rng.uniform(0.5, 2.5)),
        arousal=float(rng.uniform(2, 8)), valence=float(rng.uniform(2, 8)), mirex_mood="Cluster1",
        has_musicnn=True, has_effnet=effnet,
    )
    if HAS_QUALITY:  # audio-quality measures, where the schema has them
        cols.update(quality=float(rng.uniform(30, 100)), clicks_per_min=float(rng.uniform(0, 60)),
                    snr_db=float(rng.uniform(20, 70)), bandwidth_hz=float(rng.uniform(15000, 22000)))
    rec = TrackRecord(path=f"/music/{i:03d}.{cols['container']}", columns=cols)
    if effnet:
        acts = rng.random(len(labels)) ** 12
        best = int(np.argmax(acts))
        cols.update(danceable=float(rng.random()), voice=float(rng.random()), mood_happy=0.7,
                    mood_sad=0.2, mood_relaxed=0.4, mood_aggressive=0.1, top_style=labels[best][1],
                    top_style_activation=float(acts[best]), genre=labels[best][0])
        rec.styles = [(g, st, float(a)) for (g, st), a in zip(labels, acts)]
    return rec


def _make_store(path: Path, n: int, *, effnet: bool = True, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    labels = _labels()
    with Store.open(path) as store:
        store.write_tracks([_record(i, rng, effnet=effnet, labels=labels) for i in range(n)])
    return path


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory) -> Path:
    """500 tracks made in bulk by the benchmark's generator (with 40 failures)."""
    from bench.report_speed import make_store

    return make_store(tmp_path_factory.mktemp("synthetic") / "store", 500)


@pytest.fixture(scope="module")
def synthetic_report(synthetic_store, tmp_path_factory) -> Path:
    """`engine report` of the synthetic store, made once (rendering takes seconds)."""
    out = tmp_path_factory.mktemp("synthetic-report") / "r"
    result = _report(synthetic_store, out)
    assert "report of 500 tracks" in result.stderr
    return out


def _tables_and_page(store: Path, out: Path, threshold: float = 0.1) -> str:
    """The report's TSVs and HTML through the Python API, without drawing figures (fast)."""
    from index.report import compute_report
    from index.report_html import render_html
    from index.report_tables import write_tables

    with Store.open_read_only(store) as s:
        rep = compute_report(s, style_threshold=threshold)
    out.mkdir(parents=True, exist_ok=True)
    write_tables(rep, out)
    return render_html(rep, {})


# -- numbers equal SQL -----------------------------------------------------------------------
def check_numbers_match_sql(store: Path, out: Path, threshold: float = 0.1) -> None:
    """Recompute several of the report's numbers with direct queries and compare."""
    s = _summary(out)
    (tracks, hours, artists, bpm_median, bpm_q1, lufs_mean, vocal, instrumental, danceable,
     louder14, peak, failures) = _sql(store, """
        SELECT count(*), sum(duration) / 3600, count(DISTINCT artist), median(bpm),
               quantile_cont(bpm, 0.25), avg(loudness_lufs),
               count(*) FILTER (WHERE voice > 0.5), count(*) FILTER (WHERE voice <= 0.5),
               count(*) FILTER (WHERE danceable > 0.5), count(*) FILTER (WHERE loudness_lufs > -14),
               count(*) FILTER (WHERE true_peak_dbtp > -1), (SELECT count(*) FROM failures)
        FROM tracks""")[0]
    assert int(s["tracks"]) == tracks
    assert _close(s["hours"], hours)
    assert int(s["artists"]) == artists
    assert _close(s["bpm_median"], bpm_median) and _close(s["bpm_q1"], bpm_q1)
    assert _close(s["loudness_lufs_mean"], lufs_mean)
    assert (int(s["vocal"]), int(s["instrumental"])) == (vocal, instrumental)
    assert int(s["danceable_tracks"]) == danceable
    assert int(s["louder_than_-14"]) == louder14
    assert int(s["true_peak_over_minus1"]) == peak
    assert int(s["failures"]) == failures

    known = " AND ".join(f"key_{p} IS NOT NULL AND scale_{p} IS NOT NULL" for p in ("temperley", "krumhansl", "edma"))
    key_tracks, all_agree, t_e = _sql(store, f"""
        SELECT count(*),
               count(*) FILTER (WHERE key_temperley = key_krumhansl AND key_krumhansl = key_edma
                                AND scale_temperley = scale_krumhansl AND scale_krumhansl = scale_edma),
               count(*) FILTER (WHERE key_temperley = key_edma AND scale_temperley = scale_edma)
        FROM tracks WHERE {known}""")[0]
    assert (int(s["all_agree"]), int(s["agree_temperley_edma"])) == (all_agree, t_e)
    assert int(s["tracks_with_keys"]) == key_tracks
    assert _close(s["all_agree_share"], all_agree / key_tracks if key_tracks else None)

    keys = {(r["tonic"], r["scale"]): r for r in _tsv(out / "keys.tsv")}
    for tonic, scale, n in _sql(store, "SELECT key_edma, scale_edma, count(*) FROM tracks "
                                       "WHERE key_edma IS NOT NULL GROUP BY ALL"):
        assert int(keys[(tonic, scale)]["edma"]) == n
    assert sum(int(r["krumhansl"]) for r in keys.values()) == _sql(
        store, "SELECT count(*) FROM tracks WHERE key_krumhansl IS NOT NULL AND scale_krumhansl IS NOT NULL")[0][0]

    styles = {(r["genre"], r["style"]): r for r in _tsv(out / "styles.tsv")}
    expect = _sql(store, """
        SELECT genre, style, count(*) FILTER (WHERE activation >= ?), avg(activation),
               (SELECT count(*) FROM tracks t WHERE t.genre = s.genre AND t.top_style = s.style)
        FROM styles s GROUP BY genre, style""", [threshold])
    assert len(styles) == len(expect)
    for genre, style, present, mean, top in expect:
        row = styles[(genre, style)]
        assert int(row["present_tracks"]) == present, (genre, style)
        assert int(row["top_tracks"]) == top, (genre, style)
        assert _close(row["mean_activation"], mean), (genre, style)
    genres = {r["genre"]: r for r in _tsv(out / "genres.tsv")}
    for genre, top, present in _sql(store, """
            SELECT g.genre, (SELECT count(*) FROM tracks t WHERE t.genre = g.genre),
                   count(DISTINCT track_id) FILTER (WHERE activation >= ?)
            FROM styles g GROUP BY g.genre""", [threshold]):
        assert (int(genres[genre]["top_tracks"]), int(genres[genre]["present_tracks"])) == (top, present)

    formats = {(r["codec"], r["container"]): int(r["tracks"]) for r in _tsv(out / "formats.tsv")}
    assert formats == {(c or "(unknown)", k or "(unknown)"): n for c, k, n in _sql(
        store, "SELECT codec, container, count(*) FROM tracks GROUP BY ALL")}

    bins = [r for r in _tsv(out / "histograms.tsv") if r["column"] == "bpm"]
    for r in bins[1:-1]:  # the end bins also hold values beyond the range
        n = _sql(store, "SELECT count(*) FROM tracks WHERE bpm >= ? AND bpm < ?",
                 [float(r["bin_lo"]), float(r["bin_hi"])])[0][0]
        assert int(r["tracks"]) == n, r
    assert sum(int(r["tracks"]) for r in bins) == _sql(store, "SELECT count(bpm) FROM tracks")[0][0]


def test_report_numbers_equal_sql_on_a_synthetic_store(synthetic_store, synthetic_report):
    check_numbers_match_sql(synthetic_store, synthetic_report)


def test_threshold_changes_what_counts_as_present(synthetic_store, tmp_path):
    html = _tables_and_page(synthetic_store, tmp_path / "r", threshold=0.3)
    check_numbers_match_sql(synthetic_store, tmp_path / "r", threshold=0.3)
    assert _summary(tmp_path / "r")["threshold"] == "0.3"
    assert "at least <b>0.3</b>" in html


def test_dataclasses_hold_the_same_numbers_as_the_tsv(synthetic_store, synthetic_report):
    from index.report import compute_report

    with Store.open_read_only(synthetic_store) as store:
        rep = compute_report(store)
    assert rep.facts.tracks == 500 and rep.styles.tracks == 500 and len(rep.styles.rows) == 400
    assert sum(g.top_tracks for g in rep.styles.genres) == 500
    assert sum(rep.rhythm.bpm.counts) == rep.rhythm.bpm.n == 500
    assert sum(sum(row) for row in rep.emotion.grid) == rep.emotion.tracks == 500
    assert sum(n for _, n in rep.emotion.quadrants) == 500
    assert rep.failures.count == 40 and sum(r.files for r in rep.failures.reasons) == 40
    assert all("<file>" in r.reason or "timed out" in r.reason for r in rep.failures.reasons)
    assert (rep.quality is not None) == HAS_QUALITY
    s = _summary(synthetic_report)
    assert int(s["all_agree"]) == rep.keys.all_agree and _close(s["bpm_median"], rep.rhythm.bpm.median)


# -- the page ----------------------------------------------------------------------------------
def test_page_is_self_contained_with_every_section(synthetic_report):
    out = synthetic_report
    html = (out / "report.html").read_text()
    for id_ in ("collection", "styles", "rhythm", "keys", "loudness", "emotion", "vocals", "failures"):
        _section(html, id_)
    assert ('id="quality"' in html) == HAS_QUALITY
    assert "<script" not in html and "<link" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html) and "url(" not in html
    imgs = re.findall(r'<img src="([^"]+)"', html)
    assert imgs and all(src.startswith("data:image/png;base64,") for src in imgs)
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(imgs) == len(pngs) == FIGURES and "styles.png" in pngs and "emotion.png" in pngs
    assert {p.name for p in out.glob("*.tsv")} == {
        "summary.tsv", "styles.tsv", "genres.tsv", "keys.tsv", "formats.tsv", "failures.tsv", "histograms.tsv",
    } | ({"quality.tsv"} if HAS_QUALITY else set())
    assert len(_tsv(out / "failures.tsv")) == 40
    assert "40</b> files could not be analysed" in _section(html, "failures")


def test_renderers_ask_the_store_nothing():
    # Tables, figures and the page draw from the Report alone: none of them loads the store or DuckDB.
    from tests.freshimport import loaded_by

    renderers = "index.report_tables, index.report_figures, index.report_html, index.report_render"
    assert loaded_by(renderers, ("duckdb", "index.store", "index.report")) == []


def test_text_from_the_store_is_escaped(tmp_path):
    store = _make_store(tmp_path / "s", 2)
    with Store.open(store) as s:
        s.con.execute("UPDATE tracks SET codec = '<img src=x onerror=alert(1)>' WHERE track_id = 1")
        s.con.execute("INSERT INTO failures (path, stage, error, \"at\", file_size, mtime_ns) VALUES ('/m/<b>.mp3', 'decode', 'bad <b> & \"x\"', now(), 0, 0)")
    html = _tables_and_page(store, tmp_path / "r")
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "bad &lt;b&gt; &amp; &quot;x&quot;" in html


def test_one_track_store(tmp_path):
    store = _make_store(tmp_path / "s", 1)
    out = tmp_path / "r"
    _report(store, out)
    check_numbers_match_sql(store, out)
    s = _summary(out)
    assert s["tracks"] == "1" and int(s["vocal"]) + int(s["instrumental"]) == 1
    html = (out / "report.html").read_text()
    assert "1 track ·" in html and not re.search(r"\b1 tracks", html)
    assert len(list(out.glob("*.png"))) == FIGURES
    assert len(_tsv(out / "styles.tsv")) == 400
    assert sum(int(r["top_tracks"]) for r in _tsv(out / "styles.tsv")) == 1


def test_store_without_effnet_says_why(tmp_path):
    store = _make_store(tmp_path / "s", 6, effnet=False)
    out = tmp_path / "r"
    _report(store, out)
    html = (out / "report.html").read_text()
    for id_ in ("styles", "vocals"):
        sec = _section(html, id_)
        assert 'class="missing"' in sec and EFFNET_FIX in sec and "backbone" in sec and "<img" not in sec
    rhythm = _section(html, "rhythm")
    assert EFFNET_FIX in rhythm and "danceable" in rhythm and rhythm.count("<img") == 2  # tempo, DSP danceability
    assert "arousal" in _section(html, "emotion") and "<img" in _section(html, "emotion")
    assert not (out / "styles.png").exists() and not (out / "voice.png").exists()
    assert _tsv(out / "styles.tsv") == [] and _tsv(out / "genres.tsv") == []
    s = _summary(out)
    assert s["with_effnet"] == "0" and s["voice_n"] == "0" and s["vocal_share"] == ""
    check_numbers_match_sql(store, out)


def test_some_tracks_without_effnet_are_noted(tmp_path):
    rng, labels = np.random.default_rng(1), _labels()
    with Store.open(tmp_path / "s") as s:
        s.write_tracks([_record(i, rng, effnet=i < 3, labels=labels) for i in range(5)])
    html = _tables_and_page(tmp_path / "s", tmp_path / "r")
    assert "Only 3 of 5 tracks have EffNet outputs" in _section(html, "styles")


def test_missing_effnet_head_names_that_head(tmp_path):
    store = _make_store(tmp_path / "s", 3)
    with Store.open(store) as s:  # backbone present, but no genre or voice head at build time
        s.con.execute("DELETE FROM styles")
        s.con.execute("UPDATE tracks SET voice = NULL, top_style = NULL, genre = NULL")
    html = _tables_and_page(store, tmp_path / "r")
    assert "engine models fetch genre_discogs400" in _section(html, "styles")
    assert "engine models fetch voice_instrumental" in _section(html, "vocals")
    assert EFFNET_FIX + "<" not in html  # not the backbone message


def test_empty_store(tmp_path):
    with Store.open(tmp_path / "s"):
        pass
    _report(tmp_path / "s", tmp_path / "r")
    html = (tmp_path / "r" / "report.html").read_text()
    assert "holds no tracks yet" in html and "<img" not in html
    assert _summary(tmp_path / "r")["tracks"] == "0"


_QUALITY_DDL = {  # the audio-quality columns (index.schema), added here if the schema lacks them
    "quality": "DOUBLE", "clicks_per_min": "DOUBLE", "clipping_share": "DOUBLE", "hum_db": "DOUBLE",
    "dropouts": "INTEGER", "snr_db": "DOUBLE", "bandwidth_hz": "DOUBLE", "dc_offset": "DOUBLE",
}


def test_quality_section_when_the_columns_exist(synthetic_store, tmp_path):
    store = tmp_path / "s"
    shutil.copytree(synthetic_store, store)
    with Store.open(store) as s:
        for name, sql_type in _QUALITY_DDL.items():
            s.con.execute(f"ALTER TABLE tracks ADD COLUMN IF NOT EXISTS {name} {sql_type}")
        s.con.execute("""UPDATE tracks SET quality = (track_id * 37 % 101)::DOUBLE,
            clicks_per_min = (track_id % 50)::DOUBLE, clipping_share = (track_id % 9) / 100,
            hum_db = (track_id % 20)::DOUBLE, dropouts = (track_id % 30 = 0)::INTEGER,
            snr_db = (track_id % 70)::DOUBLE, dc_offset = 0.0,
            bandwidth_hz = CASE WHEN track_id % 4 = 0 THEN 16000 ELSE 21000 END""")
    html = _tables_and_page(store, tmp_path / "r")
    sec = _section(html, "quality")
    assert "Lowest scores" in sec and "mains hum" in sec
    # independent counts, thresholds as engine.quality documents them ("p = 0 at")
    clicks, snr, hum, drop, clip, below50, fake, lossless = _sql(store, """
        SELECT count(*) FILTER (WHERE clicks_per_min > 30), count(*) FILTER (WHERE snr_db < 30),
               count(*) FILTER (WHERE hum_db > 12), count(*) FILTER (WHERE dropouts > 0),
               count(*) FILTER (WHERE clipping_share > 0.005), count(*) FILTER (WHERE quality < 50),
               count(*) FILTER (WHERE codec = 'flac' AND bandwidth_hz < 19000),
               count(*) FILTER (WHERE codec = 'flac' AND bandwidth_hz IS NOT NULL)
        FROM tracks""")[0]
    rows = {(r["measure"], r["condition"]): r for r in _tsv(tmp_path / "r" / "quality.tsv")}
    assert int(rows[("clicks_per_min", "> 30")]["tracks"]) == clicks
    assert int(rows[("snr_db", "< 30")]["tracks"]) == snr
    assert int(rows[("hum_db", "> 12")]["tracks"]) == hum
    assert int(rows[("dropouts", "> 0")]["tracks"]) == drop
    assert int(rows[("clipping_share", "> 0.005")]["tracks"]) == clip
    assert int(rows[("quality", "0–50")]["tracks"]) == below50
    assert (int(rows[("lossless_cut_below_19khz", "< 19000")]["tracks"]), int(
        rows[("lossless_cut_below_19khz", "< 19000")]["tracks_measured"])) == (fake, lossless)
    s = _summary(tmp_path / "r")
    assert _close(s["quality_median"], _sql(store, "SELECT median(quality) FROM tracks")[0][0])


def test_no_quality_section_in_a_store_without_the_columns(tmp_path):
    store = _make_store(tmp_path / "s", 3)
    con = duckdb.connect(str(store / "engine.duckdb"))  # an older store: no quality columns
    for (name,) in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'tracks' "
                               "AND column_name IN (SELECT unnest(?))", [list(_QUALITY_DDL) + ["hum_hz",
                               "noise_floor_dbfs", "silence_start_s", "silence_end_s"]]).fetchall():
        con.execute(f"ALTER TABLE tracks DROP COLUMN {name}")
    con.close()
    out = tmp_path / "r"
    html = _tables_and_page(store, out)
    assert 'id="quality"' not in html and not (out / "quality.tsv").exists()
    assert "quality_median" not in _summary(out)


def test_user_tags_section_shows_each_tag_as_tag_list_does(tmp_path):
    from index import usertags
    from index.report_data import TOP_FOR_USER_TAG
    from tests.listdata import make_list_store

    store = tmp_path / "s"
    x = make_list_store(store)["x"]
    near = (np.argsort(-(x @ x[0]))[:10] + 1).tolist()  # a tag that lives in the geometry
    with Store.open(store) as s:
        usertags.save(s, usertags.train(s, "near one", near, [300, 301]))
        usertags.save(s, usertags.train(s, "one", [5]))  # one positive: nothing to cross-validate
        probes = {p.tag: p for p in usertags.load_all(s)}
    out = tmp_path / "r"
    html = _tables_and_page(store, out)
    section = _section(html, "user-tags")
    rows = _tsv(out / "user_tags.tsv")
    for tag, probe in probes.items():
        scored, above = _sql(store, "SELECT count(*), count(*) FILTER (WHERE score > 0.5) FROM user_tags "
                                    "WHERE tag = ?", [tag])[0]
        top = [t for (t,) in _sql(store, "SELECT track_id FROM user_tags WHERE tag = ? ORDER BY score DESC, "
                                         "track_id LIMIT ?", [tag, TOP_FOR_USER_TAG])]
        mine = [r for r in rows if r["tag"] == tag]
        assert [int(r["track_id"]) for r in mine] == top and len(top) == min(scored, TOP_FOR_USER_TAG)
        assert [int(r["rank"]) for r in mine] == list(range(1, len(top) + 1))
        for r in mine:
            assert (r["space"], int(r["positives"]), int(r["negatives"]), int(r["scored"]), int(r["above_half"])) \
                == (probe.chosen.name, len(probe.positives), len(probe.negatives), scored, above)
            assert _close(r["cv_auc"], probe.chosen.auc)
        assert f"{above} ({100 * above / scored:.1f}\u00a0%)" in section
    assert scored > 0 and 0 < int(next(r for r in rows if r["tag"] == "near one")["above_half"]) < scored
    assert probes["one"].chosen.auc is None and "only 1 positive example" in section
    assert f"{probes['near one'].chosen.auc:.2f}" in section
    assert "10 positive, 2 negative" in section
    assert html.count('id="user-tags"') == 1 and "user_tags.tsv" in html


def test_no_user_tags_section_without_tags(tmp_path):
    from tests.listdata import make_list_store

    make_list_store(tmp_path / "s")
    out = tmp_path / "r"
    html = _tables_and_page(tmp_path / "s", out)
    assert 'id="user-tags"' not in html and "user_tags.tsv" not in html
    assert not (out / "user_tags.tsv").exists()


# -- errors ----------------------------------------------------------------------------------------
def test_missing_store_is_one_line_that_says_what_to_do(tmp_path):
    result = CliRunner().invoke(cli, ["report", "--store", str(tmp_path / "nope"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "engine build" in result.stderr


def test_unwritable_out_is_one_line(tmp_path):
    store = _make_store(tmp_path / "s", 1)
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(cli, ["report", "--store", str(store), "--out", str(tmp_path / "file" / "r")])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "cannot write the report" in result.stderr


def test_threshold_out_of_range_is_refused(tmp_path):
    result = CliRunner().invoke(cli, ["report", "--store", str(tmp_path), "--threshold", "1.5"])
    assert result.exit_code == 2 and "threshold" in result.stderr


def test_help_has_an_example():
    result = CliRunner().invoke(cli, ["report", "--help"])
    assert result.exit_code == 0 and "Example: engine report" in result.stdout


# -- the real corpus -----------------------------------------------------------------------------
@pytest.mark.slow
def test_full_report_on_the_corpus(corpus_store, tmp_path):
    out = tmp_path / "r"
    _report(corpus_store, out)
    check_numbers_match_sql(corpus_store, out)
    html = (out / "report.html").read_text()
    s = _summary(out)
    assert int(s["tracks"]) == 61 and int(s["with_effnet"]) > 0
    assert int(s["tracks_with_styles"]) == int(s["with_effnet"])
    assert len(_tsv(out / "styles.tsv")) == 400
    assert len(list(out.glob("*.png"))) == FIGURES
    assert 'class="missing"' not in html


# -- in a browser ----------------------------------------------------------------------------------
_CHECK = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  __errors.push(t && t !== window && (t.src || t.href) ? 'failed to load ' + String(t.src || t.href).slice(0, 60)
                                                      : 'error: ' + e.message);
}, true);
window.addEventListener('unhandledrejection', function (e) { __errors.push('rejection: ' + e.reason); });
document.addEventListener('securitypolicyviolation', function (e) {
  __errors.push('CSP blocked ' + String(e.blockedURI).slice(0, 60) + ' (' + e.violatedDirective + ')');
});
window.addEventListener('load', function () {
  var images = Array.prototype.map.call(document.images, function (i) {
    var r = i.getBoundingClientRect(), cs = getComputedStyle(i);
    return {alt: i.alt, naturalWidth: i.naturalWidth, width: r.width, height: r.height,
            shown: cs.display !== 'none' && cs.visibility !== 'hidden' && cs.opacity !== '0'};
  });
  var pre = document.createElement('pre');
  pre.id = '__check';
  pre.textContent = JSON.stringify({errors: __errors, images: images,
                                    height: document.documentElement.scrollHeight});
  document.body.appendChild(pre);
});
</script>"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium is not installed; install it with `apt-get install -y chromium` "
                "(CI installs it with the README's install command)")


def _browse(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--hide-scrollbars", "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}",
           *extra, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_page_renders_in_chromium_without_errors(synthetic_store, tmp_path):
    out = tmp_path / "r"
    _report(synthetic_store, out)
    page = (out / "report.html").read_text()
    # The collector goes before the page's Content-Security-Policy, so the policy
    # (no scripts, images from data: only) stays in force for everything else.
    checked = out / "checked.html"
    checked.write_text(page.replace("<head>", "<head>\n" + _CHECK, 1), encoding="utf-8")
    run = _browse(checked, tmp_path / "profile", "--dump-dom")
    assert run.returncode == 0, run.stderr[-2000:]
    m = re.search(r'<pre id="__check">(.*?)</pre>', run.stdout, re.S)
    assert m, "the page never finished loading:\n" + run.stderr[-2000:]
    import html as _html

    check = json.loads(_html.unescape(m.group(1)))
    assert check["errors"] == []
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], "\n".join(console)
    figures = len(list(out.glob("*.png")))
    assert len(check["images"]) == figures == FIGURES
    for img in check["images"]:
        assert img["naturalWidth"] > 0 and img["width"] > 100 and img["height"] > 50 and img["shown"], img

    shot = tmp_path / "report-screenshot.png"
    run = _browse(out / "report.html", tmp_path / "profile2", f"--screenshot={shot}",
                  f"--window-size=1280,{min(int(check['height']) + 20, 16000)}")
    assert run.returncode == 0 and shot.is_file() and shot.stat().st_size > 50_000, run.stderr[-2000:]
    keep = os.environ.get("ENGINE_TEST_ARTIFACTS")  # e.g. a folder CI uploads
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shot = Path(shutil.copy(shot, Path(keep) / shot.name))
    print(f"screenshot of the report: {shot}")


@pytest.mark.slow
def test_report_of_a_real_build_without_effnet(corpus, tmp_path):
    """One real file through `engine build` with the shared models (no EffNet backbone there)."""
    from engine.build import BuildOptions, build

    music = tmp_path / "music"
    music.mkdir()
    shutil.copy(sorted((corpus / "rendered").glob("*.ogg"))[0], music)
    build(music, tmp_path / "s", BuildOptions(max_seconds=15, progress=False, fetch=False), echo=lambda s: None)
    out = tmp_path / "r"
    _report(tmp_path / "s", out)
    check_numbers_match_sql(tmp_path / "s", out)
    html = (out / "report.html").read_text()
    assert _summary(out)["tracks"] == "1"
    assert EFFNET_FIX in _section(html, "styles") and EFFNET_FIX in _section(html, "vocals")
    assert (out / "tempo.png").is_file() and (out / "keys.png").is_file()
