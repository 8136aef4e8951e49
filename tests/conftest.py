"""Shared fixtures: the read-only corpus and model folders next to the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ENGINE_SHARED", ROOT.parent / "shared"))
CORPUS = SHARED / "corpus"
SHARED_MODELS = SHARED / "models"


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.fail(f"test corpus not found at {CORPUS}; place shared/ beside the checkout")
    return CORPUS


@pytest.fixture(scope="session")
def shared_models() -> Path:
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


def pytest_collection_modifyitems(config, items):
    # The session's corpus store takes a minute or two to build: its users are slow.
    for item in items:
        if "corpus_store" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
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
