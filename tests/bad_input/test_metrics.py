"""The bad-input contract of every registered metric, of :func:`evaluate` and of the statistics.

Driven by :func:`spyglass.metrics.list_metrics`: every metric is built on the 32 px tiny
model with malformed images, targets and options (refused at construction, before any
work); metrics of maps are called on malformed and on flat maps, metrics of a method on
malformed methods and on methods whose maps are flat (nothing to measure: an error, never a
NaN score). MeGe and ReCo retrain a model per fold, so only their construction is fuzzed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from spyglass import attributions, metrics
from tests import tiny
from tests.bad_input.contract import accepts, refuses
from tests.bad_input.strategies import (
    IMAGE_CASES,
    TARGET_CASES,
    ConstantLogits,
    bad_option_values,
    constructor_defaults,
    images_of,
)

METRICS = metrics.list_metrics()
# Options that keep a metric to a few forward passes on the tiny model.
CHEAP: dict[str, dict[str, Any]] = {
    "deletion": {"steps": 4},
    "insertion": {"steps": 4},
    "mufidelity": {"grid_size": 4, "nb_samples": 4},
    "stability": {"nb_samples": 2},
    "randomization": {},
    "mege": {"k": 2},
    "reco": {"k": 2},
}
RETRAINING = {"mege", "reco"}  # a call trains k models: construction only


def test_the_registry_enumerates_both_kinds() -> None:
    assert {"deletion", "insertion", "mufidelity"} <= set(metrics.list_metrics("maps"))
    assert {"stability", "randomization", "mege", "reco"} <= set(metrics.list_metrics("method"))
    assert set(CHEAP) == set(METRICS), "a new metric needs its cheap options here"


def build(name: str, model: nn.Module, images: object, targets: object, **options: Any) -> metrics.Metric:
    return metrics.create(name, model, images, targets, **{**CHEAP[name], "progress": False, **options})  # type: ignore[arg-type]


def run(metric: metrics.Metric, images: torch.Tensor) -> float:
    """One call of a built metric on valid input: saliency (or its maps)."""
    if isinstance(metric, metrics.MapMetric):
        return metric(attributions.create("saliency", metric.model, progress=False)(images, metric.targets))
    assert isinstance(metric, metrics.MethodMetric)
    return metric("saliency")


def _targets(n: int) -> torch.Tensor:
    return torch.arange(n) % 5  # MeGe/ReCo read them as true labels: a tensor, one per image


@pytest.mark.parametrize("case", IMAGE_CASES)
@pytest.mark.parametrize("name", METRICS)
@given(data=st.data())
def test_malformed_images_are_refused(name: str, case: str, data: st.DataObject) -> None:
    model = tiny.tiny_model()
    images = IMAGE_CASES[case](data.draw)
    refuses(
        f"metrics.{name}", lambda: build(name, model, images, torch.tensor([0])), model=model, match="images"
    )


@pytest.mark.parametrize("case", TARGET_CASES)
@pytest.mark.parametrize("name", METRICS)
@given(data=st.data())
def test_malformed_targets_are_refused(name: str, case: str, data: st.DataObject) -> None:
    model = tiny.tiny_model()
    images = images_of(data.draw)
    targets = TARGET_CASES[case](data.draw)
    refuses(f"metrics.{name}", lambda: build(name, model, images, targets), model=model, match="targets")


def _option_cases() -> list[tuple[str, str, object]]:
    cases = []
    for name in METRICS:
        for option, default in constructor_defaults(metrics.metric_class(name)).items():
            values = [3, "not a function"] if option == "train_fn" else bad_option_values(option, default)
            cases += [(name, option, value) for value in values]
        cases.append((name, "no_such_option", 1))
    return cases


OPTION_CASES = _option_cases()


@pytest.mark.parametrize(
    ("name", "option", "value"), OPTION_CASES, ids=[f"{n}-{o}={v!r}" for n, o, v in OPTION_CASES]
)
def test_malformed_options_are_refused(name: str, option: str, value: object) -> None:
    model = tiny.tiny_model()
    images = tiny.tiny_images(4)

    def call() -> object:
        metric = build(name, model, images, _targets(4), **{option: value})
        return metric if name in RETRAINING else run(metric, images)

    refuses(
        f"metrics.{name}", call, model=model, match=option if option != "no_such_option" else "does not take"
    )


MAP_CASES: dict[str, Any] = {
    "NaN": lambda maps: maps.index_put_((torch.tensor([0]),), torch.tensor(math.nan)),
    "wrong shape": lambda maps: maps[:, :-1],
    "with channels": lambda maps: maps[:, None].expand(-1, 3, -1, -1),
    "integer": lambda maps: maps.long(),
    "numpy": lambda maps: maps.numpy(),
    "one map short": lambda maps: maps[1:],
}


@pytest.mark.parametrize("case", MAP_CASES)
@pytest.mark.parametrize("name", metrics.list_metrics("maps"))
def test_malformed_maps_are_refused(name: str, case: str) -> None:
    model = tiny.tiny_model()
    images = tiny.tiny_images(2)
    metric = build(name, model, images, 1)
    maps = MAP_CASES[case](torch.rand(2, 32, 32))
    refuses(f"metrics.{name}", lambda: metric(maps), model=model, match="maps")


@pytest.mark.parametrize("method", [3, "no_such_method", None])
@pytest.mark.parametrize("name", sorted(set(metrics.list_metrics("method")) - RETRAINING))
def test_malformed_methods_are_refused(name: str, method: object) -> None:
    model = tiny.tiny_model()
    metric = build(name, model, tiny.tiny_images(2), 1)
    refuses(f"metrics.{name}", lambda: metric(method), model=model, match="method")  # type: ignore[arg-type]


def _flat(model: nn.Module) -> Any:
    return lambda images, targets: torch.ones(images.shape[0], *images.shape[2:])


@pytest.mark.parametrize("name", [*metrics.list_metrics("maps"), "stability", "randomization"])
def test_flat_maps_have_nothing_to_measure(name: str) -> None:
    model = tiny.tiny_model()
    images = tiny.tiny_images(2)
    metric = build(name, model, images, 1)
    if name in ("deletion", "insertion"):  # a flat map still orders the pixels (by position): measurable
        accepts(f"metrics.{name}", lambda: metric(torch.ones(2, 32, 32)), model=model)
        return
    call = (lambda: metric(torch.ones(2, 32, 32))) if name == "mufidelity" else (lambda: metric(_flat))
    refuses(f"metrics.{name}", call, model=model, match="nothing to measure")


@pytest.mark.parametrize("case", ["NaN logits", "5 outputs, target 9"])
@pytest.mark.parametrize("name", sorted(set(METRICS) - RETRAINING))
def test_malformed_models_are_refused(name: str, case: str) -> None:
    network = tiny.tiny_model().network
    model = ConstantLogits(network, math.nan) if case == "NaN logits" else network
    model.eval()
    images = tiny.tiny_images(2)
    target = 9 if case.endswith("9") else 1
    refuses(
        f"metrics.{name}",
        lambda: run(build(name, model, images, target), images),
        model=model,
        match="objective" if case == "NaN logits" else "targets",
    )


@pytest.mark.parametrize("name", sorted(set(METRICS) - RETRAINING))
def test_float64_images_are_measured_in_the_models_dtype(name: str) -> None:
    model = tiny.tiny_model()
    images = tiny.tiny_images(2)
    value = accepts(
        f"metrics.{name}", lambda: run(build(name, model, images.double(), 1), images), model=model
    )
    assert isinstance(value, float)


# --- evaluate ----------------------------------------------------------------------------

EVALUATE_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "methods a string": ({"methods": "saliency"}, "methods"),
    "methods with a number": ({"methods": ["saliency", 3]}, "methods"),
    "methods a typo": ({"methods": ["saliancy"]}, "saliency"),
    "methods empty": ({"methods": []}, "methods"),
    "metrics a string": ({"metrics": "deletion"}, "metrics"),
    "metrics a typo": ({"metrics": ["deletoin"]}, "deletion"),
    "metric_options a list": ({"metric_options": [("deletion", {})]}, "metric_options"),
    "metric_options of a metric not chosen": ({"metric_options": {"insertion": {"steps": 4}}}, "insertion"),
    "metric_options not a mapping inside": ({"metric_options": {"deletion": 4}}, "metric_options"),
    "maps of a typo": ({"maps": {"saliancy": torch.rand(2, 32, 32)}}, "saliancy"),
    "maps a tensor": ({"maps": torch.rand(2, 32, 32)}, "maps"),
    "method_options of a method not chosen": ({"method_options": {"rise": {}}}, "rise"),
}


@pytest.mark.parametrize("case", EVALUATE_CASES)
def test_malformed_evaluate_calls_are_refused(case: str) -> None:
    model = tiny.tiny_model()
    changes, fragment = EVALUATE_CASES[case]
    arguments: dict[str, Any] = {"methods": ["saliency"], "metrics": ["deletion"], "progress": False}
    arguments |= {"metric_options": {"deletion": {"steps": 4}}} if "metric_options" not in changes else {}
    arguments |= changes
    refuses(
        "metrics.evaluate",
        lambda: metrics.evaluate(model, tiny.tiny_images(2), 1, **arguments),
        model=model,
        match=fragment,
    )


# --- the statistics ------------------------------------------------------------------------

STATS_CASES: dict[str, tuple[Any, str]] = {
    "auc of numpy": (lambda: metrics.auc(np.ones((2, 3))), "curves"),
    "auc of one point": (lambda: metrics.auc(torch.ones(2, 1)), "curves"),
    "auc of 1-d": (lambda: metrics.auc(torch.ones(4)), "curves"),
    "spearman of mismatched rows": (
        lambda: metrics.spearman_rows(torch.rand(2, 5), torch.rand(2, 4)),
        "shape",
    ),
    "spearman of 1-d": (lambda: metrics.spearman_rows(torch.rand(5), torch.rand(5)), "shape"),
    "pearson of lists": (lambda: metrics.pearson_rows([[1.0, 2.0]], [[1.0, 2.0]]), "list"),  # type: ignore[arg-type]
    "youden of lists": (lambda: metrics.youden_index([0.1, 0.2], [0.5]), "negatives"),  # type: ignore[arg-type]
    "youden of NaN": (lambda: metrics.youden_index(torch.tensor([math.nan]), torch.tensor([1.0])), "finite"),
}


@pytest.mark.parametrize("case", STATS_CASES)
def test_malformed_statistics_are_refused(case: str) -> None:
    call, fragment = STATS_CASES[case]
    refuses(f"metrics.{case.split()[0]}", call, match=fragment)


@pytest.mark.parametrize("name", sorted(RETRAINING))
def test_the_retraining_metrics_build_on_valid_input(name: str) -> None:
    # Their refusals above are only meaningful if a valid construction succeeds.
    model = tiny.tiny_model()
    assert isinstance(build(name, model, tiny.tiny_images(4), _targets(4)), metrics.MethodMetric)
