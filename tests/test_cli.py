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
