"""``spyglass predict``, ``spyglass layers`` and ``spyglass models``: what a model says and is made of."""

from __future__ import annotations

from typing import Annotated

import typer

from spyglass.cli._prelude import (
    BatchSizeOption,
    ImagePaths,
    LimitOption,
    ModelOption,
    ProgressOption,
    load_model,
    merge_paths,
    read_images,
    user_errors,
)
from spyglass.models import DEFAULT_MODEL

__all__ = ["layers", "list_models", "predict", "register"]


def predict(
    paths: ImagePaths = None,
    model: ModelOption = DEFAULT_MODEL,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Classes to show per image.")] = 5,
    batch_size: BatchSizeOption = 32,
    limit: LimitOption = None,
    progress: ProgressOption = True,
) -> None:
    """Print the top-k ImageNet classes of each image.

    Example:

    \b
        spyglass predict photo.jpg photos/ --top-k 3
    """
    with user_errors():
        vision_model = load_model(model)
        images, image_paths = read_images(vision_model, merge_paths(paths), limit=limit, progress=progress)
        predictions = vision_model.predict(images, top_k=top_k, batch_size=batch_size, progress=progress)
    for i, path in enumerate(image_paths):
        typer.echo(str(path))
        for index, name, probability in predictions.rows(i):
            typer.echo(f"  {100 * probability:6.2f}%  {index:4d}  {name}")


def layers(
    model: ModelOption = DEFAULT_MODEL,
    old_model: Annotated[str | None, typer.Argument(hidden=True, show_default=False)] = None,
    all_layers: Annotated[
        bool, typer.Option("--all", help="Also list layers the model cannot be split at.")
    ] = False,
) -> None:
    """List a model's layers, their output shapes, and where it can be split.

    A layer that reads as a feature map shows it (a ViT's tokens as C×h×w, with the class
    tokens set aside counted); the layer Grad-CAM and CRAFT use by default is marked "default".

    Example:

    \b
        spyglass layers
        spyglass layers --model resnet50 --all
    """
    from spyglass import models

    with user_errors():
        # `spyglass layers NAME` (the model as a positional argument) is the old spelling.
        if old_model is not None and model not in (DEFAULT_MODEL, old_model):
            raise ValueError(f"--model {model} and {old_model} disagree: give the model once, as --model")
        vision_model = load_model(old_model or model)
        infos = models.list_layers(vision_model)
        default = models.default_layer(vision_model)
    shown = infos if all_layers else [info for info in infos if info.splittable]
    width = max(len(info.name) for info in shown)
    kind_width = max(len(info.kind) for info in shown)
    typer.echo(
        f"{'layer':<{width}}  {'type':<{kind_width}}  output shape" + ("  split" if all_layers else "")
    )
    for info in shown:
        shape = "×".join(map(str, info.output_shape))
        if info.map_shape is not None and info.map_shape != info.output_shape:
            prefix = f", {info.prefix_tokens} prefix token(s) set aside" if info.prefix_tokens else ""
            shape += f" (map {'×'.join(map(str, info.map_shape))}{prefix})"
        mark = ("  yes" if info.splittable else "  no") if all_layers else ""
        mark += "  default" if info.name == default else ""
        typer.echo(f"{info.name:<{width}}  {info.kind:<{kind_width}}  {shape}{mark}")
    if not all_layers:
        typer.echo(f"({len(shown)} of {len(infos)} layers can be split at; --all lists every layer)")


def list_models() -> None:
    """List the model names `--model` accepts (timm/<name> adds every timm model).

    Example:

    \b
        spyglass models
    """
    from spyglass import models

    for name in models.available_models():
        typer.echo(name)


def register(app: typer.Typer) -> None:
    """Add ``predict``, ``layers`` and ``models`` to ``app``."""
    app.command()(predict)
    app.command()(layers)
    app.command("models")(list_models)
