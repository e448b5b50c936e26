"""Deletion, Insertion and MuFidelity: by hand, analytic cases, streaming, model state, errors."""

import pytest
import torch

from spyglass import attributions, metrics
from spyglass.models import VisionModel
from spyglass.objectives import target_logit
from tests.helpers import left_as_found, mixed_mode
from tests.tiny import pixel_sum_model, tiny_model


def test_deletion_curve_by_hand() -> None:
    """f = Σ x on a 2×2 image, one pixel per step, removed in the map's order (ties: index order)."""
    image = torch.tensor([[0.1, 0.2], [0.3, 0.4]]).expand(1, 3, 2, 2).clone()  # pixel sums 0.3 … 1.2
    model = pixel_sum_model(torch.ones(2, 2))
    saliency = torch.tensor([[[0.0, 5.0], [1.0, 1.0]]])  # order: (0,1), (1,0), (1,1), (0,0)
    deletion = metrics.Deletion(model, image, 0, steps=4, objective=target_logit, progress=False)
    curve = deletion.curves(saliency)
    assert curve[0].tolist() == pytest.approx([3.0, 2.4, 1.5, 0.3, 0.0], abs=1e-6)
    area = (3.0 + 2.4) / 2 + (2.4 + 1.5) / 2 + (1.5 + 0.3) / 2 + (0.3 + 0.0) / 2
    assert deletion(saliency) == pytest.approx(area / 4, abs=1e-6)
    insertion = metrics.Insertion(model, image, 0, steps=4, baseline="zero", objective=target_logit)
    assert insertion.curves(saliency)[0].tolist() == pytest.approx([0.0, 0.6, 1.5, 2.7, 3.0], abs=1e-6)


def test_true_weights_are_the_best_deletion_and_insertion_order(generator: torch.Generator) -> None:
    """On f(x) = Σ w_p x_p, removing pixels by decreasing w_p x_p is optimal at every step."""
    weights = torch.randn(8, 8, generator=generator)
    model = pixel_sum_model(weights)
    images = torch.rand(3, 3, 8, 8, generator=generator)
    truth = weights * images.sum(dim=1)  # each pixel's exact contribution to the logit
    options = {"steps": 16, "baseline": "zero", "objective": target_logit, "progress": False}
    deletion = metrics.Deletion(model, images, 0, **options)
    insertion = metrics.Insertion(model, images, 0, **options)
    best_deletion, best_insertion = deletion.curves(truth), insertion.curves(truth)
    for seed in range(5):
        shuffled = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(seed))
        assert bool((best_deletion <= deletion.curves(shuffled) + 1e-5).all())
        assert bool((best_insertion >= insertion.curves(shuffled) - 1e-5).all())
        assert deletion(truth) < deletion(shuffled)
        assert insertion(truth) > insertion(shuffled)
    assert deletion(truth) < deletion(-truth)  # the reversed order is the worst


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_mufidelity_is_one_for_the_exact_map_and_minus_one_for_its_negation(
    sign: float, generator: torch.Generator
) -> None:
    model = pixel_sum_model(torch.ones(18, 18))
    images = torch.rand(2, 3, 18, 18, generator=generator)
    mufidelity = metrics.MuFidelity(model, images, 0, nb_samples=32, progress=False)
    assert mufidelity.scores(sign * images.sum(dim=1)).tolist() == pytest.approx([sign, sign], abs=1e-6)


def test_mufidelity_flat_map_is_nan_and_left_out_of_the_mean(generator: torch.Generator) -> None:
    model = pixel_sum_model(torch.ones(9, 9))
    images = torch.rand(2, 3, 9, 9, generator=generator)
    maps = torch.stack([images[0].sum(0), torch.zeros(9, 9)])
    mufidelity = metrics.MuFidelity(model, images, 0, nb_samples=16, progress=False)
    scores = mufidelity.scores(maps)
    assert scores[0] == pytest.approx(1.0, abs=1e-6) and bool(scores[1].isnan())
    assert mufidelity(maps) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("baseline", ["zero", "blur", "mean", 0.5, (0.2, 0.4, 0.6)])
def test_baselines_reach_their_image_when_every_pixel_is_removed(baseline: object) -> None:
    """The last point of Deletion is the score of the baseline image itself."""
    model = pixel_sum_model(torch.ones(16, 16))
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    deletion = metrics.Deletion(
        model, image, 0, steps=4, baseline=baseline, objective=target_logit, progress=False
    )
    last = float(deletion.curves(torch.rand(1, 16, 16))[0, -1])
    perturb = metrics.fidelity.resolve_baseline(baseline, model)  # type: ignore[arg-type]
    expected = float(perturb(image[0], torch.zeros(1, 1, 16, 16)).sum())
    assert last == pytest.approx(expected, rel=1e-5)
    if baseline == "mean":
        assert expected == pytest.approx(float(image.sum()), rel=1e-5)  # the mean colour keeps the sum


def test_curves_stream_in_batches_and_do_not_depend_on_batch_size(tiny: VisionModel) -> None:
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    maps = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))
    seen: list[int] = []
    handle = tiny.network[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[0]))
    try:
        small = metrics.Deletion(tiny, images, 1, steps=10, batch_size=4, progress=False).curves(maps)
    finally:
        handle.remove()
    assert max(seen) <= 4 and sum(seen) == 3 * 11  # never more than a batch, N·(steps + 1) in all
    large = metrics.Deletion(tiny, images, 1, steps=10, batch_size=64, progress=False).curves(maps)
    assert torch.allclose(small, large, atol=1e-6)


def failing_objective(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    model(x)  # the metric has its perturbed images in flight
    raise RuntimeError("objective failed")


def test_metrics_leave_the_model_as_found(tiny_images: torch.Tensor) -> None:
    model = mixed_mode(tiny_model())
    maps = torch.rand(5, 32, 32)
    with left_as_found(model):
        metrics.Deletion(model, tiny_images, 0, steps=4, progress=False)(maps)
        metrics.Insertion(model, tiny_images, 0, steps=4, progress=False)(maps)
        metrics.MuFidelity(model, tiny_images, 0, nb_samples=4, grid_size=4, progress=False)(maps)
        with pytest.raises(ValueError, match="shape"):
            metrics.Deletion(model, tiny_images, 0, steps=4, progress=False)(maps[:2])
        with pytest.raises(RuntimeError, match="objective failed"):
            metrics.Deletion(model, tiny_images, 0, steps=4, objective=failing_objective, progress=False)(
                maps
            )


def test_bad_input_gets_a_clear_error(tiny: VisionModel, tiny_images: torch.Tensor) -> None:
    deletion = metrics.Deletion(tiny, tiny_images, 0, steps=4, progress=False)
    with pytest.raises(ValueError, match=r"shape \(N, H, W\) = \(5, 32, 32\).*got shape \(5, 3, 32, 32\)"):
        deletion(torch.rand(5, 3, 32, 32))
    with pytest.raises(ValueError, match=r"got shape \(4, 32, 32\)"):
        deletion(torch.rand(4, 32, 32))
    with pytest.raises(TypeError, match=r"torch\.from_numpy"):
        deletion(torch.rand(5, 32, 32).numpy())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN"):
        deletion(torch.full((5, 32, 32), float("nan")))
    with pytest.raises(ValueError, match="baseline must be one of 'zero', 'blur', 'mean'"):
        metrics.Deletion(tiny, tiny_images, 0, baseline="black")
    with pytest.raises(ValueError, match="baseline"):
        metrics.Insertion(tiny, tiny_images, 0, baseline=2.0)
    with pytest.raises(ValueError, match="steps must be"):
        metrics.Deletion(tiny, tiny_images, 0, steps=0)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 4\]"):
        metrics.Deletion(tiny, tiny_images, 7)
    with pytest.raises(ValueError, match="subset_percent"):
        metrics.MuFidelity(tiny, tiny_images, 0, subset_percent=1.5)
    with pytest.raises(ValueError, match="removes all 4 cells"):
        metrics.MuFidelity(tiny, tiny_images, 0, grid_size=2, subset_percent=0.9)
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        metrics.MuFidelity("model", tiny_images, 0)  # type: ignore[arg-type]


def test_registry_builds_metrics_of_both_kinds(tiny: VisionModel, tiny_images: torch.Tensor) -> None:
    assert metrics.list_metrics("maps") == ["deletion", "insertion", "mufidelity"]
    assert set(metrics.list_metrics("method")) == {"stability", "randomization", "mege", "reco"}
    assert metrics.list_metrics() == metrics.list_metrics("maps") + metrics.list_metrics("method")
    deletion = metrics.create("deletion", tiny, tiny_images, 0, steps=4, batch_size=8)
    assert isinstance(deletion, metrics.Deletion) and deletion.batch_size == 8 and deletion.kind == "maps"
    assert metrics.metric_class("deletion").direction() == "↓ lower is better"
    assert metrics.metric_class("insertion").direction() == "↑ higher is better"
    mege = metrics.create("mege", tiny, tiny_images, torch.arange(5), k=2)
    assert isinstance(mege, metrics.MeGe) and mege.kind == "method"
    with pytest.raises(TypeError, match="does not take option"):
        metrics.create("deletion", tiny, tiny_images, 0, nb_samples=3)
    with pytest.raises(ValueError, match="Did you mean deletion"):
        metrics.metric_class("deletoin")
    with pytest.raises(ValueError, match="kind must be one of 'maps', 'method'"):
        metrics.list_metrics("map")
    with pytest.raises(TypeError, match="derive from MapMetric or MethodMetric"):
        metrics.register("bare")(type("Bare", (), {}))  # type: ignore[arg-type]


def test_real_model_gradcam_beats_its_reversal_on_deletion(lite0: VisionModel, imagenet_samples) -> None:  # type: ignore[no-untyped-def]
    from spyglass.data import read_images

    batch = read_images(sorted(imagenet_samples.iterdir())[:4], lite0.preprocess, progress=False)
    gradcam = attributions.create("gradcam", lite0, batch_size=16, progress=False)
    maps = gradcam(batch.images, batch.labels)
    deletion = metrics.Deletion(lite0, batch.images, batch.labels, steps=8, batch_size=16, progress=False)
    assert deletion(maps) < deletion(-maps)
