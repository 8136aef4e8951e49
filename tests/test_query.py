"""Queries: resolving tracks, k-NN (exact and IVF, filtered), playlists, and their CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import unicodedata
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cli import cli
from index import query as query_module
from index import vectors
from index.playlist import m3u8_text, select_tracks, write_m3u8
from index.query import DUPLICATE_SIMILARITY, Searcher, knn
from index.queryerrors import (
    AmbiguousTrackError,
    BadSQLError,
    MissingEmbeddingsError,
    UnknownSpaceError,
    UnknownTrackError,
)
from index.tracks import TrackSummary as PlaylistTrack
from index.tracks import resolve_track
from index.store import NoStoreError, Store, TrackRecord

UNICODE_PART = "Ñame with spaces"
NUMERIC = ("bpm", "voice", "danceability", "danceable", "arousal", "valence", "loudness_lufs")


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_line_error(result, *needles):
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


# -- the corpus store, read back for brute-force checks ------------------------------------

class Corpus:
    """Rows and vectors of the session's corpus store, for numpy ground truth."""

    def __init__(self, store_dir: Path):
        self.dir = store_dir
        with Store.open_read_only(store_dir) as store:
            cols = ("track_id", "path", "content_hash", "duration", "artist", "title",
                    "key_temperley", "scale_temperley") + NUMERIC
            rows = store.con.execute(f"SELECT {', '.join(cols)} FROM tracks ORDER BY track_id").fetchall()
            self.rows = {r[0]: dict(zip(cols, r)) for r in rows}
            self.styles = store.con.execute("SELECT track_id, style, activation FROM styles").fetchall()
            self.spaces = {}
            for space in ("musicnn", "effnet"):
                ids, vecs = store.embedding_matrix(space)  # prepared as the index holds them
                self.spaces[space] = (ids, vectors.prepare(vecs, vectors.centre_of(vecs)))

    def by_path_part(self, part: str) -> list[int]:
        return [t for t, r in self.rows.items() if part.lower() in unicodedata.normalize("NFC", r["path"]).lower()]

    def brute_force(self, space: str, query_id: int, k: int, keep=lambda row: True) -> list[tuple[int, float]]:
        ids, vecs = self.spaces[space]
        q = vecs[list(ids).index(query_id)]
        sims = vecs @ q
        h = self.rows[query_id]["content_hash"]
        out = [(int(t), float(s)) for t, s in zip(ids, sims)
               if t != query_id and keep(self.rows[int(t)]) and s < DUPLICATE_SIMILARITY
               and (h is None or self.rows[int(t)]["content_hash"] != h)]
        out.sort(key=lambda x: -x[1])
        return out[:k]


@pytest.fixture(scope="module")
def corpus_db(corpus_store) -> Corpus:
    return Corpus(corpus_store)


@pytest.fixture(scope="module")
def searcher(corpus_store):
    with Searcher(corpus_store) as s:
        yield s


def _unicode_id(corpus_db) -> int:
    (tid,) = corpus_db.by_path_part(UNICODE_PART)
    return tid


# -- resolving a track ---------------------------------------------------------------------

def test_track_by_id_path_and_unique_part_give_the_same_neighbours(corpus_store, corpus_db):
    tid = _unicode_id(corpus_db)
    path = corpus_db.rows[tid]["path"]
    outputs = []
    for x in (str(tid), path, UNICODE_PART.lower(), unicodedata.normalize("NFD", UNICODE_PART)):
        result = _run("knn", "--track", x, "--space", "musicnn", "--format", "json", "--store", corpus_store)
        assert result.exit_code == 0, result.output
        assert f"nearest to {tid} " in result.stderr
        outputs.append(json.loads(result.stdout))
    assert all(o == outputs[0] for o in outputs)
    found = outputs[0]
    assert len(found) == 10 and {"track_id", "path", "similarity", "rank", "bpm", "top_style"} <= set(found[0])
    assert tid not in [f["track_id"] for f in found]
    sims = [f["similarity"] for f in found]
    assert sims == sorted(sims, reverse=True) and [f["rank"] for f in found] == list(range(1, 11))
    expected = corpus_db.brute_force("musicnn", tid, 10)
    assert [f["track_id"] for f in found] == [t for t, _ in expected]
    np.testing.assert_allclose(sims, [s for _, s in expected], atol=1e-5)


def test_ambiguous_track_lists_candidates_and_exits_non_zero(corpus_store, corpus_db):
    with Store.open_read_only(corpus_store) as store, pytest.raises(AmbiguousTrackError) as err:
        resolve_track(store, "sectoid")
    assert err.value.total == 4 and len(err.value.candidates) == 4
    result = _run("knn", "--track", "Sectoid", "--space", "musicnn", "--store", corpus_store)
    assert result.exit_code == 1
    assert "'Sectoid' matches 4 tracks" in result.stderr
    for tid in corpus_db.by_path_part("Sectoid"):
        assert corpus_db.rows[tid]["path"] in result.stderr
    many = _run("knn", "--track", "antarctic", "--space", "musicnn", "--store", corpus_store)
    assert "matches 12 tracks" in many.stderr and "… and 2 more" in many.stderr


def test_unknown_track_is_one_line(corpus_store):
    line = _one_line_error(_run("knn", "--track", "no such song", "--space", "musicnn", "--store", corpus_store),
                           "no track in the store matches 'no such song'")
    assert "track id" in line
    _one_line_error(_run("knn", "--track", "999999", "--space", "musicnn", "--store", corpus_store), "999999")


# -- k-NN against brute force ---------------------------------------------------------------

def test_table_output_shows_rank_similarity_label_path_and_descriptors(corpus_store, corpus_db):
    tid = _unicode_id(corpus_db)
    result = _run("knn", "-t", tid, "-s", "effnet", "-k", "3", "--store", corpus_store)
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[0].split()
    assert header[:4] == ["rank", "similarity", "track", "path"] and "bpm" in header and "top_style" in header
    assert result.stdout.rstrip().endswith("(3 rows)")
    csv_out = _run("knn", "-t", tid, "-s", "effnet", "-k", "3", "--format", "csv", "--store", corpus_store)
    assert csv_out.stdout.splitlines()[0].startswith("rank,track_id,path,similarity")
    assert len(csv_out.stdout.splitlines()) == 4


def _filters():
    """(SQL text, python predicate) pairs over numeric descriptor columns, combined."""
    bounds = {"bpm": (40, 210), "voice": (0, 1), "danceability": (0, 3), "danceable": (0, 1),
              "arousal": (1, 9), "valence": (1, 9), "loudness_lufs": (-40, 0)}

    @st.composite
    def one(draw):
        col = draw(st.sampled_from(sorted(bounds)))
        lo_b, hi_b = bounds[col]
        a = round(draw(st.floats(lo_b, hi_b)), 3)
        b = round(draw(st.floats(lo_b, hi_b)), 3)
        lo, hi = min(a, b), max(a, b)
        kind = draw(st.sampled_from(["between", "gt", "lt"]))
        if kind == "between":
            return f"{col} BETWEEN {lo!r} AND {hi!r}", lambda r: r[col] is not None and lo <= r[col] <= hi
        if kind == "gt":
            return f"{col} > {lo!r}", lambda r: r[col] is not None and r[col] > lo
        return f"{col} < {hi!r}", lambda r: r[col] is not None and r[col] < hi

    @st.composite
    def combined(draw):
        (s1, p1) = draw(one())
        if draw(st.booleans()):
            return s1, p1
        (s2, p2) = draw(one())
        if draw(st.booleans()):
            return f"({s1}) AND ({s2})", lambda r: p1(r) and p2(r)
        return f"({s1}) OR ({s2})", lambda r: p1(r) or p2(r)

    return combined()


@contextmanager
def _strategy(subset: bool):
    """Force the exact-subset path (vectors fetched by id) or the ID-selector path."""
    old = query_module.SUBSET_EXACT_MAX
    query_module.SUBSET_EXACT_MAX = 10**9 if subset else 0
    try:
        yield
    finally:
        query_module.SUBSET_EXACT_MAX = old


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), space=st.sampled_from(["musicnn", "effnet"]), k=st.integers(1, 70),
       subset=st.booleans())
def test_filtered_knn_equals_brute_force(searcher, corpus_db, data, space, k, subset):
    ids = corpus_db.spaces[space][0]
    query = int(data.draw(st.sampled_from(list(ids))))
    where, keep = data.draw(_filters())
    with _strategy(subset):
        found = searcher.knn(query, space, k, where)
    expected = corpus_db.brute_force(space, query, k, keep)
    # k results whenever k tracks match; all of them when fewer do.
    assert len(found) == len(expected) == min(k, len(corpus_db.brute_force(space, query, 10**6, keep)))
    np.testing.assert_allclose([n.similarity for n in found], [s for _, s in expected], atol=1e-5)
    truth = dict(corpus_db.brute_force(space, query, 10**6, keep))
    for n in found:  # same tracks, up to the order of equal similarities
        assert n.track_id in truth and abs(truth[n.track_id] - n.similarity) < 1e-5
        assert keep(corpus_db.rows[n.track_id])


def test_self_and_duplicates_are_excluded(tmp_path):
    rng = np.random.default_rng(3)
    base = rng.standard_normal(200).astype(np.float32)
    near = base + 0.02 * rng.standard_normal(200).astype(np.float32)  # similar, not the same
    vecs = [base, base.copy(), base, near] + [rng.standard_normal(200).astype(np.float32) for _ in range(4)]
    hashes = ["same", "x1", "same", "x3", "x4", "x5", "x6", "x7"]
    records = [TrackRecord(path=f"/m/t{i}.ogg", columns={"content_hash": h, "bpm": 100.0 + i},
                           embeddings={"musicnn": v}) for i, (v, h) in enumerate(zip(vecs, hashes))]
    # t1: the same vector (similarity 1.0); t2: same content hash; t3: a near neighbour.
    with Store.open(tmp_path) as store:
        store.write_tracks(records)
        vectors.sync(store, spaces=("musicnn",))
    found = knn(tmp_path, "/m/t0.ogg", "musicnn", k=10)
    paths = [n.path for n in found]
    assert paths[0] == "/m/t3.ogg" and DUPLICATE_SIMILARITY > found[0].similarity > 0.99
    assert not {"/m/t0.ogg", "/m/t1.ogg", "/m/t2.ogg"} & set(paths) and len(found) == 5
    assert [n.path for n in knn(tmp_path, "t0", "musicnn", k=2, where="bpm >= 101")] == ["/m/t3.ogg", paths[1]]


# -- approximate index (IVF) on a synthetic store ---------------------------------------------

def _mixture(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((64, dim)).astype(np.float32)
    x = centres[rng.integers(0, 64, n)] + 0.8 * rng.standard_normal((n, dim)).astype(np.float32)
    return vectors.normalise(x)


@pytest.fixture(scope="module")
def ivf_store(tmp_path_factory):
    """20,000 tracks x 32-d in space musicnn with the flat/IVF threshold lowered to force IVF."""
    directory = tmp_path_factory.mktemp("ivf-store")
    n, dim = 20_000, 32
    x = _mixture(n, dim)
    with Store.open(directory) as store:
        store.con.execute(
            "INSERT INTO tracks (track_id, path, content_hash, bpm, voice) SELECT i, '/m/' || i || '.ogg', "
            "'h' || i, 60 + (hash(i, 1) % 120000) / 1000.0, (hash(i, 2) % 1000) / 1000.0 "
            f"FROM range(1, {n + 1}) r(i)")
        store.con.execute("INSERT INTO embeddings SELECT unnest(?), 'musicnn', unnest(?)",
                          [list(range(1, n + 1)), x.tolist()])
        store.set_meta("generation:musicnn", "1")
        old = vectors.EXACT_MAX_FLOATS
        vectors.EXACT_MAX_FLOATS = 0
        try:
            vectors.rebuild(store, "musicnn")
        finally:
            vectors.EXACT_MAX_FLOATS = old
        columns = store.con.execute("SELECT bpm, voice FROM tracks ORDER BY track_id").fetchnumpy()
    return directory, x, columns


@pytest.fixture(scope="module")
def ivf_searcher(ivf_store):
    with Searcher(ivf_store[0]) as s:
        yield s


def _exact(x, query_row, allowed_rows, k):
    sims = x[allowed_rows] @ x[query_row]
    order = [r for r in allowed_rows[np.argsort(-sims)] if r != query_row][:k]
    return {int(r) + 1 for r in order}


@pytest.mark.parametrize("where, mask", [
    (None, lambda c: np.ones(len(c["bpm"]), bool)),
    ("voice > 0.5", lambda c: c["voice"] > 0.5),
    ("bpm BETWEEN 100 AND 106", lambda c: (c["bpm"] >= 100) & (c["bpm"] <= 106)),
    ("bpm BETWEEN 100 AND 101.2", lambda c: (c["bpm"] >= 100) & (c["bpm"] <= 101.2)),
])
def test_ivf_recall_and_filtered_counts(ivf_store, where, mask):
    import faiss

    directory, x, columns = ivf_store
    allowed = np.flatnonzero(mask(columns))
    rows = np.random.default_rng(1).choice(len(x), 60, replace=False)
    hits = total = 0
    with Searcher(directory) as s:
        assert faiss.try_extract_index_ivf(s.index("musicnn")) is not None
        for row in rows:
            found = s.knn(int(row) + 1, "musicnn", 10, where)
            truth = _exact(x, row, allowed, 10)
            assert len(found) == len(truth)  # k whenever k match, also for 0.1 %-style filters
            hits += len({n.track_id for n in found} & truth)
            total += len(truth)
    assert hits / total >= 0.95


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lo=st.floats(60, 180), width=st.floats(0, 12), k=st.integers(1, 50), row=st.integers(0, 19_999),
       subset=st.booleans())
def test_ivf_returns_k_whenever_k_match(ivf_searcher, ivf_store, lo, width, k, row, subset):
    directory, x, columns = ivf_store
    hi = lo + width
    matching = int(((columns["bpm"] >= lo) & (columns["bpm"] <= hi)).sum())
    matching -= int(lo <= columns["bpm"][row] <= hi)  # the query track never comes back
    with _strategy(subset):
        found = ivf_searcher.knn(row + 1, "musicnn", k, where=f"bpm BETWEEN {lo!r} AND {hi!r}")
    assert len(found) == min(k, matching)
    assert all(lo <= n.bpm <= hi for n in found)


# -- errors: one line each -------------------------------------------------------------------

def test_errors_are_one_clear_line(corpus_store, tmp_path):
    base = ["knn", "--track", "1", "--store", corpus_store]
    _one_line_error(_run(*base, "--space", "openl3"), "unknown embedding space 'openl3'", "musicnn, effnet")
    _one_line_error(_run(*base, "--space", "musicnn", "--where", "bpm >"), "bad WHERE filter 'bpm >'")
    _one_line_error(_run(*base, "--space", "musicnn", "--where", "tempo > 100"), '"tempo" not found')
    _one_line_error(_run("knn", "--track", "1", "--space", "musicnn", "--store", tmp_path / "none"),
                    "no store at", "engine build")
    # A store built without the EffNet backbone.
    with Store.open(tmp_path / "s") as store:
        store.write_tracks([TrackRecord(path="/m/a.ogg", columns={}, embeddings={"musicnn": np.ones(200, np.float32)})])
        vectors.sync(store)
    _one_line_error(_run("knn", "--track", "a.ogg", "--space", "effnet", "--store", tmp_path / "s"),
                    "Discogs-EffNet backbone is missing", "engine models fetch effnet")
    with pytest.raises(MissingEmbeddingsError):
        knn(tmp_path / "s", "a.ogg", "effnet")
    with pytest.raises(UnknownSpaceError):
        knn(tmp_path / "s", "a.ogg", "nope")
    with pytest.raises(UnknownTrackError):
        knn(tmp_path / "s", "b.ogg", "musicnn")
    with pytest.raises(NoStoreError):
        knn(tmp_path / "nowhere", "a.ogg", "musicnn")


@pytest.mark.parametrize("where", [
    "1=1; DROP TABLE tracks",
    "1=1) UNION ALL (SELECT 1",
    "true) --",
    "true) ORDER BY 1 --",
    "path IN (SELECT * FROM read_csv('/etc/passwd'))",
    "length(read_text('/etc/hostname')) > 0",
    "track_id IN (SELECT 1 FROM (ATTACH ':memory:' AS x))",
    "(COPY tracks TO '/tmp/leak.csv')",
    "bpm > ?",
])
def test_where_cannot_write_or_escape(corpus_store, corpus_db, where):
    with pytest.raises(BadSQLError) as err:
        knn(corpus_store, 1, "musicnn", where=where)
    assert "\n" not in str(err.value) and str(err.value).startswith("bad WHERE filter")
    with pytest.raises(BadSQLError):
        select_tracks(corpus_store, where)
    with Store.open_read_only(corpus_store) as store:
        assert store.count() == len(corpus_db.rows)


def test_order_by_cannot_escape(corpus_store):
    for order in ("bpm LIMIT 1", "bpm) UNION SELECT 1, 2, 3, 4, 5 --", "bpm; DELETE FROM tracks"):
        with pytest.raises(BadSQLError, match="bad ORDER BY"):
            select_tracks(corpus_store, "true", order)


# -- playlists ---------------------------------------------------------------------------------

def _entries(text: str) -> list[tuple[str, str]]:
    lines = text.split("\n")
    assert lines[0] == "#EXTM3U" and lines[-1] == ""
    body = lines[1:-1]
    assert len(body) % 2 == 0
    return list(zip(body[0::2], body[1::2]))


def test_playlist_m3u8_header_extinf_and_unicode_paths(corpus_store, corpus_db, tmp_path):
    result = _run("playlist", "--where", "true", "--m3u8", tmp_path / "all.m3u8", "--store", corpus_store)
    assert result.exit_code == 0, result.output
    assert f"wrote {len(corpus_db.rows)} tracks" in result.stderr
    raw = (tmp_path / "all.m3u8").read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf") and b"\r" not in raw
    entries = _entries(raw.decode("utf-8"))  # strict UTF-8
    by_path = {r["path"]: r for r in corpus_db.rows.values()}
    assert [p for _, p in entries] == sorted(by_path)  # default order: path
    for extinf, path in entries:
        row = by_path[path]
        assert os.path.isabs(path) and Path(path).is_file()
        seconds, label = extinf.removeprefix("#EXTINF:").split(",", 1)
        assert int(seconds) == round(row["duration"])
        names = [v for v in (row["artist"], row["title"]) if v]
        assert label == (" – ".join(names) if names else Path(path).stem)
    assert any(UNICODE_PART in unicodedata.normalize("NFC", p) for _, p in entries)
    assert not [f for f in os.listdir(tmp_path) if f != "all.m3u8"]  # no temporary file left


def test_playlist_relative_paths_resolve_from_the_playlist_folder(corpus_store, tmp_path):
    target = tmp_path / "lists" / "deep" / "rel.m3u8"
    target.parent.mkdir(parents=True)
    result = _run("playlist", "--where", "path LIKE '%Ünïcödé%' OR bpm > 0", "--m3u8", target,
                  "--relative", "--store", corpus_store)
    assert result.exit_code == 0, result.output
    entries = _entries(target.read_text(encoding="utf-8"))
    assert entries
    for _, rel in entries:
        assert not os.path.isabs(rel) and rel.startswith("..")
        assert (target.parent / rel).resolve().is_file()


def test_m3u8_format_details(tmp_path):
    tracks = [PlaylistTrack(1, "/music/a b/Ünï – 日本.ogg", 61.6, "Ärtist", "Tïtle"),
              PlaylistTrack(2, "/music/x/02 no tags.flac", None, None, None),
              PlaylistTrack(3, "/music/x/c.mp3", 12.2, None, "Only\ttitle\n")]
    assert m3u8_text(tracks) == (
        "#EXTM3U\n#EXTINF:62,Ärtist – Tïtle\n/music/a b/Ünï – 日本.ogg\n"
        "#EXTINF:-1,02 no tags\n/music/x/02 no tags.flac\n"
        "#EXTINF:12,Only title\n/music/x/c.mp3\n")
    out = tmp_path / "p.m3u8"
    out.write_text("old")
    with pytest.raises(Exception, match="exists: pass --force"):
        write_m3u8(tracks, out)
    assert out.read_text() == "old"
    assert write_m3u8(tracks, out, relative=True, force=True).count == 3
    assert out.read_text(encoding="utf-8").splitlines()[2] == os.path.relpath("/music/a b/Ünï – 日本.ogg", tmp_path)
    with pytest.raises(Exception, match="folder .* does not exist"):
        write_m3u8(tracks, tmp_path / "missing" / "p.m3u8")


def _py_select(corpus_db, keep):
    return sorted(r["path"] for r in corpus_db.rows.values() if keep(r))


@pytest.mark.parametrize("where, keep", [
    ("bpm BETWEEN 90 AND 130", lambda r: r["bpm"] is not None and 90 <= r["bpm"] <= 130),
    ("voice >= 0.5", lambda r: r["voice"] is not None and r["voice"] >= 0.5),
    ("voice < 0.5", lambda r: r["voice"] is not None and r["voice"] < 0.5),
    ("danceability BETWEEN 1 AND 2", lambda r: r["danceability"] is not None and 1 <= r["danceability"] <= 2),
    ("arousal > 5 AND valence < 5",
     lambda r: None not in (r["arousal"], r["valence"]) and r["arousal"] > 5 and r["valence"] < 5),
    ("key_temperley = 'A' AND scale_temperley = 'minor'",
     lambda r: r["key_temperley"] == "A" and r["scale_temperley"] == "minor"),
])
def test_playlist_kinds_select_what_they_say(corpus_store, corpus_db, where, keep):
    assert [t.path for t in select_tracks(corpus_store, where)] == _py_select(corpus_db, keep)


def test_playlist_ranked_by_style_activation(corpus_store, corpus_db, tmp_path):
    style = max(((s, a) for _, s, a in corpus_db.styles), key=lambda x: x[1])[0]  # a style that shows
    act = {t: a for t, s, a in corpus_db.styles if s == style}
    tracks = select_tracks(corpus_store, f"style('{style}') > 0.01", f"style('{style}') DESC", limit=5)
    want = sorted((t for t in act if act[t] > 0.01), key=lambda t: (-act[t], corpus_db.rows[t]["path"]))[:5]
    assert [t.track_id for t in tracks] == want
    result = _run("playlist", "--where", "voice < 0.9", "--order-by", f"style('{style}') desc", "--limit", "3",
                  "--m3u8", tmp_path / "s.m3u8", "--store", corpus_store)
    assert result.exit_code == 0 and "wrote 3 tracks" in result.stderr


def test_knn_m3u8_starts_with_the_seed(corpus_store, corpus_db, tmp_path):
    tid = _unicode_id(corpus_db)
    out = tmp_path / "similar.m3u8"
    result = _run("knn", "-t", tid, "-s", "musicnn", "-k", "4", "--format", "json", "--m3u8", out,
                  "--store", corpus_store)
    assert result.exit_code == 0, result.output
    paths = [p for _, p in _entries(out.read_text(encoding="utf-8"))]
    assert paths == [corpus_db.rows[tid]["path"]] + [n["path"] for n in json.loads(result.stdout)]


def test_playlist_errors_are_one_line(corpus_store, tmp_path):
    _one_line_error(_run("playlist", "--where", "bpm BETWEEN", "--m3u8", tmp_path / "x.m3u8", "--store", corpus_store),
                    "bad WHERE filter")
    _one_line_error(_run("playlist", "--where", "true", "--order-by", "nosuchcol", "--m3u8", tmp_path / "x.m3u8",
                         "--store", corpus_store), "nosuchcol")
    _one_line_error(_run("playlist", "--where", "true", "--m3u8", tmp_path / "nodir" / "x.m3u8",
                         "--store", corpus_store), "does not exist")
    assert not (tmp_path / "x.m3u8").exists()


def test_help_has_examples():
    for cmd in ("knn", "playlist"):
        assert "Example:" in _run(cmd, "--help").output
    out = _run("--help").output
    assert "knn" in out and "playlist" in out


@pytest.mark.skipif(shutil.which("mpv") is None, reason="mpv not installed")
def test_mpv_reads_the_playlist(corpus_store, tmp_path):
    out = tmp_path / "mpv.m3u8"
    write_m3u8(select_tracks(corpus_store, "path LIKE '%Ünïcödé%' OR path LIKE '%Sectoid%'"), out)
    proc = subprocess.run(["mpv", f"--playlist={out}", "--ao=null", "--vo=null", "--frames=0",
                           "--msg-level=all=v", "--no-config"], capture_output=True, text=True, timeout=60)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert "Ñame with spaces" in unicodedata.normalize("NFC", log) and "Metal_madness" in log


# -- a synthetic store: what a user types, answered without the corpus -----------------------

@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """40 tracks titled 'Track 000001'..., artists from tui.synthetic.ARTISTS, both spaces."""
    from tui.synthetic import make_store

    return make_store(tmp_path_factory.mktemp("synthetic") / "store", 40)


def test_track_is_found_by_title_and_by_artist_title(synthetic):
    with Store.open_read_only(synthetic) as store:
        artist = store.con.execute("SELECT artist FROM tracks WHERE track_id = 9").fetchone()[0]
        for text in ("Track 000009", "track 000009", f"{artist} – Track 000009", f"{artist.upper()} - track 000009",
                     "9"):
            assert resolve_track(store, text).track_id == 9, text
        with pytest.raises(AmbiguousTrackError) as err:
            resolve_track(store, "Track 00000")  # a part of 9 titles
        assert err.value.total == 9
    result = _run("knn", "--track", "Track 000009", "--space", "musicnn", "-k", "3", "--store", synthetic)
    assert result.exit_code == 0, result.output
    assert f"nearest to 9 {artist} – Track 000009" in result.stderr


def test_m3u8_dash_means_standard_output(synthetic, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _run("playlist", "--where", "bpm > 150", "--order-by", "bpm DESC", "--m3u8", "-", "--store", synthetic)
    assert result.exit_code == 0, result.output
    entries = _entries(result.stdout)
    assert entries and all(path.startswith("/music/") for _, path in entries)
    assert result.stderr.strip() == f"wrote {len(entries)} tracks to standard output"
    knn_out = _run("knn", "-t", "9", "-s", "musicnn", "-k", "4", "--m3u8", "-", "--store", synthetic)
    assert knn_out.exit_code == 0, knn_out.output
    entries = _entries(knn_out.stdout)  # only the playlist: the seed, then its 4 neighbours
    assert len(entries) == 5 and entries[0][0].endswith("Track 000009")
    assert list(tmp_path.iterdir()) == []  # no file named "-"


def test_sql_errors_speak_of_the_users_text(synthetic, tmp_path):
    base = ["playlist", "--m3u8", tmp_path / "x.m3u8", "--store", synthetic]
    line = _one_line_error(_run(*base, "--where", "bpm >"), "bad WHERE filter 'bpm >'", "syntax error")
    assert '")"' not in line  # we wrap the filter in parentheses: the user typed none
    line = _one_line_error(_run(*base, "--where", "true", "--order-by", "bpm DESC;"), "bad ORDER BY 'bpm DESC;'",
                           "remove the ';'")
    assert "path" not in line  # the tie-breaker we append is not the user's
    line = _one_line_error(_run(*base, "--where", "true", "--order-by", "bpm; DROP TABLE tracks"),
                           "bad ORDER BY 'bpm; DROP TABLE tracks'", "one SELECT statement")
    assert "json" not in line
    line = _one_line_error(_run(*base, "--where", "true", "--order-by", "bpm DESC,"), "bad ORDER BY 'bpm DESC,'")
    assert "SELECT track_id" not in line
    assert not (tmp_path / "x.m3u8").exists()


# -- --concepts: what each neighbour shares with its seed -------------------------------------

def _concept_names(store_dir: Path, space: str) -> set[str]:
    from index import tcav
    from index.usertags import fetch_vectors

    with Store.open_read_only(store_dir) as store:
        ids, x = fetch_vectors(store, space)
        return {c.name for c in tcav.store_concepts(store, space, ids, x, rng=np.random.default_rng(0))}


def test_knn_concepts_column_names_the_concepts_each_neighbour_shares(corpus_store, corpus_db):
    from index import tcav

    tid = _unicode_id(corpus_db)
    base = ["knn", "-t", tid, "-s", "musicnn", "-k", "4", "--store", corpus_store]
    plain = _run(*base, "--format", "json")
    shown = _run(*base, "--format", "json", "--concepts")
    assert plain.exit_code == 0 and shown.exit_code == 0, shown.output
    plain_rows, rows = json.loads(plain.stdout), json.loads(shown.stdout)
    assert all("shared" not in r for r in plain_rows)  # opt-in: the default output has no such column
    assert [{k: v for k, v in r.items() if k != "shared"} for r in rows] == plain_rows
    names = _concept_names(corpus_store, "musicnn")
    assert any(r["shared"] for r in rows), rows  # the corpus's neighbours do share some
    for r in rows:
        assert isinstance(r["shared"], list) and set(r["shared"]) <= names, r["shared"]
    with Store.open_read_only(corpus_store) as store:  # the same as `engine explain --with`, pair by pair
        for r in rows[:2]:
            assert r["shared"] == tcav.shared_concepts(store, tid, r["track_id"], "musicnn")
    table = _run(*base, "--concepts")
    assert table.stdout.splitlines()[0].split()[-1] == "shared"
    assert _run(*base).stdout.splitlines()[0].split()[-1] == "top_style"
    csv_out = _run(*base, "--format", "csv", "--concepts").stdout.splitlines()
    assert csv_out[0].endswith(",shared")
    first = next(iter(__import__("csv").reader(csv_out[1:2])))
    assert first[-1] == ", ".join(rows[0]["shared"])


def test_concepts_with_several_seeds_are_those_shared_with_the_nearest_seed(corpus_store, corpus_db):
    from index import tcav

    seeds = sorted(corpus_db.spaces["musicnn"][0][:2].tolist())
    result = _run("knn", *sum((["-t", s] for s in seeds), []), "-s", "musicnn", "-k", "3", "--format", "json",
                  "--concepts", "--store", corpus_store)
    assert result.exit_code == 0, result.output
    ids, vecs = corpus_db.spaces["musicnn"]
    row = {int(t): i for i, t in enumerate(ids)}
    with Store.open_read_only(corpus_store) as store:
        for r in json.loads(result.stdout)[:2]:
            nearest = max(seeds, key=lambda s: float(vecs[row[s]] @ vecs[row[r["track_id"]]]))
            assert r["shared"] == tcav.shared_concepts(store, nearest, r["track_id"], "musicnn")
    radio = _run("radio", *sum((["--seed", s] for s in seeds), []), "-n", "4", "--format", "json", "--concepts",
                 "--store", corpus_store)
    assert radio.exit_code == 0, radio.output
    entries = json.loads(radio.stdout)
    assert [e["shared"] for e in entries[:2]] == [[], []]  # the seeds themselves
    names = _concept_names(corpus_store, "musicnn")
    assert all(set(e["shared"]) <= names for e in entries)
