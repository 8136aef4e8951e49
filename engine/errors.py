"""The project's error root. Messages name the file, track or value and say what to do."""


class EngineError(Exception):
    """Base for every error the CLI reports as one clear line (exit status 1)."""
