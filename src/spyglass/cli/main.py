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
TargetOption = Annotated[
    int | None,
    typer.Option("--target", "-t", help="Class to explain (default: each image's top-1 class)."),
]
SettingsOption = Annotated[
    str,
    typer.Option(
        "--settings",
        help="Each method's settings at this level: default (its own defaults), demo (the demo "
        "page's), quick (a smoke run) or cheap (tiny test models); --option overrides them.",
    ),
]


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


# Cheap methods for `explain` when none is named; only those registered at run time are used.
_DEFAULT_EXPLAIN_METHODS = ("saliency", "integrated_gradients", "gradcam")
# Rows of the attributions.png grid; every map is still written as .npy.
_MAX_GRID_ROWS = 32
# Set by the command itself from its own options.
_RESERVED_OPTIONS = {"batch_size": "--batch-size", "progress": "--progress", "objective": "(not settable)"}


def _parse_value(text: str) -> object:
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return text


def _method_options(
    specs: list[str], methods: list[str], base: dict[str, dict[str, object]] | None = None
) -> dict[str, dict[str, object]]:
    """``KEY=VALUE`` (every method) or ``METHOD.KEY=VALUE`` (one method) → options per method.

    ``base`` holds each method's options before the specs (its settings at a level).
    """
    options: dict[str, dict[str, object]] = {name: dict((base or {}).get(name, {})) for name in methods}
    for spec in specs:
        key, sep, text = spec.partition("=")
        if not sep or not key:
            raise ValueError(f"--option must be KEY=VALUE or METHOD.KEY=VALUE (e.g. steps=32); got {spec!r}")
        scope, dot, key = key.rpartition(".")
        if key in _RESERVED_OPTIONS:
            raise ValueError(f"--option {key} is set by the command; use {_RESERVED_OPTIONS[key]}")
        if dot and scope not in options:
            raise ValueError(
                f"--option {spec!r} names method {scope!r}, which is not among {', '.join(methods)}"
            )
        for name in [scope] if dot else methods:
            options[name][key] = _parse_value(text)
    return options


def _level_settings(level: str, methods: list[str]) -> dict[str, dict[str, object]]:
    """Each method's settings at ``level``, read from the method's class data."""
    from spyglass import attributions

    if level not in attributions.SETTINGS_LEVELS:
        levels = ", ".join(attributions.SETTINGS_LEVELS)
        raise ValueError(f"--settings must be one of {levels}; got {level!r}")
    return {name: attributions.method_settings(name, level) for name in methods}


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


@app.command()
def explain(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="IMAGE_OR_DIR",
            help="An image file or a folder of images (or several).",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option(help="Folder to write the maps and the grid into.")],
    methods: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            "-M",
            help="Attribution method, repeatable (default: saliency, integrated_gradients and "
            "gradcam where registered). See `spyglass explain --list-methods`.",
            show_default=False,
        ),
    ] = None,
    target: TargetOption = None,
    model: ModelOption = DEFAULT_MODEL,
    batch_size: Annotated[int, typer.Option(help="Model evaluations per batch (bounds memory).")] = 32,
    limit: Annotated[int | None, typer.Option(min=1, help="Explain at most this many images.")] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            "-o",
            help="Method option KEY=VALUE for every method, or METHOD.KEY=VALUE for one "
            "(e.g. integrated_gradients.steps=32).",
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
    """
    import numpy as np

    from spyglass import attributions, data, models, plots
    from spyglass.validation import check_targets

    del list_methods  # handled by its eager callback
    try:
        if methods:
            chosen = list(dict.fromkeys(methods))
        else:
            chosen = [m for m in _DEFAULT_EXPLAIN_METHODS if m in attributions.list_methods()]
            if not chosen:
                raise ValueError("no default method is registered; name one with --method")
        for name in chosen:
            attributions.method_class(name)  # an unknown name fails here, before any work
        options = _method_options(option or [], chosen, _level_settings(settings, chosen))
        vision_model = models.load(model)
        batch = data.read_images(paths, vision_model.preprocess, limit=limit, progress=progress)
        if target is None:
            predictions = vision_model.predict(
                batch.images, top_k=1, batch_size=batch_size, progress=progress
            )
            targets = predictions.indices[:, 0]
            why = [f"top-1, {100 * float(p):.1f}%" for p in predictions.probabilities[:, 0]]
        else:
            targets = check_targets(target, len(batch), vision_model.num_classes)
            why = ["--target"] * len(batch)
        maps = {
            name: attributions.create(
                name, vision_model, batch_size=batch_size, progress=progress, **options[name]
            )(batch.images, targets)
            for name in chosen
        }
    except (ValueError, TypeError, models.WeightsUnavailableError) as error:
        raise _fail(error) from None

    out.mkdir(parents=True, exist_ok=True)
    stems = _unique_stems(batch.paths)
    class_names = [vision_model.class_names[int(k)] for k in targets]
    for i, (path, stem) in enumerate(zip(batch.paths, stems, strict=True)):
        typer.echo(f"{path}: {int(targets[i])} {class_names[i]} ({why[i]})")
        for name, values in maps.items():
            np.save(out / f"{stem}.{name}.npy", values[i].numpy())
    shown = min(len(batch), _MAX_GRID_ROWS)
    row_labels = [f"{stem}: {label}" for stem, label in zip(stems, class_names, strict=True)]
    figure = plots.attributions(
        batch.images[:shown],
        {name: values[:shown] for name, values in maps.items()},
        row_labels=row_labels[:shown],
    )
    grid = out / "attributions.png"
    figure.savefig(grid)
    typer.echo(f"wrote {len(batch) * len(maps)} map(s) to {out}/<image>.<method>.npy")
    note = f" (the first {shown} of {len(batch)} images)" if shown < len(batch) else ""
    typer.echo(f"wrote {grid}{note}")


@app.command()
def concepts(
    images_dir: Annotated[
        Path,
        typer.Option(
            "--images",
            "-i",
            help="A folder of photos of the class (of an ImageFolder tree, the class's folder).",
            show_default=False,
        ),
    ],
    class_id: Annotated[
        int, typer.Option("--class", "-c", help="ImageNet class index to explain.", show_default=False)
    ],
    out: Annotated[Path, typer.Option(help="Folder to write the figures and concepts.npz into.")],
    model: ModelOption = DEFAULT_MODEL,
    n_concepts: Annotated[int, typer.Option(min=1, help="Number of concepts to extract.")] = 10,
    patch_size: Annotated[
        int, typer.Option(min=1, help="Side of the square crops, in pixels of the model's input.")
    ] = 64,
    limit: Annotated[int | None, typer.Option(min=1, help="Use at most this many images.")] = None,
    batch_size: Annotated[int, typer.Option(help="Crops or images per forward pass (bounds memory).")] = 32,
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

    Fits CRAFT on crops of the photos, estimates each concept's Sobol' importance on every
    photo, and writes OUT/importance.png (the mean over the photos), OUT/crops.png (each
    concept's most typical crops), OUT/maps.png (where each concept is in the first photo),
    OUT/strategy.png (the strategic cluster graph of the per-photo importance, from 4
    photos) and OUT/concepts.npz (components, importance, per-image importance, class_id,
    layer).
    """
    import numpy as np

    from spyglass import data, models, plots
    from spyglass.concepts import Craft, strategic_cluster_graph

    try:
        vision_model = models.load(model)
        if not 0 <= class_id < vision_model.num_classes:
            raise ValueError(
                f"--class must be a class index in [0, {vision_model.num_classes - 1}]; got {class_id}"
            )
        if not images_dir.is_dir():
            raise ValueError(f"--images must be a folder of images; {images_dir} is not a folder")
        if concept_map not in ("gradcam", "coefficients"):
            raise ValueError(f"--map must be 'gradcam' or 'coefficients'; got {concept_map!r}")
        batch = data.read_images(images_dir, vision_model.preprocess, limit=limit, progress=progress)
        craft = Craft(
            vision_model,
            n_concepts=n_concepts,
            patch_size=patch_size,
            batch_size=batch_size,
            progress=progress,
        ).fit(batch.images, class_id)
        per_image = craft.importance(batch.images, nb_design=nb_design, per_image=True)
        importance = per_image.mean(dim=0)
        first_maps = craft.concept_maps(batch.images[:1], method=concept_map)[0]
        graph = strategic_cluster_graph(craft, importance=per_image) if len(batch) >= 4 else None
    except (ValueError, TypeError, models.WeightsUnavailableError) as error:
        raise _fail(error) from None

    out.mkdir(parents=True, exist_ok=True)
    class_name = vision_model.class_names[class_id]
    typer.echo(
        f"{n_concepts} concepts of class {class_id} {class_name} at layer {craft.layer} from "
        f"{len(batch)} image(s), {craft.crops_.shape[0]} crops "
        f"(reconstruction error {craft.reconstruction_error_:.3f})"
    )
    ranking = importance.argsort(descending=True).tolist()
    typer.echo("importance: " + ", ".join(f"{k}: {float(importance[k]):.3f}" for k in ranking))
    figures = {
        "importance.png": plots.concept_importance(importance),
        "crops.png": plots.concept_crops(craft, concepts=ranking, importance=importance),
        "maps.png": plots.concept_maps(batch.images[0], first_maps, importance=importance),
    }
    if graph is None:
        typer.echo("(no strategy.png: the strategic cluster graph needs at least 4 images)")
    else:
        typer.echo(
            "important concepts (dominant on >= 10% of the images): "
            + ", ".join(f"{k} ({100 * float(graph.shares[k]):.0f}%)" for k in graph.important)
        )
        figures["strategy.png"] = plots.strategic_cluster_graph(graph, title=f"{class_name}: strategies")
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
    typer.echo(f"(maps.png shows {batch.paths[0]}, {concept_map} maps)")


# Metrics of `evaluate` when none is named: fidelity only (stability re-runs each method many times).
_DEFAULT_EVALUATE_METRICS = ("deletion", "insertion", "mufidelity")


def _print_metrics(value: bool) -> None:
    if value:
        from spyglass import metrics

        for name in metrics.list_metrics():
            typer.echo(f"{name} ({metrics.metric_class(name).direction()})")
        raise typer.Exit()


@app.command()
def evaluate(
    data: Annotated[
        list[Path],
        typer.Option(
            "--data", "-d", help="An image file or a folder of images (repeatable).", show_default=False
        ),
    ],
    out: Annotated[Path, typer.Option(help="Folder to write the table and the curves into.")] = Path(
        "out/evaluate"
    ),
    methods: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            "-M",
            help="Attribution method, repeatable (default: saliency, integrated_gradients and gradcam).",
            show_default=False,
        ),
    ] = None,
    metric_names: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            help="Metric, repeatable (default: deletion, insertion, mufidelity). See --list-metrics.",
            show_default=False,
        ),
    ] = None,
    target: TargetOption = None,
    model: ModelOption = DEFAULT_MODEL,
    batch_size: Annotated[int, typer.Option(help="Model evaluations per batch (bounds memory).")] = 16,
    limit: Annotated[int | None, typer.Option(min=1, help="Use at most this many images.")] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            "-o",
            help="Method option KEY=VALUE or METHOD.KEY=VALUE (e.g. rise.nb_samples=500).",
            show_default=False,
        ),
    ] = None,
    metric_option: Annotated[
        list[str] | None,
        typer.Option(
            "--metric-option",
            help="Metric option KEY=VALUE or METRIC.KEY=VALUE (e.g. deletion.steps=10).",
            show_default=False,
        ),
    ] = None,
    list_metrics: Annotated[
        bool,
        typer.Option(
            "--list-metrics",
            help="List the registered metrics and exit.",
            is_eager=True,
            callback=_print_metrics,
        ),
    ] = False,
    settings: SettingsOption = "default",
    progress: ProgressOption = True,
) -> None:
    """Score attribution methods with metrics: a methods × metrics table, and the curves.

    Prints the table (the header says whether higher or lower is better), writes it as
    OUT/evaluation.csv and OUT/evaluation.md, and plots the mean Deletion/Insertion curves
    of every method in OUT/curves.png.
    """
    from spyglass import attributions, metrics, models, plots
    from spyglass import data as data_module
    from spyglass.validation import check_targets

    del list_metrics  # handled by its eager callback
    try:
        if methods:
            chosen = list(dict.fromkeys(methods))
        else:
            chosen = [m for m in _DEFAULT_EXPLAIN_METHODS if m in attributions.list_methods()]
        for name in chosen:
            attributions.method_class(name)
        chosen_metrics = list(dict.fromkeys(metric_names or _DEFAULT_EVALUATE_METRICS))
        for name in chosen_metrics:
            metrics.metric_class(name)
        options = _method_options(option or [], chosen, _level_settings(settings, chosen))
        metric_options = _method_options(metric_option or [], chosen_metrics)
        for name in chosen_metrics:  # a mistyped option fails here, before any work
            metrics.check_options(name, metric_options[name])
        vision_model = models.load(model)
        batch = data_module.read_images(data, vision_model.preprocess, limit=limit, progress=progress)
        if target is None:
            predictions = vision_model.predict(
                batch.images, top_k=1, batch_size=batch_size, progress=progress
            )
            targets = predictions.indices[:, 0]
        else:
            targets = check_targets(target, len(batch), vision_model.num_classes)
        explainers = {
            name: attributions.create(
                name, vision_model, batch_size=batch_size, progress=progress, **options[name]
            )
            for name in chosen
        }
        table = metrics.evaluate(
            explainers, batch.images, targets, metrics=chosen_metrics, metric_options=metric_options
        )
    except (ValueError, TypeError, models.WeightsUnavailableError) as error:
        raise _fail(error) from None

    out.mkdir(parents=True, exist_ok=True)
    typer.echo(f"{len(batch)} image(s), {vision_model.name}")
    typer.echo(table.to_text())
    (out / "evaluation.csv").write_text(table.to_csv())
    (out / "evaluation.md").write_text(table.to_markdown())
    typer.echo(f"wrote {out / 'evaluation.csv'} and {out / 'evaluation.md'}")
    if table.curves:
        plots.fidelity_curves(table.curves, ylabel="class probability").savefig(out / "curves.png")
        typer.echo(f"wrote {out / 'curves.png'}")


@app.command()
def visualize(
    out: Annotated[Path, typer.Option(help="Folder to write the images, the figure and the .npz into.")],
    class_id: Annotated[
        int | None,
        typer.Option("--class", "-c", help="ImageNet class whose logit to maximise.", show_default=False),
    ] = None,
    layer: Annotated[
        str | None,
        typer.Option(help="Layer of the channel to maximise (see `spyglass layers`).", show_default=False),
    ] = None,
    channel: Annotated[int | None, typer.Option(help="Channel index in --layer.", show_default=False)] = None,
    method: Annotated[str, typer.Option(help="maco (Fel et al., 2023) or fourier (Lucid).")] = "maco",
    model: ModelOption = DEFAULT_MODEL,
    steps: Annotated[int, typer.Option(min=1, help="Optimisation steps.")] = 256,
    image_size: Annotated[int, typer.Option(min=16, help="Side of the square image, in pixels.")] = 512,
    nb_crops: Annotated[int, typer.Option(min=1, help="Random crops per step.")] = 6,
    seed: Annotated[int, typer.Option(min=0, help="Seed of every random draw.")] = 0,
    progress: ProgressOption = True,
) -> None:
    """Render what a class (--class) or a channel (--layer with --channel) responds to.

    Given both, the sum of the two objectives is maximised. Writes OUT/image.png,
    OUT/transparency.png (image × transparency), OUT/visualization.png (both, side by
    side) and OUT/visualization.npz (image, transparency, history).
    """
    import numpy as np

    from spyglass import featureviz, models, plots

    try:
        if method not in ("maco", "fourier"):
            raise ValueError(f"--method must be maco or fourier; got {method!r}")
        if (layer is None) != (channel is None):
            raise ValueError("--layer and --channel go together: give both or neither")
        if class_id is None and layer is None:
            raise ValueError("give --class K, or --layer L with --channel C (or all three)")
        vision_model = models.load(model)
        parts: list[featureviz.Objective] = []
        if class_id is not None:
            if not 0 <= class_id < vision_model.num_classes:
                raise ValueError(
                    f"--class must be a class index in [0, {vision_model.num_classes - 1}]; got {class_id}"
                )
            parts.append(featureviz.logit(class_id))
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
    except (ValueError, TypeError, models.WeightsUnavailableError) as error:
        raise _fail(error) from None

    from torchvision.transforms.functional import to_pil_image

    out.mkdir(parents=True, exist_ok=True)
    title = f"{method}: {objective!r}"
    if class_id is not None:
        title += f" ({vision_model.class_names[class_id]})"
    typer.echo(f"{title}; final objective {float(result.history[-1]):.3f} after {steps} steps")
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


@app.command()
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
    """Run the main job on the bundled photos and write an HTML report."""
    import time

    from spyglass import models
    from spyglass.demo import run_demo

    start = time.perf_counter()
    try:
        index = run_demo(out, model_name=model, methods=methods, concepts=concepts, progress=progress)
    except (ValueError, TypeError, models.WeightsUnavailableError) as error:
        raise _fail(error) from None
    typer.echo(f"wrote {index} in {time.perf_counter() - start:.0f} s")


def main() -> None:
    """Entry point of the ``spyglass`` script."""
    tune_allocator()
    app(prog_name="spyglass")


if __name__ == "__main__":
    main()
