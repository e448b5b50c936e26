"""Black-box methods on the perturbation engine (Occlusion, RISE, Sobol'): by hand, analytic cases, Captum."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from spyglass import attributions
from spyglass.attributions.occlusion import _SlidingWindows
from spyglass.attributions.rise import _RandomMasks
from spyglass.engines import UpsampledMasks, inpainting
from spyglass.models import VisionModel
from tests.attributions.peers import agree, captum_attr, imagenet_photos
from tests.tiny import tiny_model


class RegionSum(torch.nn.Module):
    """``f(x) = Σ_r w_r · mean(x over region r and channels) + b``, regions a ``g × g`` grid."""

    def __init__(self, weights: torch.Tensor, bias: float = 0.0) -> None:
        super().__init__()
        self.weights, self.bias = weights, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        means = F.adaptive_avg_pool2d(x.mean(1, keepdim=True), self.weights.shape).flatten(1)
        return (means @ self.weights.flatten() + self.bias)[:, None]


def region_model(weights: torch.Tensor, size: int, mean: float = 0.0, bias: float = 0.0) -> VisionModel:
    """The region sum behind a wrapper whose normalisation subtracts ``mean``: the default fill."""
    return VisionModel(
        RegionSum(weights, bias),
        input_size=(size, size),
        mean=(mean, mean, mean),
        std=(1, 1, 1),
        class_names=["f"],
    )


WEIGHTS = torch.tensor([[1.0, -2.0, 0.0], [0.5, 0.0, 3.0], [0.0, 1.5, -1.0]])


def region_means(images: torch.Tensor, grid: int) -> torch.Tensor:
    return F.adaptive_avg_pool2d(images.mean(1, keepdim=True), grid)[:, 0]


def per_pixel(grid_values: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(grid_values[:, None], size=(size, size), mode="nearest")[:, 0]


# --- Occlusion ------------------------------------------------------------------------------


def test_occlusion_by_hand_on_a_region_model() -> None:
    """One window per region: the drop is w_r · (mean of region r − fill), 0 where w_r = 0."""
    model = region_model(WEIGHTS, size=12, mean=0.25)
    images = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    maps = attributions.Occlusion(model, patch=4, stride=4, progress=False)(images, 0)
    expected = per_pixel(WEIGHTS * (region_means(images, 3) - 0.25), 12)  # the fill is the model's mean
    torch.testing.assert_close(maps, expected)
    assert float(maps[:, 0:4, 8:12].abs().max()) == 0.0  # an ignored region


def occlusion_by_the_definition(
    model: torch.nn.Module, image: torch.Tensor, target: int, patch: int, stride: int, value: float
) -> torch.Tensor:
    """The textbook loop, in float64: every window, one forward pass each, average per pixel."""
    height, width = image.shape[-2:]
    total = torch.zeros(height, width, dtype=torch.float64)
    count = torch.zeros(height, width, dtype=torch.float64)
    with torch.no_grad():
        base = float(model(image[None])[0, target])
        top = 0
        while True:
            left = 0
            while True:
                occluded = image.clone()
                occluded[:, top : top + patch, left : left + patch] = value
                total[top : top + patch, left : left + patch] += base - float(
                    model(occluded[None])[0, target]
                )
                count[top : top + patch, left : left + patch] += 1
                if left + patch >= width:
                    break
                left += stride
            if top + patch >= height:
                break
            top += stride
    return (total / count).float()


@pytest.mark.parametrize(("size", "patch", "stride"), [(32, 6, 4), (32, 8, 8), (12, 5, 1), (20, 7, 7)])
def test_occlusion_equals_the_definition(
    size: int, patch: int, stride: int, tiny_images: torch.Tensor
) -> None:
    """Overlapping windows, windows cut by the border (6/4 on 32 px, 7/7 on 20 px), stride 1."""
    model, images = tiny_model(), tiny_images[:2, :, :size, :size]
    occlusion = attributions.Occlusion(
        model, patch=patch, stride=stride, value=0.3, batch_size=7, progress=False
    )
    maps = occlusion(images, torch.tensor([1, 4]))
    for i, target in enumerate([1, 4]):
        expected = occlusion_by_the_definition(model, images[i], target, patch, stride, 0.3)
        torch.testing.assert_close(maps[i], expected, rtol=1e-4, atol=1e-5)


def test_occlusion_equals_captum_on_the_tiny_model(tiny_images: torch.Tensor) -> None:
    captum = captum_attr()
    model, targets = tiny_model(), torch.tensor([0, 1, 2, 3, 4])
    ours = attributions.Occlusion(model, patch=6, stride=4, value=0.3, progress=False)(tiny_images, targets)
    theirs = captum.Occlusion(model).attribute(
        tiny_images,
        sliding_window_shapes=(3, 6, 6),
        strides=(3, 4, 4),
        baselines=0.3,
        target=targets,
        perturbations_per_eval=16,
    )
    assert torch.equal(theirs[:, 0], theirs[:, 2])  # a 3-channel window: one map, three times
    torch.testing.assert_close(ours, theirs[:, 0], rtol=1e-4, atol=1e-5)


def test_occlusion_agrees_with_captum_on_real_photos(lite0: VisionModel, imagenet_samples: Path) -> None:
    captum = captum_attr()
    images, targets = imagenet_photos(imagenet_samples, lite0, [1, 207, 967])
    # 64 px windows every 48 px: 5 × 5 windows, overlapping, the last ones cut by the border.
    ours = attributions.Occlusion(lite0, patch=64, stride=48, batch_size=26, progress=False)(images, targets)
    theirs = captum.Occlusion(lite0).attribute(
        images,
        sliding_window_shapes=(3, 64, 64),
        strides=(3, 48, 48),
        baselines=0.5,  # lite0's normalisation mean: our default fill
        target=targets,
        perturbations_per_eval=25,
    )
    correlations = agree(ours, theirs[:, 0])
    print(f"Occlusion vs Captum, Pearson per photo: {correlations}")
    # The same definition, not only the same pattern: equal up to float32 batch effects.
    torch.testing.assert_close(ours, theirs[:, 0], rtol=0, atol=1e-3 * float(theirs.abs().max()))


# --- Sobol' ---------------------------------------------------------------------------------


def additive_indices(weights: torch.Tensor, means: torch.Tensor, fill: float) -> torch.Tensor:
    """f = Σ w_i (v + X_i (m_i − v)) + c, X_i ~ U[0, 1]: S_Ti = w_i² (m_i − v)² / Σ_j w_j² (m_j − v)²."""
    share = (weights * (means - fill)) ** 2
    return share / share.sum()


@pytest.mark.parametrize("estimator", ["jansen", "saltelli", "janon", "glen"])
def test_sobol_indices_of_an_additive_model(estimator: str) -> None:
    """Image 3 × 3, grid 3: each cell is one region, no upsampling between indices and map."""
    model = region_model(WEIGHTS, size=3, mean=0.25, bias=4.0)
    images = torch.rand(2, 3, 3, 3, generator=torch.Generator().manual_seed(1))
    sobol = attributions.SobolAttribution(
        model, grid_size=3, nb_design=256, estimator=estimator, batch_size=512, progress=False
    )
    maps = sobol(images, 0)
    expected = torch.stack([additive_indices(WEIGHTS, m, 0.25) for m in region_means(images, 3)])
    torch.testing.assert_close(maps, expected, rtol=0, atol=0.03)
    assert float(maps[:, WEIGHTS == 0].abs().max()) < 1e-6  # regions the model ignores


def test_sobol_amplitude_and_a_callable_perturbation() -> None:
    """Amplitude scales a region's mean by 2X − 1, so S_Ti ∝ w_i² m_i²; a callable is used as is."""
    model = region_model(WEIGHTS, size=3)
    images = torch.rand(1, 3, 3, 3, generator=torch.Generator().manual_seed(2))
    means = region_means(images, 3)[0]
    amplitude = attributions.SobolAttribution(
        model, grid_size=3, nb_design=256, perturbation="amplitude", batch_size=512, progress=False
    )
    torch.testing.assert_close(
        amplitude(images, 0)[0], additive_indices(WEIGHTS, means, 0.0), rtol=0, atol=0.03
    )
    custom = attributions.SobolAttribution(model, grid_size=3, nb_design=16, perturbation=inpainting(0.0))
    default = attributions.SobolAttribution(model, grid_size=3, nb_design=16)  # fill = the model's mean, 0
    torch.testing.assert_close(custom(images, 0), default(images, 0))


def test_sobol_masks_are_sharp_cells_and_the_map_is_the_bicubic_upsampled_indices() -> None:
    """On a 12 px image whose 4 px blocks are constant, the cell indices are those of the 3 px image."""
    model = region_model(WEIGHTS, size=12, mean=0.25)
    small = torch.rand(1, 3, 3, 3, generator=torch.Generator().manual_seed(3))
    large = small.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    sobol = attributions.SobolAttribution(model, grid_size=3, nb_design=32, progress=False)
    indices = sobol(small, 0)
    expected = F.interpolate(indices[:, None], size=(12, 12), mode="bicubic", align_corners=False)[:, 0]
    torch.testing.assert_close(sobol(large, 0), expected, rtol=1e-4, atol=1e-5)


def test_sobol_cost_is_nb_design_times_cells_plus_two() -> None:
    calls = []

    class Counting(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(x.shape[0])
            return self.inner(x)

    attributions.SobolAttribution(Counting(tiny_model()), grid_size=4, nb_design=8, progress=False)(
        torch.rand(2, 3, 32, 32), 0
    )
    assert sum(calls) == 2 * 8 * (16 + 2)


# --- RISE -----------------------------------------------------------------------------------


def test_rise_is_highest_on_the_block_the_model_reads_and_zero_far_from_it() -> None:
    """f = mean of the mask over the top-left 8 × 8 block − p: E[f] = 0, so RISE's map is
    E[f · M(q)] / p, the covariance of M(q) with that block: positive on it, 0 where
    M(q) no longer depends on the block's cells (rows or columns ≥ 25 at s = 4 on 32 px)."""
    weights = torch.zeros(4, 4)
    weights[0, 0] = 1.0
    model = region_model(weights, size=32, bias=-0.5)
    rise = attributions.RISE(model, nb_samples=3000, grid_size=4, batch_size=500, progress=False)
    saliency = rise(torch.ones(1, 3, 32, 32), 0)[0]
    row, col = divmod(int(saliency.argmax()), 32)
    assert row < 8 and col < 8, (row, col)
    assert float(saliency[:8, :8].mean()) > 0.1
    far = torch.cat([saliency[25:].flatten(), saliency[:25, 25:].flatten()])
    assert float(far.abs().max()) < 0.03, float(far.abs().max())


def test_rise_with_every_cell_kept_is_the_score_itself() -> None:
    """p = 1: every mask is all ones, so the map is f(x) everywhere."""
    model = tiny_model()
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    saliency = attributions.RISE(model, nb_samples=10, keep_probability=1.0, progress=False)(image, 2)
    with torch.no_grad():
        score = float(model(image)[0, 2])
    torch.testing.assert_close(saliency, torch.full_like(saliency, score))


def test_rise_masks_are_smooth_shifted_grids_with_mean_p() -> None:
    rise = attributions.RISE(tiny_model(), nb_samples=2000, grid_size=4, keep_probability=0.3, seed=5)
    masks = rise._masks((32, 32))
    all_at_once = masks[0:2000]
    assert all_at_once.shape == (2000, 1, 32, 32)
    assert float(all_at_once.min()) >= 0.0 and float(all_at_once.max()) <= 1.0
    assert abs(float(all_at_once.mean()) - 0.3) < 0.02  # E[M] = p, the normalisation
    torch.testing.assert_close(torch.cat([masks[k : k + 1] for k in range(5)]), all_at_once[:5])
    # Bilinear between cells: intermediate values exist; shifts differ between masks.
    assert float(((all_at_once > 0.01) & (all_at_once < 0.99)).float().mean()) > 0.1
    assert len({tuple(s) for s in masks.shifts.tolist()}) > 10


# --- All three: memory, options ----------------------------------------------------------------

BUILDERS = {
    "occlusion": {"patch": 8, "stride": 4},
    "rise": {"nb_samples": 23, "grid_size": 4},
    "sobol": {"grid_size": 4, "nb_design": 4},
}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_rows_built_at_once_never_exceed_batch_size(
    name: str, monkeypatch: pytest.MonkeyPatch, tiny_images: torch.Tensor
) -> None:
    built: list[int] = []
    for source in (_SlidingWindows, _RandomMasks, UpsampledMasks):
        original = source.__getitem__

        def recording(self, rows, original=original):  # type: ignore[no-untyped-def]
            masks = original(self, rows)
            built.append(masks.shape[0])
            return masks

        monkeypatch.setattr(source, "__getitem__", recording)
    forwarded: list[int] = []

    class Recording(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            forwarded.append(x.shape[0])
            return self.inner(x)

    method = attributions.create(
        name, Recording(tiny_model()), batch_size=5, progress=False, **BUILDERS[name]
    )
    method(tiny_images[:3], 0)
    assert built and forwarded
    assert max(built) <= 5 and max(forwarded) <= 5, (max(built), max(forwarded))
    per_image = {"occlusion": 7 * 7 + 1, "rise": 23, "sobol": 4 * (16 + 2)}[name]
    assert sum(forwarded) == 3 * per_image  # the documented cost, in forward passes


def test_bad_options_are_reported(tiny_images: torch.Tensor) -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match="patch must be a positive int"):
        attributions.Occlusion(model, patch=0)
    with pytest.raises(ValueError, match=r"stride must be an int in \[1, 8\]"):
        attributions.Occlusion(model, patch=8, stride=9)
    with pytest.raises(ValueError, match=r"value must be None, a float in \[0, 1\]"):
        attributions.Occlusion(model, value=2.0)
    with pytest.raises(ValueError, match="patch=40 exceeds the images' size 32×32"):
        attributions.Occlusion(model, patch=40, stride=8, progress=False)(tiny_images, 0)
    with pytest.raises(ValueError, match="nb_samples must be a positive int"):
        attributions.RISE(model, nb_samples=0)
    with pytest.raises(ValueError, match=r"keep_probability must be a float in \(0, 1\]"):
        attributions.RISE(model, keep_probability=0.0)
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        attributions.RISE(model, seed=-1)
    with pytest.raises(ValueError, match="grid_size=33 exceeds"):
        attributions.RISE(model, grid_size=33, nb_samples=2, progress=False)(tiny_images, 0)
    with pytest.raises(ValueError, match="nb_design must be a power of two"):
        attributions.SobolAttribution(model, nb_design=12)
    with pytest.raises(ValueError, match="'inpainting', 'blurring', 'amplitude' or a callable"):
        attributions.SobolAttribution(model, perturbation="noise")
    with pytest.raises(ValueError, match="estimator must be one of"):
        attributions.SobolAttribution(model, estimator="sobol")
    with pytest.raises(ValueError, match="sampler must be one of"):
        attributions.SobolAttribution(model, sampler="grid")
    with pytest.raises(ValueError, match="grid_size=33 exceeds"):
        attributions.SobolAttribution(model, grid_size=33, nb_design=2, sampler="random", progress=False)(
            tiny_images, 0
        )
