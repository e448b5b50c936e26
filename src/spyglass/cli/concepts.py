"""``spyglass concepts``: the concepts a model uses for one class (CRAFT), and how much each matters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spyglass.cli._prelude import (
    BatchSizeOption,
    ClassAlias,
    ImagePaths,
    LimitOption,
    ModelOption,
    ProgressOption,
    check_class,
    check_out,
    load_model,
    merge_paths,
    merge_target,
    read_images,
    resolve_class,
    user_errors,
)
from spyglass.models import DEFAULT_MODEL

__all__ = ["concepts", "register"]

_CONCEPT_MAPS = ("gradcam", "coefficients")


def concepts(
    paths: ImagePaths = None,
    target: Annotated[
        int | None,
        typer.Option(
            "--target",
            "-t",
            help="Class index to explain (default: the images' most common top-1).",
            show_default=False,
        ),
    ] = None,
    old_class: ClassAlias = None,
    old_images: Annotated[
        list[Path] | None, typer.Option("--images", "-i", hidden=True, show_default=False)
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder to write the figures and concepts.npz into.")] = Path(
        "out/concepts"
    ),
    model: ModelOption = DEFAULT_MODEL,
    n_concepts: Annotated[int, typer.Option(min=1, help="Number of concepts to extract.")] = 10,
    patch_size: Annotated[
        int, typer.Option(min=1, help="Side of the square crops, in pixels of the model's input.")
    ] = 64,
    limit: LimitOption = None,
    batch_size: BatchSizeOption = 32,
    nb_design: Annotated[
        int, typer.Option(help="Sobol' design size: nb_design · (n_concepts + 2) evaluations per image.")
    ] = 32,
    concept_map: Annotated[
        str,
        typer.Option(
            "--map",
            help="Concept maps: 'gradcam' (CRAFT's concept attribution maps) or 'coefficients' (cheap).",
        ),
    ] = "gradcam",
    progress: ProgressOption = True,
) -> None:
    """Extract the concepts a model uses for a class (CRAFT) and how much each matters.

    Give photos of the class (of an ImageFolder tree, the class's own folder). Fits CRAFT
    on crops of the photos, estimates each concept's Sobol' importance on every photo, and
    writes OUT/importance.png (the mean over the photos), OUT/crops.png (each concept's
    most typical crops), OUT/maps.png (where each concept is in the first photo),
    OUT/strategy.png (the strategic cluster graph of the per-photo importance, from 4
    photos) and OUT/concepts.npz (components, importance, per-image importance, class_id,
    layer).

    Example:

    \b
        spyglass concepts photos/tench/ --target 0 --out out/tench
        spyglass concepts tench1.jpg tench2.jpg --n-concepts 5
    """
    import numpy as np

    from spyglass import plots
    from spyglass.concepts import Craft, strategic_cluster_graph

    with user_errors():
        check_out(out)  # where the results go, before any work
        if concept_map not in _CONCEPT_MAPS:
            raise ValueError(f"--map must be 'gradcam' or 'coefficients'; got {concept_map!r}")
        class_given, flag = merge_target(target, old_class)
        vision_model = load_model(model)
        if class_given is not None:  # a wrong class fails before the images are read
            check_class(class_given, vision_model, flag)
        image_paths = merge_paths(paths, old_images)
        images, image_paths = read_images(vision_model, image_paths, limit=limit, progress=progress)
        class_id, why = resolve_class(
            vision_model, images, class_given, flag=flag, batch_size=batch_size, progress=progress
        )
        craft = Craft(
            vision_model,
            n_concepts=n_concepts,
            patch_size=patch_size,
            batch_size=batch_size,
            progress=progress,
        ).fit(images, class_id)
        per_image = craft.importance(images, nb_design=nb_design, per_image=True)
        importance = per_image.mean(dim=0)
        first_maps = craft.concept_maps(images[:1], method=concept_map)[0]
        graph = strategic_cluster_graph(craft, importance=per_image) if len(image_paths) >= 4 else None

    class_name = vision_model.class_names[class_id]
    typer.echo(
        f"{n_concepts} concepts of class {class_id} {class_name} at layer {craft.layer} from "
        f"{len(image_paths)} image(s), {craft.crops_.shape[0]} crops "
        f"(reconstruction error {craft.reconstruction_error_:.3f}); the class is {why}"
    )
    ranking = importance.argsort(descending=True).tolist()
    typer.echo("importance: " + ", ".join(f"{k}: {float(importance[k]):.3f}" for k in ranking))
    figures = {
        "importance.png": plots.concept_importance(importance),
        "crops.png": plots.concept_crops(craft, concepts=ranking, importance=importance),
        "maps.png": plots.concept_maps(images[0], first_maps, importance=importance),
    }
    if graph is None:
        typer.echo("(no strategy.png: the strategic cluster graph needs at least 4 images)")
    else:
        typer.echo(
            "important concepts (dominant on >= 10% of the images): "
            + ", ".join(f"{k} ({100 * float(graph.shares[k]):.0f}%)" for k in graph.important)
        )
        figures["strategy.png"] = plots.strategic_cluster_graph(graph, title=f"{class_name}: strategies")
    with user_errors(OSError):  # --out may be unwritable
        out.mkdir(parents=True, exist_ok=True)
        for name, figure in figures.items():
            figure.savefig(out / name)
            typer.echo(f"wrote {out / name}")
        np.savez(
            out / "concepts.npz",
            components=craft.components_.detach().cpu().float().numpy(),
            importance=importance.detach().cpu().float().numpy(),
            per_image_importance=per_image.detach().cpu().float().numpy(),
            class_id=np.int64(class_id),
            layer=np.str_(craft.layer),
        )
    typer.echo(f"wrote {out / 'concepts.npz'}")
    typer.echo(f"(maps.png shows {image_paths[0]}, {concept_map} maps)")


def register(app: typer.Typer) -> None:
    """Add ``concepts`` to ``app``."""
    app.command()(concepts)
