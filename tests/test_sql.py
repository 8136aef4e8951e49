"""`engine sql`: plain DuckDB SQL over the store, strictly read-only.

Fast tests use a small hand-made store; the corpus store (slow) checks the views against
direct reads and takes the fuzz run. Every refusal is checked through the CLI, and the
store's files, tables and row counts are compared before and after.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cli import cli
from index.sql import QueryResult, SqlError, SqlSession, check_read_only, run_query
from index.store import DB_NAME, NoStoreError, Store, StoreBusyError, TrackRecord

KEYS = [("A", "minor"), ("C", "major"), ("Bb", "minor"), ("F#", "major")]


# -- a small store ---------------------------------------------------------------------------
def _write_small_store(directory: Path) -> None:
    """8 tracks: keys cycle through KEYS (edma shifted by one), 3 styles, 2 tag sources."""
    records = []
    for i in range(8):
        key, scale = KEYS[i % 4]
        edma_key, edma_scale = KEYS[(i + 1) % 4]
        records.append(TrackRecord(
            path=f"/music/{i}.ogg",
            columns={
                "artist": f"Artist {i % 3}", "title": f"Song {i}", "album": "Album", "year": 2000 + i,
                "bpm": 100.0 + 5 * i, "duration": 60.0 + i,
                "key_temperley": key, "scale_temperley": scale, "key_strength_temperley": 0.5,
                "key_krumhansl": key, "scale_krumhansl": scale, "key_strength_krumhansl": 0.4,
                "key_edma": edma_key, "scale_edma": edma_scale, "key_strength_edma": 0.6,
                "genre": "Electronic" if i < 5 else "Rock", "top_style": "House" if i < 5 else "Punk",
                "content_hash": f"h{i}", "file_size": 1, "mtime_ns": 1,
            },
            styles=[("Electronic", "Techno", i / 10), ("Electronic", "House", 1 - i / 10),
                    ("Rock", "Punk", 0.05 * i)],
            tags=[("musicnn", "rock", 0.1 * i), ("moods_mirex", "Cluster1", 0.2)],
            embeddings={"musicnn": np.full(4, i, np.float32)},
        ))
    with Store.open(directory) as store:
        store.write_tracks(records)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """Shared by the module's tests, which only read it: unchanged at the end, or an error."""
    directory = tmp_path_factory.mktemp("small-store")
    _write_small_store(directory)
    before = fingerprint(directory)
    yield directory
    assert fingerprint(directory) == before, "a test changed the small store"


def store_files(store_dir: Path) -> dict:
    """Every file of the store folder: SHA-256, size and mtime (cheap enough for every test)."""
    files = {}
    for path in sorted(store_dir.rglob("*")):
        if path.is_file():
            stat = path.stat()
            files[str(path.relative_to(store_dir))] = (
                hashlib.sha256(path.read_bytes()).hexdigest(), stat.st_size, stat.st_mtime_ns)
    return files


def fingerprint(store_dir: Path) -> dict:
    """Everything that must not change: the store's files (bytes, size, mtime), the objects
    in the database and each table's row count."""
    files = store_files(store_dir)
    with Store.open_read_only(store_dir) as store:
        tables = [r[0] for r in store._exec(
            "SELECT table_name FROM duckdb_tables() WHERE NOT internal ORDER BY 1")]
        objects = store._exec(
            "SELECT 'view', view_name FROM duckdb_views() WHERE NOT internal "
            "UNION ALL SELECT 'sequence', sequence_name FROM duckdb_sequences() "
            "UNION ALL SELECT 'index', index_name FROM duckdb_indexes() "
            "UNION ALL SELECT 'macro', function_name FROM duckdb_functions() "
            "WHERE NOT internal AND function_type LIKE '%macro%' ORDER BY ALL")
        counts = {t: store._exec(f'SELECT count(*) FROM "{t}"')[0][0] for t in tables}
    return {"files": files, "tables": tables, "objects": objects, "counts": counts}


def sql_cli(store: Path, *args: str):
    return CliRunner().invoke(cli, ["sql", *args, "--store", str(store)])


def _ids(result: QueryResult) -> list[int]:
    return sorted(r[0] for r in result.rows)


# -- views and macros ------------------------------------------------------------------------
def test_views_and_macros_answer_the_common_questions(small_store):
    with SqlSession.open(small_store) as s:
        lib = s.query("SELECT * FROM library ORDER BY track_id")
        assert len(lib.rows) == 8 and lib.columns[:4] == ("track_id", "artist", "title", "album")
        first = dict(zip(lib.columns, lib.rows[0]))
        assert first["key"] == "A minor" and first["bpm"] == 100.0 and first["path"] == "/music/0.ogg"

        # Keys: under temperley tracks 0 and 4 are in A minor; enharmonics and short forms agree.
        a_minor = _ids(s.query("SELECT track_id FROM in_key('A minor')"))
        assert a_minor == [1, 5]  # track ids start at 1
        assert _ids(s.query("SELECT track_id FROM in_key('am')")) == a_minor
        assert _ids(s.query("SELECT track_id FROM in_key('A')")) == a_minor  # no scale: any
        bb = _ids(s.query("SELECT track_id FROM in_key('Bb minor')"))
        assert bb == [3, 7]
        assert _ids(s.query("SELECT track_id FROM in_key('A#m')")) == bb
        assert _ids(s.query("SELECT track_id FROM in_key('bbm', 'krumhansl')")) == bb
        assert _ids(s.query("SELECT track_id FROM in_key('Gb major')")) == [4, 8]
        # edma is shifted by one: its A minor tracks are 3 and 7 (ids 4 and 8).
        assert _ids(s.query("SELECT track_id FROM in_key('A minor', 'EDMA')")) == [4, 8]
        # The key shown is the asked profile's, not library.key (temperley's: F# major here).
        rows = s.query("SELECT key, key_strength FROM in_key('A minor', 'edma')").rows
        assert rows == (("A minor", pytest.approx(0.6)),) * 2
        keys = s.query("SELECT profile, count(*) FROM track_keys GROUP BY ALL ORDER BY ALL").rows
        assert keys == (("edma", 8), ("krumhansl", 8), ("temperley", 8))
        assert s.query("SELECT pitch_class('F#'), pitch_class('Gb'), pitch_class('C')").rows == ((6, 6, 0),)
        with pytest.raises(SqlError, match="cannot read the key 'H minor'"):
            s.query("SELECT * FROM in_key('H minor')")
        with pytest.raises(SqlError, match="unknown key profile 'shazam'"):
            s.query("SELECT * FROM in_key('A minor', 'shazam')")

        # Styles: by name in any case, or Genre---Style; ordered by activation.
        top = s.query("SELECT title FROM tracks ORDER BY style(track_id, 'techno') DESC LIMIT 2")
        assert top.rows == (("Song 7",), ("Song 6",))
        got = s.query("SELECT track_id, style(track_id, 'Electronic---House') FROM tracks ORDER BY 1")
        assert [round(v, 5) for _, v in got.rows] == [round(1 - i / 10, 5) for i in range(8)]
        with pytest.raises(SqlError, match="no style named 'Technoo'.*SELECT DISTINCT genre, style"):
            s.query("SELECT style(track_id, 'Technoo') FROM tracks")
        # A misspelt name is answered with the closest ones, best first.
        with pytest.raises(SqlError, match=r"no style named 'Tekno' in the store; did you mean 'Techno', "):
            s.query("SELECT style(track_id, 'Tekno') FROM tracks")
        with pytest.raises(SqlError, match=r"no tag named 'rok' in the store; did you mean 'rock', "):
            s.query("SELECT tag(track_id, 'rok') FROM tracks")
        ranks = s.query("SELECT track_id, style FROM track_styles WHERE rank = 1 ORDER BY 1").rows
        # Track 5 ties Techno and House at 0.5: label (insertion) order wins, as in the build.
        assert [st_ for _, st_ in ranks] == ["House"] * 5 + ["Techno"] * 3
        assert s.query("SELECT * FROM genres ORDER BY tracks DESC").rows == (("Electronic", 5), ("Rock", 3))
        assert set(s.query("SELECT * FROM top_styles").rows) == {("Electronic", "House", 5), ("Rock", "Punk", 3)}

        # Tags: from one source, or the best of any source.
        tags = s.query("SELECT tag(track_id, 'rock'), tag(track_id, 'musicnn', 'ROCK'), "
                       "tag(track_id, 'moods_mirex', 'cluster1') FROM tracks WHERE title = 'Song 3'")
        assert tags.rows[0] == pytest.approx((0.3, 0.3, 0.2))
        with pytest.raises(SqlError, match="no tag named 'rock' from source 'moods_mirex'"):
            s.query("SELECT tag(track_id, 'moods_mirex', 'rock') FROM tracks")

        # Plain SQL keeps working: DESCRIBE, SHOW, SUMMARIZE, EXPLAIN, CTEs, catalog listings.
        assert ("bpm", "DOUBLE") in {r[:2] for r in s.query("DESCRIBE library").rows}
        shown = {r[0] for r in s.query("SHOW TABLES").rows}
        assert {"tracks", "styles", "library", "genres"} <= shown
        assert s.query("SUMMARIZE genres").rows
        assert s.query("EXPLAIN SELECT * FROM library").columns == ("explain_key", "explain_value")
        assert s.query("explain analyze select count(*) from tracks").rows
        assert s.query("WITH t AS (FROM tracks) SELECT count(*) FROM t").rows == ((8,),)
        assert s.query("SELECT count(*) FROM duckdb_tables() WHERE database_name = 'engine'").rows[0][0] >= 5

        # limit: at most that many rows, and says when more existed.
        cut = s.query("SELECT * FROM library ORDER BY bpm DESC", limit=3)
        assert cut.truncated and [r[2] for r in cut.rows] == ["Song 7", "Song 6", "Song 5"]
        assert not s.query("SELECT * FROM library", limit=8).truncated


def test_views_work_on_an_empty_or_sparse_store(tmp_path):
    with Store.open(tmp_path):
        pass
    for query in ("SELECT count(*) FROM library", "SELECT count(*) FROM in_key('C major')",
                  "SELECT count(*) FROM track_styles", "SELECT count(*) FROM genres"):
        assert run_query(tmp_path, query).rows == ((0,),)
    # A track with no tags, key or model outputs: the file name stands in for the title,
    # and style()/tag() are NULL rather than errors while the store has none at all.
    with Store.open(tmp_path) as store:
        store.write_tracks([TrackRecord(path="/music/untitled take.ogg", columns={})])
    got = run_query(tmp_path, "SELECT title, key, style(track_id, 'Techno'), tag(track_id, 'rock'), "
                              "tag(track_id, 'musicnn', 'rock') FROM library")
    assert got.rows == (("untitled take.ogg", None, None, None, None),)


# -- refusals --------------------------------------------------------------------------------
# (query, what the message says). {sink} is a folder that must stay empty.
FORBIDDEN = [
    ("INSERT INTO tracks (track_id) VALUES (99)", "refused: INSERT writes rows"),
    ("insert or replace into meta values ('schema_version', '9')", "refused: INSERT"),
    ("UPDATE tracks SET bpm = 0", "refused: UPDATE writes rows"),
    ("DELETE FROM tracks", "refused: DELETE deletes rows"),
    ("TRUNCATE tags", "refused: TRUNCATE deletes rows"),
    ("MERGE INTO tracks USING tracks t2 ON tracks.track_id = t2.track_id WHEN MATCHED THEN DELETE",
     "refused: MERGE writes rows"),
    ("WITH x AS (SELECT 1) DELETE FROM tracks", "refused: DELETE"),
    ("CREATE TABLE x AS SELECT * FROM tracks", "refused: CREATE creates objects"),
    ("create temp view library as select 1", "refused: CREATE"),
    ("CREATE OR REPLACE MACRO style(a, b) AS 1", "refused: CREATE"),
    ("CREATE SECRET (TYPE s3)", "refused: CREATE"),
    ("DROP TABLE tracks", "refused: DROP drops objects"),
    ("ALTER TABLE tracks ADD COLUMN z INTEGER", "refused: ALTER changes the schema"),
    ("COMMENT ON TABLE tracks IS 'x'", "refused: COMMENT"),
    ("ATTACH '{sink}/new.duckdb' AS other", "refused: ATTACH attaches a database"),
    ("ATTACH ':memory:' AS m", "refused: ATTACH"),
    ("DETACH engine", "refused: DETACH"),
    ("USE memory", "refused: USE"),
    ("COPY tracks TO '{sink}/tracks.csv'", "refused: COPY copies to or from files"),
    ("COPY (SELECT * FROM tracks) TO '{sink}/t.parquet' (FORMAT parquet)", "refused: COPY"),
    ("COPY tracks FROM '{sink}/in.csv'", "refused: COPY"),
    ("EXPORT DATABASE '{sink}/export'", "refused: EXPORT writes the database to files"),
    ("IMPORT DATABASE '{sink}/export'", "refused: IMPORT reads a database from files"),
    ("INSTALL httpfs", "refused: INSTALL installs extensions"),
    ("FORCE INSTALL sqlite", "refused: FORCE"),
    ("LOAD httpfs", "refused: LOAD loads extensions"),
    ("UPDATE EXTENSIONS", "refused: UPDATE"),
    ("CALL checkpoint()", "refused: CALL calls a procedure"),
    ("CHECKPOINT", "refused: CHECKPOINT writes the database file"),
    ("FORCE CHECKPOINT", "refused: FORCE"),
    ("VACUUM", "refused: VACUUM"),
    ("ANALYZE", "refused: ANALYZE"),
    ("PRAGMA enable_profiling", "refused: PRAGMA"),
    ("PRAGMA profiling_output = '{sink}/profile.json'", "refused: PRAGMA"),
    ("PRAGMA table_info('tracks')", "for table info use DESCRIBE tracks"),
    ("SET enable_external_access = true", "refused: SET changes settings"),
    ("SET lock_configuration = false", "refused: SET"),
    ("RESET enable_external_access", "refused: RESET changes settings"),
    ("SET VARIABLE x = 1", "refused: SET"),
    ("SET temp_directory = '{sink}'", "refused: SET"),
    ("BEGIN TRANSACTION", "refused: BEGIN controls transactions"),
    ("COMMIT", "refused: COMMIT"),
    ("ROLLBACK", "refused: ROLLBACK"),
    ("PREPARE p AS DELETE FROM tracks", "refused: PREPARE"),
    ("EXECUTE p", "refused: EXECUTE"),
    ("PIVOT tracks ON genre USING count(*)", "refused: PIVOT"),
    ("EXPLAIN DELETE FROM tracks", "refused: DELETE"),
    ("EXPLAIN ANALYZE COPY tracks TO '{sink}/x.csv'", "refused: COPY"),
    # several statements, however they are hidden
    ("select 1; drop table tracks", "the query holds 2 statements"),
    ("SELECT 1;DELETE FROM tracks;", "the query holds 2 statements"),
    ("select 1 /* ; */; -- comment\n drop table tracks", "the query holds 2 statements"),
    ("SELECT ';'; SELECT 2", "the query holds 2 statements"),
    # reading files or the network from a SELECT
    ("SELECT * FROM read_csv('/etc/passwd')", "refused: read_csv() reads from outside the store"),
    ("select * from READ_CSV_AUTO('/etc/passwd')", "refused: read_csv_auto()"),
    ("SELECT * FROM read_parquet('{sink}/x.parquet')", "refused: read_parquet()"),
    ("SELECT * FROM read_json('{sink}/x.json')", "refused: read_json()"),
    ("SELECT content FROM read_text('/etc/hostname')", "refused: read_text()"),
    ("SELECT * FROM read_blob('/etc/hostname')", "refused: read_blob()"),
    ("SELECT * FROM glob('/*')", "refused: glob()"),
    ("SELECT * FROM sqlite_scan('{sink}/x.db', 't')", "refused: sqlite_scan()"),
    ("SELECT * FROM parquet_metadata('{sink}/x.parquet')", "refused: parquet_metadata()"),
    ("SELECT * FROM query('SELECT * FROM read_csv(''/etc/passwd'')')", "refused: query()"),
    ("SELECT * FROM query_table('tracks')", "refused: query_table()"),
    ("SELECT * FROM system.main.read_csv('/etc/passwd')", "refused: read_csv()"),
    ("SELECT * FROM '/etc/passwd'", "refused: FROM '/etc/passwd' would read a file"),
    ("SELECT * FROM 'tracks.csv'", "refused: FROM 'tracks.csv' would read a file"),
    ('SELECT * FROM "data.parquet"', "refused: FROM 'data.parquet'"),
    ("FROM 'https://example.com/x.csv'", "refused: FROM 'https://example.com/x.csv'"),
    ("SELECT * FROM 's3://bucket/x.parquet'", "refused: FROM 's3://bucket/x.parquet'"),
    ("SELECT count(*) FROM tracks WHERE path IN (SELECT content FROM read_text('/etc/hostname'))",
     "refused: read_text()"),
    ("WITH x AS (SELECT * FROM read_csv('/etc/passwd')) SELECT 1", "refused: read_csv()"),
    ("SELECT 1 FROM tracks, LATERAL (SELECT * FROM read_csv(path))", "refused: read_csv()"),
    ("SELECT nextval('track_ids')", "refused: nextval() has side effects"),
    ("SELECT * FROM checkpoint()", "refused: checkpoint()"),
    # not a statement
    ("", "no query given"),
    ("  -- only a comment\n ;", "the query holds no statement"),
    ("SELEC 1", "cannot parse the query"),
]


@pytest.fixture()
def sink(tmp_path) -> Path:
    folder = tmp_path / "sink"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("query, message", FORBIDDEN, ids=[q[:40] for q, _ in FORBIDDEN])
def test_forbidden_statements_are_refused_in_one_line(small_store, sink, query, message):
    before = store_files(small_store)
    result = sql_cli(small_store, query.format(sink=sink))
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert store_files(small_store) == before
    assert list(sink.iterdir()) == []


def test_check_read_only_alone():
    check_read_only("SELECT 1")
    check_read_only("EXPLAIN SELECT * FROM tracks")
    with pytest.raises(SqlError, match="refused: DROP"):
        check_read_only("drop table tracks")
    with pytest.raises(SqlError, match="2 statements"):
        check_read_only("select 1; select 2")


def test_duckdb_itself_refuses_when_the_parser_check_is_bypassed(small_store, sink, tmp_path, monkeypatch):
    """Layers 2 and 3 hold on their own: raw statements on the session's connection."""
    import duckdb

    monkeypatch.chdir(tmp_path)
    before = fingerprint(small_store)
    with SqlSession.open(small_store) as session:
        con = session._con

        def refused(sql: str, fragment: str) -> None:
            with pytest.raises(duckdb.Error, match=fragment):
                con.execute(sql.format(sink=sink)).fetchall()

        refused("INSERT INTO tracks (track_id) VALUES (99)", "read-only")
        refused("DELETE FROM styles", "read-only")
        refused("CREATE TABLE engine.main.x (a INTEGER)", "read-only")
        refused("DROP TABLE tracks", "read-only")
        refused("COPY tracks TO '{sink}/t.csv'", "disabled")
        refused("COPY tracks TO 'relative.csv'", "disabled")
        refused("EXPORT DATABASE '{sink}/export'", "disabled|read-only")
        refused("ATTACH '{sink}/new.duckdb' AS other", "disabled")
        refused("SELECT * FROM read_csv('/etc/passwd')", "disabled")
        refused("SELECT * FROM read_text('/etc/hostname')", "disabled")
        refused("SELECT * FROM glob('/*')", "disabled")
        refused("SELECT * FROM 'https://example.com/x.csv'", "disabled|does not exist")
        refused("INSTALL httpfs", "disabled")
        refused("LOAD httpfs", "disabled")
        refused("SET enable_external_access = true", "locked")
        refused("SET lock_configuration = false", "locked")
        refused("RESET enable_external_access", "locked")
        refused("SET disabled_filesystems = ''", "locked")
        refused("SET temp_directory = '{sink}'", "locked")
        refused("SET autoload_known_extensions = true", "locked")
        refused("SET python_enable_replacements = true", "locked")
        settings_ = dict(con.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', "
            "'lock_configuration', 'autoinstall_known_extensions', 'temp_directory')").fetchall())
        assert settings_ == {"enable_external_access": "false", "lock_configuration": "true",
                             "autoinstall_known_extensions": "false", "temp_directory": ""}
    assert fingerprint(small_store) == before
    assert list(sink.iterdir()) == [] and not (tmp_path / "relative.csv").exists()


def test_nothing_is_written_anywhere(small_store, sink, tmp_path, monkeypatch):
    """Attempts to write files: refused, and no file appears (relative paths land in cwd)."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    before = fingerprint(small_store)
    attempts = [
        "COPY tracks TO '{sink}/a.csv'", "COPY tracks TO 'b.csv'", "EXPORT DATABASE '{sink}/e'",
        "ATTACH '{sink}/c.duckdb'", "ATTACH 'd.duckdb'", "INSTALL httpfs",
        "SET temp_directory = '{sink}'", "PRAGMA profiling_output = '{sink}/p.json'",
    ]
    with SqlSession.open(small_store) as session:
        for sql in attempts:
            with pytest.raises(SqlError, match="refused"):
                session.query(sql.format(sink=sink))
    assert list(sink.iterdir()) == [] and list(work.iterdir()) == []
    assert fingerprint(small_store) == before


# -- the command -----------------------------------------------------------------------------
def test_output_formats(small_store):
    table = sql_cli(small_store, "SELECT title, bpm FROM library ORDER BY bpm LIMIT 2")
    assert table.exit_code == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["title", "bpm"]
    assert "Song 0" in table.stdout and table.stdout.rstrip().endswith("(2 rows)")

    js = sql_cli(small_store, "SELECT title, bpm, 1.5::DECIMAL(3, 2) AS d, INTERVAL 2 HOUR AS i, "
                 "[1, 2] AS l FROM library ORDER BY bpm LIMIT 2", "--format", "json")
    assert js.exit_code == 0, js.stderr
    assert json.loads(js.stdout) == [
        {"title": "Song 0", "bpm": 100.0, "d": 1.5, "i": 7200.0, "l": [1, 2]},
        {"title": "Song 1", "bpm": 105.0, "d": 1.5, "i": 7200.0, "l": [1, 2]},
    ]

    csv_ = sql_cli(small_store, "SELECT genre, tracks FROM genres ORDER BY genre", "--format", "csv")
    assert csv_.stdout.splitlines() == ["genre,tracks", "Electronic,5", "Rock,3"]

    cut = sql_cli(small_store, "SELECT title FROM library", "--limit", "2", "--format", "csv")
    assert cut.exit_code == 0 and len(cut.stdout.splitlines()) == 3
    assert "stopped at --limit 2" in cut.stderr

    piped = CliRunner().invoke(cli, ["sql", "-", "--store", str(small_store), "--format", "csv"],
                               input="SELECT count(*) AS n FROM tracks\n")
    assert piped.stdout.splitlines() == ["n", "8"]


def test_store_from_environment_and_errors(small_store, tmp_path):
    ok = CliRunner().invoke(cli, ["sql", "SELECT count(*) AS n FROM library", "--format", "csv"],
                            env={"ENGINE_STORE": str(small_store)})
    assert ok.stdout.splitlines() == ["n", "8"]

    missing = sql_cli(tmp_path / "nowhere", "SELECT 1")
    assert missing.exit_code == 1 and "no store at" in missing.stderr and "engine build" in missing.stderr
    with pytest.raises(NoStoreError):
        run_query(tmp_path / "nowhere", "SELECT 1")

    for query, message in [
        ("SELECT * FROM nosuchtable", "Catalog Error: Table with name nosuchtable does not exist"),
        ("SELECT nosuchcolumn FROM tracks", "Binder Error"),
        ("SELECT 1 +", "cannot parse the query"),
    ]:
        bad = sql_cli(small_store, query)
        assert bad.exit_code == 1 and bad.stdout == ""
        assert len(bad.stderr.splitlines()) == 1 and message in bad.stderr, bad.stderr


def test_out_of_memory_says_what_to_do(small_store, monkeypatch):
    import index.sql

    monkeypatch.setitem(index.sql._SETTINGS, "memory_limit", "16MB")
    with pytest.raises(SqlError, match="Out of Memory Error.*never spills to disk, so narrow the query"):
        run_query(small_store, "SELECT count(DISTINCT range::VARCHAR) FROM range(20000000)")


def test_a_store_being_written_is_reported_busy(small_store, tmp_path, monkeypatch):
    monkeypatch.setenv("ENGINE_STORE_WAIT", "1")  # a reader waits its turn, here 1 s
    busy = tmp_path / "busy"
    shutil.copytree(small_store, busy)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
         "time.sleep(60)", str(busy / DB_NAME)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreBusyError, match=rf"held for writing by PID {holder.pid} .* within 1 s"):
            run_query(busy, "SELECT 1")
        result = sql_cli(busy, "SELECT 1")
        assert result.exit_code == 1 and "did not become free within 1 s" in result.stderr
    finally:
        holder.kill()
        holder.wait()


# -- fuzzing ---------------------------------------------------------------------------------
TABLES = ["tracks", "styles", "tags", "embeddings", "failures", "meta", "library", "track_keys",
          "track_styles", "genres", "top_styles", "engine.main.tracks", "temp.main.library",
          "memory.main.x", "information_schema.tables", "duckdb_tables()", "x"]
COLUMNS = ["*", "track_id", "title", "bpm", "artist", "genre", "style", "activation", "key", "path",
           "count(*)", "1", "NULL", "'a;b'", "\"track_id\"", "bpm * 2 AS double_bpm"]
CONDITIONS = ["bpm > 120", "genre = 'Electronic'", "title LIKE '%o%'", "track_id IN (1, 2, 3)",
              "style(track_id, 'Techno') > 0.1", "tag(track_id, 'rock') > 0", "key = 'A minor'",
              "path <> ''", "true", "bpm BETWEEN 90 AND 130 OR title IS NULL", "1 = 0"]
STRING_TRICKS = ["'; DROP TABLE tracks; --", "'';DELETE FROM tracks;--", "$$; DELETE FROM tracks; $$",
                 "/* ; */", "-- ;\n", "\\'; drop table tracks; --", "E'\\''", "'''", "\"", "`",
                 "\u2019; DROP TABLE tracks", "；DROP TABLE tracks", "\u200b", "\ufeff", "\u202e",
                 "ѕelect", "ＳＥＬＥＣＴ", "\x00", "\\x00", "🎵", "NULL", "\n", "\t"]
KEYWORDS = ["SELECT", "FROM", "WHERE", "INSERT", "INTO", "VALUES", "UPDATE", "SET", "DELETE",
            "DROP", "TABLE", "CREATE", "TEMP", "VIEW", "MACRO", "AS", "COPY", "TO", "ATTACH",
            "DETACH", "DATABASE", "EXPORT", "IMPORT", "INSTALL", "LOAD", "CALL", "PRAGMA", "RESET",
            "CHECKPOINT", "VACUUM", "BEGIN", "COMMIT", "ROLLBACK", "WITH", "EXPLAIN", "ANALYZE",
            "UNION", "ALL", "ORDER", "BY", "LIMIT", "read_csv", "glob", "query", "(", ")", ";", ",",
            "*", "=", "'x'", "1", "tracks", "library", "OR", "REPLACE", "USE", "memory", "LATERAL",
            "PIVOT", "ON", "USING", "RETURNING", "MERGE", "TRUNCATE", "FORCE", "SECRET", "::", "$1", "?"]


# Well-formed statements that write or reach outside ({t} table, {p} path, {f} format).
DANGEROUS_TEMPLATES = (
    "INSERT INTO {t} SELECT * FROM {t}", "INSERT OR REPLACE INTO meta VALUES ('k', 'v')",
    "UPDATE {t} SET track_id = track_id + 1", "DELETE FROM {t} WHERE true", "TRUNCATE {t}",
    "CREATE TABLE z AS SELECT * FROM {t}", "CREATE TEMP TABLE z AS SELECT 1",
    "CREATE OR REPLACE TEMP VIEW library AS SELECT 1", "CREATE SEQUENCE s",
    "CREATE INDEX i ON tracks (bpm)", "CREATE SCHEMA s", "CREATE TYPE m AS ENUM ('a')",
    "CREATE MACRO m() AS 1", "DROP TABLE IF EXISTS {t} CASCADE", "DROP VIEW library",
    "DROP MACRO style", "ALTER TABLE {t} RENAME TO z", "ALTER TABLE tracks DROP COLUMN bpm",
    "ATTACH '{p}' AS z", "ATTACH '{p}' (TYPE sqlite)", "ATTACH ':memory:' AS z", "DETACH engine",
    "USE memory", "COPY {t} TO '{p}' (FORMAT {f})", "COPY (SELECT * FROM {t}) TO '{p}'",
    "COPY {t} FROM '{p}'", "COPY FROM DATABASE engine TO memory", "EXPORT DATABASE '{p}'",
    "IMPORT DATABASE '{p}'", "INSTALL httpfs", "LOAD httpfs", "LOAD '{p}'", "FORCE INSTALL sqlite",
    "CALL checkpoint()", "CALL force_checkpoint()", "CHECKPOINT", "VACUUM", "ANALYZE",
    "PRAGMA enable_profiling", "PRAGMA profiling_output = '{p}'", "PRAGMA memory_limit = '1GB'",
    "SET enable_external_access = true", "SET GLOBAL lock_configuration = false",
    "RESET lock_configuration", "SET temp_directory = '{p}'", "SET allowed_directories = ['/']",
    "SET disabled_filesystems = ''", "SET profiling_output = '{p}'", "SET VARIABLE v = 1",
    "BEGIN", "COMMIT", "ROLLBACK", "START TRANSACTION", "ABORT", "PREPARE p AS DELETE FROM {t}",
    "EXECUTE p", "DEALLOCATE p", "COMMENT ON TABLE tracks IS 'x'",
    "SELECT * FROM read_csv('{p}')", "SELECT * FROM read_parquet('{p}')",
    "SELECT * FROM read_json_auto('{p}')", "SELECT * FROM read_text('{p}')",
    "SELECT * FROM read_blob('{p}')", "SELECT * FROM glob('{p}')", "SELECT * FROM '{p}'",
    "SELECT * FROM sqlite_scan('{p}', 'tracks')", "SELECT * FROM parquet_scan('{p}')",
    "SELECT * FROM sniff_csv('{p}')", "SELECT * FROM query('SELECT 1')",
    "SELECT * FROM query_table('{t}')", "SELECT nextval('track_ids')", "SELECT * FROM checkpoint()",
    "SELECT write_log('x')", "WITH x AS (SELECT * FROM read_csv('{p}')) SELECT * FROM x",
    "SELECT (SELECT count(*) FROM glob('{p}'))", "SELECT * FROM {t} WHERE EXISTS (FROM '{p}')",
    "EXPLAIN ANALYZE COPY {t} TO '{p}'", "EXPLAIN DELETE FROM {t}", "PIVOT {t} ON genre USING count(*)",
    "SELECT 1; COPY {t} TO '{p}'", "COPY {t} TO '{p}'; SELECT 1",
)


def _dangerous(paths: list[str]):
    """Well-formed statements that write or reach outside; each must be refused."""
    path = st.sampled_from(paths)
    table = st.sampled_from(TABLES[:11])
    fmt = st.sampled_from(["csv", "parquet", "json"])
    templates = st.sampled_from(DANGEROUS_TEMPLATES)
    return st.builds(lambda tpl, t, p, f: tpl.format(t=t, p=p, f=f), templates, table, path, fmt)


def _harmless():
    """SELECTs from a small grammar (some fail to bind: that is a clean SqlError too)."""
    select = st.builds(
        lambda cols, t, where, order, n: f"SELECT {', '.join(cols)} FROM {t}{where}{order} LIMIT {n}",
        st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=3), st.sampled_from(TABLES),
        st.one_of(st.just(""), st.sampled_from(CONDITIONS).map(lambda c: f" WHERE {c}")),
        st.sampled_from(["", " ORDER BY 1", " ORDER BY 1 DESC"]), st.integers(0, 20))
    fixed = st.sampled_from([
        "SELECT count(*) FROM tracks", "FROM library", "SELECT * FROM in_key('A minor')",
        "SELECT * FROM in_key('f#', 'edma')", "DESCRIBE tracks", "SHOW TABLES", "SUMMARIZE genres",
        "EXPLAIN SELECT * FROM library", "VALUES (1), (2)", "SELECT 'DROP TABLE tracks' AS s",
        "SELECT $$; DELETE FROM tracks; $$ AS s", "SELECT 1 -- ; DROP TABLE tracks",
        "SELECT /* ; DROP TABLE tracks */ 1", "SELECT ''';DROP TABLE tracks;--' AS s",
        "SELECT * FROM range(3) r, unnest([1, 2])", "SELECT current_setting('enable_external_access')",
        "WITH t AS (SELECT * FROM tracks) SELECT count(*) FROM t", "TABLE genres",
        "SELECT genre, count(*) FROM tracks GROUP BY ALL ORDER BY ALL",
        "SELECT title FROM tracks ORDER BY style(track_id, 'House') DESC LIMIT 3",
    ])
    return st.one_of(select, fixed)


def _mutate(statement):
    """Case tricks, comments, whitespace, unicode and string tricks around a statement."""
    def apply(s: str, how: int, extra: str, flips: list[bool]) -> str:
        if how == 0:
            return s
        if how == 1:
            return "".join(c.upper() if f else c.lower() for c, f in zip(s, flips + [False] * len(s)))
        if how == 2:
            return f"/* {extra} */ {s}"
        if how == 3:
            return f"-- {extra}\n{s} -- ;"
        if how == 4:
            return s.replace(" ", "/**/")
        if how == 5:
            return s.replace(" ", "\n\t ")
        if how == 6:
            return f"{s};;"
        if how == 7:
            return f"{s} {extra}"
        if how == 8:
            return f"{extra}{s}"
        return s.replace(" ", f" {extra} ", 1)

    return st.builds(apply, statement, st.integers(0, 9), st.sampled_from(STRING_TRICKS),
                     st.lists(st.booleans(), max_size=40))


def _statements(paths: list[str]):
    dangerous = _dangerous(paths)
    harmless = _harmless()
    single = st.one_of(dangerous, harmless)
    multi = st.lists(_mutate(single), min_size=2, max_size=4).flatmap(
        lambda parts: st.sampled_from([";", "; ", ";\n", " ; -- x\n", "；"]).map(lambda sep: sep.join(parts)))
    soup = st.lists(st.one_of(st.sampled_from(KEYWORDS), st.sampled_from(TABLES),
                              st.sampled_from(STRING_TRICKS), st.sampled_from(paths).map(lambda p: f"'{p}'")),
                    min_size=1, max_size=14).map(" ".join)
    wrapped = dangerous.map(lambda d: f"SELECT * FROM ({d})")
    return st.one_of(
        dangerous.map(lambda s: ("dangerous", s)),
        harmless.map(lambda s: ("any", s)),
        _mutate(single).map(lambda s: ("any", s)),
        multi.map(lambda s: ("any", s)),
        soup.map(lambda s: ("any", s)),
        wrapped.map(lambda s: ("any", s)),
        st.text(max_size=60).map(lambda s: ("any", s)),
    )


_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
          HealthCheck.large_base_example]


def fuzz(store_dir: Path, tmp_path: Path, monkeypatch, *, examples: int, one_shot: int = 0,
         raw: int = 0) -> Counter:
    """Throw generated statements at the store; prove it and the disk unchanged afterwards.

    Each example is a batch of statements run on one long-lived session (so anything a
    statement left behind would meet the next ones); ``one_shot`` more go through
    :func:`run_query`. Only :class:`QueryResult` or :class:`SqlError` may come back, and
    every dangerous statement is refused by the parser check alone. ``raw`` batches of
    dangerous statements then skip that check (executed on the session's connection), so
    DuckDB's read-only attach and locked settings must hold on their own.
    """
    sink, work, home = tmp_path / "sink", tmp_path / "cwd", tmp_path / "home"
    for folder in (sink, work, home):
        folder.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(home))
    paths = [f"{sink}/out.csv", f"{sink}/x.parquet", f"{sink}/db.duckdb", f"{sink}/dir", "rel.csv",
             "sub/rel.parquet", f"{store_dir}/engine.duckdb", f"{store_dir}/other.duckdb", "~/x.csv",
             f"file://{sink}/y.csv", "http://127.0.0.1:9/x.csv", "s3://bucket/x.parquet", "/etc/passwd"]
    before = fingerprint(store_dir)
    outcomes: Counter = Counter()

    def run(session_or_none, kind: str, sql: str) -> None:
        if kind == "dangerous" and session_or_none is not None:
            with pytest.raises(SqlError):
                session_or_none.check(sql)  # layer 1 alone refuses it
        try:
            if session_or_none is None:
                result = run_query(store_dir, sql, limit=5)
            else:
                result = session_or_none.query(sql, limit=5)
        except SqlError as exc:
            assert "\n" not in str(exc)
            outcomes["refused" if str(exc).startswith("refused") else "error"] += 1
            return
        assert kind != "dangerous", f"not refused: {sql!r}"
        assert isinstance(result, QueryResult) and len(result.rows) <= 5
        outcomes["ran"] += 1

    with SqlSession.open(store_dir) as session:
        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=_QUIET)
        @given(st.lists(_statements(paths), min_size=4, max_size=12))
        def batch(items):
            for kind, sql in items:
                run(session, kind, sql)

        batch()
        # The session is still locked down after everything it was sent.
        state = session.query("SELECT current_setting('enable_external_access'), "
                              "current_setting('lock_configuration')").rows
        assert state == ((False, True),)

    if one_shot:
        @settings(max_examples=one_shot, deadline=None, database=None, derandomize=True,
                  suppress_health_check=_QUIET)
        @given(_statements(paths))
        def single(item):
            run(None, *item)

        single()

    if raw:
        import duckdb

        with SqlSession.open(store_dir) as session:
            @settings(max_examples=raw, deadline=None, database=None, derandomize=True,
                      suppress_health_check=_QUIET)
            @given(st.lists(_dangerous(paths), min_size=4, max_size=12))
            def unchecked(items):
                for sql in items:
                    try:
                        session._con.execute(sql).fetchall()
                        outcomes["raw ran"] += 1  # e.g. ATTACH ':memory:', SET VARIABLE
                    except duckdb.Error:
                        outcomes["raw failed"] += 1

            unchecked()

    assert fingerprint(store_dir) == before
    for folder in (sink, work, home):
        assert list(folder.iterdir()) == [], f"files appeared in {folder}"
    assert not (store_dir / "other.duckdb").exists()
    # The generator must exercise all three outcomes, not just the parser.
    assert outcomes["ran"] > 0 and outcomes["refused"] > 0 and outcomes["error"] > 0, outcomes
    return outcomes


def test_fuzz_small_store(small_store, tmp_path, monkeypatch):
    store = tmp_path / "store"
    shutil.copytree(small_store, store)
    outcomes = fuzz(store, tmp_path, monkeypatch, examples=30, raw=5)
    assert sum(outcomes.values()) >= 120


# -- the corpus store (slow) -----------------------------------------------------------------
@pytest.mark.slow
def test_views_agree_with_direct_reads_on_the_corpus(corpus_store):
    with Store.open_read_only(corpus_store) as store:
        n_tracks = store.count()
        genre_counts = dict(store._exec(
            "SELECT genre, count(*) FROM tracks WHERE genre IS NOT NULL GROUP BY genre"))
        tops = store._exec("SELECT track_id, top_style, top_style_activation FROM tracks "
                           "WHERE top_style IS NOT NULL ORDER BY track_id")
        keys = {p: dict(store._exec(
            f"SELECT key_{p} || ' ' || scale_{p}, count(*) FROM tracks "
            f"WHERE key_{p} IS NOT NULL GROUP BY ALL")) for p in ("temperley", "krumhansl", "edma")}
        techno = dict(store._exec("SELECT track_id, activation FROM styles WHERE style = 'Techno'"))
        tag_rows = store._exec("SELECT track_id, source, tag, activation FROM tags "
                               "ORDER BY source, tag, track_id LIMIT 50")
    assert n_tracks == 61

    with SqlSession.open(corpus_store) as s:
        assert s.query("SELECT count(*) FROM library").rows == ((n_tracks,),)
        assert s.query("SELECT count(*) FROM library WHERE coalesce(title, '') = ''").rows == ((0,),)
        assert dict(s.query("SELECT genre, tracks FROM genres").rows) == genre_counts
        assert sum(r[2] for r in s.query("SELECT * FROM top_styles").rows) == len(tops)
        # The top style is rank 1 in track_styles and its activation matches style().
        got = s.query("SELECT track_id, style, style(track_id, style) FROM track_styles "
                      "WHERE rank = 1 ORDER BY track_id").rows
        assert [(t, name) for t, name, _ in got] == [(t, name) for t, name, _ in tops]
        assert [a for *_, a in got] == pytest.approx([a for *_, a in tops], abs=1e-6)
        by_style = dict(s.query("SELECT track_id, style(track_id, 'Techno') FROM tracks").rows)
        assert len(by_style) == n_tracks  # NULL where a track has no styles
        assert {t: a for t, a in by_style.items() if a is not None} == pytest.approx(techno)
        # Every key under every profile: in_key finds exactly the tracks the columns name.
        for profile, counts in keys.items():
            for name, count in counts.items():
                found = s.query(f"SELECT count(*) FROM in_key('{name}', '{profile}')").rows[0][0]
                assert found == count, (profile, name)
        for track_id, source, tag, activation in tag_rows:
            value = s.query(f"SELECT tag({track_id}, '{source}', '{tag}')").rows[0][0]
            assert value == pytest.approx(activation)


@pytest.mark.slow
def test_fuzz_corpus_store(corpus_store, tmp_path, monkeypatch):
    """Thousands of generated statements; the corpus store and the disk stay unchanged."""
    store = tmp_path / "store"
    shutil.copytree(corpus_store, store)
    outcomes = fuzz(store, tmp_path, monkeypatch, examples=1000, one_shot=40, raw=100)
    assert sum(outcomes.values()) >= 5000, outcomes  # about 25 s on 2 busy cores


# -- columns that a missing model left empty -------------------------------------------------
def test_query_on_a_column_a_missing_model_left_empty_says_so_once(small_store):
    # The small store has no EffNet head outputs: voice and danceable are NULL everywhere.
    result = sql_cli(small_store, "SELECT title FROM tracks WHERE voice < 0.2 AND bpm > 0")
    assert result.exit_code == 0 and "(0 rows)" in result.stdout
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1
    assert "no values in this store for voice (needs effnet + voice_instrumental)" in notes[0]
    assert "bpm" not in notes[0]  # bpm has values
    assert "engine models fetch effnet voice_instrumental" in notes[0] and "--models DIR" in notes[0]
    # Columns with values, or only reached through *, say nothing.
    for quiet in ("SELECT title FROM tracks WHERE bpm > 100", "SELECT * FROM tracks"):
        assert sql_cli(small_store, quiet).stderr == ""


def test_playlist_on_styles_of_a_store_without_effnet_says_why_it_is_empty(tmp_path):
    store = tmp_path / "store"
    with Store.open(store) as s:
        s.write_tracks([TrackRecord(path=f"/music/{i}.ogg", columns={"bpm": 120.0 + i, "title": f"S{i}"})
                        for i in range(3)])
    result = CliRunner().invoke(cli, ["playlist", "--where", "style('Techno') > 0.3", "--m3u8",
                                      str(tmp_path / "p.m3u8"), "--store", str(store)])
    assert result.exit_code == 0, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == f"wrote 0 tracks to {tmp_path / 'p.m3u8'}"
    assert len(lines) == 2 and lines[0].startswith("note: no values in this store for style() (needs effnet)")
