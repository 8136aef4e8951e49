"""SciPy's compiled kernels, loaded from their own extension modules without their packages.

The build's workers need two things from SciPy: pocketfft's real FFT (4x numpy's on
[frames, 2048] float32) and the second-order-sections filter behind ``sosfilt``. Importing
the packages that wrap them costs far more than the kernels: ``scipy.fft`` 0.22 CPU-s and
``scipy.signal`` 0.75 CPU-s per process with SciPy 1.17 (docstring rewriting at import,
``scipy.stats``, the array-API layer that imports ``numpy.testing`` and ``numpy.f2py``),
paid by every worker of every build. The extension modules alone load in milliseconds.

They are private modules (``scipy/fft/_pocketfft/pypocketfft``, ``scipy/signal/_sosfilt``):
if a SciPy release moves one, the public function is used instead (slower start-up, same
results). With the SciPy installed, tests/test_kernels.py checks that the FFT is found and
computes bit for bit what ``scipy.fft.rfft`` does, and that the build's analysis leaves
``scipy.fft`` and ``scipy.signal`` unimported; tests/test_descriptors.py does the same for
the filter against ``scipy.signal.sosfilt``.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

import numpy as np

__all__ = ["rfft", "sosfilt_kernel"]


def rfft(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``scipy.fft.rfft(x, axis=axis)`` (one thread, unnormalised) for float32 or float64
    ``x``: complex64 for float32 input, complex128 for float64."""
    r2c = _pocketfft_r2c()
    if r2c is None:
        import scipy.fft

        return scipy.fft.rfft(x, axis=axis)
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)  # what scipy.fft does with other real types
    if x.shape[axis] < 1:
        raise ValueError(f"invalid number of data points ({x.shape[axis]}) specified")
    # scipy.fft.rfft's own call: axes, forward, norm "backward" (0), no output array,
    # one worker.
    return r2c(x, (axis,), True, 0, None, 1)


@functools.cache
def _pocketfft_r2c() -> Callable | None:
    module = _load("scipy.fft._pocketfft.pypocketfft", ("fft", "_pocketfft"))
    return getattr(module, "r2c", None)


@functools.cache
def sosfilt_kernel() -> Callable | None:
    """SciPy's second-order-sections filter ``_sosfilt(sos, x, zi)`` (in place, float32
    or float64 rows), or None when it is not found."""
    module = _load("scipy.signal._sosfilt", ("signal",))
    return getattr(module, "_sosfilt", None)


def _load(name: str, folder: tuple[str, ...]) -> ModuleType | None:
    """The extension module ``name`` (``scipy.<folder...>.<last part>``) executed alone;
    the one already imported when its package was imported anyway."""
    if name in sys.modules:
        return sys.modules[name]
    import scipy

    directory = Path(scipy.__file__).parent.joinpath(*folder)
    stem = name.rsplit(".", 1)[1]
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = directory / f"{stem}{suffix}"
        if not path.is_file():
            continue
        try:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        except (ImportError, OSError, AttributeError):
            return None
        return module
    return None
