"""index.vectors: an approximate (IVF) index follows the store in place, and is retrained
only when the collection has grown or shrunk past RETRAIN_FACTOR."""

from __future__ import annotations

import numpy as np
import pytest

from index import vectors
from index.store import Store

DIM = 16


def _vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).standard_normal((32, DIM)).astype(np.float32)
    return centres[rng.integers(0, 32, n)] + 0.7 * rng.standard_normal((n, DIM)).astype(np.float32)


def _put(store: Store, ids, vecs) -> None:
    """Insert or replace these tracks' musicnn vectors and bump the space's generation."""
    ids = [int(i) for i in ids]
    store.con.execute("DELETE FROM embeddings WHERE space = 'musicnn' AND track_id IN "
                      "(SELECT unnest(?))", [ids])
    store.con.execute("INSERT INTO embeddings SELECT unnest(?), 'musicnn', unnest(?)",
                      [ids, np.asarray(vecs, np.float32).tolist()])
    store._bump(["musicnn"])


def _drop(store: Store, ids) -> None:
    store.con.execute("DELETE FROM embeddings WHERE space = 'musicnn' AND track_id IN "
                      "(SELECT unnest(?))", [[int(i) for i in ids]])
    store._bump(["musicnn"])


def _centre(store: Store) -> np.ndarray:
    return np.asarray(vectors.read_info(store.directory, "musicnn").centre, np.float32)


def _assert_index_equals_store(store: Store, index) -> None:
    ids, vecs = store.embedding_matrix("musicnn")
    got_ids, got_vecs = vectors.ivf_contents(index)
    order = np.argsort(got_ids)
    np.testing.assert_array_equal(got_ids[order], ids)
    prepared = vectors.prepare(vecs, _centre(store))
    np.testing.assert_array_equal(got_vecs[order], prepared)
    # and it still searches right: with every list probed, IVF-Flat is exact
    q = prepared[:20]
    index.nprobe = index.nlist
    _, found = index.search(q, 5)
    exact = np.argsort(-(q @ prepared.T), axis=1)[:, :5]
    np.testing.assert_array_equal(found, ids[exact])


@pytest.fixture
def ivf_forced(monkeypatch):
    monkeypatch.setattr(vectors, "EXACT_MAX_FLOATS", 0)  # IVF for any size it can train on


def test_ivf_index_is_updated_in_place_then_retrained_past_the_factor(tmp_path, ivf_forced):
    n = 20_000
    with Store.open(tmp_path) as store:
        _put(store, range(1, n + 1), _vectors(n, 1))
        info = vectors.sync(store, spaces=("musicnn",))[0]
        assert info.trained_on == n and info.count == n
        centre = _centre(store)
        shrunk = _vectors(n, 1).mean(0) * n / (n + vectors.CENTRE_PRIOR)
        np.testing.assert_allclose(centre, shrunk, atol=1e-5)  # the collection's mean (shrunk)
        index = vectors.load(tmp_path, "musicnn")
        centroids = index.quantizer.reconstruct_n(0, index.nlist)
        nprobe = index.nprobe

        # delete some tracks, re-analyse others (new vectors), add new ones
        _drop(store, range(1, 301))
        _put(store, range(1000, 1200), _vectors(200, 2))
        _put(store, range(n + 1, n + 2001), _vectors(2000, 3))
        info = vectors.sync(store, spaces=("musicnn",))[0]
        assert info.count == n - 300 + 2000 and info.trained_on == n  # not retrained
        np.testing.assert_array_equal(_centre(store), centre)  # ... and centred as it was trained
        assert vectors.sync(store, spaces=("musicnn",)) == []  # in step now
        index = vectors.load(tmp_path, "musicnn")
        np.testing.assert_array_equal(index.quantizer.reconstruct_n(0, index.nlist), centroids)
        assert index.nprobe == nprobe
        _assert_index_equals_store(store, index)
        assert index.reconstruct(1100).tolist() == pytest.approx(
            vectors.prepare(_vectors(200, 2), centre)[100].tolist())  # the direct map follows too

        # a memory-mapped read (what searches use) finds the same neighbours
        mapped = vectors.load(tmp_path, "musicnn", mmap=True)
        mapped.nprobe = index.nprobe
        q = vectors.prepare(_vectors(10, 7), centre)
        np.testing.assert_array_equal(mapped.search(q, 10)[1], index.search(q, 10)[1])
        del mapped

        # grown past RETRAIN_FACTOR x the training set: trained anew on everything
        _put(store, range(n + 2001, int(n * vectors.RETRAIN_FACTOR) + 2001), _vectors(n, 4))
        info = vectors.sync(store, spaces=("musicnn",))[0]
        assert info.trained_on == info.count > vectors.RETRAIN_FACTOR * n
        assert not np.array_equal(_centre(store), centre)  # centred anew
        _assert_index_equals_store(store, vectors.load(tmp_path, "musicnn"))


def test_an_index_from_before_the_update_scheme_is_rebuilt(tmp_path, ivf_forced):
    n = 20_000
    with Store.open(tmp_path) as store:
        _put(store, range(1, n + 1), _vectors(n, 1))
        vectors.sync(store, spaces=("musicnn",))
        info_file = tmp_path / "musicnn.faiss.json"
        info_file.write_text(info_file.read_text().replace(', "trained_on": 20000', ""))
        assert vectors.read_info(tmp_path, "musicnn").trained_on == 0
        _drop(store, [5])
        info = vectors.sync(store, spaces=("musicnn",))[0]
        assert info.trained_on == n - 1  # built anew, and it says so now
        _assert_index_equals_store(store, vectors.load(tmp_path, "musicnn"))


def test_an_index_from_before_centring_is_rebuilt_centred(tmp_path):
    """Indexes written before centring hold raw normalised vectors: stale, whatever the generation."""
    from index.query import Searcher

    with Store.open(tmp_path) as store:
        _put(store, range(1, 301), _vectors(300, 1))
        vectors.sync(store, spaces=("musicnn",))
        info_file = tmp_path / "musicnn.faiss.json"
        info = info_file.read_text()
        assert '"centre": [' in info
        info_file.write_text(info[:info.index(', "centre"')] + "}")
        assert vectors.read_info(tmp_path, "musicnn").centre is None
        assert not vectors.is_fresh(store, "musicnn")
        assert vectors.sync(store, spaces=("musicnn",))[0].centre is not None
    with Searcher(tmp_path) as s:
        ids, raw = s.store.embedding_matrix("musicnn")
        prepared = vectors.prepare(raw, raw.sum(0) / (len(raw) + vectors.CENTRE_PRIOR))
        np.testing.assert_allclose(s.vectors("musicnn", [7])[0], prepared[6], atol=1e-5)
        # a track's vector read from DuckDB is prepared the same way as the index's
        s._indexes["musicnn"].remove_ids(np.array([7], np.int64))
        from index.tracks import TrackSummary as TrackRef

        np.testing.assert_allclose(s.query_vector(TrackRef(7, "", None, None, None, None), "musicnn")[0],
                                   prepared[6], atol=1e-5)
        found, _ = s.nearest("musicnn", prepared[6], 5)
        exact = np.argsort(-(prepared @ prepared[6]))[1:6] + 1
        assert found.tolist() == exact.tolist()
