"""Every command once, as a user runs it: the ``engine`` console script, from a folder
outside the checkout. Under CI that is the non-editable install (see test_packaging)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from tests.conftest import OUTSIDE, engine_command
from tests.terminal import run_in_terminal

TRACKS = [
    "librosa-examples/Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg",
    "Hedgewars/Themes/01 Art.mp3",
    "Ünïcödé Ärtist/Ålbum – 日本語/01 Ñame with spaces & symbols #1.ogg",
]


@pytest.mark.slow
def test_every_command_runs_from_the_installed_console_script(corpus, shared_models, tmp_path):
    music = tmp_path / "music"
    for rel in TRACKS:
        (music / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(corpus / "library" / rel, music / rel)
    shutil.copy(corpus / "edge" / "tiny_0.2s.wav", music / "tiny_0.2s.wav")
    env = {k: v for k, v in os.environ.items() if k != "ENGINE_MODELS"}
    env.update(ENGINE_STORE=str(tmp_path / "store"), ENGINE_OFFLINE="1", TERM="xterm-256color")

    def engine(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([*engine_command(), *args], cwd=OUTSIDE, env=env, capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == 0, f"engine {' '.join(args)}:\n{proc.stderr}"
        return proc

    assert "build" in engine("--help").stdout and engine("--version").stdout.strip()
    models = ["--models", str(shared_models)]
    listed = {line.split()[0]: line.split()[1] for line in engine("models", "list", *models).stdout.splitlines()}
    assert listed["musicnn"] in ("present", "converted") and listed["effnet"] == "missing"
    assert "emomusic" in engine("models", "export", "emomusic", *models).stdout

    from tests.test_fetch import _ModelServer

    server = _ModelServer(shared_models)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env.update(ENGINE_MODELS_URL=server.url, no_proxy="*")
        fetched = engine("models", "fetch", "emomusic", "-q", "--models", str(tmp_path / "fetched"))
        assert "fetched" in fetched.stdout and (tmp_path / "fetched" / "emomusic-msd-musicnn-2.pb").is_file()
    finally:
        server.shutdown()
        server.server_close()

    first = engine("build", str(music), *models, "-q", "--max-seconds", "20")
    assert first.stderr.strip().splitlines()[-1].startswith("analysed 4, updated 0, unchanged 0,")
    again = engine("build", str(music), *models, "-q")
    assert again.stderr.strip().splitlines()[-1].startswith("analysed 0, updated 0, unchanged 4,")

    assert engine("sql", "SELECT count(*) AS n FROM tracks", "--format", "csv").stdout.split() == ["n", "4"]
    engine("listener", "add", "mum", "--audiogram", "20,20,25,30,40,50,60,65")  # the student's weights: package data
    assert "mum" in engine("listener", "list").stdout
    worst = json.loads(engine("quality", "--listener", "mum", "--format", "json").stdout)
    scores = [row["haaqi"] for row in worst]
    assert len(worst) >= 3 and scores == sorted(scores) and all(0 <= s <= 1 for s in scores), worst
    engine("listener", "delete", "mum")
    title = "Hungarian Dance No. 5"  # its title tag: a track is found by its title
    near = engine("knn", "--track", title, "--space", "musicnn", "-k", "2", "--format", "json")
    assert len(json.loads(near.stdout)) == 2 and f"– {title} (" in near.stderr
    both = json.loads(engine("knn", "--track", title, "--track", "01 Art.mp3", "-k", "1", "--explain",
                             "--format", "json").stdout)
    assert len(both) == 1 and "Ñame" in both[0]["path"] and "why" in both[0]  # the one track left
    path = engine("path", "--from", title, "--to", "01 Art.mp3", "--length", "3", "--format", "json")
    assert [Path(t["path"]).name for t in json.loads(path.stdout)] == [
        Path(TRACKS[0]).name, Path(TRACKS[2]).name, Path(TRACKS[1]).name] and "worst step" in path.stderr
    radio = engine("radio", "--seed", "01 Art.mp3", "--length", "3", "--variety", "0", "--m3u8", "-").stdout
    assert radio.startswith("#EXTM3U\n") and radio.count("#EXTINF:") == 3 and "01 Art.mp3" in radio
    assert json.loads(engine("duplicates", "--format", "json").stdout) == []  # three distinct recordings
    spaces = {s["space"]: s for s in json.loads(engine("index", "info", "--format", "json").stdout)}
    # The 0.2 s clip is too short for MusiCNN: three vectors, an exact index in step.
    assert spaces["musicnn"]["state"] == "in step" and spaces["musicnn"]["vectors"] == 3
    assert spaces["musicnn"]["kind"] == "flat" and spaces["effnet"]["state"] == "no vectors"
    assert engine("index", "info").stdout.splitlines()[0].split()[:3] == ["space", "state", "index"]
    assert "every index is in step" in engine("index", "sync").stderr
    found = json.loads(engine("search", "strings", "-k", "2", "--format", "json").stdout)
    assert len(found) == 2 and found[0]["title"] == title and found[0]["why"]  # a string orchestra
    playlist = engine("playlist", "--where", "true", "--order-by", "bpm", "--m3u8", "-").stdout
    assert playlist.startswith("#EXTM3U\n") and playlist.count("#EXTINF:") == 4
    trained = engine("tag", "train", "strings", "-p", title, "-p", "01 Art.mp3")
    assert "cross-validated" in trained.stderr or "too few examples" in trained.stderr
    assert "warning: only 2 positive examples" in trained.stderr
    scored = json.loads(engine("tag", "show", "strings", "--format", "json").stdout)
    assert len(scored) == 3 and all(0 <= t["score"] <= 1 for t in scored)  # the 0.2 s clip has no embedding
    assert "strings" in engine("tag", "list").stdout
    engine("tag", "export", "strings", "-o", str(tmp_path / "strings.json"))
    engine("tag", "delete", "strings")
    assert "scored 3 tracks" in engine("tag", "import", str(tmp_path / "strings.json")).stderr
    pair = engine("explain", "--track", title, "--with", "01 Art.mp3")
    assert " share: " in pair.stdout and title in pair.stdout
    # Three tracks cannot give a concept its examples: one line says so.
    few = subprocess.run([*engine_command(), "explain", "--track", title, "--head", "mtt", *models],
                         cwd=OUTSIDE, env=env, capture_output=True, text=True, timeout=900)
    assert few.returncode == 1 and few.stderr.strip() == "error: no concept has enough example tracks in this store"
    report = engine("report", "--out", str(tmp_path / "report"))
    assert Path(report.stdout.strip()) == tmp_path / "report" / "report.html"
    assert (tmp_path / "report" / "report.html").stat().st_size > 10_000

    run = run_in_terminal([*engine_command(), "tui"], until=title, keys=b"\x11", cwd=OUTSIDE, env=env,
                          timeout=180)
    assert run.shown and "4 tracks" in run.output, run.output[-2000:]
    assert run.status == 0
