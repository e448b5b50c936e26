"""The contract every registered attribution method keeps (STYLE.md), from the registry.

Each check is a function of a *factory* ``make(model, **options) -> method``, so that the
same checks run on every registered method (at its ``cheap`` settings, read from the
registry) and on a method that returns seeded noise: that one keeps every part of the
contract but the truth check, which is what the truth check is for.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

from spyglass import attributions
from spyglass.models import VisionModel
from tests.helpers import left_as_found, mixed_mode
from tests.tiny import block_mask, block_reader, tiny_images, tiny_model

METHODS = attributions.list_methods()
Factory = Callable[..., attributions.Attribution]

# The truth check's least share of a map's mass in the block the model reads (1/16 of the
# image, so a map of noise puts about 6 % there), per kind. The gradient of the block
# model is exactly zero outside the block, and so are its feature maps (CAM) and its
# rewritten backward pass (propagation): their maps have nothing outside it. A black-box
# method resolves the image no finer than its grid cells or windows (8 px at the cheap
# settings, the block's own size) and may smooth them (Sobol' upsamples its grid of
# indices bicubically, which spreads a cell's index half a cell around it).
# A verified method (EVA) scores exactly 0 on every region the model provably cannot read,
# and so does its hybrid mode (the cheap settings) on a model that zeroes those pixels.
TRUTH_SHARE = {"gradient": 0.95, "propagation": 0.95, "cam": 0.95, "black-box": 0.4, "verified": 0.95}


def registered(name: str) -> Factory:
    """Build the registered method ``name`` at its cheap settings (any option overrides them)."""

    def make(model: torch.nn.Module, **options: Any) -> attributions.Attribution:
        settings = attributions.method_settings(name, "cheap")
        return attributions.create(name, model, progress=False, **{**settings, **options})

    return make


def takes_seed(name: str) -> bool:
    return "seed" in inspect.signature(attributions.method_class(name).__init__).parameters


def takes_objective(name: str) -> bool:
    """EVA explains one fixed quantity (a bound of the logit margins), not a swappable objective."""
    return "objective" in inspect.signature(attributions.method_class(name).__init__).parameters


def failing_objective(model: torch.nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Runs the model (so that hooks and modes are in place), then fails."""
    model(x)
    raise RuntimeError("objective failed")


# --- the checks ------------------------------------------------------------------------------


def check_shape_dtype_finite_and_not_constant(make: Factory) -> None:
    maps = make(tiny_model())(tiny_images(), torch.tensor([0, 1, 2, 3, 4]))
    assert maps.shape == (5, 32, 32) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all()
    assert float(maps.std()) > 0, "a constant map explains nothing"


def check_batch_size_invariance(make: Factory) -> None:
    model, images = tiny_model(), tiny_images()
    one = make(model, batch_size=1)(images, 3)
    many = make(model, batch_size=64)(images, 3)
    torch.testing.assert_close(one, many, rtol=1e-4, atol=1e-5)


def check_seed_determinism(make: Factory) -> None:
    model, images = tiny_model(), tiny_images()
    first = make(model, seed=3)(images, 1)
    torch.testing.assert_close(make(model, seed=3)(images, 1), first)
    assert not torch.equal(make(model, seed=4)(images, 1), first)


def check_model_left_as_found(make: Factory, *, objective: bool = True) -> None:
    """After a call, after bad input, and after an objective that fails half-way through.

    A method that takes no ``objective`` tests its own failure half-way in its own tests.
    """
    model, images = mixed_mode(tiny_model()), tiny_images(2)
    with left_as_found(model):
        make(model)(images, 0)
        with pytest.raises(ValueError, match="divide by 255"):
            make(model)(images * 255, 0)
        if objective:
            with pytest.raises(RuntimeError, match="objective failed"):
                make(model, objective=failing_objective)(images, 0)
        make(model)(images, 1)  # and it still works


def check_bad_input_is_reported(make: Factory) -> None:
    method, images = make(tiny_model()), tiny_images()
    with pytest.raises(ValueError, match="add a batch dimension"):
        method(images[0], 0)
    with pytest.raises(ValueError, match="divide by 255"):
        method(images * 255, 0)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 4\]"):
        method(images, 7)
    with pytest.raises(ValueError, match="targets must be"):
        method(images, torch.tensor([0, 1]))


def block_shares(maps: Tensor) -> tuple[Tensor, Tensor]:
    """Per map: the share of its mass in the block, and whether its peak lies in the block.

    The mass is that of ``|map − median(map)|``: the median is a value from outside the
    block (which covers 1/16 of the image), so a constant offset, such as the mean score
    a black-box estimator carries everywhere or the positive bias of an HSIC estimate,
    counts for nothing, and a block that stands out below the rest counts as well as one
    that stands out above.
    """
    inside = block_mask(maps.shape[-1]).flatten()
    deviation = (maps.flatten(1) - maps.flatten(1).median(dim=1, keepdim=True).values).abs()
    total = deviation.sum(dim=1)
    share = torch.where(total > 0, deviation[:, inside].sum(dim=1) / total.clamp_min(1e-30), 0.0)
    return share, inside[deviation.argmax(dim=1)]


def check_truth(make: Factory, kind: str) -> None:
    """On a model that reads one block only, the map's mass must lie in that block."""
    maps = make(block_reader())(tiny_images(), torch.tensor([0, 1, 2, 3, 4]))
    share, peak_inside = block_shares(maps)
    assert bool(peak_inside.all()), f"the map's peak lies outside the block the model reads: {peak_inside}"
    least = TRUTH_SHARE[kind]
    assert bool((share >= least).all()), (
        f"the block the model reads holds {share.min():.1%} of the map's mass, under the {least:.0%} "
        f"a {kind} method must put there (all maps: {[round(float(s), 3) for s in share]})"
    )


# --- the registry walk -----------------------------------------------------------------------


def test_registry_is_complete_and_importable_by_name() -> None:
    for name in METHODS:
        cls = attributions.method_class(name)
        assert getattr(attributions, cls.__name__) is cls
        assert cls.name == name
        assert cls.__doc__ and ">>>" in cls.__doc__, f"{name} docstring needs a runnable example"


@pytest.mark.parametrize("name", METHODS)
def test_class_data_is_valid(name: str) -> None:
    cls = attributions.method_class(name)
    assert cls.kind in attributions.KINDS
    assert name in attributions.list_methods(kind=cls.kind)
    for level in attributions.SETTINGS_LEVELS:
        settings = attributions.method_settings(name, level)
        attributions.create(name, tiny_model(), **settings)  # the constructor takes them
    assert attributions.method_settings(name, "default") == {}
    # A copy: a tool that edits its settings does not edit the method's.
    attributions.method_settings(name, "cheap")["batch_size"] = 1
    assert "batch_size" not in attributions.method_settings(name, "cheap")


@pytest.mark.parametrize("name", METHODS)
def test_shape_dtype_finite_and_not_constant(name: str) -> None:
    check_shape_dtype_finite_and_not_constant(registered(name))


@pytest.mark.parametrize("name", METHODS)
def test_batch_size_invariance(name: str) -> None:
    check_batch_size_invariance(registered(name))


@pytest.mark.parametrize("name", [n for n in METHODS if takes_seed(n)])
def test_seed_determinism(name: str) -> None:
    check_seed_determinism(registered(name))


@pytest.mark.parametrize("name", METHODS)
def test_model_left_as_found(name: str) -> None:
    check_model_left_as_found(registered(name), objective=takes_objective(name))


@pytest.mark.parametrize("name", METHODS)
def test_bad_input_is_reported(name: str) -> None:
    check_bad_input_is_reported(registered(name))


@pytest.mark.parametrize("name", METHODS)
def test_truth_the_map_lies_where_the_model_reads(name: str) -> None:
    cls = attributions.method_class(name)
    if cls.truth_check_exempt:
        pytest.skip(f"{name} is exempt from the truth check: {cls.truth_check_exempt}")
    check_truth(registered(name), cls.kind)


def test_create_reports_unknown_names_and_options(tiny: VisionModel) -> None:
    with pytest.raises(ValueError, match="Did you mean saliency"):
        attributions.create("salincy", tiny)
    with pytest.raises(TypeError, match=r"does not take option\(s\) \['stpes'\]"):
        attributions.create("integrated_gradients", tiny, stpes=3)
    with pytest.raises(ValueError, match="positive int"):
        attributions.create("saliency", tiny, batch_size=0)


def test_registry_queries_report_unknown_kinds_and_levels() -> None:
    assert set(attributions.list_methods()) == {
        name for kind in attributions.KINDS for name in attributions.list_methods(kind=kind)
    }
    with pytest.raises(
        ValueError, match="kind must be one of gradient, propagation, cam, black-box, verified"
    ):
        attributions.list_methods(kind="perturbation")
    with pytest.raises(ValueError, match="level must be one of cheap, quick, demo, default; got 'fast'"):
        attributions.method_settings("saliency", "fast")


# --- the checks catch what they are for ------------------------------------------------------


class NoiseMaps(attributions.Attribution):
    """Seeded uniform noise, one map per image: shaped, finite, seeded, and explains nothing."""

    kind = "black-box"

    def __init__(self, model: torch.nn.Module, *, seed: int = 0, **options: Any) -> None:
        super().__init__(model, **options)
        self.seed = seed

    def explain(self, images: Tensor, targets: Tensor) -> Tensor:
        generator = torch.Generator().manual_seed(self.seed)
        self.objective(self.model, images, targets)  # it even consults the model
        return torch.rand(images.shape[0], *images.shape[2:], generator=generator)


def test_a_method_returning_noise_keeps_the_contract_but_fails_the_truth_check() -> None:
    def make(model: torch.nn.Module, **options: Any) -> attributions.Attribution:
        return NoiseMaps(model, **{"progress": False, **options})

    # What the registry walk checked before the truth check: noise passes all of it.
    check_shape_dtype_finite_and_not_constant(make)
    check_batch_size_invariance(make)
    check_seed_determinism(make)
    check_model_left_as_found(make)
    check_bad_input_is_reported(make)
    for kind in attributions.KINDS:  # even at the most lenient share
        with pytest.raises(AssertionError, match=r"outside the block|holds"):
            check_truth(make, kind)


def test_a_transposed_map_fails_the_truth_check() -> None:
    def make(model: torch.nn.Module, **options: Any) -> attributions.Attribution:
        saliency = attributions.Saliency(model, progress=False, **options)

        class Transposed(attributions.Attribution):
            kind = "gradient"

            def explain(self, images: Tensor, targets: Tensor) -> Tensor:
                return saliency(images, targets).transpose(1, 2)

        return Transposed(model)

    check_truth(registered("saliency"), "gradient")  # the same method, untransposed, passes
    with pytest.raises(AssertionError, match="outside the block"):
        check_truth(make, "gradient")


def test_registration_checks_the_class_data() -> None:
    class NoKind(attributions.Attribution):
        def explain(self, images: Tensor, targets: Tensor) -> Tensor:
            return images.mean(dim=1)

    with pytest.raises(TypeError, match=r"must declare its kind.*got ''"):
        attributions.register("no_kind")(NoKind)

    class Misspelt(attributions.Attribution):
        kind = "gradient"
        settings = attributions.levels(cheap={"stpes": 3})

        def explain(self, images: Tensor, targets: Tensor) -> Tensor:
            return images.mean(dim=1)

    with pytest.raises(TypeError, match=r"misspelt \(cheap settings\) does not take option\(s\) \['stpes'\]"):
        attributions.register("misspelt")(Misspelt)

    class UnknownLevel(attributions.Attribution):
        kind = "gradient"
        settings = {"default": {}}  # noqa: RUF012  # a plain dict, as a careless method might write

        def explain(self, images: Tensor, targets: Tensor) -> Tensor:
            return images.mean(dim=1)

    with pytest.raises(TypeError, match="level 'default'"):
        attributions.register("unknown_level")(UnknownLevel)
    assert not {"no_kind", "misspelt", "unknown_level"} & set(attributions.list_methods())
    with pytest.raises(TypeError, match="unexpected keyword argument 'fast'"):
        attributions.levels(fast={"steps": 2})  # type: ignore[call-arg]
