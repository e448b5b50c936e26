"""``spyglass demo``: the main job on the bundled photos, as one HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spyglass.cli._prelude import ModelOption, ProgressOption, check_out, user_errors
from spyglass.models import DEFAULT_MODEL

__all__ = ["demo", "register"]


def demo(
    out: Annotated[Path, typer.Option(help="Folder to write the report into.")] = Path("out/demo"),
    model: ModelOption = DEFAULT_MODEL,
    methods: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            "-M",
            help="Attribution method of the report, repeatable (default: a cheap registered set).",
            show_default=False,
        ),
    ] = None,
    concepts: Annotated[
        bool, typer.Option("--concepts/--no-concepts", help="Include CRAFT's concepts of each photo.")
    ] = True,
    progress: ProgressOption = True,
) -> None:
    """Run the main job on the bundled photos and write an HTML report.

    Example:

    \b
        spyglass demo --out out/demo --method saliency --no-concepts
    """
    import time

    from spyglass.demo import run_demo

    start = time.perf_counter()
    with user_errors():
        check_out(out)  # where the results go, before any work
        index = run_demo(out, model_name=model, methods=methods, concepts=concepts, progress=progress)
    typer.echo(f"wrote {index} in {time.perf_counter() - start:.0f} s")


def register(app: typer.Typer) -> None:
    """Add ``demo`` to ``app``."""
    app.command()(demo)
