"""The ``engine`` command line: a thin click layer over the Python API.

Heavy libraries (onnxruntime, essentia, faiss, textual) are imported inside the
commands, so ``engine --help`` stays instant. Data goes to stdout, diagnostics to
stderr; an :class:`engine.errors.EngineError` becomes one line and exit status 1.
"""

from __future__ import annotations

import sys

import click

from engine.errors import EngineError


class _Group(click.Group):
    """Turns project errors into one clear line instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EngineError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="music-engine")
def cli() -> None:
    """Analyse a music collection locally and search it by descriptors, by example and with SQL."""


@cli.group()
def models() -> None:
    """List, fetch and convert Essentia's pre-trained models.

    Model files are read from $ENGINE_MODELS when set, else from the user cache
    folder that `engine models fetch` downloads to. Licence: CC BY-NC-SA 4.0 (MTG-UPF).
    """


@models.command("list")
def models_list() -> None:
    """Show each model: present / missing / converted, and what it enables.

    Example: engine models list
    """
    from models.catalog import model_statuses

    rows = model_statuses()
    width = max(len(r.spec.name) for r in rows)
    for r in rows:
        click.echo(f"{r.spec.name:<{width}}  {r.state:<9}  {r.spec.role.value:<8}  {r.spec.enables}")
    missing = [r for r in rows if r.state == "missing"]
    if missing:
        names = " ".join(r.spec.name for r in missing)
        click.echo(f"\nmissing models can be downloaded with: engine models fetch {names}", err=True)


@models.command("fetch")
@click.argument("names", nargs=-1)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def models_fetch(names: tuple[str, ...], quiet: bool) -> None:
    """Download models from the official URLs (resumable, SHA-256 checked).

    With no NAMES, fetches every model.

    Example: engine models fetch effnet genre_discogs400
    """
    from models.fetch import fetch_models

    report = fetch_models(names or None, progress=not quiet)
    for path in report.fetched:
        click.echo(f"fetched  {path}")
    for path in report.already_present:
        click.echo(f"present  {path}")
    for filename, reason in report.failed:
        click.echo(f"failed   {filename}: {reason}", err=True)
    if report.failed:
        sys.exit(1)


@models.command("export")
@click.argument("names", nargs=-1)
def models_export(names: tuple[str, ...]) -> None:
    """Convert present TensorFlow models to ONNX (needs the `export` extra).

    Converted files are cached with the source's SHA-256, so a changed .pb is
    converted again. Official .onnx files are used as they are.

    Example: engine models export musicnn emomusic
    """
    from models.catalog import export_models

    for name, outcome in export_models(names or None):
        click.echo(f"{name:<22} {outcome}")


def main() -> None:
    cli(prog_name="engine")


if __name__ == "__main__":
    main()
