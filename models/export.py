"""TensorFlow frozen graph (.pb) -> ONNX, converted once and cached.

The conversion runs ``python -m tf2onnx.convert`` in a subprocess: TensorFlow is
only needed for this one step (``pip install '.[export]'``), its import is slow and
heavy, and keeping it out of the engine's process means the engine never loads it.
Tested with tensorflow-cpu 2.21.0 + tf2onnx 1.17.0 (opset 17); with TensorFlow 2.15,
tf2onnx 1.17 fails on ``ml_dtypes`` unless ``onnx==1.17.0`` is pinned.

Each cached ``<stem>.onnx`` sits next to ``<stem>.onnx.json``, a record of the source
file's SHA-256 (plus size and mtime, so an unchanged source is not re-hashed). A
changed source triggers a re-export. Official ``.onnx`` files (the EffNet backbone)
are used directly and never converted. Checkpoint models (the MagnaTagATune MusiCNN
in the ``musicnn`` wheel) first become a frozen graph in a subprocess
(models.checkpoint), which is then converted the same way.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from models import paths
from models.errors import ExportError, ModelMissingError, models_hint
from models.registry import ModelSpec

log = logging.getLogger(__name__)

OPSET = 17
# Bumped when the conversion recipe changes, so caches made by older code are redone.
RECIPE_VERSION = 1


@dataclass(frozen=True)
class ExportRecord:
    source: str
    source_sha256: str
    source_size: int
    source_mtime_ns: int
    opset: int
    recipe_version: int


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def export_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("tf2onnx", "tensorflow"))


# Models with a faster rebuild that gives the same outputs (within float rounding):
# MusiCNN without its dead filters, 9x fewer operations (see models.quantize), with the
# bound under which a filter counts as dead. MSD-MusiCNN's filters split cleanly (dropped
# <= 1.8e-8, kept >= 0.09). MagnaTagATune's (trained 600 epochs, not 6000) decay in a
# continuum: at 1e-6 it keeps 331 of 559 front-end filters (0.81 GMAC per patch); at 1e-2,
# 214 (0.53 GMAC, 1.6x less CPU), with per-patch embedding cosine still >= 0.9999998 and
# tags within 5e-6 of the converted graph on 304 patches of 16 corpus tracks (beyond
# 1e-2 nothing more is dropped until 3e-2).
FAST_VARIANTS = {"musicnn": 1e-6, "mtt": 1e-2}
FAST_RECIPE_VERSION = 2  # 2: overlapping-patch models also split (models.frontsplit)


def onnx_path(spec: ModelSpec, models_dir: Path | None = None) -> Path | None:
    """The ONNX file to run for ``spec`` if one is ready (official or converted and fresh).

    For models in :data:`FAST_VARIANTS` that is the fast rebuild, once it exists.
    """
    converted = _converted_path(spec, models_dir)
    if converted is None or spec.name not in FAST_VARIANTS:
        return converted
    fast = _fast_path(converted)
    tol = FAST_VARIANTS[spec.name]
    return fast if fast.is_file() and _fast_record_matches(fast, converted, tol) else None


def _converted_path(spec: ModelSpec, models_dir: Path | None = None) -> Path | None:
    models_dir = models_dir or paths.models_dir()
    if spec.official_onnx is not None:
        official = models_dir / spec.official_onnx.filename
        if official.is_file():
            return official
    source = models_dir / spec.graph.filename
    target = paths.onnx_dir() / f"{spec.stem}.onnx"
    if source.is_file() and target.is_file() and _record_matches(target, source):
        return target
    return None


def ensure_onnx(spec: ModelSpec, models_dir: Path | None = None) -> Path:
    """Return a ready ONNX file for ``spec``, converting its .pb if needed.

    Raises
    ------
    ModelMissingError
        Neither an official ONNX nor the .pb is present.
    ExportError
        Conversion is needed but tf2onnx/TensorFlow are not installed, or it failed.
    """
    models_dir = models_dir or paths.models_dir()
    ready = onnx_path(spec, models_dir)
    if ready is not None:
        return ready
    converted = _converted_path(spec, models_dir) or _convert(spec, models_dir)
    if spec.name in FAST_VARIANTS:
        return _build_fast(converted, FAST_VARIANTS[spec.name], split=_overlapping(spec))
    return converted


def _overlapping(spec: ModelSpec) -> bool:
    """Whether ``spec``'s patches overlap, so that its fast graph is also split
    (:mod:`models.frontsplit`)."""
    return spec.patch_hop is not None and spec.patch_frames is not None and spec.patch_hop < spec.patch_frames


def front_split(onnx_file: Path):
    """The :class:`models.frontsplit.FrontSplit` recorded with a fast graph whose two
    graphs are in place, else None."""
    from models.frontsplit import FrontSplit

    try:
        record = json.loads(_record_path(onnx_file).read_text())
    except (OSError, ValueError):
        return None
    split = FrontSplit.from_record(record.get("front_split") if isinstance(record, dict) else None)
    if split is None or not all((onnx_file.parent / f).is_file() for f in (split.timbral, split.rest)):
        return None
    return split


def _convert(spec: ModelSpec, models_dir: Path) -> Path:
    source = models_dir / spec.graph.filename
    if not source.is_file():
        wanted = spec.official_onnx or spec.graph
        raise ModelMissingError(
            f"model {spec.name!r} is missing ({wanted.filename} is not in {models_dir}): "
            f"{models_hint(spec.name)}"
        )
    if spec.checkpoint:
        return _export_checkpoint(spec, source, models_dir)
    return export(spec, source)


def _export_checkpoint(spec: ModelSpec, wheel: Path, models_dir: Path) -> Path:
    """Rebuild the frozen graph from the wheel's checkpoint (models.checkpoint), then convert it."""
    from models import registry

    template = registry.get(spec.template)
    template_pb = models_dir / template.graph.filename
    if not template_pb.is_file():
        raise ModelMissingError(
            f"model {spec.name!r} is rebuilt on {template.name}'s graph, which is missing "
            f"({template.graph.filename} is not in {models_dir}): {models_hint(template.name)}"
        )
    _require_export_tools(wheel)
    out_dir = paths.onnx_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        frozen = Path(tmp) / f"{spec.stem}.pb"
        cmd = [sys.executable, "-m", "models.checkpoint", str(wheel), spec.checkpoint, str(template_pb), str(frozen)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_tf_env())
        if proc.returncode != 0 or not frozen.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ExportError(f"rebuilding {spec.checkpoint} from {wheel.name} failed: {tail[0]}")
        return export(spec, wheel, graphdef=frozen)


def _tf_env() -> dict[str, str]:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")


def _require_export_tools(source: Path) -> None:
    if not export_available():
        raise ExportError(
            f"converting {source.name} to ONNX needs TensorFlow and tf2onnx: "
            "pip install 'music-engine[export]' (tensorflow-cpu 2.21, tf2onnx 1.17), "
            "then run `engine models export`"
        )


def export(spec: ModelSpec, source: Path, *, graphdef: Path | None = None) -> Path:
    """Convert ``source`` (the spec's .pb) to ONNX in the cache; returns the ONNX path.

    ``graphdef`` is the frozen graph to convert when it is not ``source`` itself (a
    graph rebuilt from ``source``'s checkpoint); the cache record names ``source``.
    """
    _require_export_tools(source)
    out_dir = paths.onnx_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{spec.stem}.onnx"
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        tmp_onnx = Path(tmp) / target.name
        cmd = [
            sys.executable,
            "-m",
            "tf2onnx.convert",
            "--graphdef",
            str(graphdef or source),
            "--inputs",
            spec.input,
            "--outputs",
            ",".join(spec.outputs.values()),
            "--opset",
            str(OPSET),
            "--output",
            str(tmp_onnx),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_tf_env())
        if proc.returncode != 0 or not tmp_onnx.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ExportError(f"converting {source.name} to ONNX failed: {tail[0]}")
        _name_batch_dimension(tmp_onnx)
        stat = source.stat()
        record = ExportRecord(
            source=str(source),
            source_sha256=sha256_of(source),
            source_size=stat.st_size,
            source_mtime_ns=stat.st_mtime_ns,
            opset=OPSET,
            recipe_version=RECIPE_VERSION,
        )
        os.replace(tmp_onnx, target)
        _record_path(target).write_text(json.dumps(asdict(record), indent=2))
    return target


def _fast_path(converted: Path) -> Path:
    return converted.with_name(converted.stem + ".fast.onnx")


def _fast_record_matches(fast: Path, converted: Path, tol: float, *, any_recipe: bool = False) -> bool:
    """Whether ``fast`` was built from ``converted`` at bound ``tol`` by the current recipe
    (by any recipe with ``any_recipe``: each gives the same outputs)."""
    try:
        record = json.loads(_record_path(fast).read_text())
    except (OSError, ValueError):
        return False
    return ((any_recipe or record.get("recipe_version") == FAST_RECIPE_VERSION)
            and record.get("tol", 1e-6) == tol  # records from before the bound was per model
            and record.get("source_sha256") == _cached_sha(converted))


def _cached_sha(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_of(path)
    return _SHA_CACHE[key]


_SHA_CACHE: dict[tuple, str] = {}


def _build_fast(converted: Path, tol: float, *, split: bool = False) -> Path:
    """Rebuild MusiCNN without its dead filters, checked against the converted graph;
    with ``split``, also its timbral front end and the rest (:mod:`models.frontsplit`)."""
    import numpy as np

    from models.quantize import quantize_musicnn

    fast = _fast_path(converted)
    if importlib.util.find_spec("onnx") is None:
        # Rebuilding needs the onnx package (the export extra), gone since the last
        # conversion: an earlier recipe's fast graph gives the same outputs, else the
        # converted graph does (9x slower).
        log.warning("the onnx package is missing (pip install 'music-engine[export]'): "
                    "%s is not rebuilt", fast.name)
        older = fast.is_file() and _fast_record_matches(fast, converted, tol, any_recipe=True)
        return fast if older else converted
    # Mel-like patches (log-compressed magnitudes lie in about 0-4) for the
    # built-in check that every per-patch embedding keeps cosine >= 0.99999.
    check = np.random.default_rng(0).uniform(0.0, 4.0, size=(19, 187, 96)).astype(np.float32)
    try:
        quantize_musicnn(converted, fast, check, tol=tol)
    except ValueError as exc:
        raise ExportError(f"building the fast MusiCNN from {converted.name} failed: {exc}") from None
    record = {"source_sha256": _cached_sha(converted), "recipe_version": FAST_RECIPE_VERSION, "tol": tol}
    if split:
        from models.frontsplit import split_front

        try:
            record["front_split"] = split_front(fast).to_record()
        except ValueError as exc:
            raise ExportError(f"splitting the fast MusiCNN {fast.name} failed: {exc}") from None
    _record_path(fast).write_text(json.dumps(record, indent=2))
    return fast


def _name_batch_dimension(onnx_file: Path) -> None:
    """tf2onnx calls the dynamic batch dimension ``unk__N``; call it ``batch``."""
    import onnx

    model = onnx.load(str(onnx_file))
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
    onnx.save(model, str(onnx_file))


def _record_path(onnx_file: Path) -> Path:
    return onnx_file.with_name(onnx_file.name + ".json")


def _record_matches(target: Path, source: Path) -> bool:
    try:
        record = ExportRecord(**json.loads(_record_path(target).read_text()))
    except (OSError, ValueError, TypeError):
        return False
    if record.recipe_version != RECIPE_VERSION or record.opset != OPSET:
        return False
    stat = source.stat()
    if (stat.st_size, stat.st_mtime_ns) == (record.source_size, record.source_mtime_ns):
        return True
    # Touched or replaced: only the content decides.
    return sha256_of(source) == record.source_sha256
