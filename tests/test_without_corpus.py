"""A fresh clone without ../shared: the tests that need the corpus are left out with one
line saying where it is expected and how to get it; the rest run and pass. CI, which
has the corpus, sets ENGINE_REQUIRE_CORPUS=1 so that a missing corpus fails the run."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REQUIRE_CORPUS_ENV, ROOT

# One module that needs the corpus throughout, one that needs none.
MODULES = ["tests/test_tags.py", "tests/test_output.py"]


def _pytest(tmp_path, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != REQUIRE_CORPUS_ENV}
    environ.update(ENGINE_SHARED=str(tmp_path / "nowhere"), **env)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *MODULES],
                          cwd=ROOT, env=environ, capture_output=True, text=True, timeout=600)


def test_without_the_corpus_the_other_tests_run_and_one_line_says_why(tmp_path):
    proc = _pytest(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = proc.stdout.strip().splitlines()
    assert " passed" in summary[-1] and " deselected" in summary[-1] and "failed" not in summary[-1]
    said = [line for line in summary if "test corpus not found" in line]
    assert len(said) == 1 and said[0].endswith("(README.md, Development)"), proc.stdout
    assert f"expected in {tmp_path / 'nowhere'}" in said[0] and "ENGINE_SHARED=DIR" in said[0]
    assert said[0].split()[1:4] == ["tests", "not", "run:"]


def test_ci_fails_when_the_corpus_is_missing(tmp_path):
    proc = _pytest(tmp_path, **{REQUIRE_CORPUS_ENV: "1"})
    assert proc.returncode != 0
    assert "test corpus not found" in proc.stdout + proc.stderr
    assert f"{REQUIRE_CORPUS_ENV} is set" in proc.stdout + proc.stderr
