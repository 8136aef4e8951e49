"""Where model files are found and where converted ONNX files are cached.

Model sources: ``$ENGINE_MODELS`` (a folder such as ../shared/models, used by tests
and CI) or, when unset, ``<user cache dir>/models`` where ``engine models fetch``
downloads to. Converted ONNX files always go to ``<cache>/onnx`` (``$ENGINE_CACHE``
or the user cache dir), so a read-only model folder is never written to.

Presence checks (:func:`present`, :func:`missing_files`) look at existence (non-empty
files) only, never hash: the CLI calls them on every start. Downloading what is missing
is :mod:`models.fetch`'s job.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable

import platformdirs

from models.registry import ModelFile, ModelSpec

APP_NAME = "music-engine"


def cache_dir() -> Path:
    env = os.environ.get("ENGINE_CACHE")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir(APP_NAME))


def models_dir() -> Path:
    env = os.environ.get("ENGINE_MODELS")
    return Path(env).expanduser() if env else cache_dir() / "models"


def onnx_dir() -> Path:
    return cache_dir() / "onnx"


# -- presence (cheap: existence, no hashing) -------------------------------------
def _looks_present(root: Path, model_file: ModelFile) -> bool:
    try:
        st = (root / model_file.filename).stat()
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    # Any non-empty file counts: fetched files are verified before they get their
    # name, and a damaged file placed by hand fails loudly when loaded or converted.
    return st.st_size > 0


def missing_files(
    specs: Iterable[ModelSpec] | ModelSpec, *, directory: Path | None = None
) -> list[tuple[ModelSpec, ModelFile]]:
    """The files a set of models still needs, without hashing anything.

    A model's weights count as present when either its official ONNX or its
    ``.pb`` is there and non-empty; a missing weight file is reported as
    the one :func:`models.fetch.fetch_models` would download (the official ONNX when there is
    one). The ``.json``, when the model has one, must exist and be non-empty.

    Parameters
    ----------
    specs : iterable of ModelSpec, or one ModelSpec
        The models to check.
    directory : Path, optional
        Folder to look in; defaults to :func:`models_dir`.

    Returns
    -------
    list of (ModelSpec, ModelFile)
        Each missing file with the model that needs it, in the order given.
    """
    if isinstance(specs, ModelSpec):
        specs = [specs]
    root = Path(directory).expanduser() if directory is not None else models_dir()
    missing: list[tuple[ModelSpec, ModelFile]] = []
    for spec in specs:
        weights = [f for f in (spec.official_onnx, spec.graph) if f is not None]
        if not any(_looks_present(root, f) for f in weights):
            missing.append((spec, spec.files[0]))
        if spec.metadata is not None and not _looks_present(root, spec.metadata):
            missing.append((spec, spec.metadata))
    return missing


def present(spec: ModelSpec, *, directory: Path | None = None) -> bool:
    """Whether a model's weights (official ONNX or ``.pb``) and ``.json`` are in place.

    Existence only, no hashing, so it is cheap enough to call on every
    CLI start. See :func:`missing_files`.
    """
    return not missing_files([spec], directory=directory)
