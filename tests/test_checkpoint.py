"""The MagnaTagATune MusiCNN rebuilt from the musicnn wheel's checkpoint (models.checkpoint).

The weight mapping is proved on the wheel's MSD_musicnn checkpoint first: rebuilt on
msd-musicnn-1.pb's graph it must give that graph's own outputs on real tracks.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models import registry
from models.errors import ExportError, ModelMissingError
from models.export import ensure_onnx, export_available

pytestmark = pytest.mark.skipif(not export_available(), reason="needs the export extra (TensorFlow, tf2onnx)")

WHEEL = registry.get("mtt").graph.filename


def _patches(corpus: Path, n: int = 4) -> np.ndarray:
    from engine.decode import decode
    from models import frontend

    clips = sorted((corpus / "rendered").glob("*.ogg"))[:n] + sorted((corpus / "library").rglob("*.ogg"))[:n]
    return np.concatenate([frontend.model_patches("musicnn", frontend.mel_bands(decode(c, max_seconds=30).mono_16k))
                           for c in clips])


def _run(path: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    emb, tags = s.run(["model/dense/BiasAdd:0", "model/Sigmoid:0"], {s.get_inputs()[0].name: x})
    return emb, tags


@pytest.mark.slow
def test_msd_checkpoint_rebuilt_on_the_frozen_graph_gives_its_outputs(corpus, shared_models, tmp_path):
    # Constants: bit for bit the frozen graph's. (TensorFlow runs in a subprocess: it
    # cannot share a process with essentia-tensorflow, which the decoder loads.)
    out = tmp_path / "msd_from_wheel.pb"
    proc = subprocess.run([sys.executable, "-m", "models.checkpoint", str(shared_models / WHEEL),
                           "musicnn/MSD_musicnn", str(shared_models / "msd-musicnn-1.pb"), str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("64 weights")
    compare = (
        "import sys, numpy as np, tensorflow as tf\n"
        "from tensorflow.python.framework import tensor_util\n"
        "def consts(p):\n"
        "    g = tf.compat.v1.GraphDef(); g.ParseFromString(open(p, 'rb').read())\n"
        "    return {n.name: tensor_util.MakeNdarray(n.attr['value'].tensor) for n in g.node if n.op == 'Const'}\n"
        "a, b = consts(sys.argv[1]), consts(sys.argv[2])\n"
        "print(a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a))\n"
    )
    proc = subprocess.run([sys.executable, "-c", compare, str(shared_models / "msd-musicnn-1.pb"), str(out)],
                          capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.stdout.strip().splitlines()[-1] == "True", proc.stderr[-500:]

    # Outputs on real tracks, through the same conversion the MTT model takes.
    msd = registry.get("musicnn")
    rebuilt = dataclasses.replace(registry.get("mtt"), name="msd_check", checkpoint="musicnn/MSD_musicnn")
    x = _patches(corpus)
    e1, t1 = _run(ensure_onnx(msd), x)
    e2, t2 = _run(ensure_onnx(rebuilt), x)
    cos = (e1 * e2).sum(1) / np.linalg.norm(e1, axis=1) / np.linalg.norm(e2, axis=1)
    assert cos.min() >= 0.9999 and np.abs(t1 - t2).max() < 1e-4


@pytest.mark.slow
def test_mtt_model_converts_and_tags_real_music(corpus):
    from models.inference import RuntimeOptions, load

    model = load(registry.get("mtt"), RuntimeOptions(threads=1, device="cpu"))
    assert Path(ensure_onnx(registry.get("mtt"))).name == "mtt_musicnn.fast.onnx"
    x = _patches(corpus, 4)
    out = model.run(x)
    assert out["embeddings"].shape == (len(x), 200) and out["predictions"].shape == (len(x), 50)
    # The fast (pruned) graph against the converted one: the same outputs.
    converted = Path(ensure_onnx(registry.get("mtt"))).with_name("mtt_musicnn.onnx")
    e1, _ = _run(converted, x)
    cos = (e1 * out["embeddings"]).sum(1) / np.linalg.norm(e1, axis=1) / np.linalg.norm(out["embeddings"], axis=1)
    assert cos.min() >= 0.9999


@pytest.mark.slow
def test_mtt_reads_non_overlapping_patches_of_the_mel_musicnn_reads(corpus):
    """MTT runs on 3 s patches without overlap (hop 187, the musicnn package's default),
    MSD-MusiCNN on Essentia's hop 93, both cut from one mel; each track output is the
    mean over exactly those patches."""
    from engine.analysis import FileAnalysis
    from engine.decode import decode
    from engine.modelstage import ModelStage
    from models import frontend
    from models.inference import RuntimeOptions

    mel = frontend.mel_bands(decode(corpus / "rendered" / "chorale_00.ogg", max_seconds=30).mono_16k)
    stage = ModelStage(RuntimeOptions(threads=1, device="cpu"), spaces=("musicnn", "mtt"))
    out = stage.run([FileAnalysis(task=None, mel=mel)])[0]
    n = len(mel)
    assert out.spaces["musicnn"].n_patches == 1 + (n - 187) // 93 == 19
    assert out.spaces["mtt"].n_patches == 1 + (n - 187) // 187 == 10
    direct = stage.pipelines["mtt"].backbone.run(frontend.patches(mel, patch_frames=187, patch_hop=187))
    assert np.allclose(out.spaces["mtt"].embedding, direct["embeddings"].mean(0), atol=1e-5)
    assert np.allclose(out.spaces["mtt"].predictions["mtt"], direct["predictions"].mean(0), atol=1e-6)


def test_checkpoint_errors_name_the_file_and_the_fix(shared_models, tmp_path, monkeypatch):
    # A folder without a checkpoint in the wheel: one line naming both.
    proc = subprocess.run([sys.executable, "-m", "models.checkpoint", str(shared_models / WHEEL),
                           "musicnn/NOPE", str(shared_models / "msd-musicnn-1.pb"), str(tmp_path / "x.pb")],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "musicnn-0.1.0-py3-none-any.whl has no checkpoint in musicnn/NOPE/" in proc.stderr
    # The template graph missing: the fetch command for it.
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / WHEEL).symlink_to(shared_models / WHEEL)
    monkeypatch.setenv("ENGINE_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("ENGINE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelMissingError, match="engine models fetch musicnn"):
        ensure_onnx(registry.get("mtt"))
    # A damaged wheel: the conversion error names it.
    (tmp_path / "models" / WHEEL).unlink()
    (tmp_path / "models" / WHEEL).write_bytes(b"not a zip")
    (tmp_path / "models" / "msd-musicnn-1.pb").symlink_to(shared_models / "msd-musicnn-1.pb")
    with pytest.raises(ExportError, match=f"rebuilding musicnn/MTT_musicnn from {WHEEL} failed"):
        ensure_onnx(registry.get("mtt"))
