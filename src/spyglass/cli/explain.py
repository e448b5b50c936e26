"""``spyglass explain``: attribution maps of each image's class, as .npy files and one grid."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spyglass.cli._prelude import (
    BatchSizeOption,
    ImagePaths,
    LimitOption,
    MethodsOption,
    ModelOption,
    ProgressOption,
    SettingsOption,
    TargetOption,
    check_class,
    check_out,
    choose_methods,
    load_model,
    merge_paths,
    method_options,
    read_images,
    resolve_targets,
    user_errors,
)
from spyglass.models import DEFAULT_MODEL

__all__ = ["explain", "register"]

# Rows of the attributions.png grid; every map is still written as .npy.
_MAX_GRID_ROWS = 32


def _print_methods(value: bool) -> None:
    if value:
        from spyglass import attributions

        for name in attributions.list_methods():
            typer.echo(name)
        raise typer.Exit()


def _unique_stems(paths: list[Path]) -> list[str]:
    """File stems, made unique (``a``, ``a-2``) so that no two images share a .npy name."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        seen[path.stem] = seen.get(path.stem, 0) + 1
        stems.append(path.stem if seen[path.stem] == 1 else f"{path.stem}-{seen[path.stem]}")
    return stems


def explain(
    paths: ImagePaths = None,
    out: Annotated[Path, typer.Option(help="Folder to write the maps and the grid into.")] = Path(
        "out/explain"
    ),
    methods: MethodsOption = None,
    target: TargetOption = None,
    model: ModelOption = DEFAULT_MODEL,
    batch_size: BatchSizeOption = 32,
    limit: LimitOption = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            "-o",
            help="Method option KEY=VALUE for every chosen method that takes it, or "
            "METHOD.KEY=VALUE for one (e.g. integrated_gradients.steps=32).",
            show_default=False,
        ),
    ] = None,
    list_methods: Annotated[
        bool,
        typer.Option(
            "--list-methods",
            help="List the registered methods and exit.",
            is_eager=True,
            callback=_print_methods,
        ),
    ] = False,
    settings: SettingsOption = "default",
    progress: ProgressOption = True,
) -> None:
    """Explain each image's class with attribution methods; write the maps and a grid.

    Writes OUT/<image>.<method>.npy (one (H, W) float32 map per image and method, at the
    model's input resolution, after its resize and centre crop) and OUT/attributions.png.

    Example:

    \b
        spyglass explain photos/ --out out/explain
        spyglass explain photo.jpg -M sobol -M gradcam --target 967
    """
    import numpy as np

    from spyglass import attributions, plots

    del list_methods  # handled by its eager callback
    with user_errors():
        check_out(out)  # where the results go, before any work
        chosen = choose_methods(methods)
        options = method_options(option or [], chosen, settings)
        vision_model = load_model(model)
        if target is not None:  # a wrong class fails before the images are read
            check_class(target, vision_model)
        images, image_paths = read_images(vision_model, merge_paths(paths), limit=limit, progress=progress)
        targets, why = resolve_targets(vision_model, images, target, batch_size=batch_size, progress=progress)
        explainers = {
            name: attributions.create(
                name, vision_model, batch_size=batch_size, progress=progress, **options[name]
            )
            for name in chosen
        }
        maps = {name: method(images, targets) for name, method in explainers.items()}

    with user_errors(OSError):  # --out may be unwritable
        out.mkdir(parents=True, exist_ok=True)
        stems = _unique_stems(image_paths)
        class_names = [vision_model.class_names[int(k)] for k in targets]
        for i, (path, stem) in enumerate(zip(image_paths, stems, strict=True)):
            typer.echo(f"{path}: {int(targets[i])} {class_names[i]} ({why[i]})")
            for name, values in maps.items():
                np.save(out / f"{stem}.{name}.npy", values[i].numpy())
        shown = min(len(image_paths), _MAX_GRID_ROWS)
        row_labels = [f"{stem}: {label}" for stem, label in zip(stems, class_names, strict=True)]
        figure = plots.attributions(
            images[:shown],
            {name: values[:shown] for name, values in maps.items()},
            row_labels=row_labels[:shown],
            titles=[method.label for method in explainers.values()],
        )
        grid = out / "attributions.png"
        figure.savefig(grid)
    typer.echo(f"wrote {len(image_paths) * len(maps)} map(s) to {out}/<image>.<method>.npy")
    note = f" (the first {shown} of {len(image_paths)} images)" if shown < len(image_paths) else ""
    typer.echo(f"wrote {grid}{note}")


def register(app: typer.Typer) -> None:
    """Add ``explain`` to ``app``."""
    app.command()(explain)
