"""The contract every registered attribution method keeps (STYLE.md), from the registry."""

import inspect

import pytest
import torch

from spyglass import attributions
from spyglass.models import VisionModel
from tests.helpers import mixed_mode, module_flags

METHODS = attributions.list_methods()
# Cheap settings so that the whole registry runs in seconds on the tiny model.
FAST: dict[str, dict[str, object]] = {
    "integrated_gradients": {"steps": 8},
    "smoothgrad": {"nb_samples": 6},
    "vargrad": {"nb_samples": 6},
    "squaregrad": {"nb_samples": 6},
    "occlusion": {"patch": 8, "stride": 4},
    "rise": {"nb_samples": 64, "grid_size": 4},
    "sobol": {"grid_size": 4, "nb_design": 8},
    "hsic": {"grid_size": 4, "nb_design": 32},
    "lime": {"segmentation": "grid", "grid_size": 4, "nb_samples": 64},
    "kernel_shap": {"segmentation": "grid", "grid_size": 4, "nb_samples": 64},
}


def build(name: str, model: VisionModel, **options: object) -> attributions.Attribution:
    return attributions.create(name, model, progress=False, **{**FAST.get(name, {}), **options})


def takes_seed(name: str) -> bool:
    return "seed" in inspect.signature(attributions.method_class(name).__init__).parameters


def test_registry_is_complete_and_importable_by_name() -> None:
    for name in METHODS:
        cls = attributions.method_class(name)
        assert getattr(attributions, cls.__name__) is cls
        assert cls.name == name
        assert cls.__doc__ and ">>>" in cls.__doc__, f"{name} docstring needs a runnable example"


@pytest.mark.parametrize("name", METHODS)
def test_shape_dtype_finite_and_not_constant(name: str, tiny: VisionModel, tiny_images: torch.Tensor) -> None:
    maps = build(name, tiny)(tiny_images, torch.tensor([0, 1, 2, 3, 4]))
    assert maps.shape == (5, 32, 32) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all()
    assert float(maps.std()) > 0, "a constant map explains nothing"


@pytest.mark.parametrize("name", METHODS)
def test_batch_size_invariance(name: str, tiny: VisionModel, tiny_images: torch.Tensor) -> None:
    one = build(name, tiny, batch_size=1)(tiny_images, 3)
    many = build(name, tiny, batch_size=64)(tiny_images, 3)
    torch.testing.assert_close(one, many, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in METHODS if takes_seed(n)])
def test_seed_determinism(name: str, tiny: VisionModel, tiny_images: torch.Tensor) -> None:
    first = build(name, tiny, seed=3)(tiny_images, 1)
    torch.testing.assert_close(build(name, tiny, seed=3)(tiny_images, 1), first)
    assert not torch.equal(build(name, tiny, seed=4)(tiny_images, 1), first)


@pytest.mark.parametrize("name", METHODS)
def test_model_left_as_found(name: str, tiny: VisionModel, tiny_images: torch.Tensor) -> None:
    model = mixed_mode(tiny)
    before = module_flags(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    build(name, model)(tiny_images[:2], 0)
    assert module_flags(model) == before
    assert all(p.grad is None for p in model.parameters())
    assert all(not (m._forward_hooks or m._backward_hooks or m._forward_pre_hooks) for m in model.modules())
    for key, value in model.state_dict().items():  # running statistics untouched
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("name", METHODS)
def test_bad_input_is_reported(name: str, tiny: VisionModel, tiny_images: torch.Tensor) -> None:
    method = build(name, tiny)
    with pytest.raises(ValueError, match="add a batch dimension"):
        method(tiny_images[0], 0)
    with pytest.raises(ValueError, match="divide by 255"):
        method(tiny_images * 255, 0)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 4\]"):
        method(tiny_images, 7)
    with pytest.raises(ValueError, match="targets must be"):
        method(tiny_images, torch.tensor([0, 1]))


def test_create_reports_unknown_names_and_options(tiny: VisionModel) -> None:
    with pytest.raises(ValueError, match="Did you mean saliency"):
        attributions.create("salincy", tiny)
    with pytest.raises(TypeError, match=r"does not take option\(s\) \['stpes'\]"):
        attributions.create("integrated_gradients", tiny, stpes=3)
    with pytest.raises(ValueError, match="positive int"):
        attributions.create("saliency", tiny, batch_size=0)
