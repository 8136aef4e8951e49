"""The project's error root. Messages name the file, track or value and say what to do."""


class EngineError(Exception):
    """Base for every error the CLI reports as one clear line (exit status 1)."""


class ScanError(EngineError):
    """A collection folder cannot be scanned, or a found file cannot be read for hashing."""


class DecodeError(EngineError):
    """An audio file cannot be decoded; the message names the file and the reason."""


def models_hint(names: str = "") -> str:
    """The two ways to get missing models, which every message about them names.

    ``names``: the models to fetch (``"effnet"``); empty for all of them.
    """
    fetch = f"engine models fetch {names}".rstrip()
    return (f"with internet run `{fetch}`; offline, point --models DIR (or ENGINE_MODELS=DIR) "
            "at a folder holding the official model files")
