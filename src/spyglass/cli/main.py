"""``spyglass``: explain what vision models see, from the shell.

Every command runs on the embedded default model (EfficientNet-Lite0, offline) unless
``--model`` names another (see ``spyglass models``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spyglass.models import DEFAULT_MODEL
from spyglass.runtime import tune_allocator

app = typer.Typer(
    name="spyglass",
    help="Explain what large vision models see, and where.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="efficientnet_lite0/1/2, a torchvision name (resnet50) or timm/<name>.",
    ),
]
ProgressOption = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]


def _fail(error: Exception) -> typer.Exit:
    typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


@app.command()
def predict(
    paths: Annotated[
        list[Path], typer.Argument(help="Image files or folders of images.", show_default=False)
    ],
    model: ModelOption = DEFAULT_MODEL,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Classes to show per image.")] = 5,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 32,
    progress: ProgressOption = True,
) -> None:
    """Print the top-k ImageNet classes of each image."""
    from spyglass import data, models

    try:
        vision_model = models.load(model)
        batch = data.read_images(paths, vision_model.preprocess, progress=progress)
        predictions = vision_model.predict(
            batch.images, top_k=top_k, batch_size=batch_size, progress=progress
        )
    except (ValueError, TypeError, models.WeightsUnavailableError) as error:
        raise _fail(error) from None
    for i, path in enumerate(batch.paths):
        typer.echo(str(path))
        for index, name, probability in predictions.rows(i):
            typer.echo(f"  {100 * probability:6.2f}%  {index:4d}  {name}")


@app.command()
def layers(
    model: Annotated[str, typer.Argument(help="Model name (see `spyglass models`).")] = DEFAULT_MODEL,
    all_layers: Annotated[
        bool, typer.Option("--all", help="Also list layers the model cannot be split at.")
    ] = False,
) -> None:
    """List a model's layers, their output shapes, and where it can be split."""
    from spyglass import models

    try:
        vision_model = models.load(model)
        infos = models.list_layers(vision_model)
    except (ValueError, TypeError, models.WeightsUnavailableError) as error:
        raise _fail(error) from None
    shown = infos if all_layers else [info for info in infos if info.splittable]
    width = max(len(info.name) for info in shown)
    kind_width = max(len(info.kind) for info in shown)
    typer.echo(
        f"{'layer':<{width}}  {'type':<{kind_width}}  output shape" + ("  split" if all_layers else "")
    )
    for info in shown:
        shape = "×".join(map(str, info.output_shape))
        mark = ("  yes" if info.splittable else "  no") if all_layers else ""
        typer.echo(f"{info.name:<{width}}  {info.kind:<{kind_width}}  {shape}{mark}")
    if not all_layers:
        typer.echo(f"({len(shown)} of {len(infos)} layers can be split at; --all lists every layer)")


@app.command("models")
def list_models() -> None:
    """List the model names `--model` accepts (timm/<name> adds every timm model)."""
    from spyglass import models

    for name in models.available_models():
        typer.echo(name)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder to write the report into.")] = Path("out/demo"),
    model: ModelOption = DEFAULT_MODEL,
    progress: ProgressOption = True,
) -> None:
    """Run the main job on the bundled photos and write an HTML report."""
    from spyglass.demo import run_demo

    try:
        index = run_demo(out, model_name=model, progress=progress)
    except (ValueError, TypeError) as error:
        raise _fail(error) from None
    typer.echo(f"wrote {index}")


def main() -> None:
    """Entry point of the ``spyglass`` script."""
    tune_allocator()
    app(prog_name="spyglass")


if __name__ == "__main__":
    main()
