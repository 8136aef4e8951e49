"""The project's error root and the models package's errors.

:class:`EngineError` lives here, in the lowest layer, so that ``models`` and ``index``
raise it without importing ``engine``; ``engine.errors`` re-exports it (the same class).
Messages name the file, track or value and say what to do.
"""


class EngineError(Exception):
    """Base for every error the CLI reports as one clear line (exit status 1)."""


def models_hint(names: str = "") -> str:
    """The two ways to get missing models, which every message about them names.

    ``names``: the models to fetch (``"effnet"``); empty for all of them.
    """
    fetch = f"engine models fetch {names}".rstrip()
    return (f"with internet run `{fetch}`; offline, point --models DIR (or ENGINE_MODELS=DIR) "
            "at a folder holding the official model files")


class ModelError(EngineError):
    """A model could not be found, fetched, converted or run."""


class UnknownModelError(ModelError):
    pass


class ModelMissingError(ModelError):
    """A model's files are not present; the message says how to get them."""


class ChecksumError(ModelError):
    pass


class DownloadError(ModelError):
    pass


class HostUnreachableError(DownloadError):
    """The server's name does not resolve or it refuses connections: retrying is futile."""


class ExportError(ModelError):
    pass
