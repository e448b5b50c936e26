"""The bad-input contract of every registered attribution method, driven by the registry.

For each name of :func:`spyglass.attributions.list_methods` (at its cheap settings, on the
32 px tiny model): every way of getting the images, the targets, each option and the
model wrong is refused cleanly (tests/bad_input/contract.py), and the documented-valid
unusual calls (float64 images, calls inside ``torch.no_grad``/``torch.inference_mode``)
return finite maps. A method registered later is covered without a line here.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from spyglass import attributions
from spyglass.objectives import target_logit
from tests import tiny
from tests.bad_input.contract import accepts, refuses
from tests.bad_input.strategies import (
    IMAGE_CASES,
    TARGET_CASES,
    ConstantLogits,
    PooledLogits,
    ScalarOutput,
    bad_option_values,
    constructor_defaults,
    images_of,
)

METHODS = attributions.list_methods()


def test_the_registry_enumerates_every_family() -> None:
    # If the enumeration broke (an import order, a registry reset), every parametrised test
    # below would cover nothing and pass: name the families it must at least hold.
    assert len(METHODS) >= 16
    assert {"saliency", "integrated_gradients", "smoothgrad", "gradcam", "guided_backprop"} <= set(METHODS)
    assert {"occlusion", "rise", "sobol", "hsic", "lime", "kernel_shap"} <= set(METHODS)
    for kind in attributions.KINDS:
        assert attributions.list_methods(kind=kind), f"no registered method of kind {kind!r}"


def build(name: str, model: nn.Module, **options: Any) -> attributions.Attribution:
    settings = {**attributions.method_settings(name, "cheap"), "progress": False, **options}
    return attributions.create(name, model, **settings)


_BUILT: dict[str, tuple[nn.Module, attributions.Attribution]] = {}


def built(name: str) -> tuple[nn.Module, attributions.Attribution]:
    """One tiny model and method per name for the whole session: every refusal must leave both
    as found, so reusing them across examples is itself a check (and saves the constructions)."""
    if name not in _BUILT:
        model = tiny.tiny_model()
        _BUILT[name] = (model, build(name, model))
    return _BUILT[name]


@pytest.mark.parametrize("case", IMAGE_CASES)
@pytest.mark.parametrize("name", METHODS)
@given(data=st.data())
def test_malformed_images_are_refused(name: str, case: str, data: st.DataObject) -> None:
    model, method = built(name)
    images = IMAGE_CASES[case](data.draw)
    refuses(f"attributions.{name}", lambda: method(images, 0), model=model, match="images")


@pytest.mark.parametrize("case", TARGET_CASES)
@pytest.mark.parametrize("name", METHODS)
@given(data=st.data())
def test_malformed_targets_are_refused(name: str, case: str, data: st.DataObject) -> None:
    model, method = built(name)
    images = images_of(data.draw)
    targets = TARGET_CASES[case](data.draw)
    refuses(f"attributions.{name}", lambda: method(images, targets), model=model, match="targets")


def _option_cases() -> list[tuple[str, str, object]]:
    cases = []
    for name in METHODS:
        cls = attributions.method_class(name)
        for option, default in constructor_defaults(cls).items():
            cases += [(name, option, value) for value in bad_option_values(option, default, kind=cls.kind)]
        cases.append((name, "no_such_option", 1))
    return cases


OPTION_CASES = _option_cases()


def test_every_method_has_malformed_options_to_try() -> None:
    # batch_size, progress, objective at least: a method whose options the enumeration
    # missed would be tested for none of them.
    for name in METHODS:
        options = {option for method, option, _ in OPTION_CASES if method == name}
        assert {"batch_size", "progress", "objective", "no_such_option"} <= options, name


@pytest.mark.parametrize(
    ("name", "option", "value"), OPTION_CASES, ids=[f"{n}-{o}={v!r}" for n, o, v in OPTION_CASES]
)
def test_malformed_options_are_refused(name: str, option: str, value: object) -> None:
    model = tiny.tiny_model()
    images = tiny.tiny_images(2)
    refuses(
        f"attributions.{name}",
        lambda: build(name, model, **{option: value})(images, 1),
        model=model,
        match=option if option != "no_such_option" else "does not take",
    )


def _network() -> nn.Module:
    return tiny.tiny_model().network


def _nan_objective(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return target_logit(model, images, targets) * math.nan


MODEL_CASES: dict[str, tuple[Any, Any, str]] = {
    # (model factory, target, what the message must name)
    "returns (N,)": (lambda: ScalarOutput(_network()), 0, "logits"),
    "returns (N, C, 1, 1)": (lambda: PooledLogits(_network()), 0, "flatten"),
    "5 outputs, target 9": (_network, 9, "targets"),
    "NaN logits": (lambda: ConstantLogits(_network(), math.nan), 0, "objective"),
    "infinite logits": (lambda: ConstantLogits(_network(), math.inf), 0, "objective"),
}


@pytest.mark.parametrize("case", MODEL_CASES)
@pytest.mark.parametrize("name", METHODS)
def test_malformed_models_are_refused(name: str, case: str) -> None:
    factory, target, fragment = MODEL_CASES[case]
    if fragment == "objective" and not _takes_objective(name):
        fragment = "logits"  # no objective to name: the message says what the model returned
    model = factory().eval()
    images = tiny.tiny_images(2)
    refuses(f"attributions.{name}", lambda: build(name, model)(images, target), model=model, match=fragment)


def _takes_objective(name: str) -> bool:
    return "objective" in inspect.signature(attributions.method_class(name)).parameters


@pytest.mark.parametrize("name", [name for name in METHODS if _takes_objective(name)])
def test_an_objective_returning_nan_is_named(name: str) -> None:
    model = tiny.tiny_model()
    images = tiny.tiny_images(2)
    refuses(
        f"attributions.{name}",
        lambda: build(name, model, objective=_nan_objective)(images, 1),
        model=model,
        match="_nan_objective",
    )


# --- unusual but valid: finite maps --------------------------------------------------------


def _valid_targets(draw: Any) -> object:
    return draw(
        st.sampled_from(
            [1, np.int64(2), torch.tensor(3), torch.tensor([1], dtype=torch.int32), [4], torch.tensor([0])]
        )
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
@pytest.mark.parametrize("name", METHODS)
def test_other_float_dtypes_are_computed_in_the_models(name: str, dtype: torch.dtype) -> None:
    model, method = built(name)
    images = tiny.tiny_images(1)
    maps = accepts(f"attributions.{name}", lambda: method(images.to(dtype), 1), model=model)
    assert isinstance(maps, torch.Tensor) and maps.dtype == torch.float32
    if dtype == torch.float64:  # float32 values held exactly in float64: the same maps
        torch.testing.assert_close(maps, method(images, 1))


@pytest.mark.parametrize("block", ["no_grad", "inference_mode"])
@pytest.mark.parametrize("name", METHODS)
def test_calls_inside_a_notebooks_grad_blocks_work(name: str, block: str) -> None:
    model, method = built(name)
    images = tiny.tiny_images(1)
    expected = method(images, 1)
    context = torch.no_grad() if block == "no_grad" else torch.inference_mode()

    def call() -> torch.Tensor:
        with context:
            return method(images.clone(), 1)  # an inference tensor under inference_mode

    maps = accepts(f"attributions.{name}", call, model=model)
    assert isinstance(maps, torch.Tensor)
    torch.testing.assert_close(maps, expected)


@pytest.mark.parametrize("name", METHODS)
@given(data=st.data())
def test_every_valid_form_of_targets_is_accepted(name: str, data: st.DataObject) -> None:
    model, method = built(name)
    images = images_of(data.draw, n=1)
    targets = _valid_targets(data.draw)
    accepts(f"attributions.{name}", lambda: method(images, targets), model=model)
