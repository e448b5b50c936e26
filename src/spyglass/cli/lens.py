"""``spyglass lens …``: build the atlas of a model (Lens) and say what is in one.

``spyglass lens build --model NAME --data DIR --out ATLAS`` runs the per-class concept
pipeline on every class the model predicts over DIR (in process, on a local Dask cluster
with ``--workers N``, or on an existing one with ``--scheduler ADDRESS``) into the atlas
folder ATLAS, resuming where a killed build stopped; ``spyglass lens info ATLAS`` shows its
provenance, settings and which classes are done, failed or pending; ``spyglass lens serve
ATLAS`` and ``spyglass lens export ATLAS DIR`` (:mod:`spyglass.cli.lens_site`) show it in a
browser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spyglass.cli import lens_site
from spyglass.cli._prelude import ModelOption, ProgressOption, check_out, user_errors
from spyglass.models import DEFAULT_MODEL

__all__ = ["app", "build", "info"]

app = typer.Typer(
    help="Build the atlas of a model's classes and concepts (Lens), and inspect one.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("build")
def build(
    data: Annotated[
        Path, typer.Option("--data", help="The image folder (flat, or one sub-folder per class).")
    ],
    out: Annotated[Path, typer.Option("--out", help="The atlas folder (created, or resumed).")],
    model: ModelOption = DEFAULT_MODEL,
    classes: Annotated[
        list[int] | None,
        typer.Option(
            "--classes",
            help="Class id to build, repeatable (default: every class predicted for enough images).",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Run on a local Dask cluster of N worker processes."),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", help="Run on the Dask cluster at this address (tcp://host:8786)."),
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help="Where the workers run the model (cpu, cuda).")
    ] = "cpu",
    fast: Annotated[
        bool, typer.Option("--fast", help="The CPU preset: 12 images and 5 concepts per class, small MACO.")
    ] = False,
    progress: ProgressOption = True,
) -> None:
    """Build (or resume) the atlas of MODEL over the images of DATA into OUT.

    For each class the model predicts over DATA (Lens's rule), CRAFT's concepts at the last
    block with their share of the logit, best crops, MACO renderings, concept maps, the
    strategic cluster graph, concept-class alignment and similar concepts in other classes.
    A killed build resumes without recomputing finished classes; a failing class is
    recorded and the build goes on; an atlas built with another model or settings is
    refused.

    Example:

    \b
        spyglass lens build --data imagenet/val --out atlas/ --fast
        spyglass lens build --model resnet50 --data imagenet/val --out atlas/ --workers 8 --device cuda
    """
    from spyglass.lens import build_atlas

    with user_errors():
        check_out(out)  # a folder, or a path below one: before the model is loaded
        if not data.exists():
            raise ValueError(f"no such folder: {data}")
        summary = build_atlas(
            model,
            data,
            out,
            classes=classes,
            workers=workers,
            scheduler=scheduler,
            device=device,
            fast=fast,
            progress=progress,
        )
    typer.echo(
        f"atlas {summary.root}: {len(summary.built)} class(es) built, {len(summary.failed)} failed, "
        f"{len(summary.skipped)} already done, in {summary.seconds:.0f} s"
    )
    if summary.failed:
        typer.echo(f"failed: {', '.join(map(str, summary.failed))} (see `spyglass lens info {summary.root}`)")


@app.command("info")
def info(
    atlas: Annotated[Path, typer.Argument(help="The atlas folder.", show_default=False)],
    errors: Annotated[int, typer.Option("--errors", min=0, help="Failures listed at most.")] = 20,
) -> None:
    """Show what is in the atlas ATLAS: provenance, settings, classes done, failed and pending.

    Example:

    \b
        spyglass lens info atlas/
    """
    from spyglass.lens import Atlas

    with user_errors():
        store = Atlas.open(atlas)
    try:
        index = store.index_document()
    finally:
        store.close()
    provenance = index["provenance"]
    counts = {status: 0 for status in ("done", "failed", "pending")}
    for entry in index["classes"]:
        counts[entry["status"]] += 1
    typer.echo(f"atlas {atlas}")
    for key in ("model", "weights_sha256", "layer", "data", "created", "spyglass_version"):
        typer.echo(f"  {key}: {provenance[key]}")
    settings = provenance["settings"]
    typer.echo("  settings: " + ", ".join(f"{k}={v}" for k, v in settings.items() if not isinstance(v, str)))
    for key, value in settings.items():
        if isinstance(value, str):
            typer.echo(f"  {key}: {value}")
    typer.echo(
        f"classes: {counts['done']} done, {counts['failed']} failed, {counts['pending']} pending "
        f"(of {len(index['classes'])})"
    )
    failed = [entry for entry in index["classes"] if entry["status"] == "failed"]
    for entry in failed[:errors]:
        typer.echo(f"  failed {entry['id']} {entry['short']}: {entry['error']}")
    if len(failed) > errors:
        typer.echo(f"  … and {len(failed) - errors} more failures")


lens_site.register(app)  # serve and export, after build and info in --help
