"""The bad-input contract of the engines, the objectives and the sampling designs.

The engines are public (methods of other families are built on them): malformed inputs,
targets and objectives are refused with a sentence, and the notebook grad blocks work.
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

from spyglass import engines, objectives, sampling
from spyglass.engines import UpsampledMasks, inpainting
from tests import tiny
from tests.bad_input.contract import accepts, refuses
from tests.bad_input.strategies import ConstantLogits, PooledLogits, ScalarOutput

OBJECTIVES = [objectives.target_logit, objectives.target_probability, objectives.target_log_probability]


def _masks() -> UpsampledMasks:
    return UpsampledMasks(1 - torch.eye(4).view(4, 2, 2), (32, 32))


def _engines(objective: Any) -> dict[str, Any]:
    """Each engine called with ``objective`` on the model, images and targets given later."""
    return {
        "input_gradients": lambda m, x, y: engines.input_gradients(m, x, y, objective=objective),
        "batched_gradients": lambda m, x, y: engines.batched_gradients(
            m, x, y, objective=objective, batch_size=2, progress=False
        ),
        "perturbation_scores": lambda m, x, y: engines.perturbation_scores(
            m, x, y, _masks(), perturbation=inpainting(0.5), objective=objective, batch_size=3, progress=False
        ),
    }


ENGINES = list(_engines(objectives.target_logit))


def test_the_objectives_and_engines_enumerated_are_all_public() -> None:
    assert {o.__name__ for o in OBJECTIVES} == {n for n in objectives.__all__ if n.startswith("target_")}
    assert set(ENGINES) <= set(engines.__all__)


MODELS: dict[str, tuple[Any, Any, str]] = {
    "returns (N,)": (lambda: ScalarOutput(tiny.tiny_model().network), 0, "(N, classes)"),
    "returns (N, C, 1, 1)": (lambda: PooledLogits(tiny.tiny_model().network), 0, "Flatten"),
    "5 outputs, target 9": (lambda: tiny.tiny_model().network, 9, "targets must lie in [0, 4]"),
    "5 outputs, target -1": (lambda: tiny.tiny_model().network, -1, "targets must lie in [0, 4]"),
    "NaN logits": (lambda: ConstantLogits(tiny.tiny_model().network, math.nan), 0, "NaN or infinite score"),
}


@pytest.mark.parametrize("case", MODELS)
@pytest.mark.parametrize("objective", OBJECTIVES, ids=lambda o: o.__name__)
@pytest.mark.parametrize("engine", ENGINES)
def test_models_that_do_not_return_logits_get_a_sentence(engine: str, objective: Any, case: str) -> None:
    factory, target, fragment = MODELS[case]
    model = factory().eval()
    images, targets = tiny.tiny_images(2), torch.full((2,), target)
    if case == "NaN logits" and objective is objectives.target_probability:
        fragment = "NaN or infinite score"  # softmax of NaN is NaN too
    refuses(
        f"engines.{engine}",
        lambda: _engines(objective)[engine](model, images, targets),
        model=model,
        match=fragment,
    )


def _nan(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return objectives.target_logit(model, images, targets) * math.nan


def _pair(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return model(images)[:, :2]


def _integers(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return targets


def _numpy(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    return np.zeros(images.shape[0])


BAD_OBJECTIVES = {"NaN": (_nan, "_nan"), "(N, 2)": (_pair, "_pair"), "ints": (_integers, "_integers")}
BAD_OBJECTIVES["numpy"] = (_numpy, "_numpy")


@pytest.mark.parametrize("case", BAD_OBJECTIVES)
@pytest.mark.parametrize("engine", ENGINES)
def test_a_bad_objective_is_named(engine: str, case: str) -> None:
    model = tiny.tiny_model()
    objective, name = BAD_OBJECTIVES[case]
    refuses(
        f"engines.{engine}",
        lambda: _engines(objective)[engine](model, tiny.tiny_images(2), torch.tensor([0, 1])),
        model=model,
        match=name,
    )


@pytest.mark.parametrize("block", ["no_grad", "inference_mode"])
@pytest.mark.parametrize("engine", ENGINES)
def test_engines_work_inside_a_notebooks_grad_blocks(engine: str, block: str) -> None:
    model = tiny.tiny_model()
    images, targets = tiny.tiny_images(2), torch.tensor([0, 3])
    call = _engines(objectives.target_logit)[engine]
    expected = call(model, images, targets)

    def inside() -> torch.Tensor:
        with torch.no_grad() if block == "no_grad" else torch.inference_mode():
            result: torch.Tensor = call(model, images.clone(), targets.clone())
            return result.clone()

    torch.testing.assert_close(accepts(f"engines.{engine}", inside, model=model), expected)


def test_a_model_built_inside_inference_mode_is_refused_with_the_reason() -> None:
    with torch.inference_mode():
        model = tiny.tiny_model()
        images = tiny.tiny_images(2)
        refuses(
            "engines.input_gradients",
            lambda: engines.input_gradients(model, images, torch.tensor([0, 1])),
            model=model,
            match="inference_mode",
        )


# --- the sampling designs ---------------------------------------------------------------------

SAMPLING_CASES: dict[str, tuple[Any, str]] = {
    "sampler unknown": (lambda draw: sampling.sample("nope", 8, 2), "sampler"),
    "nb_design zero": (lambda draw: sampling.sample("sobol", 0, 2), "nb_design"),
    "nb_design float": (lambda draw: sampling.sample("sobol", 8.0, 2), "nb_design"),
    "nb_dims negative": (lambda draw: sampling.sample("sobol", 8, draw(st.integers(-9, 0))), "nb_dims"),
    "seed huge": (lambda draw: sampling.sample("sobol", 8, 2, seed=draw(st.integers(2**32, 2**70))), "seed"),
    "seed negative": (lambda draw: sampling.sample("lhs", 8, 2, seed=-1), "seed"),
    "estimator unknown": (
        lambda draw: sampling.total_order_indices(torch.rand(16), 2, 4, estimator="nope"),
        "estimator",
    ),
    "scores of the wrong length": (
        lambda draw: sampling.total_order_indices(torch.rand(draw(st.integers(1, 15))), 2, 4),
        "scores",
    ),
    "NaN scores": (
        lambda draw: sampling.total_order_indices(torch.full((16,), math.nan), 2, 4),
        "scores",
    ),
    "numpy scores": (lambda draw: sampling.total_order_indices(np.zeros(16), 2, 4), "scores"),
}


@pytest.mark.parametrize("case", SAMPLING_CASES)
@given(data=st.data())
def test_malformed_designs_are_refused(case: str, data: st.DataObject) -> None:
    call, fragment = SAMPLING_CASES[case]
    refuses(f"sampling.{case.split()[0]}", lambda: call(data.draw), match=fragment)


PERTURBATION_CASES: dict[str, tuple[Any, str]] = {
    "inpainting NaN": (lambda: inpainting(math.nan), "inpainting value"),
    "inpainting 5": (lambda: inpainting(5.0), "inpainting value"),
    "inpainting a str": (lambda: inpainting("grey"), "inpainting value"),  # type: ignore[arg-type]
    "inpainting a NaN tensor": (lambda: inpainting(torch.tensor([0.5, math.nan, 0.5])), "inpainting value"),
    "inpainting 4 channels": (lambda: inpainting(torch.full((4,), 0.5)), "inpainting value"),
    "blurring inf": (lambda: engines.blurring(math.inf), "blurring sigma"),
    "blurring NaN": (lambda: engines.blurring(math.nan), "blurring sigma"),
    "amplitude NaN": (lambda: engines.amplitude(math.nan), "amplitude sigma"),
    "amplitude negative": (lambda: engines.amplitude(-2.0), "amplitude sigma"),
}


@pytest.mark.parametrize("case", PERTURBATION_CASES)
def test_malformed_perturbations_are_refused(case: str) -> None:
    call, fragment = PERTURBATION_CASES[case]
    refuses(f"engines.{case.split()[0]}", call, match=fragment)
