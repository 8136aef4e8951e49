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
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
