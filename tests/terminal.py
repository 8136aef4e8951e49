"""Run a command in a pseudo-terminal, as a user at a shell would, and type into it.

The TUI needs a terminal; ``run_in_terminal`` gives it one (120x40), waits until the
screen shows a given text, types keys, and returns the exit status and everything the
program wrote. The screen is read as plain text with the escape sequences removed.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import termios
import time
from dataclasses import dataclass

_ESCAPES = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


@dataclass(frozen=True)
class TerminalRun:
    status: int  # exit status; -N when killed by signal N
    output: str  # everything written to the terminal, escape sequences removed
    shown: bool  # whether ``until`` appeared before the keys were typed


def run_in_terminal(cmd: list[str], *, until: str, keys: bytes, cwd: str, env: dict[str, str],
                    timeout: float = 120.0, size: tuple[int, int] = (40, 120)) -> TerminalRun:
    """Run ``cmd`` in a pty; once ``until`` is on screen type ``keys``; wait for the exit.

    A program still running ``timeout`` seconds after its start is killed (status -9).
    """
    pid, fd = pty.fork()
    if pid == 0:  # the child: becomes the program
        try:
            os.chdir(cwd)
            os.execvpe(cmd[0], cmd, env)
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    raw = bytearray()
    shown = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the program closed the terminal (it exited)
                    break
                if not chunk:
                    break
                raw += chunk
            if not shown and until in _plain(raw):
                shown = True
                time.sleep(0.5)  # let the first frame settle before typing
                os.write(fd, keys)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return TerminalRun(_status(status), _plain(raw + _drain(fd)), shown)
        else:
            os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
        return TerminalRun(_status(status), _plain(raw + _drain(fd)), shown)
    finally:
        os.close(fd)


def _drain(fd: int) -> bytes:
    out = bytearray()
    while select.select([fd], [], [], 0.1)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return bytes(out)


def _plain(raw: bytes) -> str:
    return _ESCAPES.sub(b"", bytes(raw)).decode("utf-8", "replace")


def _status(status: int) -> int:
    return os.waitstatus_to_exitcode(status)
