"""The bad-input contract of :mod:`spyglass.featureviz`, driven by the registry of objectives.

Each registered objective's parameters get the malformed values of :data:`BAD_ARGUMENTS`
(keyed by parameter name, with one good value each in :data:`GOOD_ARGUMENTS`): a new objective
whose parameters are known is covered without a line; one with a new parameter fails
:func:`test_every_objective_parameter_is_known` until its good and bad values are written down.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spyglass import featureviz
from tests.bad_input.contract import accepts, refuses
from tests.tiny import tiny_model

OBJECTIVES = featureviz.list_objectives()

# Layer "2" of the tiny model is relu1: (N, 8, 32, 32).
GOOD_ARGUMENTS: dict[str, object] = {
    "class_id": 1,
    "layer": "2",
    "index": 3,
    "position": (4, 5),
    "vector": torch.linspace(0.1, 1.0, 8),
    "cosine_power": 2.0,
}
# Values refused when the objective is built (build) or when it meets the model (call).
BAD_ARGUMENTS: dict[str, list[object]] = {
    "class_id": [-1, 2.5, "1", True, None, 2**70],
    "layer": ["", 5, None],
    "index": [-1, 1.5, "3", True, None],
    "position": [(-1, 0), (1,), (1, 2, 3), "ab", (1.5, 2), 7],
    "vector": [
        torch.zeros(8),
        torch.full((8,), math.nan),
        torch.full((8,), math.inf),
        torch.ones(2, 4),
        torch.arange(8),
        [1.0] * 8,
    ],
    "cosine_power": [math.nan, math.inf, -1.0, "2", None],
}
# Values that build an objective the model cannot serve: refused on the first call.
BAD_FOR_THE_MODEL: dict[str, list[object]] = {
    "class_id": [5, 1000],
    "layer": ["no.such.layer"],
    "index": [8, 100],
    "position": [(40, 0), (0, 40)],
    "vector": [torch.ones(5)],
}


def _parameters(name: str) -> list[str]:
    factory = featureviz.objectives._OBJECTIVES[name]
    return list(inspect.signature(factory).parameters)


def _arguments(name: str, **changes: object) -> dict[str, object]:
    return {key: changes.get(key, GOOD_ARGUMENTS[key]) for key in _parameters(name)}


def test_the_registry_is_enumerated() -> None:
    assert {"logit", "channel", "neuron", "direction"} <= set(OBJECTIVES)


@pytest.mark.parametrize("name", OBJECTIVES)
def test_every_objective_parameter_is_known(name: str) -> None:
    unknown = [key for key in _parameters(name) if key not in GOOD_ARGUMENTS or key not in BAD_ARGUMENTS]
    assert not unknown, f"objective {name}: write good and bad values for {unknown}"


@pytest.mark.parametrize("name", OBJECTIVES)
def test_good_arguments_give_a_finite_score(name: str) -> None:
    model = tiny_model()
    objective = featureviz.create_objective(name, **_arguments(name))
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    score = accepts(f"featureviz.{name}", lambda: objective(model, images), model=model)
    assert isinstance(score, torch.Tensor) and score.shape == (2,)


@pytest.mark.parametrize("name", OBJECTIVES)
def test_malformed_arguments_are_refused(name: str) -> None:
    model = tiny_model()
    images = torch.rand(1, 3, 32, 32)
    for key in _parameters(name):
        for value in BAD_ARGUMENTS[key]:

            def build_and_call(key: str = key, value: object = value) -> object:
                objective = featureviz.create_objective(name, **_arguments(name, **{key: value}))
                return objective(model, images)

            refuses(f"featureviz.{name}", build_and_call, model=model)
        for value in BAD_FOR_THE_MODEL.get(key, []):
            objective = featureviz.create_objective(name, **_arguments(name, **{key: value}))
            refuses(f"featureviz.{name}", lambda objective=objective: objective(model, images), model=model)


@pytest.mark.parametrize("name", OBJECTIVES)
def test_malformed_images_and_models_are_refused(name: str) -> None:
    model = tiny_model()
    objective = featureviz.create_objective(name, **_arguments(name))
    for images in (
        torch.rand(3, 32, 32),
        torch.zeros(0, 3, 32, 32),
        torch.ones(1, 3, 32, 32).long(),
        "images",
    ):
        refuses(f"featureviz.{name}", lambda images=images: objective(model, images), model=model)  # type: ignore[arg-type]
    refuses(f"featureviz.{name}", lambda: objective("model", torch.rand(1, 3, 32, 32)))  # type: ignore[arg-type]


def test_unknown_objectives_are_refused() -> None:
    for name in ("logits", "", 5):
        refuses("featureviz.create_objective", lambda name=name: featureviz.create_objective(name, 1))  # type: ignore[arg-type]


BAD_RECIPE_OPTIONS: list[dict[str, object]] = [
    {"steps": 0},
    {"steps": 1.5},
    {"image_size": 8},
    {"image_size": "32"},
    {"nb_crops": 0},
    {"lr": math.nan},
    {"lr": math.inf},
    {"lr": 0.0},
    {"noise": -0.1},
    {"noise": math.nan},
    {"seed": -1},
    {"seed": 2**64},
    {"crop_size": (0.0, 0.5)},
    {"crop_size": (0.9, 0.5)},
    {"crop_size": (math.nan, 0.5)},
    {"crop_size": 0.5},
    {"progress": "no"},
]


def _ids(options: dict[str, object]) -> str:
    return ",".join(f"{key}={value!r}" for key, value in options.items())


@pytest.mark.parametrize("recipe", ["maco", "fourier"])
@pytest.mark.parametrize("options", BAD_RECIPE_OPTIONS, ids=_ids)
def test_recipes_refuse_bad_options(recipe: str, options: dict[str, Any]) -> None:
    model = tiny_model()
    run = getattr(featureviz, recipe)
    settings: dict[str, Any] = {"steps": 1, "image_size": 32, "nb_crops": 1, "progress": False, **options}
    refuses(f"featureviz.{recipe}", lambda: run(model, featureviz.logit(1), **settings), model=model)


@given(
    options=st.sampled_from(
        [{"decay_power": math.nan}, {"decay_power": math.inf}, {"decay_power": -1.0}, {"rotation": math.nan}]
    )
)
def test_fourier_refuses_bad_spectrum_options(options: dict[str, Any]) -> None:
    model = tiny_model()
    settings: dict[str, Any] = {"steps": 1, "image_size": 32, "nb_crops": 1, "progress": False, **options}
    refuses(
        "featureviz.fourier", lambda: featureviz.fourier(model, featureviz.logit(1), **settings), model=model
    )


@given(image_size=st.one_of(st.integers(max_value=0), st.floats(), st.just("64")))
def test_default_crop_size_refuses_what_is_no_image_size(image_size: object) -> None:
    # default_crop_size(0, …) used to raise ZeroDivisionError.
    refuses("featureviz.default_crop_size", lambda: featureviz.default_crop_size(image_size, (32, 32)))  # type: ignore[arg-type]


def test_a_non_finite_objective_is_refused_by_name() -> None:
    model = tiny_model()
    with torch.no_grad():
        model.network[-1].bias.fill_(math.inf)  # every logit infinite
    refuses(
        "featureviz.maco",
        lambda: featureviz.maco(
            model, featureviz.logit(1), steps=1, image_size=32, nb_crops=1, progress=False
        ),
        model=model,
        match="logit(1)",
    )
