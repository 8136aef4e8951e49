"""Shared fixtures: the read-only corpus and model folders next to the checkout.

The corpus (``corpus/`` and ``models/``) lives in ``../shared`` or ``$ENGINE_SHARED``.
Without it, the tests that need it (they use a corpus fixture, or carry the
``corpus`` mark) are left out, and one line says where the corpus is expected and how
to get it; the others run. ``ENGINE_REQUIRE_CORPUS=1`` (set by CI's test command)
turns a missing corpus into an error instead.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ENGINE_SHARED", ROOT.parent / "shared"))
CORPUS = SHARED / "corpus"
SHARED_MODELS = SHARED / "models"
REQUIRE_CORPUS_ENV = "ENGINE_REQUIRE_CORPUS"
# Fixtures that read the corpus: a test using one (even through another fixture) needs it.
CORPUS_FIXTURES = frozenset({"corpus", "shared_models", "corpus_store"})


def engine_command() -> list[str]:
    """The ``engine`` console script of this environment: the command a user runs.

    Run it from :data:`OUTSIDE` so the checkout is not on its path: under CI that is
    the installed (non-editable) package, as a user has it.
    """
    script = Path(sys.executable).with_name("engine")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "engine.cli"]


# A working directory outside the checkout, for subprocesses (python -c / -m put the
# working directory first on sys.path, which would import the source tree).
OUTSIDE = tempfile.gettempdir()


def corpus_missing() -> str | None:
    """One line saying where the corpus is expected and how to get it; None when present."""
    missing = [p.name + "/" for p in (CORPUS, SHARED_MODELS) if not p.is_dir()]
    if not missing:
        return None
    return (f"test corpus not found: {' and '.join(missing)} expected in {SHARED}; put the "
            "project's shared/ folder (read-only corpus and official model files) beside the "
            "checkout, or set ENGINE_SHARED=DIR (README.md, Development)")


@pytest.fixture(scope="session")
def corpus() -> Path:
    if (why := corpus_missing()) is not None:
        pytest.skip(why)
    return CORPUS


@pytest.fixture(scope="session")
def shared_models() -> Path:
    if (why := corpus_missing()) is not None:
        pytest.skip(why)
    return SHARED_MODELS


@pytest.fixture(scope="session", autouse=True)
def _isolated_dirs(tmp_path_factory):
    """Point the engine at the shared model folder and a session-wide ONNX cache.

    The cache is shared by all tests of a session so each model is converted once.
    """
    cache = Path(os.environ.get("ENGINE_TEST_CACHE", tmp_path_factory.mktemp("engine-cache")))
    old = {k: os.environ.get(k) for k in ("ENGINE_MODELS", "ENGINE_CACHE", "ENGINE_OFFLINE")}
    os.environ["ENGINE_MODELS"] = str(SHARED_MODELS)
    os.environ["ENGINE_CACHE"] = str(cache)
    os.environ["ENGINE_OFFLINE"] = "1"  # tests never reach the internet
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run tests marked slow (CI does)")


def pytest_configure(config):
    config.addinivalue_line("markers", "corpus: needs ../shared (corpus and models); skipped without it")
    why = corpus_missing()
    if why is not None and os.environ.get(REQUIRE_CORPUS_ENV, "") not in ("", "0"):
        raise pytest.UsageError(f"{why} ({REQUIRE_CORPUS_ENV} is set: CI runs every test)")


def pytest_report_header(config):
    why = corpus_missing()
    return f"corpus: {SHARED}" if why is None else f"corpus: MISSING, the tests that need it will not run: {why}"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    left_out = getattr(config, "_corpus_left_out", 0)
    if left_out:
        terminalreporter.write_line(f"{left_out} tests not run: {corpus_missing()}", yellow=True)


def pytest_collection_modifyitems(config, items):
    # The session's corpus store takes a minute or two to build: its users are slow.
    for item in items:
        if "corpus_store" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
    if corpus_missing() is not None:
        # Left out (deselected) rather than skipped: one line says why, not one per test.
        need = [i for i in items
                if i.get_closest_marker("corpus") or CORPUS_FIXTURES & set(getattr(i, "fixturenames", ()))]
        if need:
            config.hook.pytest_deselected(items=need)
            keep = set(map(id, need))
            items[:] = [i for i in items if id(i) not in keep]
            config._corpus_left_out = len(need)
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def models_with_standin_effnet(shared_models: Path, dest: Path) -> Path:
    """A model folder: links to the real files plus a generated stand-in EffNet backbone."""
    from models import registry
    from tests.standin import write_standin_effnet

    dest.mkdir(parents=True, exist_ok=True)
    for f in shared_models.iterdir():
        if f.is_file() and not (dest / f.name).exists():
            (dest / f.name).symlink_to(f)
    write_standin_effnet(dest / registry.get("effnet").official_onnx.filename)
    return dest


@pytest.fixture(scope="session")
def corpus_store(corpus, shared_models, tmp_path_factory) -> Path:
    """A store built once per session: the 51 library tracks and 10 rendered clips.

    Both spaces are filled: MusiCNN with the real model, EffNet with the stand-in
    backbone (so its styles and heads are real heads on stand-in embeddings). Treat
    it as read-only; copy it (shutil.copytree) before changing anything.
    """
    import shutil

    from engine.build import BuildOptions, build

    music = tmp_path_factory.mktemp("corpus-music")
    shutil.copytree(corpus / "library", music / "library",
                    ignore=shutil.ignore_patterns("*.txt", "COPYRIGHT"))
    for clip in sorted((corpus / "rendered").glob("*.ogg"))[:10]:
        (music / "rendered").mkdir(exist_ok=True)
        shutil.copy(clip, music / "rendered" / clip.name)
    store = tmp_path_factory.mktemp("corpus-store")
    models = models_with_standin_effnet(shared_models, tmp_path_factory.mktemp("models"))
    old = os.environ["ENGINE_MODELS"]
    os.environ["ENGINE_MODELS"] = str(models)
    try:
        build(music, store, BuildOptions(max_seconds=30, progress=False, fetch=False),
              echo=lambda s: None)
    finally:
        os.environ["ENGINE_MODELS"] = old
    return store
