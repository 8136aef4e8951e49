"""engine.essentia_lazy: essentia.standard with classes made on first use, same results."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import OUTSIDE


def _run(code: str) -> str:
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=OUTSIDE,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_classes_are_made_on_first_use_and_behave_as_essentias():
    out = _run("""
        import numpy as np
        from engine.essentia_lazy import standard
        es = standard()
        made = sorted(k for k in vars(es) if k[:1].isupper())
        print(made)
        frame = np.sin(np.arange(2048, dtype=np.float32) * 0.3).astype(np.float32)
        spec = es.Spectrum(size=2048)(es.Windowing(size=2048, type="hann")(frame))
        print(int(np.argmax(spec)), "Spectrum" in vars(es))
        import essentia.standard as plain  # a later plain import gets the same module
        print(plain is es, plain.MonoLoader.__name__ != "", len(list(es.FrameGenerator(frame, 512, 256))))
        try:
            es.NoSuchAlgorithm
        except AttributeError as exc:
            print("AttributeError", "NoSuchAlgorithm" in str(exc))
    """).splitlines()
    # Only FrameCutter (and Essentia's Python algorithms) exist before anything is used.
    assert "Spectrum" not in out[0] and "Key" not in out[0] and "FrameCutter" in out[0]
    # 0.3 rad/sample on 2048 points: the peak is at bin 0.3 / (2 pi) * 2048 = 97.8.
    assert out[1] == "98 True"
    assert out[2] == "True True 9"
    assert out[3] == "AttributeError True"


def test_descriptors_equal_with_the_full_module(corpus):
    """Keys and danceability from the lazy module equal those after a plain import."""
    path = corpus / "rendered" / "chorale_00.ogg"
    code = f"""
        import sys
        if sys.argv[1:] == ["plain"]:
            import essentia.standard
        from pathlib import Path
        from engine.decode import decode
        from engine import descriptors as d
        a = decode(Path({str(path)!r}))
        print(d.keys(a.mono), d.danceability(a.mono))
    """
    lazy = _run(code)
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(code), "plain"], cwd=OUTSIDE,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert lazy == run.stdout and "Key(" in lazy
