import pytest
import torch

from spyglass.engines import UpsampledMasks, amplitude, blurring, inpainting, perturbation_scores
from spyglass.engines.perturbation import gaussian_blur
from spyglass.objectives import target_logit
from tests.helpers import mixed_mode, module_flags


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 3),
    ).eval()


def images() -> torch.Tensor:
    return torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def by_hand(model, x, targets, masks, perturb):  # type: ignore[no-untyped-def]
    """One image, one mask, one forward pass at a time: the definition."""
    out = torch.zeros(x.shape[0], masks.shape[0])
    with torch.no_grad():
        for i in range(x.shape[0]):
            for j in range(masks.shape[0]):
                perturbed = perturb(x[i], masks[j : j + 1])
                out[i, j] = model(perturbed)[0, targets[i]]
    return out


@pytest.mark.parametrize("batch_size", [1, 3, 4, 5, 100])  # batches that cut images in the middle
def test_scores_equal_the_definition(batch_size: int) -> None:
    model, x, targets = small_model(), images(), torch.tensor([0, 2, 1])
    low = torch.rand(5, 2, 2, generator=torch.Generator().manual_seed(1))
    source = UpsampledMasks(low, (8, 8))
    expected = by_hand(model, x, targets, source[0:5], inpainting(0.3))
    got = perturbation_scores(
        model, x, targets, source, perturbation=inpainting(0.3), batch_size=batch_size, progress=False
    )
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_per_image_masks_and_memory_bound() -> None:
    model, x, targets = small_model(), images(), torch.tensor([0, 1, 2])
    largest = []

    class Counting:
        def __init__(self, i: int) -> None:
            self.masks = torch.full((7, 1, 8, 8), i / 3.0)

        def __len__(self) -> int:
            return 7

        def __getitem__(self, rows: slice) -> torch.Tensor:
            block = self.masks[rows]
            largest.append(block.shape[0])
            return block

    got = perturbation_scores(
        model, x, targets, Counting, perturbation=inpainting(), batch_size=4, progress=False
    )
    assert got.shape == (3, 7) and max(largest) <= 4
    for i in range(3):
        expected = by_hand(model, x[i : i + 1], targets[i : i + 1], Counting(i).masks, inpainting())
        torch.testing.assert_close(got[i : i + 1], expected, rtol=1e-5, atol=1e-5)


def test_model_left_as_found() -> None:
    model = mixed_mode(small_model())
    before = module_flags(model)
    perturbation_scores(
        model,
        images(),
        torch.tensor([0, 0, 0]),
        UpsampledMasks(torch.ones(2, 1, 1), (8, 8)),
        perturbation=inpainting(),
        progress=False,
    )
    assert module_flags(model) == before


def test_upsampled_masks_are_nearest_cells() -> None:
    low = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    full = UpsampledMasks(low, (4, 6))[0:1]
    assert full.shape == (1, 1, 4, 6)
    assert torch.equal(full[0, 0, :2, :3], torch.ones(2, 3)) and torch.equal(
        full[0, 0, :2, 3:], torch.zeros(2, 3)
    )
    with pytest.raises(ValueError, match=r"\(M, h, w\)"):
        UpsampledMasks(torch.ones(2, 2), (4, 4))


def test_perturbations_by_their_formulas() -> None:
    x = images()[0]
    ones, zeros, half = torch.ones(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), torch.full((1, 1, 8, 8), 0.5)
    for perturb in (inpainting(0.2), blurring(2.0), amplitude()):
        torch.testing.assert_close(perturb(x, ones)[0], x)  # mask 1 keeps the image
    assert torch.allclose(inpainting(0.2)(x, zeros), torch.full_like(x, 0.2))
    colour = torch.tensor([0.1, 0.5, 0.9])
    assert torch.allclose(inpainting(colour)(x, zeros)[0, :, 3, 3], colour)
    torch.testing.assert_close(amplitude()(x, half)[0], torch.zeros_like(x))
    torch.testing.assert_close(amplitude()(x, zeros)[0], -x)
    torch.testing.assert_close(blurring(2.0)(x, zeros)[0], gaussian_blur(x, 2.0))
    with pytest.raises(ValueError, match="blurring sigma must be a finite number > 0"):
        blurring(0.0)
    with pytest.raises(ValueError, match=r"\(3,\) tensor"):
        inpainting(torch.zeros(2))


def test_gaussian_blur_keeps_constants_and_mass() -> None:
    flat = torch.full((3, 16, 16), 0.7)
    torch.testing.assert_close(gaussian_blur(flat, 3.0), flat)
    spike = torch.zeros(1, 33, 33)
    spike[0, 16, 16] = 1.0
    blurred = gaussian_blur(spike, 2.0)
    assert abs(float(blurred.sum()) - 1.0) < 1e-5 and float(blurred.max()) < 0.05
    # the variance of the blurred spike along one axis is sigma squared
    profile = blurred[0].sum(0)
    grid = torch.arange(33.0) - 16
    assert abs(float((profile * grid**2).sum()) - 4.0) < 0.05


def test_errors_say_what_was_expected() -> None:
    model, x = small_model(), images()
    masks = UpsampledMasks(torch.ones(2, 1, 1), (8, 8))
    with pytest.raises(ValueError, match="one perturbed image per mask"):
        perturbation_scores(
            model, x, torch.tensor([0, 0, 0]), masks, perturbation=lambda i, m: i[None], progress=False
        )
    with pytest.raises(ValueError, match="same number of masks"):
        perturbation_scores(
            model,
            x,
            torch.tensor([0, 0, 0]),
            lambda i: torch.ones(i + 1, 1, 8, 8),
            perturbation=inpainting(),
            progress=False,
        )
    with pytest.raises(ValueError, match="one finite score per input"):
        perturbation_scores(
            model,
            x,
            torch.tensor([0, 0, 0]),
            masks,
            perturbation=inpainting(),
            objective=lambda m, b, y: target_logit(m, b, y)[None],
            progress=False,
        )
