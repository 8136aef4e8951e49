"""Per-file analysis: a pure function of one file, run in worker processes.

``analyse_file`` decodes the file once and computes everything that needs the
audio itself: file facts and tags, the DSP descriptors and quality measures
(engine.quality), and the model inputs (the mel spectrogram shared by MusiCNN and
EffNet, and TempoCNN's patches). The batched model stage (engine.modelstage) runs
later on many files at once, so this function has no model state and can run
unchanged on a distributed engine.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.decode import DEFAULT_MAX_SECONDS, FileFacts
from engine.workers import StageError

if TYPE_CHECKING:  # imported by analyse_file when it needs them
    from engine.descriptors import DspDescriptors
    from engine.quality import Quality
    from engine.tags import Tags


@dataclass(frozen=True)
class AnalysisTask:
    """One file to analyse and what to compute for it.

    ``dsp`` False means the file's descriptors are already stored and only model
    inputs are needed (e.g. the EffNet backbone was fetched after the first build).
    """

    path: str
    file_size: int
    mtime_ns: int
    content_hash: str
    dsp: bool = True
    mel: bool = True
    tempocnn: bool = True
    max_seconds: float | None = DEFAULT_MAX_SECONDS


@dataclass
class FileAnalysis:
    task: AnalysisTask
    facts: FileFacts | None = None
    tags: Tags | None = None
    analysed_seconds: float = 0.0
    truncated: bool = False
    dsp: DspDescriptors | None = None
    quality: Quality | None = None
    mel: np.ndarray | None = None  # [frames, 96] float32, 16 kHz front-end
    band_levels: np.ndarray | None = None  # [27] float32, models.bands (from the mel)
    tempocnn_input: np.ndarray | None = None  # [n, 40, 256, 1] float32
    warnings: tuple[str, ...] = ()  # the decoder's, one line each (engine.decode)
    timings: dict[str, float] = field(default_factory=dict)


def quiet_native_logs() -> None:
    # Worker processes import Essentia; its INFO lines (and TensorFlow's, when the
    # essentia-tensorflow build is installed) would interleave with the progress bar.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import essentia

    essentia.log.infoActive = False
    essentia.log.warningActive = False


@functools.cache  # once per process
def _single_threaded_blas() -> None:
    """One BLAS thread per worker process: the pool already runs one worker per core.

    OpenBLAS otherwise starts a thread per core in every worker, and its threads spin
    while they wait: the onset functions' filterbank products cost 157 ms of CPU per 60 s
    of audio with one thread and 330-665 ms with two on a 2-core machine (measured with
    the build's two workers busy).
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    # threadpoolctl limits only the libraries already loaded. SciPy brings its own
    # OpenBLAS, loaded later by the analysis's first scipy import with a thread per
    # core: its threads spun beside the work, and the DSP stages of a worker cost
    # 1.9x their single-threaded CPU (quality 230 vs 121 ms per 46 s track, measured
    # in one process). The variable is read when a library loads.
    os.environ["OPENBLAS_NUM_THREADS"] = "1"


_MMAP_THRESHOLD = 64 << 20  # arrays up to this size come from the heap: ~3 min of stereo float32
_TRIM_THRESHOLD = 128 << 20  # free heap kept at the top before it is given back to the system


@functools.cache  # once per process
def _keep_freed_memory() -> None:
    """Let glibc's malloc reuse freed memory for the next file's arrays (Linux/glibc only).

    By default every large numpy array (above a threshold that only grows to 32 MB) is
    mapped fresh from the kernel and unmapped when freed, so each page of each temporary
    is faulted in and zeroed again: 16,000 page faults per 46 s track, 50-110 ms of system
    CPU. With the arrays up to 64 MB taken from the heap and 128 MB of free heap kept, 12
    tracks cost 2,200 faults instead of 191,000 and 0.21 instead of 0.61 CPU-s of system
    time, with the same peak RSS (240 MB per worker; measured in one process).
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    mallopt(m_mmap_threshold, _MMAP_THRESHOLD)
    mallopt(m_trim_threshold, _TRIM_THRESHOLD)


def analyse_file(task: AnalysisTask) -> FileAnalysis:
    """Decode ``task.path`` once and compute its descriptors and model inputs.

    Raises
    ------
    StageError
        With the stage (``decode``, ``dsp``, ``frontend``) and a one-line reason.
    """
    from engine.decode import DecodeError, decode
    from engine.tags import read_tags

    quiet_native_logs()
    _single_threaded_blas()
    _keep_freed_memory()
    out = FileAnalysis(task)
    # Stage timings are CPU-seconds of this (single-threaded) worker: on a shared machine
    # wall time measures the neighbours too.
    t0 = time.process_time()
    try:
        audio = decode(Path(task.path), max_seconds=task.max_seconds)
    except DecodeError as exc:
        raise StageError("decode", str(exc)) from None
    out.timings["decode"] = time.process_time() - t0
    out.facts = audio.facts
    out.analysed_seconds = audio.analysed_seconds
    out.truncated = audio.truncated
    out.warnings = audio.warnings
    out.tags = read_tags(Path(task.path))

    if task.dsp:
        from engine.descriptors import dsp_descriptors
        from engine.quality import quality

        try:
            # A mono file is measured as one channel, as loudness meters do.
            stereo = None if audio.facts.channels == 1 else audio.stereo
            out.dsp = dsp_descriptors(audio.mono, stereo)
            t0 = time.process_time()
            out.quality = quality(audio.mono, stereo, audio.facts)
            out.timings["quality"] = time.process_time() - t0
        except Exception as exc:  # noqa: BLE001 - reported per file
            raise StageError("dsp", f"{type(exc).__name__}: {exc}") from None
        out.timings.update(out.dsp.timings)

    t0 = time.process_time()
    try:
        from models import frontend

        if task.mel:
            out.mel = frontend.mel_bands(audio.mono_16k)
            if task.dsp:
                from models.bands import band_levels

                out.band_levels = band_levels(out.mel)
        if task.tempocnn:
            out.tempocnn_input = frontend.tempocnn_patches(audio.mono_11k)
    except Exception as exc:  # noqa: BLE001
        raise StageError("frontend", f"{type(exc).__name__}: {exc}") from None
    out.timings["frontend"] = time.process_time() - t0
    return out
