"""The DuckDB store and FAISS sync, independent of audio analysis."""

from __future__ import annotations

import numpy as np
import pytest

from index import vectors
from index.store import FailedFile, NoStoreError, Store, StoreBusyError, TrackRecord
from tests.conftest import OUTSIDE


def _record(path: str, seed: int, *, effnet: bool = False) -> TrackRecord:
    rng = np.random.default_rng(seed)
    rec = TrackRecord(
        path=path,
        columns={"bpm": 120.0 + seed, "key_edma": "A", "scale_edma": "minor", "has_musicnn": True,
                 "loudness_lufs": float("nan")},
        tags=[("musicnn", "rock", 0.5), ("musicnn", "jazz", 0.1)],
        embeddings={"musicnn": rng.standard_normal(200).astype(np.float32)},
    )
    if effnet:
        rec.styles = [("Electronic", "Techno", 0.9), ("Rock", "Punk", 0.1)]
        rec.embeddings["effnet"] = rng.standard_normal(1280).astype(np.float32)
        rec.columns["has_effnet"] = True
    return rec


def test_write_replace_delete_and_faiss_sync(tmp_path):
    with Store.open(tmp_path) as store:
        store.write_tracks([_record("/m/a.ogg", 1), _record("/m/b.ogg", 2)],
                           [FailedFile("/m/bad.mp3", 3, 4, "decode", "not audio")])
        assert store.count() == 2 and store.count("failures") == 1
        a_id = store.known_files()["/m/a.ogg"].track_id
        # NaN is stored as NULL ("not measurable").
        assert store._exec("SELECT count(*) FROM tracks WHERE loudness_lufs IS NULL")[0][0] == 2

        # Only spaces with vectors get an index; an empty space (its model missing) gets no file.
        assert [i.space for i in vectors.sync(store)] == ["musicnn"]
        assert vectors.read_info(tmp_path, "effnet") is None
        assert vectors.sync(store) == []  # fresh now
        # Adding EffNet outputs later keeps the track id and the MusiCNN tags.
        store.write_tracks([_record("/m/a.ogg", 1, effnet=True)])
        known = store.known_files()["/m/a.ogg"]
        assert known.track_id == a_id and known.has_effnet
        assert store._exec("SELECT count(*) FROM tags WHERE track_id = ?", [a_id])[0][0] == 2
        assert [i.space for i in vectors.sync(store)] == ["musicnn", "effnet"]
        assert vectors.read_info(tmp_path, "effnet").count == 1

        # A file that now analyses clears its failure.
        store.write_tracks([_record("/m/bad.mp3", 5)])
        assert store.count("failures") == 0
        assert store.delete(["/m/b.ogg", "/m/nowhere.ogg"]) == 1
        assert store.count() == 2
        assert store._exec("SELECT count(*) FROM embeddings")[0][0] == 3
        info = vectors.sync(store)
        assert {i.space: i.count for i in info} == {"musicnn": 2}

    index = vectors.load(tmp_path, "musicnn")
    assert index.ntotal == 2


def test_rows_are_atomic_per_batch(tmp_path):
    with Store.open(tmp_path) as store:
        bad = _record("/m/x.ogg", 1)
        bad.tags.append(("musicnn", "broken", "not a number"))  # fails mid-transaction
        with pytest.raises(Exception):
            store.write_tracks([_record("/m/ok.ogg", 0), bad])
        assert store.count() == 0 and store.count("tags") == 0


def test_unknown_column_rejected():
    with pytest.raises(ValueError, match="not tracks columns"):
        TrackRecord(path="/x", columns={"tempo": 1})


def test_one_writer_at_a_time_and_missing_store_message(tmp_path):
    with Store.open(tmp_path / "s"):
        with pytest.raises(StoreBusyError, match="in use"):
            Store.open(tmp_path / "s")
    with pytest.raises(NoStoreError, match="engine build"):
        Store.open_read_only(tmp_path / "none")


def test_reading_while_a_build_writes_says_so(tmp_path):
    import subprocess
    import sys
    import textwrap

    with Store.open(tmp_path):
        pass
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from index.store import Store
        s = Store.open({str(tmp_path)!r}); print("open", flush=True); time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True, cwd=OUTSIDE)
    try:
        assert holder.stdout.readline().strip() == "open"
        # A reader waits its turn (a build holds the file only while it commits), then
        # says who holds it.
        with pytest.raises(StoreBusyError, match=rf"held for writing by PID {holder.pid} .* "
                                                 "did not become free within 1 s"):
            Store.open_read_only(tmp_path, wait_s=1)
    finally:
        holder.kill()
        holder.wait()


def test_a_store_made_by_an_older_engine_is_brought_up_to_date_for_reading(tmp_path):
    """Reading commands on a store that lacks newer tables and columns add them, empty,
    and keep every row (before: `engine sql` said 'Catalog Error: Table with name
    listener_quality does not exist')."""
    import duckdb

    from index.sql import SqlSession
    from index.store import missing_schema

    with Store.open(tmp_path) as store:
        store.write_tracks([_record("/m/a.ogg", 1), _record("/m/b.ogg", 2)])
    con = duckdb.connect(str(tmp_path / "engine.duckdb"))
    con.execute("DROP TABLE listener_quality; DROP TABLE user_tags")
    con.execute("ALTER TABLE tracks DROP COLUMN danceable")
    assert set(missing_schema(con)) == {"listener_quality", "user_tags", "tracks.danceable"}
    con.close()

    with SqlSession.open(tmp_path) as session:
        got = session.query("SELECT count(*) AS n, count(danceable) AS d FROM tracks")
        assert list(got.rows) == [(2, 0)]
    with Store.open_read_only(tmp_path) as store:
        assert missing_schema(store.con) == []
        assert store._exec("SELECT count(*) FROM tags")[0][0] == 4


def test_tracks_analysed_before_the_defect_profile_are_analysed_again_once(tmp_path):
    """A store made before tracks.quality_profile gets the column (empty) when opened, and
    its tracks count as lacking the quality analysis, so the next build analyses them
    again and the listener predictions get their inputs."""
    import duckdb

    from index.store import missing_schema

    done = {"quality": 90.0, "band_levels": [0.0] * 27, "quality_profile": [0.5] * 14}
    with Store.open(tmp_path) as store:
        rec = _record("/m/a.ogg", 1)
        rec.columns.update(done)
        store.write_tracks([rec])
        assert store.known_files()["/m/a.ogg"].has_quality
    con = duckdb.connect(str(tmp_path / "engine.duckdb"))
    con.execute("ALTER TABLE tracks DROP COLUMN quality_profile")
    assert missing_schema(con) == ["tracks.quality_profile"]
    con.close()
    with Store.open(tmp_path) as store:
        assert missing_schema(store.con) == []
        assert not store.known_files()["/m/a.ogg"].has_quality


def test_an_older_store_that_cannot_be_brought_up_to_date_says_so_in_one_line(tmp_path):
    """While a build holds the store, reading an older store cannot add what it lacks:
    one line naming the store, what it lacks and what to do; the store is left as it was."""
    import fcntl
    import os

    import duckdb

    from index.store import StoreError

    with Store.open(tmp_path) as store:
        store.write_tracks([_record("/m/a.ogg", 1)])
    con = duckdb.connect(str(tmp_path / "engine.duckdb"))
    con.execute("DROP TABLE user_tags")
    con.close()
    held = os.open(tmp_path / ".lock", os.O_RDWR)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running build does
        with pytest.raises(StoreError) as err:
            Store.open_read_only(tmp_path)
    finally:
        os.close(held)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path) in message and "user_tags" in message
    assert "run `engine build`" in message
    with Store.open_read_only(tmp_path) as store:  # once the build is gone it is upgraded
        assert store._exec("SELECT count(*) FROM tracks")[0][0] == 1
