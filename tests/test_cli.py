"""The command line: help, model listing, errors as one line."""

from __future__ import annotations

from click.testing import CliRunner

from engine.cli import cli


def _run(*args, **env):
    return CliRunner().invoke(cli, list(args), env=env or None)


def test_help_lists_commands():
    out = _run("--help").output
    for cmd in ("build", "models"):
        assert cmd in out


def test_models_list_shows_state_and_what_it_enables(tmp_path, shared_models):
    result = _run("models", "list", ENGINE_MODELS=str(shared_models), ENGINE_CACHE=str(tmp_path))
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "missing" in lines["effnet"] and "1280-d" in lines["effnet"]
    assert "present" in lines["musicnn"] and "MSD tags" in lines["musicnn"]
    assert "engine models fetch effnet" in result.stderr


def test_models_export_converts_and_reports(tmp_path, shared_models):
    result = _run("models", "export", "emomusic", ENGINE_MODELS=str(shared_models), ENGINE_CACHE=str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "converted" in result.stdout and (tmp_path / "onnx" / "emomusic-msd-musicnn-2.onnx").is_file()
    again = _run("models", "export", "emomusic", ENGINE_MODELS=str(shared_models), ENGINE_CACHE=str(tmp_path))
    assert "up to date" in again.stdout
    listed = _run("models", "list", ENGINE_MODELS=str(shared_models), ENGINE_CACHE=str(tmp_path))
    assert "converted" in [l for l in listed.stdout.splitlines() if l.startswith("emomusic")][0]


def test_unknown_model_is_one_line_error():
    result = _run("models", "fetch", "nosuchmodel")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip()
    ] and "unknown model 'nosuchmodel'" in result.stderr


def test_export_of_missing_model_names_the_fix(tmp_path):
    result = _run("models", "export", "moods_mirex", ENGINE_MODELS=str(tmp_path), ENGINE_CACHE=str(tmp_path))
    assert result.exit_code == 1
    assert "engine models fetch moods_mirex" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_build_of_missing_folder_is_refused(tmp_path):
    result = _run("build", str(tmp_path / "nope"), "--store", str(tmp_path / "s"))
    assert result.exit_code == 2 and "does not exist" in result.stderr


def _one_line(result, *needles) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_invalid_build_options_are_refused_in_one_line(tmp_path):
    for option, value in (("--workers", "0"), ("--workers", "-3"), ("--threads", "0"), ("--batch", "0"),
                          ("--max-seconds", "0")):
        result = _run("build", str(tmp_path), "--store", str(tmp_path / "s"), option, value)
        assert result.exit_code == 2, (option, value, result.output)
        _one_line(result, f"'{option}': ", "is not in the range", "build --help")
    assert not (tmp_path / "s").exists()


def test_empty_folder_says_no_audio_found_and_changes_nothing(tmp_path):
    (tmp_path / "music" / "sub").mkdir(parents=True)
    (tmp_path / "music" / "notes.txt").write_text("not audio")
    result = _run("build", str(tmp_path / "music"), "--store", str(tmp_path / "s"))
    assert result.exit_code == 1
    _one_line(result, f"no audio files found under {tmp_path / 'music'}")
    assert not (tmp_path / "s").exists()


def test_build_help_defines_the_summary_words():
    from engine.summary import SUMMARY_WORDS, BuildSummary

    text = _run("build", "--help").output
    line = BuildSummary(analysed=1, unchanged=3, skipped=2).lines()[0]
    for word, meaning in SUMMARY_WORDS:
        assert f" {word} " in text and meaning.split()[0] in text  # each word is defined...
        assert word in line  # ...and used in the summary line
    assert line.startswith("analysed 1, updated 0, unchanged 3, moved 0, deleted 0, failed 0, skipped 2 in ")
    # A rare word is left out while its count is 0.
    quiet = BuildSummary(analysed=1, unchanged=3).lines()[0]
    assert quiet.startswith("analysed 1, updated 0, unchanged 3, moved 0, deleted 0, failed 0 in ")


def test_models_option_and_missing_models_name_both_ways_out(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGINE_MODELS", str(tmp_path / "elsewhere"))  # restored after the test
    folder = tmp_path / "official"
    folder.mkdir()
    result = _run("models", "list", "--models", str(folder), ENGINE_CACHE=str(tmp_path / "cache"))
    assert result.exit_code == 0
    assert all("missing" in line for line in result.stdout.splitlines() if line.strip())
    hint = result.stderr.strip()
    assert f"models missing from {folder}" in hint
    assert "engine models fetch" in hint and "--models DIR" in hint and "ENGINE_MODELS=DIR" in hint

    from engine.modelstage import missing_models_note

    monkeypatch.setenv("ENGINE_MODELS", str(folder))
    note = missing_models_note()
    fetch = note.split("`engine models fetch ")[1].split("`")[0].split()
    assert {"musicnn", "effnet", "tempocnn"} <= set(fetch) and "--models DIR" in note
