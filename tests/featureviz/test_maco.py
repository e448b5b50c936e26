"""MACO and Fourier on a tiny model: the exact magnitude constraint, seeds, the model left as found."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from spyglass.featureviz import (
    FourierImage,
    MacoImage,
    Visualization,
    channel,
    default_crop_size,
    fourier,
    logit,
    maco,
    optimize,
    random_crops,
    spectrum,
)
from tests.helpers import left_as_found, mixed_mode
from tests.tiny import colour_model

CHEAP = {"steps": 3, "image_size": 32, "nb_crops": 2, "progress": False}


@pytest.mark.parametrize("size", [32, 45, 64])
def test_magnitude_constraint_holds_exactly_at_every_step(size: int) -> None:
    """|rfft2(pre-colour image)| equals the prescribed |M| after every update (odd sizes too)."""
    model = colour_model()
    image = MacoImage(size, generator=torch.Generator().manual_seed(1))
    prescribed = image.magnitude.clone()
    errors: list[float] = []

    def check(_step: int, current: nn.Module) -> None:
        assert isinstance(current, MacoImage)
        with torch.no_grad():
            amplitude = torch.fft.rfft2(current.pre_colour().double()).abs()
        errors.append(float(((amplitude - prescribed) / prescribed.max()).abs().max()))

    optimize(model, logit(2), image, steps=5, nb_crops=2, on_step=check, progress=False)
    assert len(errors) == 5 and max(errors) < 1e-5
    assert torch.equal(image.magnitude, prescribed)  # the template itself is never learned
    assert not image.phase.equal(MacoImage(size, generator=torch.Generator().manual_seed(1)).phase)


def test_natural_magnitude_is_symmetric_normalised_and_documented() -> None:
    magnitude = spectrum.natural_magnitude(64)
    assert magnitude.shape == (3, 64, 33) and magnitude[:, 0, 0].eq(0).all()
    mirror = torch.roll(torch.flip(magnitude, dims=[1]), 1, dims=1)
    torch.testing.assert_close(magnitude[:, :, [0, 32]], mirror[:, :, [0, 32]])
    # 1/f-like: the amplitude falls with frequency.
    assert float(magnitude[0, 1, 1]) > 5 * float(magnitude[0, 20, 20])
    with torch.no_grad():
        pre_colour = MacoImage(64).pre_colour()
    assert abs(float(pre_colour.std()) - 1) < 1e-3 and abs(float(pre_colour.mean())) < 1e-4
    info = spectrum.provenance()
    assert info["number_of_photos"] == 3925 and info["size"] == 160
    assert {"source", "date", "method", "script", "colour_correlation_sqrt"} <= set(info)
    assert spectrum.colour_correlation().shape == (3, 3)


def test_results_have_the_documented_shapes_and_ranges() -> None:
    model = colour_model()
    for recipe in (maco, fourier):
        result = recipe(model, logit(1), **CHEAP)
        assert isinstance(result, Visualization)
        assert result.image.shape == (3, 32, 32) and result.image.dtype == torch.float32
        assert float(result.image.min()) >= 0 and float(result.image.max()) <= 1
        assert result.transparency.shape == (32, 32)
        assert float(result.transparency.min()) >= 0 and float(result.transparency.max()) == 1.0
        assert result.history.shape == (3,) and torch.isfinite(result.history).all()


def test_optimisation_raises_the_objective() -> None:
    """On the tiny model, logit 1 is the mean green: a few steps make the image greener."""
    model = colour_model()
    result = maco(model, logit(1), steps=40, image_size=32, nb_crops=2, progress=False)
    assert float(result.history[-5:].mean()) > float(result.history[:3].mean()) + 0.05
    assert float(result.image[1].mean()) > float(result.image[0].mean())


def test_same_seed_same_image_other_seed_other_image() -> None:
    model = colour_model()
    first = maco(model, logit(1), seed=3, **CHEAP)
    again = maco(model, logit(1), seed=3, **CHEAP)
    other = maco(model, logit(1), seed=4, **CHEAP)
    assert torch.equal(first.image, again.image) and torch.equal(first.transparency, again.transparency)
    assert not torch.equal(first.image, other.image)
    torch.testing.assert_close(
        fourier(model, logit(1), seed=3, **CHEAP).image, fourier(model, logit(1), seed=3, **CHEAP).image
    )


def test_model_is_left_as_found() -> None:
    model = mixed_mode(colour_model())
    model.network.fc.weight.requires_grad_(False)
    for recipe in (maco, fourier):
        with left_as_found(model):  # modes, requires_grad, no .grad, no hooks, running statistics
            recipe(model, logit(1) + channel("conv", 0), **CHEAP)
    # BatchNorm ran in eval mode: its running statistics did not move.
    assert model.network.bn.running_mean.eq(0).all()


@pytest.mark.parametrize("recipe", [maco, fourier])
def test_model_is_left_as_found_when_a_step_fails(recipe: Callable[..., Visualization]) -> None:
    model = mixed_mode(colour_model())
    calls = []

    def fail_on_the_second_step(_module: nn.Module, _args: object, _output: object) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("step failed")

    handle = model.network.fc.register_forward_hook(fail_on_the_second_step)  # the user's own hook
    try:
        with left_as_found(model), pytest.raises(RuntimeError, match="step failed"):
            recipe(model, logit(1) + channel("conv", 0), **CHEAP)  # with the objective's hook in place
    finally:
        handle.remove()


def test_random_crops_are_seeded_inside_the_image_and_sized() -> None:
    image = torch.arange(64 * 64, dtype=torch.float32).view(1, 64, 64).expand(3, 64, 64) / 4096
    views = random_crops(
        image, 5, crop_size=(0.5, 0.5), output_size=(32, 32), generator=torch.Generator().manual_seed(0)
    )
    again = random_crops(
        image, 5, crop_size=(0.5, 0.5), output_size=(32, 32), generator=torch.Generator().manual_seed(0)
    )
    assert views.shape == (5, 3, 32, 32) and torch.equal(views, again)
    # A half-size crop at scale 1 of a ramp: values stay inside the image's own range, and each view
    # spans half the rows (32 rows × 64 / 4096 per row).
    assert float(views.min()) >= 0 and float(views.max()) <= 1
    span = views[:, 0, -1, 0] - views[:, 0, 0, 0]
    torch.testing.assert_close(span, torch.full((5,), 31 * 64 / 4096), atol=1e-4, rtol=0)
    assert default_crop_size(512, (224, 224)) == (224 / 512, 1.5 * 224 / 512)
    assert default_crop_size(256, (224, 224)) == (224 / 256, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"image_size": 8}, ValueError, "image_size must be an int >= 16"),
        ({"image_size": 64.0}, ValueError, "image_size must be an int >= 16"),
        ({"steps": 0}, ValueError, "steps must be a positive int"),
        ({"nb_crops": 0}, ValueError, "nb_crops must be a positive int"),
        ({"lr": -1.0}, ValueError, "lr must be a finite number > 0"),
        ({"noise": float("nan")}, ValueError, "noise must be a finite number >= 0"),
        ({"crop_size": (0.5, 0.2)}, ValueError, "crop_size must be None or"),
        ({"crop_size": (0.0, 0.5)}, ValueError, "crop_size must be None or"),
        ({"seed": -1}, ValueError, "seed must be a non-negative int below 2"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs: dict, error: type[Exception], message: str) -> None:
    settings = {**CHEAP, **kwargs}
    with pytest.raises(error, match=message):
        maco(colour_model(), logit(1), **settings)


def test_bad_model_objective_layer_or_channel_fail_before_any_step() -> None:
    model = mixed_mode(colour_model())
    with left_as_found(model):
        with pytest.raises(TypeError, match=r"model must be a spyglass\.models\.VisionModel"):
            maco(model.network, logit(1), **CHEAP)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"objective must be a spyglass\.featureviz objective"):
            maco(model, 1, **CHEAP)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"unknown layer 'blocks\.5'"):
            maco(model, channel("blocks.5", 0), **CHEAP)
        with pytest.raises(ValueError, match="channel index 7 is out of range for layer 'conv'"):
            fourier(model, channel("conv", 7), **CHEAP)
        with pytest.raises(ValueError, match="class_id 5 is out of range"):
            maco(model, logit(5), **CHEAP)
        with pytest.raises(ValueError, match="decay_power must be a finite number >= 0"):
            FourierImage(32, decay_power=-1)
    assert all(p.requires_grad for p in model.parameters())
