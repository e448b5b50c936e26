"""``spyglass evaluate``: which attribution method to trust, as a methods × metrics table.

Everything this command asks of :mod:`spyglass.metrics` (the default metrics, the names,
their options, the table) goes through the three functions below, so that a change of the
metrics' API is a change here only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
    scoped_options,
    user_errors,
)
from spyglass.models import DEFAULT_MODEL

if TYPE_CHECKING:
    from torch import Tensor

    from spyglass.metrics import Evaluation
    from spyglass.models import VisionModel

__all__ = ["evaluate", "register"]


def _print_metrics(value: bool) -> None:
    if value:
        from spyglass import metrics

        for name in metrics.list_metrics():
            cls = metrics.metric_class(name)
            default = "  [default]" if name in metrics.DEFAULT_METRICS else ""
            typer.echo(f"{name} ({cls.direction()}) · of {cls.kind}{default}")
        raise typer.Exit()


def _choose_metrics(
    names: Sequence[str] | None, specs: Sequence[str]
) -> tuple[list[str], dict[str, dict[str, object]]]:
    """The metrics named (else the metrics package's defaults) and their options, all checked."""
    from spyglass import metrics
    from spyglass.registry import keyword_options

    chosen = list(dict.fromkeys(names or metrics.DEFAULT_METRICS))
    for name in chosen:
        metrics.metric_class(name)  # an unknown name fails here, with suggestions

    def takes(name: str) -> set[str]:
        return keyword_options(metrics.metric_class(name), positional=("model", "images", "targets"))

    options = scoped_options(specs, chosen, flag="--metric-option", kind="metric", takes=takes)
    for name in chosen:  # a mistyped option fails here, before any work
        metrics.check_options(name, options[name])
    return chosen, options


def _score(
    model: VisionModel,
    images: Tensor,
    targets: Tensor,
    methods: list[str],
    method_options: Mapping[str, Mapping[str, object]],
    names: list[str],
    options: Mapping[str, Mapping[str, object]],
    *,
    batch_size: int,
    progress: bool,
) -> Evaluation:
    from spyglass import metrics

    return metrics.evaluate(
        model,
        images,
        targets,
        methods=methods,
        method_options=method_options,
        metrics=names,
        metric_options=options,
        batch_size=batch_size,
        progress=progress,
    )


def evaluate(
    paths: ImagePaths = None,
    old_data: Annotated[
        list[Path] | None, typer.Option("--data", "-d", hidden=True, show_default=False)
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder to write the table and the curves into.")] = Path(
        "out/evaluate"
    ),
    methods: MethodsOption = None,
    metric_names: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            help="Metric, repeatable (default: those --list-metrics marks [default]). Metrics of a "
            "method (stability, mege, reco, randomization) re-run it; mege and reco retrain the "
            "model's head on folds of the images, so give several images per class.",
            show_default=False,
        ),
    ] = None,
    target: TargetOption = None,
    model: ModelOption = DEFAULT_MODEL,
    batch_size: BatchSizeOption = 16,
    limit: LimitOption = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            "-o",
            help="Method option KEY=VALUE (every chosen method that takes it) or METHOD.KEY=VALUE "
            "(e.g. rise.nb_samples=500).",
            show_default=False,
        ),
    ] = None,
    metric_option: Annotated[
        list[str] | None,
        typer.Option(
            "--metric-option",
            help="Metric option KEY=VALUE (every chosen metric that takes it) or METRIC.KEY=VALUE "
            "(e.g. deletion.steps=10).",
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
    of every method in OUT/curves.png. MeGe and ReCo read the class explained (top-1 or
    --target) as each image's label.

    Example:

    \b
        spyglass evaluate photos/ -M sobol -M gradcam --out out/evaluate
        spyglass evaluate photo.jpg --metric deletion --metric-option steps=10
        spyglass evaluate photos/ -M saliency --metric mege --metric reco --metric-option k=2
    """
    from spyglass import plots

    del list_metrics  # handled by its eager callback
    with user_errors():
        check_out(out)  # where the results go, before any work
        chosen = choose_methods(methods)
        chosen_metrics, metric_options = _choose_metrics(metric_names, metric_option or [])
        options = method_options(option or [], chosen, settings)
        vision_model = load_model(model)
        if target is not None:  # a wrong class fails before the images are read
            check_class(target, vision_model)
        image_paths = merge_paths(paths, old_data)
        images, _ = read_images(vision_model, image_paths, limit=limit, progress=progress)
        targets, _ = resolve_targets(vision_model, images, target, batch_size=batch_size, progress=progress)
        table = _score(
            vision_model,
            images,
            targets,
            chosen,
            options,
            chosen_metrics,
            metric_options,
            batch_size=batch_size,
            progress=progress,
        )

    typer.echo(f"{images.shape[0]} image(s), {vision_model.name}")
    typer.echo(table.to_text())
    with user_errors(OSError):  # --out may be unwritable
        out.mkdir(parents=True, exist_ok=True)
        (out / "evaluation.csv").write_text(table.to_csv())
        (out / "evaluation.md").write_text(table.to_markdown())
        typer.echo(f"wrote {out / 'evaluation.csv'} and {out / 'evaluation.md'}")
        if table.curves:
            plots.fidelity_curves(table.curves, ylabel="class probability").savefig(out / "curves.png")
            typer.echo(f"wrote {out / 'curves.png'}")


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to ``app``."""
    app.command()(evaluate)
