"""Essentia's model front-ends, re-done in vectorised numpy.

The pre-trained Essentia models are fed by C++ front-ends inside Essentia's
TensorFlow wrappers. Running the models as ONNX means computing those inputs
ourselves, and they have to match what the networks were trained and validated
on. This module reproduces, without Essentia:

* :func:`mel_bands`: ``FrameCutter`` + ``TensorflowInputMusiCNN`` (the input of
  MusiCNN and Discogs-EffNet), within about 2e-5 of Essentia on real music;
* :func:`patches` / :func:`model_patches`: how ``TensorflowPredictMusiCNN`` and
  ``TensorflowPredictEffnetDiscogs`` cut the mel frames into patches, including
  the last patch and inputs shorter than one patch;
* :func:`tempocnn_patches`: what ``TempoCNN`` feeds its graph (its own 11025 Hz
  mel front-end, standardised patches, ``[B, 40, 256, 1]``);
* :func:`tempo_from_activations`: ``TempoCNN``'s majority vote over patches.

Sources (MTG/essentia): ``src/algorithms/standard/framecutter.cpp``,
``src/algorithms/spectral/tensorflowinputmusicnn.cpp``,
``src/algorithms/spectral/tensorflowinputtempocnn.cpp``,
``src/algorithms/spectral/melbands.cpp``, ``triangularbands.cpp``,
``src/algorithms/standard/vectorrealtotensor.cpp``, ``tensornormalize.cpp``,
``src/algorithms/machinelearning/tensorflowpredict{musicnn,effnetdiscogs,tempocnn}.cpp``
and ``src/algorithms/rhythm/tempocnn.cpp``. ``tests/test_frontend.py`` checks every
behaviour here against the installed Essentia.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from models.kernels import rfft  # scipy.fft.rfft without importing scipy.fft
from models.registry import MEL, TEMPO_INPUT, MelFrontEnd, ModelSpec, TempoFrontEnd, get

LastPatch = Literal["discard", "repeat"]

# TensorflowInputMusiCNN hard-codes its compression as log10(shift + scale * band)
# and leaves MelBands' lowFrequencyBound at its default of 0 Hz; neither is a
# parameter of the wrappers, so they are not part of MelFrontEnd.
_LOG_SHIFT = 1.0
_LOG_SCALE = 10_000.0
_MUSICNN_F_MIN = 0.0

# Each wrapper's default patching (see :func:`patches` for what the flags mean).
# TensorflowPredictMusiCNN: lastPatchMode="discard", and every frame is used.
# TensorflowPredictEffnetDiscogs: lastPatchMode="discard", lastBatchMode="same",
# batchSize=64, which in effect never uses the final frame (see patches()).
_WRAPPER_PATCHING: dict[str, tuple[LastPatch, bool]] = {
    "musicnn": ("discard", False),
    "mtt": ("discard", False),  # MusiCNN's cut, other weights and hop (see registry: 187)
    "effnet": ("discard", True),
}

_F32 = np.float32
# Essentia's Slaney mel scale (essentiamath.h hz2melSlaney / mel2hzSlaney): linear
# below 1 kHz, logarithmic above. Kept in float32 like Essentia's ``Real``.
_LIN_SLOPE = _F32(3.0 / 200.0)
_MIN_LOG_HZ = _F32(1000.0)
_MIN_LOG_MEL = _F32(_MIN_LOG_HZ * _LIN_SLOPE)
_LOG_STEP = _F32(math.log(6.4) / 27.0)


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=_F32)
    with np.errstate(divide="ignore"):  # log(0) lands in the linear branch anyway
        logs = np.log((hz / _MIN_LOG_HZ).astype(np.float64)).astype(_F32)
    return np.where(hz < _MIN_LOG_HZ, hz * _LIN_SLOPE, _MIN_LOG_MEL + logs / _LOG_STEP).astype(_F32)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=_F32)
    exps = np.exp((_LOG_STEP * (mel - _MIN_LOG_MEL)).astype(np.float64)).astype(_F32)
    return np.where(mel < _MIN_LOG_MEL, mel / _LIN_SLOPE, _MIN_LOG_HZ * exps).astype(_F32)


@functools.lru_cache(maxsize=8)
def mel_filterbank(
    sample_rate: float, frame_size: int, n_mels: int, f_min: float, f_max: float
) -> np.ndarray:
    """Essentia's ``MelBands`` weights (slaneyMel, linear weighting, unit_tri).

    Parameters
    ----------
    sample_rate : float
        Sampling rate of the framed signal, in Hz.
    frame_size : int
        FFT size; the spectrum has ``frame_size // 2 + 1`` bins.
    n_mels : int
        Number of triangular bands.
    f_min, f_max : float
        Lower edge of the first band and upper edge of the last, in Hz
        (``0 <= f_min < f_max <= sample_rate / 2``).

    Returns
    -------
    numpy.ndarray
        float32, shape ``[frame_size // 2 + 1, n_mels]``, read-only (it is cached).
        Column ``b`` holds band ``b``'s weights, each >= 0 and 0 outside the band;
        ``unit_tri`` divides each triangle by its area in Hz, so
        ``W[:, b].sum() * sample_rate / frame_size`` is about 1.
        ``power_spectrum @ W`` gives the bands.

    Notes
    -----
    The arithmetic copies Essentia's float32 steps (band edges accumulated one mel
    increment at a time, triangle slopes from float32 differences). Bins lying
    just inside a band edge get weights computed from nearly equal numbers; done
    in float64 instead, those weights differ by up to 1.5 %, which moves some
    log-mel values by up to 4e-3 on loud tonal music.
    """
    if not 0.0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(
            f"mel bands need 0 <= f_min < f_max <= sample_rate/2; got f_min={f_min}, "
            f"f_max={f_max}, sample_rate={sample_rate}"
        )
    low, high = hz_to_mel(f_min), hz_to_mel(f_max)
    increment = _F32((high - low) / _F32(n_mels + 1))
    # MelBands::calculateFilterFrequencies adds the increment in a float32 loop;
    # np.add.accumulate is sequential too, so it rounds the same way.
    steps = np.full(n_mels + 2, increment, dtype=_F32)
    steps[0] = low
    edges = mel_to_hz(np.add.accumulate(steps, dtype=_F32))

    n_bins = frame_size // 2 + 1
    bin_hz = _F32(_F32(sample_rate / 2.0) / _F32(n_bins - 1))
    j = np.arange(n_bins)[:, None]
    freq = (np.arange(n_bins, dtype=_F32) * bin_hz)[:, None]
    lo, mid, hi = edges[None, :-2], edges[None, 1:-1], edges[None, 2:]
    rise, fall = mid - lo, hi - mid
    with np.errstate(divide="ignore", invalid="ignore"):
        tri = np.where(freq < mid, (freq - lo) / rise, (hi - freq) / fall)
    # TriangularBands only visits bins ceil(lo/bin) .. floor(hi/bin).
    inside = (j >= np.ceil(lo / bin_hz)) & (j <= np.floor(hi / bin_hz))
    weights = np.where(inside, tri / ((rise + fall) / _F32(2.0)), _F32(0.0)).astype(_F32)
    if not np.all(weights.any(axis=0)):
        raise ValueError(
            f"{n_mels} mel bands are too narrow for a {frame_size}-point FFT at {sample_rate} Hz"
        )
    weights.flags.writeable = False
    return weights


@functools.lru_cache(maxsize=8)
def _sparse_filterbank(
    sample_rate: float, frame_size: int, n_mels: int, f_min: float, f_max: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The non-zero weights of :func:`mel_filterbank`, band by band.

    Each band touches a few neighbouring bins (about 500 weights in all instead of
    257 x 96), so gathering them beats a dense product; it also keeps BLAS and its
    thread pool, which is slow on small shared machines, out of the front-end.
    """
    weights = mel_filterbank(sample_rate, frame_size, n_mels, f_min, f_max)
    bands, bins = np.nonzero(weights.T)  # band-major, so each band's bins are contiguous
    values = weights.T[bands, bins].astype(np.float64)
    starts = np.searchsorted(bands, np.arange(n_mels))
    return bins, values, starts


def _apply_filterbank(
    spectra: np.ndarray, front: tuple[float, int, int, float, float]
) -> np.ndarray:
    """``spectra @ mel_filterbank(*front)`` for spectra shaped [n_frames, bins]."""
    bins, values, starts = _sparse_filterbank(*front)
    if len(spectra) == 0:
        return np.zeros((0, len(starts)))
    gathered = spectra[:, bins]
    gathered *= values
    return np.add.reduceat(gathered, starts, axis=1)


@functools.lru_cache(maxsize=8)
def _hann(size: int) -> np.ndarray:
    # Essentia's Windowing: symmetric Hann, normalized=False. Its zeroPhase rotation
    # is a circular shift, which leaves |FFT| unchanged, so it is not applied.
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(size) / (size - 1))
    window.flags.writeable = False
    return window


def _n_frames(n_samples: int, frame_size: int, hop_size: int) -> int:
    """Frames Essentia's FrameCutter (startFromZero=False) cuts from n_samples."""
    if n_samples == 0:
        return 0
    start = -((frame_size + 1) // 2)
    # It stops before a frame starting at or past the end, and after the first
    # frame whose centre reaches the end (framecutter.cpp, compute()).
    past_end = -(-(n_samples - start) // hop_size)
    centre_at_end = max(0, -(-(n_samples - start - frame_size // 2) // hop_size))
    return min(past_end, centre_at_end + 1)


def _stft(y: np.ndarray, frame_size: int, hop_size: int) -> np.ndarray:
    """FFT of Hann-windowed frames cut like FrameCutter; complex128 [n_frames, bins]."""
    y = np.asarray(y, dtype=_F32)  # Essentia's Real: inputs are rounded to float32
    if y.ndim != 1:
        raise ValueError(f"expected a mono signal (1-D array), got shape {y.shape}")
    n = _n_frames(len(y), frame_size, hop_size)
    if n == 0:
        return np.zeros((0, frame_size // 2 + 1), dtype=np.complex128)
    left = (frame_size + 1) // 2  # the first frame is centred on sample 0
    padded = np.zeros((n - 1) * hop_size + frame_size, dtype=_F32)
    kept = min(len(y), len(padded) - left)
    padded[left : left + kept] = y[:kept]
    frames = sliding_window_view(padded, frame_size)[::hop_size]
    # float64 adds no rounding of its own on top of Essentia's; scipy's FFT is 1.7x
    # numpy's on 512-point frames.
    return rfft(frames * _hann(frame_size), axis=1)


def mel_bands(y: np.ndarray, *, front_end: MelFrontEnd = MEL) -> np.ndarray:
    """Log-compressed mel bands as Essentia's MusiCNN / EffNet wrappers compute them.

    Equivalent to running Essentia's ``FrameCutter(frameSize=512, hopSize=256)``
    then ``TensorflowInputMusiCNN`` on each frame, as ``TensorflowPredictMusiCNN``
    and ``TensorflowPredictEffnetDiscogs`` do, but on all frames at once.

    Parameters
    ----------
    y : numpy.ndarray
        Mono audio, shape ``[n_samples]``, at ``front_end.sample_rate`` (16 kHz;
        resample first, e.g. ``MonoLoader(sampleRate=16000)``), nominally in
        [-1, 1]. Rounded to float32 as Essentia does.
    front_end : MelFrontEnd
        Framing and band settings; the default is Essentia's (``registry.MEL``).

    Returns
    -------
    numpy.ndarray
        float32, shape ``[n_frames, front_end.n_mels]`` with
        ``n_frames = ceil(n_samples / hop) + 1`` (0 for an empty signal). Values are
        ``log10(1 + 10000 * band_power) >= 0``; about 0-7 for audio in [-1, 1].

    Notes
    -----
    Frame ``k`` covers samples ``[k*hop - frame/2, k*hop + frame/2)``, zero-padded
    outside the signal; the last frame is the first whose centre reaches the end.
    Each frame gets a symmetric Hann window (not normalised), then ``|FFT|^2`` is
    summed into 96 Slaney-mel triangles from 0 Hz to ``f_max`` (``unit_tri``).
    Digital silence gives exactly 0, as in Essentia's wrappers.
    """
    spectrum = _stft(y, front_end.frame_size, front_end.hop_size)
    power = spectrum.real**2 + spectrum.imag**2
    bands = _apply_filterbank(
        power,
        (
            float(front_end.sample_rate),
            front_end.frame_size,
            front_end.n_mels,
            _MUSICNN_F_MIN,
            float(front_end.f_max),
        ),
    )
    bands *= _LOG_SCALE
    bands += _LOG_SHIFT
    return np.log10(bands).astype(_F32)


def patches(
    mel: np.ndarray,
    *,
    patch_frames: int,
    patch_hop: int,
    last_patch: LastPatch = "discard",
    drop_final_frame: bool = False,
) -> np.ndarray:
    """Cut frames into the patches an Essentia wrapper feeds its model.

    Patches start every ``patch_hop`` frames (Essentia's ``VectorRealToTensor``).
    What happens at the end is what differs between wrappers:

    * ``TensorflowPredictMusiCNN`` (187 / 93, default ``lastPatchMode="discard"``):
      ``last_patch="discard"``, ``drop_final_frame=False``. Frames after the last
      full patch are dropped; input shorter than one patch (< 187 frames: up to
      47360 samples, 2.96 s) gives no patch at all, and the wrapper returns no
      rows. 30 s gives 19 patches.
    * ``TensorflowPredictEffnetDiscogs`` (128 / 62, defaults
      ``lastPatchMode="discard"``, ``batchSize=64``, ``lastBatchMode="same"``):
      ``last_patch="discard"``, ``drop_final_frame=True``. Input with fewer than
      129 frames (up to 32512 samples, about 2.03 s) gives no patch and no rows,
      not a padded or repeated patch. 30 s gives 29 patches.
    * ``TempoCNN``: ``"discard"`` too; see :func:`tempocnn_patches`.

    Parameters
    ----------
    mel : numpy.ndarray
        Frames, shape ``[n_frames, n_bands]`` (e.g. from :func:`mel_bands`).
    patch_frames : int
        Frames per patch (``ModelSpec.patch_frames``), > 0.
    patch_hop : int
        Frames between patch starts (``ModelSpec.patch_hop``),
        ``0 <= patch_hop <= patch_frames``; 0 means ``patch_frames`` (no overlap),
        as in Essentia.
    last_patch : {"discard", "repeat"}
        Essentia's ``lastPatchMode``. ``"discard"``: only full patches.
        ``"repeat"``: after the ``n_full`` full patches, the frames from
        ``n_full * patch_hop`` on (all frames when the input is shorter than a
        patch), if any, are tiled cyclically into one more patch, exactly like
        ``VectorRealToTensor``.
    drop_final_frame : bool
        Ignore the last frame (the EffNet wrapper's behaviour). Its
        ``padSignal`` (tensorflowpredicteffnetdiscogs.cpp) estimates the frame
        count as ``1 + ceil((n_samples - 256) / 256)``, one fewer than FrameCutter
        cuts, and pads the signal so the patch count estimated from it fills whole
        batches of 64; the inner ``VectorRealToTensor`` (``lastBatchMode="discard"``)
        then drops the incomplete batch and ``lastBatchMode="same"`` erases the
        padding's rows. The rows left are exactly the ``"discard"`` patches of all
        frames but the last. Only defined with ``last_patch="discard"``: with
        ``"repeat"`` the EffNet wrapper's padding replaces the tiled remainder by
        zero-signal frames, which is not modelled.

    Returns
    -------
    numpy.ndarray
        Same dtype as ``mel``, C-contiguous, shape
        ``[n_patches, patch_frames, n_bands]``; ``n_patches`` may be 0.
        With ``"discard"``, ``n_patches = max(0, 1 + (n_used - patch_frames) // patch_hop)``
        where ``n_used`` is the number of frames used.
    """
    mel = np.asarray(mel)
    if mel.ndim != 2:
        raise ValueError(f"expected frames shaped [n_frames, n_bands], got shape {mel.shape}")
    if patch_frames <= 0:
        raise ValueError(f"patch_frames must be positive, got {patch_frames}")
    hop = patch_hop or patch_frames
    if not 0 < hop <= patch_frames:
        raise ValueError(f"patch_hop must be in [0, patch_frames={patch_frames}], got {patch_hop}")
    if last_patch not in ("discard", "repeat"):
        raise ValueError(f"last_patch must be 'discard' or 'repeat', got {last_patch!r}")
    if drop_final_frame:
        if last_patch != "discard":
            raise ValueError("drop_final_frame models EffNet's discard mode only")
        mel = mel[:-1]

    n_frames, n_bands = mel.shape
    if n_frames >= patch_frames:
        full = sliding_window_view(mel, (patch_frames, n_bands))[::hop, 0]
    else:
        full = np.empty((0, patch_frames, n_bands), dtype=mel.dtype)
    if last_patch == "discard":
        return np.ascontiguousarray(full)

    rest = mel[len(full) * hop :]
    if len(rest) == 0:
        return np.ascontiguousarray(full)
    tiled = rest[np.arange(patch_frames) % len(rest)]
    return np.concatenate([full, tiled[None]])


def model_patches(model: str | ModelSpec, mel: np.ndarray) -> np.ndarray:
    """Patches for a backbone exactly as its Essentia wrapper cuts them by default.

    ``mtt`` (no Essentia wrapper) is cut like MusiCNN but every 187 frames, without
    overlap, as the ``musicnn`` package does by default (``ModelSpec.patch_hop``).

    Parameters
    ----------
    model : str or ModelSpec
        ``"musicnn"`` or ``"effnet"`` (or their specs / file stems).
    mel : numpy.ndarray
        ``[n_frames, 96]`` from :func:`mel_bands`.

    Returns
    -------
    numpy.ndarray
        ``[n_patches, spec.patch_frames, 96]``, C-contiguous; see :func:`patches`
        for which frames each wrapper uses.
    """
    spec = model if isinstance(model, ModelSpec) else get(model)
    if spec.name not in _WRAPPER_PATCHING or spec.patch_frames is None or spec.patch_hop is None:
        known = ", ".join(_WRAPPER_PATCHING)
        raise ValueError(f"{spec.name!r} is not a mel-patch backbone ({known})")
    last_patch, drop_final_frame = _WRAPPER_PATCHING[spec.name]
    return patches(
        mel,
        patch_frames=spec.patch_frames,
        patch_hop=spec.patch_hop,
        last_patch=last_patch,
        drop_final_frame=drop_final_frame,
    )


def tempocnn_patches(y: np.ndarray, *, front_end: TempoFrontEnd = TEMPO_INPUT) -> np.ndarray:
    """The input tensor Essentia's ``TempoCNN`` feeds its graph.

    ``TensorflowPredictTempoCNN`` frames the signal (1024 / 512, centred like
    :func:`mel_bands`), applies ``TensorflowInputTempoCNN`` (Hann window, magnitude
    spectrum, 40 Slaney-mel bands 20-5000 Hz summing ``|FFT|``, no log), cuts
    256-frame patches every 128 frames (``lastPatchMode="discard"``), standardises
    each patch as a whole (``TensorNormalize``, axis 0: its own mean and population
    standard deviation; a constant patch becomes zeros) and transposes to
    ``[batch, mels, time, channel]``.

    Parameters
    ----------
    y : numpy.ndarray
        Mono audio, shape ``[n_samples]``, at ``front_end.sample_rate`` (11025 Hz),
        nominally in [-1, 1].
    front_end : TempoFrontEnd
        The TempoCNN settings (``registry.TEMPO_INPUT``).

    Returns
    -------
    numpy.ndarray
        float32, shape ``[n_patches, 40, 256, 1]``: each patch has mean 0 and
        standard deviation 1. ``n_patches = max(0, 1 + (n_frames - 256) // 128)``
        with ``n_frames = ceil(n_samples / 512) + 1``: none below about 11.8 s,
        4 for 30 s. Feed it to the deeptemp graph's ``input:0``.

    Notes
    -----
    Essentia's streaming FrameCutter adds faint noise to digitally silent frames
    (``silentFrames="noise"``). A patch that is all digital silence (about 12 s)
    is therefore that noise, standardised to unit variance, in Essentia, but zeros
    here; patches only partly silent still agree to about 5e-4.
    """
    magnitude = np.abs(_stft(y, front_end.frame_size, front_end.hop_size))
    mel = _apply_filterbank(
        magnitude,
        (
            float(front_end.sample_rate),
            front_end.frame_size,
            front_end.n_mels,
            float(front_end.f_min),
            float(front_end.f_max),
        ),
    )
    cut = patches(mel, patch_frames=front_end.patch_frames, patch_hop=front_end.patch_hop)
    mean = cut.mean(axis=(1, 2), keepdims=True)
    std = cut.std(axis=(1, 2), keepdims=True)
    std[std == 0] = 1.0  # TensorNormalize's skipConstantSlices
    standard = (cut - mean) / std
    return np.ascontiguousarray(standard.transpose(0, 2, 1)[..., None], dtype=_F32)


def tempo_from_activations(
    probs: np.ndarray, *, bpm_offset: int = TEMPO_INPUT.bpm_offset
) -> tuple[float, float]:
    """Global tempo from TempoCNN's per-patch softmax, as Essentia's ``TempoCNN``.

    Each patch votes for its most probable class (``argmax + bpm_offset`` BPM); the
    BPM with most votes wins (``aggregationMethod="majority"``, TempoCNN's default).
    Ties go to the tied BPM that appears first in patch order, as in
    ``TempoCNN::compute`` (tempocnn.cpp), which replaces its leader only on strictly
    more votes.

    Parameters
    ----------
    probs : numpy.ndarray
        Softmax outputs of the deeptemp graph, shape ``[n_patches, 256]``
        (class ``c`` is ``c + bpm_offset`` BPM), each row summing to 1.
    bpm_offset : int
        BPM of class 0 (30 for TempoCNN models).

    Returns
    -------
    bpm : float
        The majority BPM, an integer in ``[bpm_offset, bpm_offset + 255]``; 0.0 when
        there are no patches (what Essentia returns for input under ~11.8 s).
    confidence : float
        In [0, 1]: the probability the patches give the winning BPM class, averaged
        over all patches. It is high only when the patches agree and are sure;
        patches that voted elsewhere pull it down. 0.0 when there are no patches.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"expected probabilities shaped [n_patches, n_classes], got {probs.shape}")
    if len(probs) == 0:
        return 0.0, 0.0
    votes = probs.argmax(axis=1)
    classes, first_seen, counts = np.unique(votes, return_index=True, return_counts=True)
    leaders = counts == counts.max()
    winner = classes[leaders][np.argmin(first_seen[leaders])]
    return float(winner + bpm_offset), float(probs[:, winner].mean())
