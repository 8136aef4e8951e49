"""The user's own tags (index.usertags, `engine tag`).

Real audio: the session's corpus store (51 library recordings, 10 rendered chorales) and a
small build that grows, to show later builds score new tracks. The synthetic list store
(clustered vectors) checks the error paths and the export/import round trip quickly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from engine.cli import cli
from index import usertags
from index.store import Store
from tests.listdata import make_list_store


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Share of (positive, negative) pairs ranked the right way round (ties half)."""
    d = pos[:, None] - neg[None, :]
    return float(((d > 0) + 0.5 * (d == 0)).mean())


@pytest.fixture()
def synthetic(tmp_path):
    data = make_list_store(tmp_path / "store")
    data["dir"] = tmp_path / "store"
    # Clusters are not stored: recover them from the vectors (the nearest planted centre).
    return data


def _cluster(data) -> np.ndarray:
    """Track ids (1-based) of the artist 0 tracks: an arbitrary "tag" with no geometry."""
    return np.flatnonzero(data["artist"] == 0) + 1


# -- fast: synthetic vectors --------------------------------------------------------------------

def test_train_scores_every_track_with_the_probe_and_lists_it(synthetic):
    x = synthetic["x"]
    # A tag that lives in the geometry: the tracks nearest one direction.
    direction = x[0] / np.linalg.norm(x[0])
    truth = np.argsort(-(x @ direction))[:40] + 1
    with Store.open(synthetic["dir"]) as store:
        probe = usertags.train(store, "near one", truth[:10].tolist())
        scored = usertags.save(store, probe)
        ranked = usertags.ranked(store, "near one")
    n = synthetic["n"]
    assert scored == n  # the track without an embedding is not scored
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
    by_id = {r.track_id: r.score for r in ranked}
    np.testing.assert_allclose([by_id[i] for i in range(1, n + 1)], probe.score(x), rtol=1e-5, atol=1e-6)
    held_out = np.array([by_id[int(t)] for t in truth[10:]])
    rest = np.array([by_id[i] for i in range(1, n + 1) if i not in set(truth.tolist())])
    assert _auc(held_out, rest) > 0.9
    assert probe.chosen.auc is not None and probe.chosen.auc > 0.8
    assert {r.example for r in ranked if r.track_id in set(truth[:10].tolist())} == {"positive"}


def test_too_few_examples_warns_and_one_positive_is_not_cross_validated(synthetic):
    with Store.open(synthetic["dir"]) as store:
        probe = usertags.train(store, "one", [5])
    assert probe.chosen.auc is None
    assert any("only 1 positive example:" in w for w in probe.warnings())
    with Store.open(synthetic["dir"]) as store:
        probe = usertags.train(store, "artist", _cluster(synthetic)[:8].tolist())
    # Artist 0 is no direction in the vectors: CV says so.
    assert probe.chosen.auc < usertags.TRUST_AUC
    assert any("cross-validated AUC" in w for w in probe.warnings())


def test_cli_errors_name_the_problem(synthetic):
    store = synthetic["dir"]
    r = _run("tag", "train", "x/y", "-p", "1", "--store", store)
    assert r.exit_code == 1 and "tag name 'x/y' is not usable" in r.output
    r = _run("tag", "train", "t", "--store", store)
    assert r.exit_code == 1 and "give at least one positive example" in r.output
    r = _run("tag", "train", "t", "-p", "no such track anywhere", "--store", store)
    assert r.exit_code == 1 and "--positive: " in r.output and "no such track anywhere" in r.output
    r = _run("tag", "train", "t", "-p", "Artist 1", "--store", store)
    assert r.exit_code == 1 and "--positive 'Artist 1' matches" in r.output
    r = _run("tag", "train", "t", "--positive-where", "duration < 0", "--store", store)
    assert r.exit_code == 1 and "--positive-where 'duration < 0' matches no track" in r.output
    r = _run("tag", "train", "t", "-p", "/m/too short.flac", "--store", store)
    assert r.exit_code == 1 and "none of the positive tracks" in r.output and "embedding" in r.output
    r = _run("tag", "show", "nothing", "--store", store)
    assert r.exit_code == 1 and "no tag named 'nothing'" in r.output
    r = _run("tag", "train", "t", "-p", "1", "--space", "nope", "--store", store)
    assert r.exit_code == 1 and "unknown embedding space 'nope'" in r.output


def test_cli_train_show_where_delete_export_import(synthetic, tmp_path):
    store = synthetic["dir"]
    r = _run("tag", "train", "t1", "-p", "1", "-p", "2", "-p", "3", "-n", "4", "--store", store)
    assert r.exit_code == 0, r.output
    assert "cross-validated AUC" in r.output and "warning: only 3 positive examples" in r.output
    r = _run("tag", "show", "t1", "--format", "json", "--store", store)
    rows = json.loads(r.stdout)
    assert len(rows) == synthetic["n"] and {"track_id", "path", "score"} <= set(rows[0])
    assert all(0 <= x["score"] <= 1 for x in rows)
    assert {x["track_id"]: x["example"] for x in rows}[4] == "negative"
    r = _run("tag", "show", "t1", "--limit", "5", "--format", "csv", "--store", store)
    assert len(r.stdout.strip().splitlines()) == 6
    # Usable in --where, as docs/tags.md shows.
    high = [x["track_id"] for x in rows if x["score"] > 0.5]
    r = _run("sql", "SELECT count(*) AS n FROM tracks t JOIN user_tags u USING (track_id) "
             "WHERE u.tag = 't1' AND u.score > 0.5", "--format", "json", "--store", store)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["n"] == len(high)
    r = _run("knn", "-t", "1", "-k", "50", "--where",
             "track_id IN (SELECT track_id FROM user_tags WHERE tag = 't1' AND score > 0.5)",
             "--format", "json", "--store", store)
    assert r.exit_code == 0, r.output
    assert {x["track_id"] for x in json.loads(r.stdout)} <= set(high)
    r = _run("tag", "list", "--format", "json", "--store", store)
    listed = json.loads(r.stdout)
    assert [x["tag"] for x in listed] == ["t1"] and listed[0]["above_half"] == len(high)
    out = tmp_path / "t1.json"
    assert _run("tag", "export", "t1", "-o", out, "--store", store).exit_code == 0
    r = _run("tag", "export", "t1", "-o", out, "--store", store)
    assert r.exit_code == 1 and "exists" in r.output
    r = _run("tag", "import", out, "--store", store)
    assert r.exit_code == 1 and "tag 't1' is already in the store" in r.output
    assert _run("tag", "delete", "t1", "--store", store).exit_code == 0
    r = _run("tag", "show", "t1", "--store", store)
    assert r.exit_code == 1
    r = _run("tag", "import", out, "--store", store)
    assert r.exit_code == 0 and f"scored {synthetic['n']} tracks" in r.output
    again = {x["track_id"]: x["score"] for x in json.loads(_run("tag", "show", "t1", "--format", "json",
                                                                 "--store", store).stdout)}
    assert again == pytest.approx({x["track_id"]: x["score"] for x in rows})
    doc = json.loads(out.read_text())
    doc["tags"][0]["versions"]["musicnn"] = "0" * 16
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    r = _run("tag", "import", other, "--replace", "--store", store)
    assert r.exit_code == 1 and "was trained on another musicnn model" in r.output
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = _run("tag", "import", bad, "--store", store)
    assert r.exit_code == 1 and f"cannot read {bad}" in r.output


def test_reanalysed_track_loses_its_score_until_scored_again(synthetic):
    from index.store import TrackRecord

    with Store.open(synthetic["dir"]) as store:
        usertags.save(store, usertags.train(store, "t", [1, 2, 3]))
        path = store.con.execute("SELECT path FROM tracks WHERE track_id = 7").fetchone()[0]
        new = np.full(synthetic["x"].shape[1], 0.5, np.float32)
        store.write_tracks([TrackRecord(path, {}, embeddings={"musicnn": new})])
        assert store.con.execute("SELECT count(*) FROM user_tags WHERE track_id = 7").fetchone()[0] == 0
        assert usertags.score_missing(store) == []
        got = store.con.execute("SELECT score FROM user_tags WHERE track_id = 7").fetchone()[0]
        assert got == pytest.approx(float(usertags.load(store, "t").score(new[None])[0]), rel=1e-5)


# -- slow: real audio ---------------------------------------------------------------------------

@pytest.mark.slow
def test_chorales_from_five_examples_rank_the_other_chorales_first(corpus_store, tmp_path):
    store_dir = tmp_path / "store"
    shutil.copytree(corpus_store, store_dir)
    with Store.open(store_dir) as store:
        rows = store.con.execute("SELECT track_id, path FROM tracks ORDER BY path").fetchall()
        chorales = [t for t, p in rows if "/rendered/chorale_" in p]
        assert len(chorales) >= 8
        probe = usertags.train(store, "chorale", chorales[:5])
        usertags.save(store, probe)
        scores = {r.track_id: r.score for r in usertags.ranked(store, "chorale")}
    held_out = np.array([scores[t] for t in chorales[5:]])
    # Tracks too short for the model have no embedding, so no score.
    library = np.array([scores[t] for t, p in rows if "/library/" in p and t in scores])
    assert len(library) >= 40
    assert _auc(held_out, library) > 0.9
    assert probe.chosen.auc > 0.75


@pytest.mark.slow
def test_a_later_build_scores_new_tracks_without_retraining(corpus, shared_models, tmp_path):
    from engine.build import BuildOptions, build

    music, store_dir = tmp_path / "music", tmp_path / "store"
    music.mkdir()
    clips = sorted((corpus / "rendered").glob("*.ogg"))
    for clip in clips[:3] + clips[-3:]:  # three chorales, three folk tunes
        shutil.copy(clip, music / clip.name)
    options = BuildOptions(max_seconds=15, progress=False, fetch=False)
    build(music, store_dir, options, echo=lambda s: None)
    with Store.open(store_dir) as store:
        ids = dict(store.con.execute("SELECT path, track_id FROM tracks").fetchall())
        folk = [t for p, t in ids.items() if "/folk_" in p]
        usertags.save(store, usertags.train(store, "folk", folk))
        trained_at = usertags.load(store, "folk").trained_at
    for clip in (clips[3], clips[-4]):  # another chorale, another folk tune
        shutil.copy(clip, music / clip.name)
    build(music, store_dir, options, echo=lambda s: None)
    with Store.open(store_dir) as store:
        probe = usertags.load(store, "folk")
        assert probe.trained_at == trained_at  # not retrained
        scores = {r.path: r.score for r in usertags.ranked(store, "folk")}
        new_ids, x = store.embedding_matrix(probe.spaces[0])
    assert len(scores) == 8
    new_folk, new_chorale = (scores[str(music / clips[-4].name)], scores[str(music / clips[3].name)])
    assert new_folk > new_chorale


def test_search_matches_the_users_own_tag_first(synthetic):
    """A word that names one of the user's tags means it, even where it is also a
    descriptor word ("slow" is low bpm): the ranking is the tag's, the reason says so."""
    from index.search import TextSearcher

    with Store.open(synthetic["dir"]) as store:
        usertags.save(store, usertags.train(store, "slow", [1, 2, 3, 4, 5]))
        best = [r.track_id for r in usertags.ranked(store, "slow", 5)]
    with TextSearcher(synthetic["dir"], encoder=lambda texts: None) as searcher:
        result = searcher.search("slow", 5, mode="tags")
    assert [h.track_id for h in result.hits] == best
    assert "tag 'slow' (user)" in " ".join(result.explain())
    assert all(h.why.startswith("slow 0.") for h in result.hits)
    r = _run("search", "fast", "--only", "tags", "--format", "json", "--store", synthetic["dir"])
    assert r.exit_code == 0 and "bpm" in json.loads(r.stdout)[0]["why"]  # other words as before
