"""The README is a front door and the reference pages are generated, never stale."""

from __future__ import annotations

import importlib.util
import re

from tests.conftest import ROOT

REGENERATE = "python docs/generate.py"


def _generator():
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_reference_pages_are_current():
    gen = _generator()
    for name, page in gen.PAGES.items():
        path = ROOT / "docs" / name
        assert path.is_file(), f"docs/{name} is missing: run `{REGENERATE}`"
        assert path.read_text(encoding="utf-8") == page(), f"docs/{name} is stale: run `{REGENERATE}`"


def test_generated_pages_hold_every_column_and_command():
    from engine.cli import cli
    from index.schema import TRACK_COLUMNS

    columns = (ROOT / "docs" / "columns.md").read_text(encoding="utf-8")
    assert all(f"| `{c.name}` |" in columns for c in TRACK_COLUMNS)
    commands = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for name in cli.commands:
        assert f"## engine {name}\n" in commands
    assert "## engine models fetch\n" in commands and "--models DIR" in commands


def _block(readme: str, marker: str) -> str:
    after = readme.split(f"<!-- ci:{marker} -->", 1)[1]
    return after.split("```", 2)[1].split("\n", 1)[1]


def test_readme_is_a_short_front_door_with_the_ci_blocks():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    heads = [line for line in readme.splitlines() if line.startswith("## ")]
    assert heads[:2] == ["## Install", "## Quick start"] and heads[-1] == "## Development"
    assert "--models" in readme and "ENGINE_MODELS=" in readme  # the offline way, in the quick start
    install, test = _block(readme, "install"), _block(readme, "test")
    assert 'pip install ".[test]"' in install and " -e " not in install  # as a user installs it
    assert "ENGINE_TEST_INSTALLED=1" in test and "ENGINE_REQUIRE_CORPUS=1" in test and "--slow" in test


def test_relative_links_resolve():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to missing {target}"


RECIPES = ("Adding a descriptor", "Adding a model head", "Adding a command", "Adding a TUI pane")


def _recipe(title: str) -> str:
    text = (ROOT / "docs" / "extending.md").read_text(encoding="utf-8")
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _resolves(dotted: str) -> bool:
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if name in getattr(obj, "__dataclass_fields__", {}):  # a field without a default
                obj = obj.__dataclass_fields__[name]
            elif hasattr(obj, name):
                obj = getattr(obj, name)
            else:
                return False
        return True
    return False


def test_each_recipe_names_at_most_three_files_that_exist_and_names_that_resolve():
    for title in RECIPES:
        recipe = _recipe(title)
        files_line = next(line for line in recipe.splitlines() if line.startswith("Files to touch:"))
        files = re.findall(r"`([\w./]+\.(?:py|md))`", files_line)
        assert 1 <= len(files) <= 3, f"{title}: {files}"
        for path in re.findall(r"`([\w/]+/[\w.]+\.(?:py|md))`", recipe):
            assert (ROOT / path).is_file(), f"{title} names {path}, which does not exist"
        for dotted in re.findall(r"`((?:engine|index|models|tui)\.[\w.]+)`", recipe):
            assert _resolves(dotted), f"{title} names {dotted}, which does not exist"


def test_records_take_result_and_head_columns_from_where_they_are_declared():
    """What keeps the recipes at two files: engine/records.py names none of these columns."""
    import math

    from engine.descriptors import DspDescriptors, Key, Loudness, Tempo
    from engine.quality import QUALITY_COLUMNS
    from engine.tags import Tags
    from index.schema import KEY_PROFILES
    from models import registry

    dsp = DspDescriptors(Tempo(math.nan, 0.0, "multifeature"), {p: Key(None, None, math.nan) for p in KEY_PROFILES},
                         Loudness(math.nan, math.nan, math.nan), math.nan)
    columns = set(dsp.columns()) | set(Tags().columns()) | set(QUALITY_COLUMNS)
    columns |= {s.column for s in registry.MODELS.values() if s.column}
    records = (ROOT / "engine" / "records.py").read_text(encoding="utf-8")
    named = sorted(c for c in columns if re.search(rf"[\"']{c}[\"']|\b{c}=", records))
    # bpm and bpm_confidence: the build replaces the tracker's tempo with the decided octave.
    assert named == ["bpm", "bpm_confidence"]
