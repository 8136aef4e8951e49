"""Errors raised by the models package; all derive from the project's one error root."""

from engine.errors import EngineError


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
