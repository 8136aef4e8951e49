"""Fixes from the adversarial probe (issue 12): each test reproduced a failure first.

Item numbers refer to the issue: 1 exports never overwrite what they must not, 2 file
names that are not UTF-8, 3 unreadable files, 4 FAISS contents checked, 5 readers during
a build, 6 one-line errors, 7 any channel count, 8 M3U8 round trips, 9 decode edge cases,
10 no -inf, 11 engine sql limits, 12 workers die with their parent.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from .conftest import ROOT
from .test_build import _rows


def _write_wav(path: Path, channels: int, *, rate: int = 48000, seconds: float = 3.0) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(tone[:, None], channels, 1).tobytes())
    return path


def _python(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, **kw)


# -- 4: a wrong FAISS file never gives wrong neighbours; engine build repairs it -----------

def _small_store(directory: Path, seed: int, n: int = 40) -> Path:
    from index import vectors
    from index.store import Store, TrackRecord

    rng = np.random.default_rng(seed)
    records = [TrackRecord(path=f"/m/t{i}.ogg", columns={"content_hash": f"h{i}"},
                           embeddings={"musicnn": rng.standard_normal(200).astype(np.float32)})
               for i in range(n)]
    with Store.open(directory) as store:
        store.write_tracks(records)
        vectors.sync(store, spaces=("musicnn",))
    return directory


def _negate_vector(index_file: Path, vector: np.ndarray) -> None:
    """Flip the sign of ``vector`` where the index file stores it (prepared as the index
    holds it: centred on the sidecar's centre, normalised; index.vectors.prepare)."""
    from index.vectors import prepare, read_info

    stored = prepare(vector[None, :], read_info(index_file.parent, index_file.stem).centre)[0]
    data = bytearray(index_file.read_bytes())
    raw = stored.tobytes()
    at = data.find(raw)
    assert at >= 0
    data[at:at + len(raw)] = (-stored).tobytes()
    index_file.write_bytes(bytes(data))


def _neighbours(store: Path) -> list[tuple[str, float]]:
    from index.query import knn

    return [(n.path, n.similarity) for n in knn(store, "/m/t0.ogg", "musicnn", k=5)]


def test_item4_a_changed_index_file_is_not_trusted_and_sync_repairs_it(tmp_path):
    from index import vectors
    from index.store import Store

    store = _small_store(tmp_path / "s", seed=1)
    want = _neighbours(store)
    index_file = vectors.index_path(store, "musicnn")
    good = index_file.read_bytes()
    with Store.open_read_only(store) as s:
        top = s.con.execute("SELECT vector FROM embeddings e JOIN tracks t USING (track_id) "
                            "WHERE path = ?", [want[0][0]]).fetchall()[0][0]
    _negate_vector(index_file, np.asarray(top, np.float32))  # the nearest neighbour, negated
    assert _neighbours(store) == want  # before: that track came last, similarity negated
    with Store.open(store) as s:
        assert vectors.check(s, "musicnn", thorough=True) == "changed since it was written"
        assert [i.space for i in vectors.sync(s, spaces=("musicnn",))] == ["musicnn"]
        assert vectors.check(s, "musicnn", thorough=True) is None
    assert index_file.read_bytes() == good


def test_item4_an_index_from_another_store_is_not_trusted(tmp_path):
    import shutil

    from index import vectors
    from index.store import Store

    mine, other = _small_store(tmp_path / "mine", seed=1), _small_store(tmp_path / "other", seed=2)
    want = _neighbours(mine)
    for name in ("musicnn.faiss", "musicnn.faiss.json"):  # same generation: the sidecar matches
        shutil.copy(other / name, mine / name)
    assert vectors.read_info(mine, "musicnn").generation == 1
    assert _neighbours(mine) == want
    # Even with DuckDB's record copied too, the sample of vectors tells them apart.
    with Store.open(mine) as s, Store.open_read_only(other) as o:
        s.set_meta("index:musicnn", o.meta("index:musicnn"))
        assert vectors.check(s, "musicnn") is None
        index, why = vectors.open_index(s, "musicnn")
        assert why.startswith("holds another vector for track")
        vectors.sync(s, spaces=("musicnn",))
        assert vectors.open_index(s, "musicnn")[1] is None
    assert _neighbours(mine) == want


# -- 7: any channel count FFmpeg decodes is analysed (downmix) ------------------------------

@pytest.mark.parametrize("channels", [8, 9, 16])
def test_item7_eight_and_more_channels_decode(tmp_path, channels):
    # Decoded in a child: before the fix 8 channels crashed the process (SIGSEGV).
    path = _write_wav(tmp_path / f"c{channels}.wav", channels)
    out = _python(f"""
        from engine.decode import decode
        a = decode({str(path)!r})
        print(a.stereo.shape[0], a.facts.channels, round(float(abs(a.mono).max()), 3))
    """)
    assert out.returncode == 0, out.stderr[-2000:]
    n, ch, peak = out.stdout.split()
    assert int(n) == pytest.approx(3 * 44100, abs=50) and int(ch) == channels
    # Every channel carries the same 0.3 tone; the downmix is scaled to stay in full scale.
    assert 0.05 < float(peak) <= 0.3


# -- 9: decode edge cases -------------------------------------------------------------------

def _encode(path: Path, channels: int, *, seconds: float = 5.0, rate: int = 48000) -> bytes:
    """An Ogg Opus file of a 440 Hz tone; returns its bytes."""
    import av

    with av.open(str(path), "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=rate, layout="mono" if channels == 1 else "stereo")
        t = np.arange(int(rate * seconds)) / rate
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for i in range(0, len(tone), 960):
            chunk = np.ascontiguousarray(np.repeat(tone[None, i:i + 960], channels, 0))
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=stream.layout.name)
            frame.sample_rate, frame.pts = rate, i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path.read_bytes()


def _wav_header(seconds: float, *, rate: int = 44100, channels: int = 2) -> bytes:
    data = min(int(seconds * rate) * channels * 2, 0xFFFFFFFF)
    return (b"RIFF" + struct.pack("<I", min(data + 36, 0xFFFFFFFF)) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16)
            + b"data" + struct.pack("<I", data))


def test_item9_chained_ogg_decodes_every_link(tmp_path):
    from engine.decode import decode

    chained = tmp_path / "chained.ogg"
    chained.write_bytes(_encode(tmp_path / "m.ogg", 1) + _encode(tmp_path / "s.ogg", 2))
    audio = decode(chained)
    assert audio.analysed_seconds == pytest.approx(10.0, abs=0.05)  # was 5.0, warning dropped
    assert audio.facts.duration == pytest.approx(10.0, abs=0.05) and not audio.warnings
    assert np.abs(audio.mono[: 44100 * 4]).max() > 0.2 and np.abs(audio.mono[-44100 * 4:]).max() > 0.2


def test_item9_sparse_wav_is_refused_at_once(tmp_path):
    from engine.decode import decode
    from engine.errors import DecodeError

    path = tmp_path / "sparse.wav"
    header = _wav_header(10 * 3600)
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + 0xFFFFFFFF - 64)
    t0 = time.process_time()
    with pytest.raises(DecodeError, match=r"sparse.wav: sparse file: the header declares 6.8 h .*holes read as silence"):
        decode(path)
    assert time.process_time() - t0 < 1.0  # before: 450 s of silence decoded and analysed


def test_item9_headers_that_declare_more_than_the_file_holds(tmp_path):
    from engine.decode import decode
    from engine.errors import DecodeError

    liar = tmp_path / "liar.wav"
    liar.write_bytes(_wav_header(3600) + bytes(44100 * 4))
    audio = decode(liar)
    assert audio.analysed_seconds == pytest.approx(1.0, abs=0.01)
    assert audio.warnings == ("the header declares 1.0 h of audio but the file holds 1.0 s "
                              "(cut short, or a damaged header)",)
    comm = struct.pack(">hIh", 2, 0xFFFFFFF0, 16) + bytes.fromhex("400EAC44000000000000")  # 44.1 kHz
    ssnd = struct.pack(">II", 0, 0) + bytes(44100 * 4)
    body = b"AIFF" + b"COMM" + struct.pack(">I", len(comm)) + comm + b"SSND" + struct.pack(">I", len(ssnd)) + ssnd
    huge = tmp_path / "huge.aiff"
    huge.write_bytes(b"FORM" + struct.pack(">I", len(body)) + body)
    with pytest.raises(DecodeError) as err:  # was: "… (Operation not permitted)"
        decode(huge)
    assert str(err.value) == (f"cannot decode {huge}: the header declares 27.1 h of audio but the "
                              "file holds 1.0 s (cut short, or a damaged header)")


# -- 12: workers exit at once when their parent dies ----------------------------------------

def test_item12_workers_die_with_their_parent(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from engine.workers import WorkerPool
        from tests.test_reliability import _sleep_task
        with WorkerPool(_sleep_task, 2, timeout_s=60) as pool:
            print(" ".join(str(w.process.pid) for w in pool._workers), flush=True)
            for _ in pool.map_unordered([(30, {str(tmp_path)!r}), (30, {str(tmp_path)!r})]):
                pass
    """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2
        # Both workers busy with their 30 s tasks (on a loaded machine starting them takes
        # seconds; the parent must die while they work, not while they import).
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline and len(list(tmp_path.glob("started-*"))) < 2:
            time.sleep(0.05)
        assert len(list(tmp_path.glob("started-*"))) == 2
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.05)
        assert not any(_alive(p) for p in pids), "workers outlived their parent"
    finally:
        parent.kill()


def _sleep_task(args: tuple[float, str]) -> float:
    seconds, folder = args
    Path(folder, f"started-{os.getpid()}").touch()
    time.sleep(seconds)
    return seconds


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


# -- a store built from a folder of awkward files (items 1, 2, 3, 7, 8, 10) ------------------

CAFE = os.fsdecode(b"caf\xe9.ogg")  # Latin-1 bytes: not valid UTF-8
BUILD_ARGS = ("--max-seconds", "10", "--workers", "2", "--threads", "1", "--batch", "4", "-q",
              "--no-fetch")


def _engine(*args, timeout: float = 600, drop_dac: bool = False, prefix=(), **kw) -> subprocess.CompletedProcess:
    """Run the CLI in a child (after ``prefix``, e.g. prlimit). ``drop_dac``: as root,
    without the capabilities that let root read any file, so that permissions apply as
    for a user (chmod 000)."""
    cmd = [*prefix, sys.executable, "-m", "engine.cli", *map(str, args)]
    if drop_dac and os.geteuid() == 0:
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def awkward(corpus, tmp_path_factory):
    """(music, store, first build) for a folder of files the probe broke the engine with."""
    import shutil

    if os.geteuid() == 0 and subprocess.run(["setpriv", "--help"], capture_output=True).returncode:
        pytest.skip("needs setpriv to drop root's DAC override")
    edge = corpus / "edge"
    music = tmp_path_factory.mktemp("awkward")
    for src, name in [("t.ogg", "plain.ogg"), ("t_tagged.ogg", CAFE), ("t.mp3", "#hash.mp3"),
                      ("t.aac", " lead space.aac"), ("t.m4a", "trailing space.m4a "),
                      ("t_pcm24.wav", "line\nbreak.wav"), ("t_mono22k.mp3", "unreadable.mp3")]:
        shutil.copy(edge / src, music / name)
    os.chmod(music / "unreadable.mp3", 0)
    (music / "locked").mkdir()
    shutil.copy(edge / "t.aiff", music / "locked" / "inside.aiff")
    os.chmod(music / "locked", 0)
    (music / "README").write_text("not audio\n")
    os.mkfifo(music / "pipe.mp3")
    with wave.open(str(music / "silence.wav"), "wb") as w:
        w.setnchannels(2), w.setsampwidth(2), w.setframerate(44100)
        w.writeframes(bytes(4 * 44100 * 3))
    _write_wav(music / "surround8.wav", 8)
    tone = (0.3 * 32767 * np.sin(2 * np.pi * 440 * np.arange(3 * 44100) / 44100)).astype("<i2")
    (music / "liar.wav").write_bytes(_wav_header(3600) + np.repeat(tone, 2).tobytes())
    store = tmp_path_factory.mktemp("awkward-store")
    first = _engine("build", music, "--store", store, *BUILD_ARGS, drop_dac=True)
    yield music, store, first
    os.chmod(music / "locked", 0o755)


ANALYSED = {"plain.ogg", CAFE, "#hash.mp3", " lead space.aac", "trailing space.m4a ",
            "line\nbreak.wav", "silence.wav", "surround8.wav", "liar.wav"}


@pytest.mark.slow
def test_item2_non_utf8_name_is_analysed_and_kept_exactly(awkward):
    music, store, first = awkward
    assert first.returncode == 0, first.stderr.decode(errors="replace")[-3000:]
    rows = _rows(store, "SELECT path, path_bytes FROM tracks")
    names = {os.fsdecode(bytes(raw)) if raw is not None else p for p, raw in rows}
    assert names == {str(music / n) for n in ANALYSED}
    (text, raw), = [(p, r) for p, r in rows if r is not None]
    assert bytes(raw) == os.fsencode(str(music / CAFE)) and text.endswith("caf\\xe9.ogg")
    # A second run finds every file where the first left it: nothing to redo.
    again = _engine("build", music, "--store", store, *BUILD_ARGS, drop_dac=True)
    assert again.returncode == 0
    assert b"analysed 0, updated 0, unchanged 9" in again.stderr
    out = _engine("sql", "SELECT path FROM tracks ORDER BY path", "--store", store, "--format", "json")
    assert out.returncode == 0 and b"caf\\\\xe9.ogg" in out.stdout


@pytest.mark.slow
def test_item3_unreadable_files_and_folders_are_recorded_not_fatal(awkward):
    music, store, first = awkward
    assert first.returncode == 0
    failures = {p: (stage, error) for p, stage, error in _rows(store, "SELECT path, stage, error FROM failures")}
    stage, error = failures.pop(str(music / "unreadable.mp3"))
    assert stage == "read" and "Permission denied" in error and "unreadable.mp3" in error
    assert failures.pop(str(music / "locked")) == ("skipped", "folder cannot be listed: Permission denied")
    assert failures.pop(str(music / "README"))[1].startswith("not audio (no extension")
    assert failures.pop(str(music / "pipe.mp3")) == ("skipped", "not a regular file (FIFO)")
    assert failures == {}
    assert b"failed 1, skipped 3" in first.stderr


@pytest.mark.slow
def test_item3_a_fixed_file_is_analysed_on_the_next_build(awkward, tmp_path):
    import shutil

    music, store, _ = awkward
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    os.chmod(music / "unreadable.mp3", 0o644)
    try:
        out = _engine("build", music, "--store", copy, *BUILD_ARGS, drop_dac=True)
    finally:
        os.chmod(music / "unreadable.mp3", 0)
    assert out.returncode == 0 and b"analysed 1," in out.stderr
    assert _rows(copy, "SELECT count(*) FROM failures WHERE stage = 'read'") == [(0,)]


@pytest.mark.slow
def test_item9_decoder_warnings_are_stored_not_swallowed(awkward):
    _, store, _ = awkward
    (seconds, notes), = _rows(store, "SELECT analysed_seconds, notes FROM tracks WHERE path LIKE '%liar.wav'")
    assert seconds == pytest.approx(3.0, abs=0.01)
    assert notes == "the header declares 1.0 h of audio but the file holds 3.0 s (cut short, or a damaged header)"


@pytest.mark.slow
def test_item4_engine_build_repairs_a_changed_index(awkward, tmp_path):
    import shutil

    from index import vectors
    from index.store import Store

    music, store, _ = awkward
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    (vector,), = _rows(copy, "SELECT vector FROM embeddings WHERE space = 'musicnn' LIMIT 1")
    _negate_vector(copy / "musicnn.faiss", np.asarray(vector, np.float32))
    out = _engine("build", music, "--store", copy, *BUILD_ARGS, drop_dac=True)
    assert out.returncode == 0 and b"analysed 0," in out.stderr
    with Store.open_read_only(copy) as s:
        assert vectors.check(s, "musicnn", thorough=True) is None
    assert (copy / "musicnn.faiss").read_bytes() == (store / "musicnn.faiss").read_bytes()


@pytest.mark.slow
def test_item7_eight_channels_end_to_end(awkward):
    _, store, _ = awkward
    assert _rows(store, "SELECT channels, bpm IS NOT NULL FROM tracks WHERE path LIKE '%surround8.wav'") == [(8, True)]


@pytest.mark.slow
def test_item10_silence_stores_null_with_a_note_and_prints_alike(awkward):
    _, store, _ = awkward
    (peak, notes), = _rows(store, "SELECT true_peak_dbtp, notes FROM tracks WHERE path LIKE '%silence.wav'")
    assert peak is None and "true_peak_dbtp not measurable (-inf dB: no signal)" in notes
    assert _rows(store, "SELECT count(*) FROM tracks WHERE isinf(true_peak_dbtp) OR isinf(loudness_lufs)") == [(0,)]
    sql = "SELECT true_peak_dbtp AS peak FROM tracks WHERE path LIKE '%silence.wav'"
    table, js, csv = (_engine("sql", sql, "--store", store, "--format", f).stdout.decode()
                      for f in ("table", "json", "csv"))
    import csv as csv_module

    assert table.splitlines()[2].strip() == "" and '"peak": null' in js
    assert list(csv_module.reader(csv.splitlines())) == [["peak"], [""]]
    assert "inf" not in table + js + csv


@pytest.mark.slow
def test_item8_playlist_round_trips_odd_names(awkward, tmp_path):
    from urllib.parse import unquote_to_bytes, urlparse

    music, store, _ = awkward
    for relative in (False, True):
        target = tmp_path / f"all{int(relative)}.m3u8"
        # --keep-duplicates: the odd names are copies of the same few clips, and a list
        # shows one of each near-duplicate recording otherwise (issue 15)
        out = _engine("playlist", "--where", "true", "--keep-duplicates", "--m3u8", target, "--store", store,
                      *(["--relative"] if relative else []))
        assert out.returncode == 0, out.stderr
        err = out.stderr.decode()
        assert "warning: left out" in err and "line\\nbreak.wav" in err and "wrote 8 tracks" in err
        # What a stripping parser reads: every non-comment line, stripped, names a file.
        entries = [ln.strip() for ln in target.read_text(encoding="utf-8").splitlines()
                   if ln.strip() and not ln.startswith("#")]
        found = set()
        for e in entries:
            if e.startswith("file://"):
                f = os.fsdecode(unquote_to_bytes(urlparse(e).path))
            else:
                f = os.path.normpath(os.path.join(target.parent, e))
            assert os.path.isfile(f), e
            found.add(os.path.basename(f))
        assert found == ANALYSED - {"line\nbreak.wav"}


@pytest.mark.slow
def test_item1_exports_never_overwrite_what_they_must_not(awkward, tmp_path):
    music, store, _ = awkward
    db = store / "engine.duckdb"
    before = db.read_bytes()
    audio = music / "plain.ogg"
    audio_bytes = audio.read_bytes()
    fifo = tmp_path / "fifo.m3u8"
    os.mkfifo(fifo)
    for target, reason in [(db, "is an engine store folder"), (store / "musicnn.faiss", "store folder"),
                           (store / "new.m3u8", "store folder"), (audio, "audio file"),
                           (fifo, "not a regular file"), ("/dev/null", "not a regular file")]:
        for cmd in (("playlist", "--where", "track_id < 3"), ("knn", "-t", "plain.ogg", "-s", "musicnn")):
            out = _engine(*cmd, "--m3u8", target, "--force", "--store", store, timeout=60)
            err = out.stderr.decode()
            assert out.returncode == 1 and reason in err and len(err.splitlines()) == 1, (target, err)
    assert db.read_bytes() == before and audio.read_bytes() == audio_bytes
    assert not (store / "new.m3u8").exists()
    playlist = tmp_path / "mine.m3u8"
    playlist.write_text("#EXTM3U\nmine\n")
    out = _engine("playlist", "--where", "true", "--m3u8", playlist, "--store", store)
    assert out.returncode == 1 and b"exists: pass --force" in out.stderr
    assert playlist.read_text() == "#EXTM3U\nmine\n"
    out = _engine("playlist", "--where", "true", "--m3u8", playlist, "--force", "--keep-duplicates",
                  "--store", store)
    assert out.returncode == 0 and playlist.read_text().count("#EXTINF") == 8
    # The store still answers.
    assert _engine("sql", "SELECT count(*) AS n FROM tracks", "--store", store, "--format", "csv").stdout == b"n\n9\n"


# -- 5: readers during a build ---------------------------------------------------------------

def _music(corpus: Path, dest: Path, rendered: int = 5) -> Path:
    import shutil

    from .test_build import LIBRARY_SAMPLE, _library

    _library(corpus, dest)
    for i, clip in enumerate(sorted((corpus / "rendered").glob("*.ogg"))[:rendered]):
        shutil.copy(clip, dest / f"r{i}.ogg")
    return dest


def _same_store(got: Path, want: Path) -> None:
    q = ("SELECT path, bpm, key_temperley, scale_edma, loudness_lufs, arousal, notes FROM tracks "
         "ORDER BY path")
    a, b = _rows(got, q), _rows(want, q)
    assert [r[0] for r in a] == [r[0] for r in b] and len(a) == 10
    for x, y in zip(a, b):
        assert x[2:4] == y[2:4] and x[6] == y[6] and x[1] == pytest.approx(y[1], rel=1e-6)
    for table in ("embeddings", "tags", "styles", "failures"):
        assert _rows(got, f"SELECT count(*) FROM {table}") == _rows(want, f"SELECT count(*) FROM {table}")


def _holder(db: Path, seconds: float) -> subprocess.Popen:
    """A process that keeps ``db`` open read-only for ``seconds`` (a reader between commits)."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, time
        con = duckdb.connect({str(db)!r}, read_only=True)
        print("open", flush=True)
        time.sleep({seconds})
    """)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "open"
    return proc


@pytest.mark.slow
def test_item5_tui_and_sql_answer_during_a_build(corpus, tmp_path):
    import asyncio
    import threading

    from tui.app import EngineApp

    music = _music(corpus, tmp_path / "music")
    args = ("--max-seconds", "10", "--workers", "2", "--threads", "1", "--batch", "1", "-q", "--no-fetch")
    reference = tmp_path / "reference"
    assert _engine("build", music, "--store", reference, *args).returncode == 0

    store = tmp_path / "store"
    build = subprocess.Popen([sys.executable, "-m", "engine.cli", "build", str(music), "--store",
                              str(store), *args], cwd=ROOT, stderr=subprocess.PIPE)
    answers: list[tuple[int, bytes, bytes]] = []

    def sql_loop() -> None:
        while build.poll() is None:
            out = _engine("sql", "SELECT count(*) AS n FROM tracks", "--store", store, "--format", "csv")
            answers.append((out.returncode, out.stdout, out.stderr))

    deadline = time.monotonic() + 120
    while not (store / "engine.duckdb").is_file():  # the build's first commit makes the store
        assert build.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    reader = threading.Thread(target=sql_loop)
    reader.start()

    async def browse() -> list[int]:
        totals = []
        app = EngineApp(store, debounce=0)
        async with app.run_test(size=(120, 40)) as pilot:
            while True:
                done = build.poll() is not None
                await pilot.press("f5")
                await pilot.pause()
                await app.settle()
                totals.append(app.table.total)
                errors = [n.message for n in app._notifications if n.severity == "error"]
                assert not errors, errors
                if done:
                    return totals
                await asyncio.sleep(0.5)

    try:
        totals = asyncio.run(browse())
    finally:
        build.wait(timeout=600)
        reader.join()
    assert build.returncode == 0, build.stderr.read().decode()[-2000:]
    assert answers and all(rc == 0 for rc, _, _ in answers), [e for rc, _, e in answers if rc]
    counts = [int(out.split()[1]) for _, out, _ in answers]
    assert counts == sorted(counts) and totals == sorted(totals)
    assert len(set(counts) | set(totals)) >= 3, (counts, totals)  # it saw the build progress
    assert totals[-1] == 10
    _same_store(store, reference)


@pytest.mark.slow
def test_item5_a_build_waits_for_a_reader_then_says_who_holds_the_store(corpus, tmp_path):
    music = _music(corpus, tmp_path / "music", rendered=0)
    store = tmp_path / "store"
    assert _engine("build", music, "--store", store, *BUILD_ARGS).returncode == 0
    (music / "Hedgewars" / "Themes" / "01 Art.mp3").unlink()  # something to write
    holder = _holder(store / "engine.duckdb", 3)
    try:
        out = _engine("build", music, "--store", store, *BUILD_ARGS)
    finally:
        holder.kill()
    err = out.stderr.decode()
    assert out.returncode == 0 and f"waiting for PID {holder.pid}" in err and "deleted 1" in err
    holder = _holder(store / "engine.duckdb", 60)
    try:
        out = _engine("build", music, "--store", store, *BUILD_ARGS, env=dict(os.environ, ENGINE_STORE_WAIT="2"))
    finally:
        holder.kill()
    err = out.stderr.decode().strip().splitlines()
    assert out.returncode == 1 and err[-1].startswith(f"error: store {store} is held open by PID {holder.pid}")
    assert "waited 2 s for it to close" in err[-1]


# -- 6: one line for a damaged store, a full disk, a failed index write, low memory ----------

def _one_line_error(out: subprocess.CompletedProcess, *words: str) -> str:
    """The error line that ends ``out``'s stderr (warnings may come before it, never a traceback)."""
    err = out.stderr.decode().strip()
    line = err.splitlines()[-1] if err else ""
    assert out.returncode == 1 and line.startswith("error: ") and "Traceback" not in err, err[-3000:]
    assert sum(ln.startswith("error: ") for ln in err.splitlines()) == 1
    for w in words:
        assert w in line, line
    return line


def _flip(db: Path, offset: int) -> None:
    with open(db, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


@pytest.mark.slow
def test_item6_a_damaged_store_is_one_line_and_the_build_rebuilds_it(awkward, tmp_path):
    import shutil

    music, store, _ = awkward
    damaged = tmp_path / "store"
    shutil.copytree(store, damaged)
    _flip(damaged / "engine.duckdb", 100)  # the header block
    commands = [("knn", "-t", "plain.ogg", "-s", "musicnn"), ("sql", "SELECT count(*) FROM tracks"),
                ("playlist", "--where", "true", "--m3u8", tmp_path / "p.m3u8"),
                ("report", "--out", tmp_path / "report"), ("tui",)]
    for cmd in commands:  # before: 35-line tracebacks ("Corrupt database file: computed checksum")
        _one_line_error(_engine(*cmd, "--store", damaged, stdin=subprocess.DEVNULL, timeout=120),
                        f"{damaged / 'engine.duckdb'} is damaged (Corrupt database file", "--rebuild-store")
    line = _one_line_error(_engine("build", music, "--store", damaged, *BUILD_ARGS, drop_dac=True))
    assert f"run `engine build {music} --store {damaged} --rebuild-store`" in line
    out = _engine("build", music, "--store", damaged, *BUILD_ARGS, "--rebuild-store", drop_dac=True)
    assert out.returncode == 0 and b"set the damaged store aside as" in out.stderr
    (aside,) = damaged.glob("engine.duckdb.damaged-*")  # the user's file is kept
    assert _rows(damaged, "SELECT count(*) FROM tracks") == _rows(store, "SELECT count(*) FROM tracks")
    # Damage deeper in the file shows when a query reads it: each command answers or says so.
    size = (store / "engine.duckdb").stat().st_size
    for fraction in (0.3, 0.5, 0.7):
        shutil.rmtree(damaged)
        shutil.copytree(store, damaged)
        _flip(damaged / "engine.duckdb", int(size * fraction))
        for cmd in commands[:3]:
            extra = ("--force",) if cmd[0] == "playlist" else ()
            out = _engine(*cmd, *extra, "--store", damaged, timeout=120)
            if out.returncode:
                _one_line_error(out, "is damaged")


def _tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                                            str(path)], capture_output=True).returncode:
        pytest.skip("needs root and mount to make a small file system")


@pytest.mark.slow
def test_item6_disk_full_is_one_line_and_loses_nothing(corpus, tmp_path):
    import shutil

    music = _music(corpus, tmp_path / "music", rendered=0)
    small = tmp_path / "small"
    _tmpfs(small, "3m")
    try:
        out = _engine("build", music, "--store", small / "store", *BUILD_ARGS, "--batch", "1")
        _one_line_error(out, "no space left on the device (writing", "free some space")
        shutil.copytree(small / "store", tmp_path / "store")
    finally:
        subprocess.run(["umount", "-l", str(small)])
    committed = _rows(tmp_path / "store", "SELECT count(*) FROM tracks")[0][0]
    out = _engine("build", music, "--store", tmp_path / "store", *BUILD_ARGS)  # room again: resumes
    assert out.returncode == 0 and f"unchanged {committed}".encode() in out.stderr
    assert _rows(tmp_path / "store", "SELECT count(*) FROM tracks") == [(5,)]


@pytest.mark.slow
def test_item6_an_index_that_cannot_be_written_is_one_line(awkward, tmp_path):
    import shutil

    from index import vectors
    from index.store import Store

    music, store, _ = awkward
    small = tmp_path / "small"
    _tmpfs(small, str(sum(f.stat().st_size for f in store.iterdir()) + (1 << 20)))
    try:
        shutil.copytree(store, small / "store")
        (small / "store" / "musicnn.faiss").unlink()
        with Store.open(small / "store") as s:
            with open(small / "fill", "wb", buffering=0) as f:  # leave no room for the index
                try:
                    while True:
                        f.write(bytes(1 << 16))
                except OSError:
                    pass
            with pytest.raises(vectors.IndexWriteError) as err:  # before: a RuntimeError from FAISS
                vectors.sync(s, spaces=("musicnn",))
        assert "\n" not in str(err.value)
        assert str(err.value).startswith(f"cannot write the musicnn index {small / 'store' / 'musicnn.faiss'}: "
                                         "No space left on device; free some space")
        assert not list((small / "store").glob("*.tmp"))
    finally:
        subprocess.run(["umount", "-l", str(small)])


@pytest.mark.slow
def test_item6_low_memory_is_one_line(awkward, corpus, tmp_path):
    """Under an address-space limit each command either works or says 'out of memory' in
    one line (the limits where each breaks depend on the libraries; several are tried)."""
    if subprocess.run(["prlimit", "--version"], capture_output=True).returncode:
        pytest.skip("needs prlimit")
    music, store, _ = awkward
    said = 0
    for mb in (500, 700, 1000, 1200):  # 1200: FAISS crashed while loading (before: SIGSEGV)
        out = _engine("knn", "-t", "plain.ogg", "-s", "musicnn", "--store", store,
                      prefix=["prlimit", f"--as={mb * 10**6}"])
        if out.returncode:
            _one_line_error(out, "error: out of memory (")
            said += 1
    for mb in (1000, 1300):  # below what a build needs: said at once (before: glibc aborts)
        out = _engine("build", _music(corpus, tmp_path / f"m{mb}", rendered=0), "--store",
                      tmp_path / f"s{mb}", *BUILD_ARGS, prefix=["prlimit", f"--as={mb * 10**6}"])
        _one_line_error(out, "error: out of memory (ulimit -v): this process may map", "needs about")
    out = _engine("build", _music(corpus, tmp_path / "m2000", rendered=0), "--store", tmp_path / "s2000",
                  *BUILD_ARGS, prefix=["prlimit", f"--as={2000 * 10**6}"])
    if out.returncode:
        _one_line_error(out, "error: out of memory (", "--workers")
    assert said >= 1


# -- 11: engine sql: memory and time caps, a query that starts with a comment -----------------

@pytest.mark.slow
def test_item11_sql_memory_time_and_comments(awkward):
    _, store, _ = awkward
    t0 = time.monotonic()
    out = _engine("sql", "SELECT repeat('x', 2000000000)", "--store", store, timeout=120)
    _one_line_error(out, "Out of Memory Error", "--max-memory")  # before: grew to ≈7 GB
    out = _engine("sql", "SELECT count(*) FROM range(10000000000) a, range(10) b", "--store", store,
                  "--timeout", "2", timeout=120)
    _one_line_error(out, "the query was stopped after 2 s (--timeout)")
    assert time.monotonic() - t0 < 60
    out = _engine("sql", "-- how many?\nSELECT count(*) AS n FROM tracks", "--store", store, "--format", "csv")
    assert out.returncode == 0 and out.stdout == b"n\n9\n"
    out = _engine("sql", "--format", "csv", "--store", store, "--", "--x\nSELECT 1 AS one")
    assert out.returncode == 0 and out.stdout == b"one\n1\n"
    out = _engine("sql", "-", "--store", store, "--format", "csv", input=b"-- from stdin\nSELECT 2 AS two")
    assert out.returncode == 0 and out.stdout == b"two\n2\n"


@pytest.mark.slow
def test_item1_tui_export_asks_before_overwriting_and_never_writes_into_the_store(awkward, tmp_path):
    import asyncio

    from tui.app import EngineApp
    from tui.components.export_screen import ConfirmScreen, ExportScreen

    _, store, _ = awkward
    db = store / "engine.duckdb"
    before = db.read_bytes()
    mine = tmp_path / "mine.m3u8"
    mine.write_text("#EXTM3U\nmine\n")

    async def run() -> None:
        app = EngineApp(store, debounce=0)
        async with app.run_test(size=(120, 40)) as pilot:
            async def export(target: Path) -> None:
                await pilot.pause()
                await app.settle()
                await pilot.press("e")
                await pilot.pause()
                assert isinstance(app.screen, ExportScreen)
                app.screen.query_one("#export-path").value = str(target)
                await pilot.press("enter")
                await pilot.pause()
                await app.settle()
                await pilot.pause()

            await export(db)
            assert any("engine store folder" in n.message for n in app._notifications)
            await export(mine)
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("n")
            await pilot.pause()
            await app.settle()
            assert mine.read_text() == "#EXTM3U\nmine\n"
            await export(mine)
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("y")
            await pilot.pause()
            await app.settle()
            await pilot.pause()
            assert mine.read_text().count("#EXTINF") == 8

    asyncio.run(run())
    assert db.read_bytes() == before


@pytest.mark.slow
def test_item2_a_name_whose_escaped_text_is_another_file_name_is_skipped_not_fatal(corpus, tmp_path):
    import shutil

    music = tmp_path / "music"
    music.mkdir()
    shutil.copy(corpus / "edge" / "t.ogg", music / CAFE)
    shutil.copy(corpus / "edge" / "t_tagged.ogg", music / "caf\\xe9.ogg")  # the text, for real
    store = tmp_path / "store"
    out = _engine("build", music, "--store", store, *BUILD_ARGS)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert _rows(store, "SELECT count(*) FROM tracks") == [(1,)]
    ((stage, error),) = _rows(store, "SELECT stage, error FROM failures")
    assert stage == "skipped" and "also another file's name: rename one" in error
