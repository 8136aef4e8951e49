"""`engine tag`: the user's own tags, thin click commands over index.usertags."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from engine.cli.options import store_option
from engine.cli.output import format_option, render

_OUT = click.Path(dir_okay=False, allow_dash=True, path_type=Path)
_IN = click.Path(dir_okay=False, allow_dash=True, exists=True, path_type=Path)


@click.group()
def tag() -> None:
    """Your own tags: train one from example tracks, and the collection is scored.

    Scores (0-1) are stored in the `user_tags` table (track_id, tag, score), so SQL,
    --where and playlists can use them; `engine build` scores new tracks with the
    stored probe, without retraining. See docs/tags.md.
    """


@tag.command("train")
@click.argument("name")
@click.option("--positive", "-p", "positives", multiple=True, metavar="TRACK",
              help="A track of the tag (id, path, title or a unique part); repeat.")
@click.option("--negative", "-n", "negatives", multiple=True, metavar="TRACK",
              help="A track that is not (added to a random sample of the collection); repeat.")
@click.option("--positive-where", metavar="SQL", help="Every track matching this SQL condition is a positive.")
@click.option("--negative-where", metavar="SQL", help="Every track matching this SQL condition is a negative.")
@click.option("--space", "spaces", multiple=True, metavar="musicnn|mtt|effnet",
              help="Only consider this embedding space; repeat (default: every space, and all together, "
              "chosen by cross-validation).")
@store_option
def tag_train(name: str, positives: tuple[str, ...], negatives: tuple[str, ...], positive_where: str | None,
              negative_where: str | None, spaces: tuple[str, ...], store_dir: Path | None) -> None:
    """Train tag NAME from examples (replacing a tag of that name) and score every track.

    Prints the space chosen and its cross-validated AUC and accuracy with the numbers
    of examples, and warns when there are too few to trust.

    Example: engine tag train cinematic -p "Castle" -p "Ambience" -p 12 -n "Metal_madness"
    """
    from engine.cli.lists import named
    from index import usertags
    from index.store import Store

    with Store.open(store_dir) as store:
        pos, neg = usertags.examples(store, named("--positive", positives), named("--negative", negatives),
                                     positive_where=positive_where, negative_where=negative_where)
        probe = usertags.train(store, name, pos, neg, spaces=spaces or None)
        scored = usertags.save(store, probe)
    q = probe.chosen
    click.echo(f"tag {probe.tag!r}: {len(probe.positives)} positive, {len(probe.negatives)} negative "
               f"+ {probe.random_negatives} random tracks; space {q.name}; {_quality(q)}", err=True)
    others = ", ".join(f"{o.name} {_auc(o.auc)}" for o in probe.quality[1:])
    if others:
        click.echo(f"  other spaces (CV AUC): {others}", err=True)
    for warning in probe.warnings():
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"scored {scored} tracks; `engine tag show {_quoted(probe.tag)}` lists them", err=True)


def _auc(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _quality(q) -> str:
    if q.auc is None:
        return "too few examples to cross-validate"
    return f"cross-validated AUC {q.auc:.2f} (chance 0.50), balanced accuracy {q.accuracy:.2f}"


def _quoted(tag: str) -> str:
    return f"'{tag}'" if " " in tag else tag


@tag.command("list")
@format_option
@store_option
def tag_list(fmt: str, store_dir: Path | None) -> None:
    """Your tags: the space each uses, its examples, CV quality and how many tracks score above 0.5.

    Example: engine tag list
    """
    from index import usertags
    from index.store import Store

    with Store.open_read_only(store_dir) as store:
        rows = usertags.summaries(store)
    columns = ["tag", "space", "positives", "negatives", "cv_auc", "cv_accuracy", "scored", "above_half", "trained_at"]
    click.echo(render(columns, [(r.tag, r.space, r.positives, r.negatives, r.cv_auc, r.cv_accuracy, r.scored,
                                 r.above_half, r.trained_at) for r in rows], fmt))


@tag.command("show")
@click.argument("name")
@click.option("--limit", "-k", type=click.IntRange(min=1), default=None, help="At most this many tracks (default all).")
@format_option
@store_option
def tag_show(name: str, limit: int | None, fmt: str, store_dir: Path | None) -> None:
    """The collection by its NAME score, highest first (the examples marked).

    Example: engine tag show cinematic --limit 20
    """
    from index import usertags
    from index.store import Store

    with Store.open_read_only(store_dir) as store:
        probe = usertags.load(store, name)
        rows = usertags.ranked(store, name, limit)
    click.echo(f"tag {probe.tag!r}: space {probe.chosen.name}; {_quality(probe.chosen)}; "
               f"{len(probe.positives)} positive, {len(probe.negatives)} negative examples", err=True)
    for warning in probe.warnings():
        click.echo(f"warning: {warning}", err=True)
    click.echo(render(["track_id", "path", "score", "example"],
                      [(r.track_id, r.path, round(r.score, 4) if fmt == "table" else r.score, r.example)
                       for r in rows], fmt))


@tag.command("delete")
@click.argument("name")
@store_option
def tag_delete(name: str, store_dir: Path | None) -> None:
    """Forget tag NAME: its probe and its scores.

    Example: engine tag delete cinematic
    """
    from index import usertags
    from index.store import Store

    with Store.open(store_dir) as store:
        usertags.delete(store, name)
    click.echo(f"deleted tag {name!r}", err=True)


@tag.command("export")
@click.argument("names", nargs=-1)
@click.option("--output", "-o", type=_OUT, default=Path("-"), show_default=True,
              help="File to write (JSON; - for standard output). An existing file is not overwritten.")
@store_option
def tag_export(names: tuple[str, ...], output: Path, store_dir: Path | None) -> None:
    """Write the probes of NAMES (default: every tag) to a file another store can import.

    Example: engine tag export cinematic -o cinematic.json
    """
    from index import usertags
    from index.store import Store

    if output != Path("-") and output.exists():
        raise usertags.TagError(f"{output} exists; choose another file (nothing was written)")
    with Store.open_read_only(store_dir) as store:
        document = usertags.export_probes(store, names)
    text = json.dumps(document)
    if output == Path("-"):
        click.echo(text)
    else:
        output.write_text(text)
    click.echo(f"exported {len(document['tags'])} tag{'s' if len(document['tags']) != 1 else ''} to "
               f"{'standard output' if output == Path('-') else output}", err=True)


@tag.command("import")
@click.argument("file", type=_IN)
@click.option("--replace", is_flag=True, help="Replace tags of the same name already in the store.")
@store_option
def tag_import(file: Path, replace: bool, store_dir: Path | None) -> None:
    """Add the tags of an `engine tag export` FILE to this store and score its tracks.

    The embedding models must be the same as where they were trained.

    Example: engine tag import cinematic.json
    """
    from index import usertags
    from index.store import Store

    source = "standard input" if file == Path("-") else str(file)
    try:
        document = json.loads(sys.stdin.read() if file == Path("-") else file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise usertags.TagError(f"cannot read {source}: {exc}") from None
    with Store.open(store_dir) as store:
        done = usertags.import_probes(store, document, source=source, replace=replace)
    for name, scored in done:
        click.echo(f"imported tag {name!r}: scored {scored} tracks", err=True)
