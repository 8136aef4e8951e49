"""The engine's errors (scanning, decoding). Messages name the file, track or value and
say what to do.

The root :class:`EngineError` and :func:`models_hint` live in ``models.errors`` (the
lowest layer, so that ``models`` and ``index`` need not import ``engine``); they are
re-exported here, the same objects, for the engine's own modules.
"""

from models.errors import EngineError, models_hint

__all__ = ["EngineError", "ScanError", "DecodeError", "models_hint"]


class ScanError(EngineError):
    """A collection folder cannot be scanned, or a found file cannot be read for hashing."""


class DecodeError(EngineError):
    """An audio file cannot be decoded; the message names the file and the reason."""
