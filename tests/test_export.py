"""TensorFlow .pb -> ONNX conversion: caching, re-export on a changed source, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models import export, paths, registry
from models.errors import ModelMissingError
from models.inference import OnnxModel, RuntimeOptions


@pytest.fixture()
def private_models(tmp_path, monkeypatch, shared_models):
    """A writable model folder and cache holding a copy of the emoMusic head."""
    models = tmp_path / "models"
    models.mkdir()
    spec = registry.get("emomusic")
    for f in (spec.graph, spec.metadata):
        shutil.copy(shared_models / f.filename, models / f.filename)
    monkeypatch.setenv("ENGINE_MODELS", str(models))
    monkeypatch.setenv("ENGINE_CACHE", str(tmp_path / "cache"))
    return models


def _run(onnx_file: Path, x: np.ndarray) -> np.ndarray:
    model = OnnxModel(registry.get("emomusic"), onnx_file, RuntimeOptions(threads=1))
    return model.run(x)["predictions"]


def test_export_caches_with_source_checksum(private_models):
    spec = registry.get("emomusic")
    assert export.onnx_path(spec) is None
    out = export.ensure_onnx(spec)
    assert out.parent == paths.onnx_dir()
    record = json.loads(out.with_name(out.name + ".json").read_text())
    assert record["source_sha256"] == spec.graph.sha256
    # A second call reuses the cached file without converting again.
    mtime = out.stat().st_mtime_ns
    assert export.ensure_onnx(spec) == out
    assert out.stat().st_mtime_ns == mtime


def test_batch_dimension_is_dynamic_and_named(private_models):
    import onnx

    out = export.ensure_onnx(registry.get("emomusic"))
    graph = onnx.load(str(out)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    x = np.random.default_rng(0).standard_normal((7, 200)).astype(np.float32)
    y = _run(out, x)
    assert y.shape == (7, 2)
    # The same rows give the same outputs whatever the batch they come in.
    np.testing.assert_allclose(_run(out, x[:3]), y[:3], rtol=1e-5, atol=1e-6)


def test_touched_source_is_not_reconverted(private_models):
    spec = registry.get("emomusic")
    out = export.ensure_onnx(spec)
    mtime = out.stat().st_mtime_ns
    (private_models / spec.graph.filename).touch()  # same bytes, new mtime
    assert export.ensure_onnx(spec) == out
    assert out.stat().st_mtime_ns == mtime


_EDIT_GRAPH = r"""
import sys, numpy as np, tensorflow as tf
path = sys.argv[1]
g = tf.compat.v1.GraphDef(); g.ParseFromString(open(path, 'rb').read())
for node in g.node:
    if node.op == 'Const' and node.attr['dtype'].type == tf.float32.as_datatype_enum:
        arr = tf.make_ndarray(node.attr['value'].tensor)
        if arr.size > 100:
            node.attr['value'].tensor.CopyFrom(tf.make_tensor_proto(arr * 1.5))
            break
open(path, 'wb').write(g.SerializeToString())
"""


@pytest.mark.slow
def test_changed_source_triggers_reexport(private_models):
    spec = registry.get("emomusic")
    out = export.ensure_onnx(spec)
    x = np.random.default_rng(1).standard_normal((4, 200)).astype(np.float32)
    before = _run(out, x)
    source = private_models / spec.graph.filename
    subprocess.run([sys.executable, "-c", _EDIT_GRAPH, str(source)], check=True,
                   capture_output=True)
    assert export.sha256_of(source) != spec.graph.sha256
    assert export.onnx_path(spec) is None  # the cache is stale now
    again = export.ensure_onnx(spec)
    record = json.loads(again.with_name(again.name + ".json").read_text())
    assert record["source_sha256"] == export.sha256_of(source)
    assert not np.allclose(_run(again, x), before)


def test_missing_source_names_file_and_command(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGINE_MODELS", str(tmp_path))
    with pytest.raises(ModelMissingError) as err:
        export.ensure_onnx(registry.get("moods_mirex"))
    msg = str(err.value)
    assert "moods_mirex-msd-musicnn-1.pb" in msg and "engine models fetch moods_mirex" in msg
    assert "\n" not in msg


def test_official_onnx_is_used_directly(tmp_path, monkeypatch):
    from tests.standin import write_standin_effnet

    spec = registry.get("effnet")
    monkeypatch.setenv("ENGINE_MODELS", str(tmp_path))
    official = write_standin_effnet(tmp_path / spec.official_onnx.filename)
    assert export.ensure_onnx(spec) == official


def test_musicnn_runs_as_its_fast_rebuild_with_the_same_outputs(corpus):
    """MusiCNN without its dead filters: same embeddings, far fewer operations."""
    import essentia.standard as es

    from models import frontend

    spec = registry.get("musicnn")
    fast = export.ensure_onnx(spec)
    assert fast.name == "msd-musicnn-1.fast.onnx" and export.onnx_path(spec) == fast
    plain = paths.onnx_dir() / "msd-musicnn-1.onnx"
    audio = es.MonoLoader(filename=str(corpus / "rendered" / "folk_00.ogg"), sampleRate=16000,
                          resampleQuality=4)()
    patches = frontend.model_patches(spec, frontend.mel_bands(audio))
    a = OnnxModel(spec, plain, RuntimeOptions(threads=1)).run(patches)
    b = OnnxModel(spec, fast, RuntimeOptions(threads=1)).run(patches)
    cos = np.sum(a["embeddings"] * b["embeddings"], 1) / (
        np.linalg.norm(a["embeddings"], axis=1) * np.linalg.norm(b["embeddings"], axis=1))
    assert cos.min() >= 0.99999
    np.testing.assert_allclose(a["predictions"], b["predictions"], atol=1e-5)


def test_pruning_keeps_the_filters_the_bound_separates(shared_models, tmp_path):
    # What models/quantize.py's docstring states: live filters per front-end conv, and a
    # wide gap between the largest bound dropped and the smallest kept.
    from models.quantize import prune_musicnn

    export.ensure_onnx(registry.get("musicnn"))
    info = prune_musicnn(paths.onnx_dir() / "msd-musicnn-1.onnx", tmp_path / "pruned.onnx", block=16)
    assert info.live == [23, 14, 3, 7, 17] and info.total == [204, 204, 51, 51, 51]
    assert info.max_dropped_bound <= 1.8e-8 and info.min_kept_bound >= 0.09
    assert all(filters % 16 == 0 for filters, _ in info.convs)
    assert (tmp_path / "pruned.onnx").stat().st_size > 0


def test_pruning_refuses_a_graph_that_is_not_musicnn(shared_models, tmp_path):
    from models.quantize import prune_musicnn

    head = export.ensure_onnx(registry.get("emomusic"))
    with pytest.raises(ValueError, match=rf"^{head.name} is not the expected MusiCNN graph: expected one input"):
        prune_musicnn(head, tmp_path / "pruned.onnx")
    assert not (tmp_path / "pruned.onnx").exists()


def test_without_onnx_an_earlier_fast_graph_or_the_converted_one_runs(shared_models, tmp_path, monkeypatch, caplog):
    """A cache from an earlier fast recipe, with the onnx package gone since (the export
    extra uninstalled): the earlier fast graph runs (same outputs), or the converted one
    when there is none, and a warning names the extra; nothing fails."""
    import importlib.util

    spec = registry.get("musicnn")
    fast = export.ensure_onnx(spec)  # the session's cache, current recipe
    converted = fast.with_name("msd-musicnn-1.onnx")
    cache = tmp_path / "cache" / "onnx"
    cache.mkdir(parents=True)
    for f in (converted, converted.with_name(converted.name + ".json"), fast):
        shutil.copy(f, cache / f.name)
    record = json.loads(fast.with_name(fast.name + ".json").read_text())
    record["recipe_version"] = export.FAST_RECIPE_VERSION - 1
    record.pop("front_split", None)
    (cache / (fast.name + ".json")).write_text(json.dumps(record))
    monkeypatch.setenv("ENGINE_CACHE", str(tmp_path / "cache"))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real_find_spec(name, *a))
    with caplog.at_level("WARNING", logger="models.export"):
        assert export.ensure_onnx(spec) == cache / fast.name
    assert "music-engine[export]" in caplog.text
    assert export.front_split(cache / fast.name) is None  # runs whole
    (cache / fast.name).unlink()
    assert export.ensure_onnx(spec) == cache / converted.name
