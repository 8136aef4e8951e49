"""The ``engine`` command line: a thin click layer over the Python API.

This package is the top layer: nothing else in the project imports it. The group and
``main`` are here; each command over the store has its module beside it (``query``,
``lists``, ``sql``...), with ``output`` (rows to text) and ``options`` (shared options).

Heavy libraries (onnxruntime, essentia, faiss, textual) are imported inside the
commands, so ``engine --help`` stays instant. Data goes to stdout, diagnostics to
stderr; an :class:`engine.errors.EngineError` becomes one line and exit status 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from engine.errors import EngineError
from engine.cli.options import STORE_DIR_KEY, models_option, store_option
from engine.summary import summary_help


class _Group(click.Group):
    """Turns project errors, and a damaged store, a full disk or a lack of memory
    (engine.diagnose), into one clear line instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a bad option value or argument of a command
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            click.echo(f"error: {exc.format_message().rstrip('.')} (see `{where} --help`)", err=True)
            ctx.exit(exc.exit_code)
        except EngineError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # noqa: BLE001 - explained in one line, or re-raised
            from engine.diagnose import explain

            line = explain(exc, store_dir=ctx.meta.get(STORE_DIR_KEY))
            if line is None:
                raise
            click.echo(f"error: {line}", err=True)
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="music-engine")
def cli() -> None:
    """Analyse a music collection locally and search it by descriptors, by example and with SQL."""
    if not {"-h", "--help"} & set(sys.argv[1:]):
        from engine.diagnose import LOAD_ADDRESS_SPACE, check_address_space

        # Under a lower `ulimit -v` the native libraries crash while loading, past catching.
        check_address_space(LOAD_ADDRESS_SPACE, "the engine")


@cli.group()
def models() -> None:
    """List, fetch and convert Essentia's pre-trained models.

    Model files are read from --models DIR or $ENGINE_MODELS when given, else from
    the user cache folder that `engine models fetch` downloads to. Offline, point
    --models at a folder holding the official files. Licence: CC BY-NC-SA 4.0 (MTG-UPF).
    """


@models.command("list")
@models_option
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
        from engine.errors import models_hint
        from models.paths import models_dir

        names = " ".join(r.spec.name for r in missing)
        click.echo(f"\nmodels missing from {models_dir()}: {models_hint(names)}", err=True)


@models.command("fetch")
@click.argument("names", nargs=-1)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@models_option
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
    for line in report.failure_lines():
        click.echo(f"failed   {line}", err=True)
    if report.failed:
        from engine.errors import models_hint

        click.echo(f"{len(report.failed)} of {len(report.failed) + len(report.fetched) + len(report.already_present)} "
                   f"files not fetched into {report.dest_dir}: {models_hint()}", err=True)
        sys.exit(1)


@models.command("export")
@click.argument("names", nargs=-1)
@models_option
def models_export(names: tuple[str, ...]) -> None:
    """Convert present TensorFlow models to ONNX (needs the `export` extra).

    Converted files are cached with the source's SHA-256, so a changed .pb is
    converted again. Official .onnx files are used as they are.

    Example: engine models export musicnn emomusic
    """
    from models.catalog import export_models

    for name, outcome in export_models(names or None):
        click.echo(f"{name:<22} {outcome}")


@cli.command(epilog=summary_help(74))
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@store_option
@models_option
@click.option("--workers", type=click.IntRange(min=1), default=None, show_default="one per core",
              help="Decode/DSP processes.")
@click.option("--threads", type=click.IntRange(min=1), default=None, show_default="one per two cores",
              help="onnxruntime threads of the model stage.")
@click.option("--batch", type=click.IntRange(min=1), default=8, show_default=True,
              help="Files per commit (and per model run on Ray).")
@click.option("--max-seconds", type=click.FloatRange(min=0, min_open=True), default=450.0, show_default=True,
              help="Audio analysed per file; longer files are analysed from the start up to this.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), default=600.0,
              show_default=True, help="Seconds one file may take before it is recorded as failed.")
@click.option("--retry-failed", is_flag=True, help="Analyse again files that failed before.")
@click.option("--no-fetch", is_flag=True, help="Do not download missing models.")
@click.option("--rebuild-store", is_flag=True,
              help="If the store's database is damaged, set it aside and analyse the music again.")
@click.option("--ray", "ray", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]",
              help="Analyse on Ray (needs the `ray` extra): a local Ray runtime, or the cluster at "
                   "ADDRESS or $RAY_ADDRESS. Files must be at the same path on every node "
                   "(docs/ray.md).")
@click.option("--ray-task-cpus", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="CPUs Ray reserves per analysis task (with --ray).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def build(folder: Path, store_dir: Path | None, workers: int | None, threads: int | None, batch: int,
          max_seconds: float, timeout_s: float, retry_failed: bool, no_fetch: bool,
          rebuild_store: bool, ray: str | None, ray_task_cpus: float, quiet: bool) -> None:
    """Analyse every audio file under FOLDER into the store.

    Re-running only analyses what is new or changed; an interrupted build resumes;
    files that fail are recorded (see the `failures` table) and skipped. Missing
    models are downloaded first; offline, pass --models DIR (or set ENGINE_MODELS)
    to a folder of the official model files.

    Example: engine build ~/Music

    Example: engine build /mnt/archive --ray auto
    """
    from engine.build import BuildOptions, build as run_build

    from dataclasses import replace

    from index.store import StoreDamagedError

    options = BuildOptions(
        workers=workers or 0, threads=threads or 0, batch=batch, max_seconds=max_seconds,
        timeout_s=timeout_s, retry_failed=retry_failed, progress=not quiet, fetch=not no_fetch,
        rebuild_store=rebuild_store, ray=ray, ray_task_cpus=ray_task_cpus,
    )
    echo = lambda s: click.echo(s, err=True)  # noqa: E731
    try:
        summary = run_build(folder, store_dir, options, echo=echo)
    except StoreDamagedError as exc:
        # The offer: at a terminal, ask; elsewhere the message names --rebuild-store.
        if rebuild_store or not sys.stdin.isatty():
            raise
        echo(f"error: {exc}")
        if not click.confirm("Set the damaged database aside and rebuild the store from the music now?",
                             err=True):
            sys.exit(1)
        summary = run_build(folder, store_dir, replace(options, rebuild_store=True), echo=echo)
    for line in summary.lines():
        click.echo(line, err=True)
    if summary.interrupted:
        sys.exit(130)


# Commands over the store live in their own modules; they are registered here.
from engine.cli.lists import duplicates as _duplicates, path as _path, radio as _radio  # noqa: E402
from engine.cli.query import knn as _knn, playlist as _playlist  # noqa: E402
from engine.cli.index import index_group as _index  # noqa: E402
from engine.cli.report import report as _report  # noqa: E402
from engine.cli.search import search as _search  # noqa: E402
from engine.cli.sql import sql as _sql  # noqa: E402
from engine.cli.tags import tag as _tag  # noqa: E402
from engine.cli.explain import explain as _explain  # noqa: E402
from engine.cli.tui import tui as _tui  # noqa: E402
from engine.cli.hearing import listener as _listener, quality as _quality  # noqa: E402

for _command in (_knn, _path, _radio, _duplicates, _playlist, _search, _sql, _report, _tui,
                 _listener, _quality, _index, _tag, _explain):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="engine")

