"""``spyglass visualize``: an image that a class or a channel responds to (MACO or Fourier)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spyglass.cli._prelude import (
    ClassAlias,
    ModelOption,
    ProgressOption,
    check_class,
    check_out,
    load_model,
    merge_target,
    user_errors,
)
from spyglass.models import DEFAULT_MODEL

__all__ = ["register", "visualize"]

_RECIPES = ("maco", "fourier")


def visualize(
    target: Annotated[
        int | None,
        typer.Option("--target", "-t", help="Class whose logit to maximise.", show_default=False),
    ] = None,
    old_class: ClassAlias = None,
    layer: Annotated[
        str | None,
        typer.Option(help="Layer of the channel to maximise (see `spyglass layers`).", show_default=False),
    ] = None,
    channel: Annotated[int | None, typer.Option(help="Channel index in --layer.", show_default=False)] = None,
    out: Annotated[
        Path, typer.Option(help="Folder to write the images, the figure and the .npz into.")
    ] = Path("out/visualize"),
    method: Annotated[
        str, typer.Option("--method", "-M", help="maco (Fel et al., 2023) or fourier (Lucid).")
    ] = "maco",
    model: ModelOption = DEFAULT_MODEL,
    steps: Annotated[int, typer.Option(min=1, help="Optimisation steps.")] = 256,
    image_size: Annotated[int, typer.Option(min=16, help="Side of the square image, in pixels.")] = 512,
    nb_crops: Annotated[int, typer.Option(min=1, help="Random crops per step.")] = 6,
    seed: Annotated[int, typer.Option(min=0, help="Seed of every random draw.")] = 0,
    progress: ProgressOption = True,
) -> None:
    """Render what a class (--target) or a channel (--layer with --channel) responds to.

    Given both, the sum of the two objectives is maximised. Writes OUT/image.png,
    OUT/transparency.png (image × transparency), OUT/visualization.png (both, side by
    side) and OUT/visualization.npz (image, transparency, history).

    Example:

    \b
        spyglass visualize --target 1 --out out/goldfish
        spyglass visualize --layer blocks.5 --channel 3 --method fourier
    """
    import numpy as np

    from spyglass import featureviz, plots

    with user_errors():
        check_out(out)  # where the results go, before any work
        if method not in _RECIPES:
            raise ValueError(f"--method must be maco or fourier; got {method!r}")
        class_id, flag = merge_target(target, old_class)
        if (layer is None) != (channel is None):
            raise ValueError("--layer and --channel go together: give both or neither")
        if class_id is None and layer is None:
            raise ValueError("give --target K, or --layer L with --channel C (or all three)")
        vision_model = load_model(model)
        parts: list[featureviz.Objective] = []
        if class_id is not None:
            parts.append(featureviz.logit(check_class(class_id, vision_model, flag)))
        if layer is not None and channel is not None:
            parts.append(featureviz.channel(layer, channel))
        objective = parts[0] if len(parts) == 1 else parts[0] + parts[1]
        recipe = featureviz.maco if method == "maco" else featureviz.fourier
        result = recipe(
            vision_model,
            objective,
            steps=steps,
            image_size=image_size,
            nb_crops=nb_crops,
            seed=seed,
            progress=progress,
        )

    from torchvision.transforms.functional import to_pil_image

    title = f"{method}: {objective!r}"
    if class_id is not None:
        title += f" ({vision_model.class_names[class_id]})"
    typer.echo(f"{title}; final objective {float(result.history[-1]):.3f} after {steps} steps")
    with user_errors(OSError):  # --out may be unwritable
        out.mkdir(parents=True, exist_ok=True)
        to_pil_image(result.image).save(out / "image.png")
        plots.transparent_image(result).save(out / "transparency.png")
        plots.visualizations(result, titles=[title]).savefig(out / "visualization.png")
        np.savez(
            out / "visualization.npz",
            image=result.image.numpy(),
            transparency=result.transparency.numpy(),
            history=result.history.numpy(),
        )
    for name in ("image.png", "transparency.png", "visualization.png", "visualization.npz"):
        typer.echo(f"wrote {out / name}")


def register(app: typer.Typer) -> None:
    """Add ``visualize`` to ``app``."""
    app.command()(visualize)
