"""Play a track with an external player. No textual here; the app calls it from a worker.

The player is ``$ENGINE_PLAYER`` (a command line; the path is appended, or replaces
``{}``), else the first of mpv, ffplay, cvlc/vlc found on PATH. Failures never raise
past :meth:`Player.play`: they come back as a message to show.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

# Players tried in order, with options for audio-only, quiet, exit-at-end playback.
KNOWN_PLAYERS: tuple[tuple[str, ...], ...] = (
    ("mpv", "--no-video", "--really-quiet"),
    ("ffplay", "-nodisp", "-autoexit", "-loglevel", "error"),
    ("cvlc", "--play-and-exit", "--quiet"),
    ("vlc", "-I", "dummy", "--play-and-exit", "--quiet"),
)
# Seconds to watch a new player: an exit within this time is a failure to report.
STARTUP_CHECK_S = 0.4


@dataclass(frozen=True)
class PlayOutcome:
    ok: bool
    message: str


def player_command(environ: dict | None = None) -> list[str] | None:
    """The player's argv (without the path), or None when no player is configured or found."""
    env = os.environ if environ is None else environ
    configured = env.get("ENGINE_PLAYER", "").strip()
    if configured:
        return shlex.split(configured)
    for argv in KNOWN_PLAYERS:
        if shutil.which(argv[0]):
            return list(argv)
    return None


class Player:
    """One playback at a time; :meth:`play` stops the previous one."""

    def __init__(self, environ: dict | None = None):
        self._environ = environ
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    @property
    def playing(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def play(self, path: str | Path) -> PlayOutcome:
        """Start playing ``path``; blocks up to :data:`STARTUP_CHECK_S` to catch early failures."""
        self.stop()
        argv = player_command(self._environ)
        if argv is None:
            return PlayOutcome(False, "no audio player found: install mpv, ffplay or vlc, "
                                      "or set ENGINE_PLAYER (e.g. ENGINE_PLAYER='mpv --no-video')")
        if not Path(path).is_file():
            return PlayOutcome(False, f"cannot play {path}: the file is missing (moved or deleted?)")
        argv = [a.replace("{}", str(path)) for a in argv] if any("{}" in a for a in argv) \
            else argv + [str(path)]
        errors = tempfile.TemporaryFile()  # a file, not a pipe: a chatty player never blocks
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=errors, start_new_session=True)
        except OSError as exc:
            errors.close()
            return PlayOutcome(False, f"cannot start the player {argv[0]!r}: {exc.strerror or exc}")
        try:
            code = proc.wait(timeout=STARTUP_CHECK_S)
        except subprocess.TimeoutExpired:
            errors.close()
            with self._lock:
                self._proc = proc
            return PlayOutcome(True, f"playing {Path(path).name} with {Path(argv[0]).name}")
        errors.seek(0)
        err = errors.read().decode("utf-8", "replace").strip()
        errors.close()
        if code == 0:
            return PlayOutcome(True, f"played {Path(path).name}")
        last = err.splitlines()[-1] if err else f"exit status {code}"
        return PlayOutcome(False, f"{Path(argv[0]).name} could not play {Path(path).name} "
                                  f"(no audio device?): {last}")

    def stop(self) -> bool:
        """Stop the current playback; True if something was playing."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return False
        proc.terminate()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return True
