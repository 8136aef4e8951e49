"""Where model files are found and where converted ONNX files are cached.

Model sources: ``$ENGINE_MODELS`` (a folder such as ../shared/models, used by tests
and CI) or, when unset, ``<user cache dir>/models`` where ``engine models fetch``
downloads to. Converted ONNX files always go to ``<cache>/onnx`` (``$ENGINE_CACHE``
or the user cache dir), so a read-only model folder is never written to.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "music-engine"


def cache_dir() -> Path:
    env = os.environ.get("ENGINE_CACHE")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir(APP_NAME))


def models_dir() -> Path:
    env = os.environ.get("ENGINE_MODELS")
    return Path(env).expanduser() if env else cache_dir() / "models"


def onnx_dir() -> Path:
    return cache_dir() / "onnx"
