"""What is installed: each model's state, and bulk conversion to ONNX."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

from models import registry
from models.errors import ModelError
from models.export import ensure_onnx, onnx_path
from models.paths import present
from models.registry import ModelSpec, Role


@dataclass(frozen=True)
class ModelStatus:
    spec: ModelSpec
    state: str  # "converted" (ONNX ready), "present" (needs conversion) or "missing"


def status(spec: ModelSpec) -> ModelStatus:
    if spec.role is not Role.TEXT and onnx_path(spec) is not None:
        return ModelStatus(spec, "converted")
    return ModelStatus(spec, "present" if present(spec) else "missing")


def model_statuses() -> list[ModelStatus]:
    return [status(spec) for spec in registry.MODELS.values()]


def export_models(names: Iterable[str] | None = None) -> Iterator[tuple[str, str]]:
    """Convert each named (default: every present) model; yields (name, outcome)."""
    specs = [registry.get(n) for n in names] if names else list(registry.MODELS.values())
    for spec in specs:
        if not names and not present(spec):
            yield spec.name, "missing (skipped)"
            continue
        if spec.role is Role.TEXT:  # read from its wheel as it is (models.text)
            yield spec.name, "no conversion needed"
            continue
        already = onnx_path(spec) is not None
        try:
            path = ensure_onnx(spec)
        except ModelError as exc:
            if names:
                raise
            yield spec.name, f"failed: {exc}"
            continue
        yield spec.name, f"{'up to date' if already else 'converted'}: {path}"
