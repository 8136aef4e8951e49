"""The package as a user installs it: runtime files ship, and the installed copy is the one tested.

CI installs the project without ``-e`` and sets ``ENGINE_TEST_INSTALLED=1``; pytest
then imports ``engine`` etc. from site-packages (``--import-mode=append`` puts the
checkout last on ``sys.path``), so a file missing from the wheel fails here, as it
would for a user. The TUI runs through the ``engine`` console script in a real
pseudo-terminal, from a folder outside the checkout.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import OUTSIDE, ROOT, engine_command
from tests.terminal import run_in_terminal

PACKAGES = ("engine", "index", "models", "tui")
INSTALLED_ENV = "ENGINE_TEST_INSTALLED"


def _runtime_files() -> list[Path]:
    """Every file in the checkout's packages that Python does not import: read at run time."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".py", ".pyc"):
                found.append(path.relative_to(ROOT))
    return found


def test_every_runtime_file_ships_as_package_data():
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"].get("package-data", {})
    files = _runtime_files()
    assert Path("tui/app.tcss") in files  # the TUI's stylesheet, read when it starts
    # A pattern matches the file's name, or (as setuptools reads it) its path inside the package.
    unshipped = [str(f) for f in files
                 if not any(fnmatch.fnmatch(f.name, p) or fnmatch.fnmatch(f.relative_to(f.parts[0]).as_posix(), p)
                            for key in ("*", f.parts[0]) for p in patterns.get(key, ()))]
    assert not unshipped, f"not in [tool.setuptools.package-data] of pyproject.toml: {unshipped}"


@pytest.mark.skipif(not os.environ.get(INSTALLED_ENV), reason=f"CI sets {INSTALLED_ENV}=1 after a non-editable install")
def test_the_installed_package_is_the_one_under_test():
    for name in PACKAGES:
        where = Path(importlib.import_module(name).__file__).resolve().parent
        # (CI's virtual environment may itself sit inside the checkout, as .venv.)
        assert where != ROOT / name, f"{name} imported from the checkout ({where}), not the install"
        assert "site-packages" in where.parts, where
    import tui

    installed = Path(tui.__file__).parent
    for f in _runtime_files():
        assert (installed.parent / f).is_file(), f"{f} is missing from the installed package"


def _terminal_env() -> dict[str, str]:
    return dict(os.environ, TERM="xterm-256color", COLUMNS="120", LINES="40")


def test_tui_starts_shows_tracks_and_quits_with_ctrl_q(tmp_path):
    from tui.synthetic import make_store

    store = make_store(tmp_path / "store", 30)
    run = run_in_terminal([*engine_command(), "tui", "--store", str(store)], until="Track 0000",
                          keys=b"\x11", cwd=OUTSIDE, env=_terminal_env(), timeout=120)
    assert run.shown, f"the TUI never showed its tracks:\n{run.output[-2000:]}"
    assert "30 tracks" in run.output
    assert run.status == 0, run.output[-2000:]


def test_tui_crash_exits_non_zero(tmp_path):
    # The failure a non-editable install once had: the stylesheet cannot be read.
    from tui.synthetic import make_store

    store = make_store(tmp_path / "store", 3)
    crash = ("import tui.app; tui.app.EngineApp.CSS_PATH = 'no-such-style.tcss'; "
             "from engine.cli import main; main()")
    run = run_in_terminal([sys.executable, "-c", crash, "tui", "--store", str(store)], until="Track 0000",
                          keys=b"\x11", cwd=OUTSIDE, env=_terminal_env(), timeout=120)
    assert not run.shown
    assert "no-such-style.tcss" in run.output
    assert run.status == 1
