"""Runtime provider selection and the ONNX runner's batching and output mapping."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from models import registry
from models.errors import ModelError
from models.inference import CPU, CUDA, OnnxModel, RuntimeOptions, select_providers


def test_cpu_is_default_without_cuda(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])
    assert select_providers("auto") == [CPU]
    assert select_providers("cpu") == [CPU]
    with pytest.raises(ModelError, match="onnxruntime-gpu"):
        select_providers("cuda")


def test_cuda_is_preferred_when_installed(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    assert select_providers("auto") == [CUDA, CPU]
    assert select_providers("cuda") == [CUDA, CPU]
    assert select_providers("cpu") == [CPU]


def test_unknown_device_is_refused():
    with pytest.raises(ModelError, match="unknown device 'tpu'"):
        select_providers("tpu")


def test_device_from_environment(monkeypatch):
    monkeypatch.setenv("ENGINE_DEVICE", "cpu")
    assert RuntimeOptions.from_env(threads=1) == RuntimeOptions(threads=1, device="cpu")


def test_batches_give_the_same_rows(tmp_path):
    from tests.standin import write_standin_effnet

    path = write_standin_effnet(tmp_path / "standin.onnx")
    x = np.random.default_rng(0).random((70, 128, 96), dtype=np.float32)
    small = OnnxModel(registry.get("effnet"), path, RuntimeOptions(threads=1, batch_size=8)).run(x)
    large = OnnxModel(registry.get("effnet"), path, RuntimeOptions(threads=1, batch_size=64)).run(x)
    assert small["embeddings"].shape == (70, 1280) and small["predictions"].shape == (70, 400)
    np.testing.assert_allclose(small["embeddings"], large["embeddings"], rtol=1e-5, atol=1e-6)
    default = OnnxModel(registry.get("effnet"), path, RuntimeOptions(threads=1, device="cpu"))
    assert default.batch_size == 1  # CPU: one patch per run stays in cache
    np.testing.assert_allclose(default.run(x)["embeddings"], large["embeddings"], rtol=1e-5, atol=1e-6)
    empty = OnnxModel(registry.get("effnet"), path, RuntimeOptions(threads=1)).run(x[:0])
    assert empty["embeddings"].shape[0] == 0


def test_outputs_matched_by_width_when_names_differ(tmp_path):
    # The official EffNet ONNX names its tensors differently from the .pb graph.
    from tests.standin import write_standin_effnet

    path = write_standin_effnet(tmp_path / "standin.onnx")
    model = OnnxModel(registry.get("effnet"), path, RuntimeOptions(threads=1))
    assert model._output_names == ["activations", "embeddings"]
    with pytest.raises(ModelError, match="cannot find its embeddings output"):
        OnnxModel(registry.get("musicnn"), path, RuntimeOptions(threads=1))
