"""Compressed indexes (index.compressed, index.vectorfile): built by streaming, searched with
re-ranking from float16 rows, filtered before ranking, updated in place, repaired after a
crash. The size threshold is lowered so a 20,000-track store gets one."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from engine.cli import cli
from index import compressed, query, vectorfile, vectors
from index.query import Searcher
from index.queryerrors import QueryError
from index.store import Store

N, DIM = 20_000, 48


def _mixture(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).standard_normal((64, DIM)).astype(np.float32)
    return centres[rng.integers(0, 64, n)] + 0.8 * rng.standard_normal((n, DIM)).astype(np.float32)


def _put(store: Store, ids, vecs) -> None:
    ids = [int(i) for i in ids]
    store.con.execute("DELETE FROM embeddings WHERE space = 'musicnn' AND track_id IN (SELECT unnest(?))", [ids])
    store.con.execute("INSERT INTO embeddings SELECT unnest(?), 'musicnn', unnest(?)",
                      [ids, np.asarray(vecs, np.float32).tolist()])
    store._bump(["musicnn"])


@pytest.fixture
def small_threshold(monkeypatch):
    monkeypatch.setattr(compressed, "COMPRESS_MIN_FLOATS", 0)


def _make(directory, seed: int = 1) -> np.ndarray:
    x = _mixture(N, seed)
    with Store.open(directory) as store:
        store.con.execute(
            "INSERT INTO tracks (track_id, path, content_hash, bpm, voice) SELECT i, '/m/' || i || '.ogg', "
            "'h' || i, 60 + (hash(i, 1) % 120000) / 1000.0, (hash(i, 2) % 1000) / 1000.0 "
            f"FROM range(1, {N + 1}) r(i)")
        _put(store, range(1, N + 1), x)
        vectors.sync(store, spaces=("musicnn",))
    return vectors.prepare(x, vectors.read_info(directory, "musicnn").centre)  # as the index holds them


@pytest.fixture(scope="module")
def compressed_store(tmp_path_factory):
    directory = tmp_path_factory.mktemp("compressed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(compressed, "COMPRESS_MIN_FLOATS", 0)
        x = _make(directory)
    with Store.open_read_only(directory) as store:
        columns = store.con.execute("SELECT bpm, voice FROM tracks ORDER BY track_id").fetchnumpy()
    return directory, x, columns


def test_large_space_gets_a_compressed_index_with_float16_rows(compressed_store):
    directory, x, _ = compressed_store
    info = vectors.read_info(directory, "musicnn")
    assert info.kind == compressed.KIND and info.trained_on == N and info.count == N
    assert info.recall >= vectors.TUNED_RECALL and 0 < info.rerank <= compressed.RERANK_STEPS[-1]
    # the centre is the collection's, as an exact index would have it (summed while streaming)
    np.testing.assert_allclose(info.centre, vectors.centre_of(_mixture(N, 1)), atol=1e-6)
    rows = vectorfile.VectorFile.open(directory, "musicnn", DIM)
    np.testing.assert_array_equal(rows.ids, np.arange(1, N + 1))
    # each row is the DuckDB vector, prepared (centred, normalised), to float16 precision
    np.testing.assert_allclose(rows.vectors(np.arange(1, N + 1)), x, atol=2e-3)
    # the FAISS file holds codes, not vectors: far smaller than the float32 vectors
    assert vectors.index_path(directory, "musicnn").stat().st_size < x.nbytes / 3


def test_building_streams_the_space_in_chunks(tmp_path, small_threshold, monkeypatch):
    def whole_matrix(self, space):
        raise AssertionError("a compressed build must not load the whole space")

    monkeypatch.setattr(Store, "embedding_matrix", whole_matrix)
    monkeypatch.setattr("index.store.EMBEDDING_CHUNK", 3_000)  # several chunks
    calls = []
    real = Store.embedding_chunks

    def counted(self, space, rows=3_000):
        for chunk in real(self, space, rows):
            calls.append(len(chunk[0]))
            yield chunk

    monkeypatch.setattr(Store, "embedding_chunks", counted)
    _make(tmp_path)
    # read twice, chunk by chunk: once summed for the centre, once into the row file
    assert max(calls) <= 3_000 and sum(calls) == 2 * N
    assert vectors.read_info(tmp_path, "musicnn").kind == compressed.KIND


def _exact(x, query_row, allowed_rows, k):
    sims = x[allowed_rows] @ x[query_row]
    order = [r for r in allowed_rows[np.argsort(-sims)] if r != query_row][:k]
    return {int(r) + 1 for r in order}


@pytest.mark.parametrize("where, mask", [
    (None, lambda c: np.ones(len(c["bpm"]), bool)),
    ("voice < 0.5", lambda c: c["voice"] < 0.5),
    ("bpm BETWEEN 100 AND 106", lambda c: (c["bpm"] >= 100) & (c["bpm"] <= 106)),
    ("bpm BETWEEN 100 AND 101.2", lambda c: (c["bpm"] >= 100) & (c["bpm"] <= 101.2)),
    ("bpm BETWEEN 100 AND 100.05", lambda c: (c["bpm"] >= 100) & (c["bpm"] <= 100.05)),
])
@pytest.mark.parametrize("exact_bytes, scan_bytes", [
    (query.ROWS_EXACT_BYTES, query.ROWS_SCAN_BYTES),  # every filter here ranked from the rows
    (0, query.ROWS_SCAN_BYTES),  # from the rows only where the index would scan every list
    (0, 0),  # from the rows only within the re-rank depth, the rest by the index
])
def test_recall_and_k_whenever_k_match(compressed_store, where, mask, exact_bytes, scan_bytes, monkeypatch):
    monkeypatch.setattr(query, "ROWS_EXACT_BYTES", exact_bytes)
    monkeypatch.setattr(query, "ROWS_SCAN_BYTES", scan_bytes)
    directory, x, columns = compressed_store
    allowed = np.flatnonzero(mask(columns))
    rows = np.random.default_rng(1).choice(N, 60, replace=False)
    hits = total = 0
    with Searcher(directory) as s:
        assert s.rows("musicnn") is not None
        for row in rows:
            found = s.knn(int(row) + 1, "musicnn", 10, where)
            truth = _exact(x, row, allowed, 10)
            assert len(found) == len(truth)
            hits += len({n.track_id for n in found} & truth)
            total += len(truth)
            # similarities are the re-ranked ones: cosine to float16 precision
            for n in found:
                assert abs(n.similarity - float(x[n.track_id - 1] @ x[row])) < 2e-3
    assert hits / total >= 0.95


def test_update_in_place_follows_deletions_additions_and_reanalysis(tmp_path, small_threshold):
    _make(tmp_path)
    before = vectors.read_info(tmp_path, "musicnn")
    rng = np.random.default_rng(4)
    gone = rng.choice(np.arange(1, N + 1), 500, replace=False)
    redone = np.setdiff1d(rng.choice(np.arange(1, N + 1), 300, replace=False), gone)
    new_ids = np.arange(N + 1, N + 501)
    with Store.open(tmp_path) as store:
        store.con.execute("DELETE FROM embeddings WHERE track_id IN (SELECT unnest(?))", [gone.tolist()])
        _put(store, redone, _mixture(len(redone), 7))
        _put(store, new_ids, _mixture(500, 8))
        info = vectors.sync(store, spaces=("musicnn",))[0]
        ids, vecs = store.embedding_matrix("musicnn")
    assert info.trained_on == before.trained_on and info.trained_at == before.trained_at  # not retrained
    assert info.centre == before.centre  # kept, as the IVF centroids are
    assert info.count == N - 500 + 500
    rows = vectorfile.VectorFile.open(tmp_path, "musicnn", DIM)
    np.testing.assert_array_equal(rows.ids, ids)
    prepared = vectors.prepare(vecs, info.centre)
    np.testing.assert_allclose(rows.vectors(ids), prepared, atol=2e-3)
    assert rows.dead_rows == len(redone) + len(gone)  # deleted and superseded rows wait for a compaction
    index = vectors.load(tmp_path, "musicnn")
    np.testing.assert_array_equal(np.sort(vectors.ivf_ids(index)), ids)
    # a re-analysed track is found by its new vector
    with Searcher(tmp_path) as s:
        track = int(redone[0])
        q = prepared[ids == track][0]
        nearest = int(ids[np.argsort(-(prepared @ q))[1]])
        assert nearest in {n.track_id for n in s.knn(track, "musicnn", 10)}


def test_compressed_ranks_as_the_exact_index_of_the_same_vectors(compressed_store, tmp_path):
    directory, _, _ = compressed_store
    _make(tmp_path)  # the same vectors, below the threshold: an exact index
    exact_info, info = vectors.read_info(tmp_path, "musicnn"), vectors.read_info(directory, "musicnn")
    assert exact_info.kind == vectors.KIND_FLAT and info.kind == compressed.KIND
    np.testing.assert_allclose(info.centre, exact_info.centre, atol=1e-6)  # one centre, both kinds
    agree = total = 0
    with Searcher(directory) as packed, Searcher(tmp_path) as exact:
        for track in np.random.default_rng(3).choice(np.arange(1, N + 1), 40, replace=False):
            want = {n.track_id: n.similarity for n in exact.knn(int(track), "musicnn", 10)}
            got = {n.track_id: n.similarity for n in packed.knn(int(track), "musicnn", 10)}
            agree += len(want.keys() & got.keys())
            total += len(want)
            assert all(abs(got[t] - want[t]) < 2e-3 for t in want.keys() & got.keys())
            # a filter matching fewer tracks than the re-rank depth is ranked from the rows
            # alone: the exact top 5, up to float16 ties
            where = "bpm BETWEEN 100 AND 100.1"
            matching = {n.track_id: n.similarity for n in exact.knn(int(track), "musicnn", 50, where)}
            assert 5 < len(matching) <= compressed.RERANK_STEPS[0]
            fifth = sorted(matching.values())[-5]
            found = packed.knn(int(track), "musicnn", 5, where)
            assert len(found) == 5 and all(matching[n.track_id] >= fifth - 2e-3 for n in found)
    assert agree / total >= 0.95


def test_a_compressed_index_made_before_centring_is_refused_until_synced(tmp_path, small_threshold):
    _make(tmp_path)
    sidecar = vectors.index_path(tmp_path, "musicnn").with_name("musicnn.faiss.json")
    written = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**written, "centre": None}))
    with pytest.raises(QueryError, match=r"the musicnn index .* cannot be used \(made before centring"
                                         r".*\): run `engine index sync --space musicnn`"):
        with Searcher(tmp_path) as s:
            s.knn(2, "musicnn", 5)
    with Store.open(tmp_path) as store:
        info = vectors.sync(store, spaces=("musicnn",))[0]  # built anew: no centre to update with
    assert info.kind == compressed.KIND and info.centre == tuple(written["centre"])
    with Searcher(tmp_path) as s:
        assert len(s.knn(2, "musicnn", 5)) == 5 and s.stale["musicnn"] is None


def test_dead_rows_are_compacted(tmp_path, small_threshold):
    _make(tmp_path)
    redone = np.arange(1, int(N * 0.4))  # 40 % re-analysed: dead rows past MAX_DEAD_SHARE
    with Store.open(tmp_path) as store:
        _put(store, redone, _mixture(len(redone), 9))
        vectors.sync(store, spaces=("musicnn",))
    rows = vectorfile.VectorFile.open(tmp_path, "musicnn", DIM)
    assert rows.dead_rows == 0 and rows.file_rows == N


def test_a_crashed_update_leaves_a_usable_index(tmp_path, small_threshold):
    x = _make(tmp_path)
    path = vectorfile.rows_path(tmp_path, "musicnn")
    with open(path, "ab") as f:  # rows appended, then killed before the map was written
        f.write(np.ones((10, DIM), np.float16).tobytes() + b"\x01\x02\x03")
    with Searcher(tmp_path) as s:
        found = s.knn(1, "musicnn", 5)
    assert [n.track_id for n in found] == [int(i) + 1 for i in np.argsort(-(x @ x[0]))[1:6]]
    with Store.open(tmp_path) as store:
        _put(store, [N + 1], _mixture(1, 3))
        vectors.sync(store, spaces=("musicnn",))
    rows = vectorfile.VectorFile.open(tmp_path, "musicnn", DIM)
    assert len(rows) == N + 1 and rows.file_rows == N + 1 + 10  # the torn row was cut off


def test_an_index_out_of_step_with_its_rows_is_built_anew(tmp_path, small_threshold):
    _make(tmp_path)
    before = vectors.read_info(tmp_path, "musicnn")
    rows = vectorfile.VectorFile.open(tmp_path, "musicnn", DIM)
    mapping = np.stack([np.asarray(rows.ids[1:]), np.asarray(rows.rows[1:])])
    np.save(vectorfile.map_path(tmp_path, "musicnn"), mapping)  # a map missing track 1
    with pytest.raises(QueryError, match=r"the musicnn index .* cannot be used .*engine index sync --space musicnn"):
        with Searcher(tmp_path) as s:
            s.knn(2, "musicnn", 5)
    with Store.open(tmp_path) as store:
        store._bump(["musicnn"])
        info = vectors.sync(store, spaces=("musicnn",))[0]
    assert info.count == N and len(vectorfile.VectorFile.open(tmp_path, "musicnn", DIM)) == N
    assert info.trained_at >= before.trained_at


def test_shrinking_below_the_threshold_goes_back_to_an_exact_index(tmp_path, small_threshold, monkeypatch):
    _make(tmp_path)
    monkeypatch.setattr(compressed, "COMPRESS_MIN_FLOATS", N * DIM * 4)
    with Store.open(tmp_path) as store:
        store.con.execute("DELETE FROM embeddings WHERE track_id > 1000")
        store._bump(["musicnn"])
        info = vectors.sync(store, spaces=("musicnn",))[0]
    assert info.kind == vectors.KIND_FLAT
    assert not vectorfile.rows_path(tmp_path, "musicnn").exists()
    assert not vectorfile.map_path(tmp_path, "musicnn").exists()


def test_engine_index_info(compressed_store):
    directory = compressed_store[0]
    result = CliRunner().invoke(cli, ["index", "info", "--store", str(directory)])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("musicnn"))
    assert "in step" in line and "RaBitQ" in line and "float16 re-rank" in line and "20,000" in line
    result = CliRunner().invoke(cli, ["index", "info", "--store", str(directory), "--format", "json"])
    rows = {r["space"]: r for r in json.loads(result.output)}
    assert rows["musicnn"]["kind"] == compressed.KIND and rows["musicnn"]["recall"] >= 0.95
    assert rows["musicnn"]["rows_bytes"] >= N * DIM * 2 and rows["effnet"]["state"] == "no vectors"


def test_engine_index_sync_says_what_it_did(tmp_path):
    with Store.open(tmp_path) as store:
        _put(store, range(1, 101), _mixture(100, 2))
    runner = CliRunner()
    result = runner.invoke(cli, ["index", "sync", "--store", str(tmp_path)])
    assert result.exit_code == 0 and result.output == "musicnn: flat, 100 vectors\n"
    # A space without vectors (its model missing) gets no index file.
    assert not vectors.index_path(tmp_path, "effnet").exists()
    result = runner.invoke(cli, ["index", "sync", "--store", str(tmp_path), "--space", "musicnn"])
    assert "every index is in step" in result.output
    result = runner.invoke(cli, ["index", "sync", "--store", str(tmp_path), "--space", "openl3"])
    assert result.exit_code == 1 and "unknown embedding space 'openl3'" in result.output


def test_a_row_file_from_elsewhere_is_refused_in_one_line(tmp_path, small_threshold):
    other = tmp_path / "other"
    _make(tmp_path / "mine", seed=1)
    _make(other, seed=5)  # same ids, other vectors
    for name in ("musicnn.f16", "musicnn.f16.map.npy"):
        (tmp_path / "mine" / name).write_bytes((other / name).read_bytes())
    with pytest.raises(QueryError, match=r"^the musicnn index .* cannot be used \(holds another vector "
                                         r"for track \d+\): run `engine index sync --space musicnn`"):
        with Searcher(tmp_path / "mine") as s:
            s.knn(2, "musicnn", 5)
    with Store.open_read_only(tmp_path / "mine") as store:
        rows = vectorfile.VectorFile.open(other, "musicnn", DIM)
        assert vectors.rows_mismatch(store, "musicnn", rows, seed=0).startswith("holds another vector")
    with Store.open_read_only(other) as store:  # its own rows agree with it
        rows = vectorfile.VectorFile.open(other, "musicnn", DIM)
        assert all(vectors.rows_mismatch(store, "musicnn", rows, seed=s) is None for s in range(5))


def test_rerank_depth_is_bounded_by_the_bytes_of_rows_it_reads(compressed_store, monkeypatch):
    directory, x, _ = compressed_store
    index = vectors.load(directory, "musicnn")
    rows = vectorfile.VectorFile.open(directory, "musicnn", DIM)
    query_ids = np.arange(1, 101, dtype=np.int64)
    queries = np.ascontiguousarray(x[query_ids - 1])
    sims = queries @ x.T
    sims[np.arange(len(query_ids)), query_ids - 1] = -np.inf  # a track is not its own neighbour
    truth = [set((np.argsort(-s)[:10] + 1).tolist()) for s in sims]
    loose = compressed.tune(index, rows, queries, query_ids, truth)
    # A budget of 25 rows of this dimension: deeper re-ranking is refused, more lists probed.
    monkeypatch.setattr(compressed, "RERANK_BUDGET_BYTES", 2 * DIM * compressed.RERANK_STEPS[0])
    tight = compressed.tune(index, rows, queries, query_ids, truth)
    import faiss

    nlist = faiss.extract_index_ivf(index).nlist
    assert loose.recall >= vectors.TUNED_RECALL and tight.recall >= vectors.TUNED_RECALL
    assert tight.rerank == compressed.RERANK_STEPS[0] or tight.nprobe == nlist
    assert loose.rerank > compressed.RERANK_STEPS[0] and tight.nprobe > loose.nprobe


def test_row_blocks_skip_dead_rows_and_stay_small(tmp_path):
    rng = np.random.default_rng(5)
    x = vectors.normalise(rng.standard_normal((3000, DIM)).astype(np.float32))
    writer = vectorfile.VectorFileWriter(tmp_path, "musicnn", DIM)
    writer.add(np.arange(1, 3001), x)
    rows = writer.commit()
    # Tracks 501-2500 re-analysed: their old rows are dead, a run of 2,000 in mid-file.
    writer = vectorfile.VectorFileWriter(tmp_path, "musicnn", DIM, base=rows)
    writer.add(np.arange(501, 2501), -x[500:2500])
    rows = writer.commit()
    seen_ids, seen = [], []
    for ids, vecs in rows.blocks(rows=256):
        assert len(ids) <= 256
        seen_ids.append(ids)
        seen.append(vecs)
    ids, vecs = np.concatenate(seen_ids), np.concatenate(seen)
    assert sorted(ids.tolist()) == list(range(1, 3001))
    want = np.where(((ids >= 501) & (ids <= 2500))[:, None], -x[ids - 1], x[ids - 1])
    np.testing.assert_allclose(vecs, want, atol=2e-3)


def _changed_store(directory, compare_block: int, monkeypatch) -> list[list[int]]:
    """A store updated in place (deletions, re-analysed and new tracks) with the update
    comparing ``compare_block`` vectors at a time; the k-NN of a few tracks afterwards."""
    _make(directory)
    rng = np.random.default_rng(6)
    gone = rng.choice(np.arange(1, N + 1), 300, replace=False)
    redone = np.setdiff1d(rng.choice(np.arange(1, N + 1), 200, replace=False), gone)
    monkeypatch.setattr(compressed, "COMPARE_BLOCK", compare_block)
    with Store.open(directory) as store:
        store.con.execute("DELETE FROM embeddings WHERE track_id IN (SELECT unnest(?))", [gone.tolist()])
        _put(store, redone, _mixture(len(redone), 7))
        _put(store, np.arange(N + 1, N + 301), _mixture(300, 8))
        vectors.sync(store, spaces=("musicnn",))
    with Searcher(directory) as s:
        return [[n.track_id for n in s.knn(int(t), "musicnn", 10, where)]
                for t in (int(redone[0]), 5, 7) for where in (None, "voice < 0.3")]


def test_an_update_in_small_blocks_gives_the_same_index(tmp_path, small_threshold, monkeypatch):
    # The comparison pass reads the old rows with pread, COMPARE_BLOCK at a time; 777 does not
    # divide the chunks, 1 << 20 is one block a chunk (as the pass was before).
    small = _changed_store(tmp_path / "small", 777, monkeypatch)
    whole = _changed_store(tmp_path / "whole", 1 << 20, monkeypatch)
    assert small == whole
    for name in (vectorfile.rows_path, vectorfile.map_path):
        assert name(tmp_path / "small", "musicnn").read_bytes() == name(tmp_path / "whole", "musicnn").read_bytes()
    # Nothing changed since: the pass finds every row equal (float16 to the bit), appends none.
    rows = vectorfile.VectorFile.open(tmp_path / "small", "musicnn", DIM)
    info = vectors.read_info(tmp_path / "small", "musicnn")
    with Store.open(tmp_path / "small") as store:
        done = compressed.update(vectors.load(tmp_path / "small", "musicnn"), rows,
                                 lambda: store.embedding_chunks("musicnn", rows=3000), tmp_path / "small",
                                 "musicnn", centre=np.asarray(info.centre, np.float32))
    assert (done.added, done.removed, done.changed) == (0, 0, 0)
    assert done.vectors.file_rows == rows.file_rows


def test_rows_read_with_pread_equal_the_mapped_ones(tmp_path, monkeypatch):
    rng = np.random.default_rng(8)
    x = vectors.normalise(rng.standard_normal((5000, DIM)).astype(np.float32))
    writer = vectorfile.VectorFileWriter(tmp_path, "musicnn", DIM)
    writer.add(np.arange(1, 5001), x)
    rows = writer.commit()
    monkeypatch.setattr(vectorfile, "BLOCK_ROWS", 64)  # spans of at most 128 rows
    for wanted in (np.array([4999, 0, 17, 18, 19, 2500, 17]), rng.choice(5000, 1200, replace=False),
                   np.arange(300, 4000), np.zeros(0, np.int64)):
        np.testing.assert_array_equal(rows.read(wanted), rows.data[wanted])
    ids = rng.choice(np.arange(1, 5001), 700, replace=False)
    np.testing.assert_array_equal(rows.read_vectors(ids), rows.vectors(ids))
    with pytest.raises(KeyError):
        rows.read_vectors(np.array([3, 9999]))


def test_a_filter_is_fetched_once_while_the_store_is_read_only(compressed_store, monkeypatch):
    directory, _, _ = compressed_store
    fetched = []
    real = query.filter_ids
    monkeypatch.setattr(query, "filter_ids", lambda store, where: fetched.append(where) or real(store, where))
    monkeypatch.setattr(query, "ROWS_EXACT_BYTES", 0)  # a selector is kept with the ids
    monkeypatch.setattr(query, "ROWS_SCAN_BYTES", 0)
    with Searcher(directory) as s:
        first = [n.track_id for n in s.knn(1, "musicnn", 10, "voice < 0.5")]
        again = [n.track_id for n in s.knn(1, "musicnn", 10, " voice < 0.5 ")]
        s.knn(2, "musicnn", 10, "voice < 0.5")
        assert s.allowed("musicnn", "voice < 0.5") is s.allowed("musicnn", "voice < 0.5")
    assert first == again and fetched == ["voice < 0.5"]


def test_a_filter_on_a_writable_store_sees_its_changes(tmp_path, small_threshold):
    _make(tmp_path)
    with Store.open(tmp_path) as store:
        s = Searcher(store=store)
        first = [n.track_id for n in s.knn(1, "musicnn", 10, "voice < 0.5")]
        store.con.execute("UPDATE tracks SET voice = 0.9 WHERE track_id IN (SELECT unnest(?))", [first[:5]])
        second = [n.track_id for n in s.knn(1, "musicnn", 10, "voice < 0.5")]
    assert len(second) == 10 and not set(first[:5]) & set(second)
    assert second[:5] == first[5:]


def test_a_wide_filter_is_first_checked_on_the_best_candidates(compressed_store, monkeypatch):
    """On a large collection a filter not kept yet is applied to the unfiltered search's
    best candidates: a wide one gives the same k tracks as the filtered search without
    fetching its ids; a rare one (fewer than k among the candidates) falls back to
    fetching them, and still gives k tracks whenever k match."""
    directory, x, columns = compressed_store
    fetched = []
    real = query.filter_ids
    monkeypatch.setattr(query, "filter_ids", lambda store, where: fetched.append(where) or real(store, where))
    with Searcher(directory) as s:
        want_wide = [n.track_id for n in s.knn(7, "musicnn", 10, "voice < 0.5")]  # below the size: fetched
        want_rare = [n.track_id for n in s.knn(7, "musicnn", 10, "voice < 0.004")]
    assert fetched == ["voice < 0.5", "voice < 0.004"]
    monkeypatch.setattr(query, "POST_FILTER_MIN_TRACKS", 0)
    with Searcher(directory) as s:
        wide = s.knn(7, "musicnn", 10, "voice < 0.5")
        assert len(fetched) == 2  # checked on the candidates only
        rare = s.knn(7, "musicnn", 10, "voice < 0.004")
        assert fetched[2:] == ["voice < 0.004"]  # too few candidates matched: fetched
        again = s.knn(7, "musicnn", 10, "voice < 0.5")  # a filter's second query: fetched and kept
        assert fetched[3:] == ["voice < 0.5"] and [n.track_id for n in again] == want_wide
    assert [n.track_id for n in wide] == want_wide and [n.track_id for n in rare] == want_rare
    voice = columns["voice"]
    assert all(voice[n.track_id - 1] < 0.5 for n in wide) and len(rare) == 10
    assert all(voice[n.track_id - 1] < 0.004 for n in rare)


def test_a_writable_store_checks_a_wide_filter_on_the_candidates_every_time(tmp_path, small_threshold, monkeypatch):
    _make(tmp_path)
    fetched = []
    real = query.filter_ids
    monkeypatch.setattr(query, "filter_ids", lambda store, where: fetched.append(where) or real(store, where))
    monkeypatch.setattr(query, "POST_FILTER_MIN_TRACKS", 0)
    with Store.open(tmp_path) as store:
        s = Searcher(store=store)
        first = [n.track_id for n in s.knn(1, "musicnn", 10, "voice < 0.5")]
        store.con.execute("UPDATE tracks SET voice = 0.9 WHERE track_id IN (SELECT unnest(?))", [first[:5]])
        second = [n.track_id for n in s.knn(1, "musicnn", 10, "voice < 0.5")]
    assert fetched == [] and second[:5] == first[5:] and not set(first[:5]) & set(second)


def test_a_bad_filter_checked_on_the_candidates_names_itself_in_one_line(compressed_store, monkeypatch):
    from index.usersql import BadSQLError

    directory, _, _ = compressed_store
    monkeypatch.setattr(query, "POST_FILTER_MIN_TRACKS", 0)
    with Searcher(directory) as s, pytest.raises(BadSQLError) as err:
        s.knn(7, "musicnn", 10, "no_such_column > 1")
    assert "bad WHERE filter 'no_such_column > 1'" in str(err.value) and "\n" not in str(err.value)
