"""``essentia.standard`` with each algorithm's class made the first time it is used.

Importing ``essentia.standard`` makes a Python class for every one of Essentia's ~260
algorithms, constructing each once to read its documentation: 0.78 CPU-s, paid by every
build worker when it starts (and by TensorFlow's start-up with essentia-tensorflow). The
engine uses about fifteen. :func:`standard` imports the module with only ``FrameCutter``
made (its Python ``FrameGenerator`` needs that one at import) and gives the module a
``__getattr__`` that makes any other class on first access, with Essentia's own class
factory, so ``es.Key(...)`` and a later plain ``import essentia.standard`` work as usual.
Measured: 0.78 -> 0.001 CPU-s for the import; a class costs ~0.1 ms when first used.
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType

__all__ = ["standard"]

_lock = threading.Lock()


def standard() -> ModuleType:
    """The ``essentia.standard`` module, imported lazily if nobody imported it yet."""
    module = sys.modules.get("essentia.standard")
    if module is not None:
        return module
    with _lock:
        module = sys.modules.get("essentia.standard")
        if module is not None:
            return module
        import essentia._essentia as native

        names = native.keys
        # essentia.standard makes a class for each name native.keys() returns when it is
        # imported; FrameCutter is the one its own Python algorithms use at import.
        native.keys = lambda: ["FrameCutter"]
        try:
            import essentia.standard as module
        finally:
            native.keys = names
        known = frozenset(names())

        def make_on_first_use(name: str):
            if name in known:
                return module._create_essentia_class(name, module.__name__)
            raise AttributeError(f"module 'essentia.standard' has no attribute {name!r}")

        module.__getattr__ = make_on_first_use
        return module
