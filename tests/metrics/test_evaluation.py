"""metrics.evaluate: both kinds in one table, each cell what the metric alone gives, shared work, errors."""

import math
from typing import Any

import pytest
import torch

from spyglass import attributions, metrics
from spyglass.models import VisionModel
from tests.tiny import tinted_images, tiny_model

CHEAP: dict[str, dict[str, Any]] = {
    "deletion": {"steps": 4},
    "mufidelity": {"nb_samples": 8, "grid_size": 4},
    "stability": {"nb_samples": 2},
    "randomization": {"layers": 2},
    "mege": {"k": 2},
    "reco": {"k": 2},
}


@pytest.fixture(scope="module")
def coloured() -> tuple[torch.Tensor, torch.Tensor]:
    return tinted_images(12)


def test_one_table_holds_both_kinds_and_each_cell_is_the_metric_alone(
    coloured: tuple[torch.Tensor, torch.Tensor],
) -> None:
    images, labels = coloured
    model = tiny_model()
    table = metrics.evaluate(
        model,
        images,
        labels,
        methods=["saliency", "gradient_input"],
        method_options={"gradient_input": {"batch_size": 4}},
        metrics=list(CHEAP),
        metric_options=CHEAP,
        progress=False,
    )
    assert table.methods == ["saliency", "gradient_input"] and table.metrics == list(CHEAP)
    assert table.header()[1:] == [f"{name} ({metrics.metric_class(name).direction()})" for name in CHEAP]
    assert set(table.curves) == {"deletion"} and table.curves["deletion"]["saliency"].shape == (12, 5)
    maps = attributions.Saliency(model)(images, labels)
    alone = {
        name: metrics.create(name, model, images, labels, progress=False, **CHEAP[name]) for name in CHEAP
    }
    for name, metric in alone.items():
        value = metric(maps) if metric.kind == "maps" else metric("saliency")  # type: ignore[operator]
        cell = table.scores["saliency"][name]
        assert cell == pytest.approx(value, rel=1e-6) or (math.isnan(cell) and math.isnan(value)), name
    assert table.scores["saliency"]["mege"] < 1.0  # the fold models disagree on some maps
    assert set(table.seconds["gradient_input"]) == {"maps", *CHEAP}
    assert len(table.to_csv().splitlines()) == 3


def test_mege_and_reco_train_the_fold_models_once_and_maps_are_reused(
    coloured: tuple[torch.Tensor, torch.Tensor],
) -> None:
    images, labels = coloured
    model = tiny_model()
    head = metrics.HeadFineTuning(model)
    trained: list[int] = []

    def counting(x: torch.Tensor, y: torch.Tensor) -> torch.nn.Module:
        trained.append(len(x))
        return head(x, y)

    built: list[str] = []

    def factory(net: torch.nn.Module) -> attributions.Attribution:
        built.append("fold" if net is not model else "model")
        return attributions.Saliency(net, progress=False)

    given = attributions.Saliency(model)(images, labels)
    options = {"mege": {"k": 3, "train_fn": counting}, "reco": {"k": 3, "train_fn": counting}}
    table = metrics.evaluate(
        model,
        images,
        labels,
        methods={"mine": factory, "saliency": "saliency"},
        metrics=["deletion", "mege", "reco"],
        metric_options={**options, "deletion": {"steps": 2}},
        maps={"mine": given},
        progress=False,
    )
    assert trained == [8, 8, 8]  # k fold models for both scores and both methods
    assert built == ["model", "fold", "fold", "fold"]  # built once to check it; maps given; 3 fold models
    report = metrics.AlgorithmicStability(model, images, labels, k=3, train_fn=head, progress=False).report(
        "saliency"
    )
    assert table.scores["saliency"]["mege"] == report.mege and table.scores["saliency"]["reco"] == report.reco
    assert table.scores["mine"]["mege"] == report.mege  # the same explanations, by factory


def test_evaluate_rejects_bad_input_before_any_work(tiny: VisionModel, tiny_images: torch.Tensor) -> None:
    def run(**changes: Any) -> metrics.Evaluation:
        arguments: dict[str, Any] = {"methods": ["saliency"], "metrics": ["deletion"], "progress": False}
        return metrics.evaluate(tiny, tiny_images, 0, **{**arguments, **changes})

    with pytest.raises(ValueError, match="unknown metric 'delition'"):
        run(metrics=["delition"])
    with pytest.raises(TypeError, match="deletion does not take option"):
        run(metric_options={"deletion": {"nb_samples": 3}})
    with pytest.raises(ValueError, match=r"metric_options name metrics that are not evaluated: \['mege'\]"):
        run(metric_options={"mege": {"k": 2}})
    with pytest.raises(ValueError, match="unknown attribution method 'salincy'"):
        run(methods=["salincy"])
    with pytest.raises(TypeError, match="does not take option"):
        run(method_options={"saliency": {"steps": 3}})
    with pytest.raises(ValueError, match=r"method_options name methods that are not evaluated: \['rise'\]"):
        run(method_options={"rise": {"nb_samples": 3}})
    with pytest.raises(TypeError, match="got a built Saliency"):
        run(methods={"saliency": attributions.Saliency(tiny)})
    with pytest.raises(ValueError, match="only applies to a method given by name"):
        run(methods={"mine": attributions.Saliency}, method_options={"mine": {"batch_size": 2}})
    with pytest.raises(TypeError, match="methods must be a list of registered method names"):
        run(methods="saliency")
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        metrics.evaluate("tiny", tiny_images, 0, methods=["saliency"])  # type: ignore[arg-type]
