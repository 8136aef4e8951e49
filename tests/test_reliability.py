"""Fixes from the adversarial probe (issue 12): each test reproduced a failure first.

Item numbers refer to the issue: 1 exports never overwrite what they must not, 2 file
names that are not UTF-8, 3 unreadable files, 4 FAISS contents checked, 5 readers during
a build, 6 one-line errors, 7 any channel count, 8 M3U8 round trips, 9 decode edge cases,
10 no -inf, 11 engine sql limits, 12 workers die with their parent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from .conftest import ROOT


def _write_wav(path: Path, channels: int, *, rate: int = 48000, seconds: float = 3.0) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(tone[:, None], channels, 1).tobytes())
    return path


def _python(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, **kw)


# -- 7: any channel count FFmpeg decodes is analysed (downmix) ------------------------------

@pytest.mark.parametrize("channels", [8, 9, 16])
def test_item7_eight_and_more_channels_decode(tmp_path, channels):
    # Decoded in a child: before the fix 8 channels crashed the process (SIGSEGV).
    path = _write_wav(tmp_path / f"c{channels}.wav", channels)
    out = _python(f"""
        from engine.decode import decode
        a = decode({str(path)!r})
        print(a.stereo.shape[0], a.facts.channels, round(float(abs(a.mono).max()), 3))
    """)
    assert out.returncode == 0, out.stderr[-2000:]
    n, ch, peak = out.stdout.split()
    assert int(n) == pytest.approx(3 * 44100, abs=50) and int(ch) == channels
    # Every channel carries the same 0.3 tone; the downmix is scaled to stay in full scale.
    assert 0.05 < float(peak) <= 0.3


# -- 12: workers exit at once when their parent dies ----------------------------------------

def test_item12_workers_die_with_their_parent(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import time
        from engine.workers import WorkerPool
        from tests.test_reliability import _sleep_task
        with WorkerPool(_sleep_task, 2, timeout_s=60) as pool:
            print(" ".join(str(w.process.pid) for w in pool._workers), flush=True)
            for _ in pool.map_unordered([30, 30]):
                pass
    """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2
        time.sleep(1.0)  # the workers are busy with their 30 s tasks
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.05)
        assert not any(_alive(p) for p in pids), "workers outlived their parent"
    finally:
        parent.kill()


def _sleep_task(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
