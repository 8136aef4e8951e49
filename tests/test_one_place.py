"""One place per fact: the constants several layers read are assigned once, in the lowest
layer that uses them, and imported everywhere else."""

from __future__ import annotations

import ast

from tests.conftest import ROOT

PACKAGES = ("engine", "index", "models", "tui")
# fact -> the one module that assigns it
HOMES = {
    "SPACES": "models/registry.py",
    "KEY_PROFILES": "index/schema.py",
    "TONICS": "index/schema.py",
    "SCORE_TERMS": "index/schema.py",
    "SAMPLE_RATE": "engine/decode.py",
}


def _assignments(name: str) -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in tree.body:  # module level
                targets = node.targets if isinstance(node, ast.Assign) else (
                    [node.target] if isinstance(node, ast.AnnAssign) else [])
                if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                    found.append(path.relative_to(ROOT).as_posix())
    return found


def test_each_shared_constant_is_assigned_in_one_module():
    for name, home in HOMES.items():
        places = _assignments(name)
        assert places == [home], f"{name} is assigned in {places}; import it from {home}"


def test_the_spaces_are_the_backbones():
    from models import registry

    assert registry.SPACES == ("musicnn", "effnet", "mtt")
    assert all(registry.get(s).role is registry.Role.BACKBONE and registry.get(s).embedding_dim
               for s in registry.SPACES)
