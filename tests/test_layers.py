"""The layers point one way: engine.cli -> tui -> engine -> index -> models.

Two checks, as harlequin does: every module of each UI-free package, imported in a fresh
interpreter, loads no UI library (click, textual, rich), whatever path the import takes;
and import-linter's contracts (pyproject.toml, ``[tool.importlinter]``) refuse an import
of a higher layer, direct or through other modules. Each check is also shown to fail on a
copy of the packages given one upward import.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import OUTSIDE

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "index", "models", "tui")
UI_LIBRARIES = ("click", "textual", "rich")

# Imports each module of a package (leaving out the subpackages named after it) in this
# fresh interpreter and prints the first module after which a UI library is loaded.
# pkgutil.iter_modules, recursed by hand: walk_packages imports every subpackage it
# walks, engine.cli included, which would load click itself.
_IMPORT_ALL = """
import importlib, os, pkgutil, sys
package, *left_out = sys.argv[1:]

def modules(name, path):
    for info in pkgutil.iter_modules(path, name + "."):
        if info.name in left_out:
            continue
        yield info.name
        if info.ispkg:
            yield from modules(info.name, [os.path.join(info.module_finder.path,
                                                        info.name.rpartition(".")[2])])

names = [package, *modules(package, importlib.import_module(package).__path__)]
for name in names:
    importlib.import_module(name)
    loaded = [m for m in %r if m in sys.modules]
    if loaded:
        sys.exit(f"importing {name} loads {', '.join(loaded)}")
print(len(names), "modules")
""" % (UI_LIBRARIES,)

# The UI-free core: the engine without its CLI, the index and the models.
CORE = {"engine": ["engine.cli"], "index": [], "models": []}


def _import_all(package: str, left_out: list[str], path: Path | None = None):
    env = None if path is None else {**os.environ, "PYTHONPATH": str(path)}
    return subprocess.run([sys.executable, "-c", _IMPORT_ALL, package, *left_out], cwd=OUTSIDE,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("package", sorted(CORE))
def test_core_package_loads_no_ui_library(package):
    done = _import_all(package, CORE[package])
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    assert int(done.stdout.split()[0]) > 3  # the walk found the package's modules


def _lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = None if pythonpath is None else {**os.environ, "PYTHONPATH": str(pythonpath)}
    # lint-imports of this environment, reading pyproject.toml in cwd; no cache folder.
    return subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import "
                           "lint_imports_command as c; sys.exit(c())", "--no-cache"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept():
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 kept, 0 broken" in done.stdout


@pytest.fixture()
def tree(tmp_path) -> Path:
    """A copy of the four packages and pyproject.toml, to add an upward import to."""
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__", "weights"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def _add_import(module: Path, line: str) -> None:
    module.write_text(module.read_text() + f"\n{line}\n")


@pytest.mark.parametrize("module, line, contract", [
    ("index/store.py", "from engine.scan import scan", "Layers"),
    ("models/registry.py", "import index.schema", "Layers"),
    ("engine/build.py", "from engine.cli.output import render", "The CLI"),
    ("tui/data.py", "import engine.cli.output", "The CLI"),
    ("index/sql.py", "import click", "index and models use no UI library"),
])
def test_contracts_refuse_an_upward_import(tree, module, line, contract):
    _add_import(tree / module, line)
    done = _lint_imports(tree, pythonpath=tree)
    assert done.returncode == 1, done.stdout[-3000:]
    assert contract in done.stdout and "BROKEN" in done.stdout
    assert module.replace("/", ".").removesuffix(".py") in done.stdout


def test_fresh_import_names_the_module_that_loads_a_ui_library(tree):
    _add_import(tree / "engine" / "tempo.py", "import engine.cli.output")
    done = _import_all("engine", ["engine.cli"], path=tree)
    assert done.returncode == 1
    # The first module that loads them: engine.tempo, or one that imports it.
    assert re.fullmatch(r"importing engine\.\w+ loads click, rich", done.stderr.strip())


def test_only_index_touches_the_store_connection():
    """SQL runs behind index/ functions: no module of engine/ or tui/ reads ``.con``
    (the store's DuckDB connection). Fails naming the file and lines."""
    import ast

    for package in ("engine", "tui"):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            uses = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "con"]
            assert not uses, f"{path.relative_to(ROOT)} uses .con at lines {uses}: add a function in index/"
