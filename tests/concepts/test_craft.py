"""CRAFT on a tiny model whose concepts are known, and once end to end on the real default model.

The tiny model is ``conv1x1 → ReLU → conv1x1 (stride 2) → ReLU → GAP → linear`` with
non-negative convolution weights, wired colour by colour, and no bias: on images in ``[0, 1]`` both ReLUs pass
everything, so the activation of every position at ``relu2`` is ``x_pixel M`` with
``M = (M2 M1)ᵀ`` ``(3, p)``. An image made of uniform 8 × 8 blocks of colour therefore has
crops (8 px, on the block grid) whose averaged activations are exactly ``colour @ M``: a
rank-3 non-negative matrix with the planted concept bank ``M``. And ``h`` (GAP → linear)
is affine, which makes the importance of a concept computable by hand.
"""

from __future__ import annotations

import doctest
import itertools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from spyglass import data, models
from spyglass.concepts import Craft, NotFittedError, match_concepts
from spyglass.concepts import craft as craft_module
from tests.helpers import left_as_found
from tests.tiny import N_FEATURES, TinyNet, block_images

IMAGENETTE_TENCH = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "imagenette-val" / "n01440764"
)


def split_scores(craft: Craft, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Class scores of every image with its per-position codes scaled by each mask: ``(N, M)``.

    Written from the split directly (not through Craft.importance): ``h((U ⊙ m) W + E)``.
    """
    g, h = models.split(craft.model, craft.layer, check=False)
    with torch.no_grad():
        maps = g(images)
        n, p, height, width = maps.shape
        rows = maps.permute(0, 2, 3, 1).reshape(-1, p)
        codes = craft.learner_.transform(rows)
        residual = rows - codes @ craft.components_
        scores = []
        for mask in masks:
            rebuilt = (codes * mask) @ craft.components_ + residual
            logits = h(rebuilt.reshape(n, height, width, p).permute(0, 3, 1, 2))
            scores.append(logits[:, craft.class_id_])
    return torch.stack(scores, dim=1)


# --- fit and transform on planted concepts -----------------------------------------------------


def test_fit_recovers_the_planted_concepts(fitted: Craft, tiny: TinyNet) -> None:
    n_crops = 6 * 16  # 32 px images, 8 px crops at stride 8
    assert fitted.components_.shape == (3, N_FEATURES)
    assert fitted.crops_.shape == (n_crops, 3, 8, 8)
    assert fitted.crops_u_.shape == (n_crops, 3)
    assert fitted.crop_activations_.shape == (n_crops, N_FEATURES)
    assert fitted.crop_boxes_[:5].tolist() == [[0, 0, 0], [0, 0, 8], [0, 0, 16], [0, 0, 24], [0, 8, 0]]
    assert fitted.class_id_ == 1 and fitted.input_size_ == (32, 32)
    assert bool((fitted.crop_activations_ >= 0).all())
    match = match_concepts(tiny.planted_bank(), fitted.components_)
    assert float(match.cosines.min()) >= 0.99, match.cosines
    assert fitted.reconstruction_error_ < 1e-3
    # Each crop is one uniform colour: its codes are that colour in the matched concepts' units.
    colours = fitted.crops_[:, :, 0, 0]
    matched = match.permutation
    scale = fitted.components_[matched].norm(dim=1) / tiny.planted_bank().norm(dim=1)
    assert torch.allclose(fitted.crops_u_[:, matched] * scale, colours, atol=0.01)  # NMF tol=1e-4


def test_transform_of_the_crops_gives_back_their_fitted_codes(fitted: Craft) -> None:
    crops = F.interpolate(fitted.crops_, size=(32, 32), mode="bilinear", align_corners=False)
    codes = fitted.transform(crops)
    assert codes.shape == (len(crops), 16, 16, 3)
    assert torch.allclose(codes.mean(dim=(1, 2)), fitted.crops_u_, atol=1e-4)


def test_concept_maps_are_the_upsampled_codes(fitted: Craft) -> None:
    images = block_images(3, seed=1)
    maps = fitted.concept_maps(images)
    assert maps.shape == (3, 3, 32, 32) and maps.dtype == torch.float32
    # Inside a uniform block (4 x 4 positions of the 16 x 16 layer) the map is that block's code.
    codes = fitted.transform(images)
    assert torch.allclose(maps[:, :, 4::8, 4::8], codes[:, 2::4, 2::4].permute(0, 3, 1, 2), atol=1e-6)
    assert float(maps.std()) > 0.05
    only = fitted.concept_maps(images, concepts=[2, 0])
    assert torch.equal(only, maps[:, [2, 0]])


def test_gradcam_concept_maps_follow_the_implicit_gradient(fitted: Craft, tiny: TinyNet) -> None:
    # Written out by hand: at a position with activations a, NNLS's code on its active set S is
    # u_S = (W_S W_Sᵀ)⁻¹ W_S a, so ∂u_i/∂a is row i of (W_S W_Sᵀ)⁻¹ W_S for i in S and 0 otherwise.
    # With s_i the mean code over the hw positions, Grad-CAM's weights are
    # α = (1/hw) Σ_xy ∂s_i/∂a_xy and the map is ReLU(Σ_k α_k a_k).
    images = block_images(3, seed=1)
    g, _ = models.split(tiny, "relu2", check=False)
    with torch.no_grad():
        maps = g(images).double()  # (3, p, 16, 16)
    codes = fitted.transform(images).double()  # (3, 16, 16, 3)
    bank = fitted.components_.double()
    n, p, height, width = maps.shape
    positions = height * width
    expected = torch.zeros(n, 3, height, width, dtype=torch.float64)
    for image in range(n):
        jacobians = torch.zeros(positions, 3, p, dtype=torch.float64)
        for xy, code in enumerate(codes[image].reshape(positions, 3)):
            active = code != 0  # the support the solver returned, as the implicit gradient reads it
            if active.any():
                rows = bank[active]
                jacobians[xy, active] = torch.linalg.solve(rows @ rows.T, rows)
        alphas = jacobians.mean(dim=0) / positions  # (3, p): ∂s_i/∂a carries the 1/hw of the mean
        expected[image] = torch.relu(torch.einsum("ip,phw->ihw", alphas, maps[image]))
    grid = fitted._gradcam_maps(images, [0, 1, 2])
    assert grid.shape == (3, 3, 16, 16)
    assert float(expected.abs().max()) > 1e-4  # not a comparison of two zero maps
    assert torch.allclose(grid.double(), expected, atol=1e-7, rtol=1e-3)
    maps_out = fitted.concept_maps(images, concepts=[2, 0], method="gradcam")
    assert maps_out.shape == (3, 2, 32, 32) and bool((maps_out >= 0).all())
    upsampled = F.interpolate(grid[:, [2, 0]], size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(maps_out, upsampled, atol=1e-7)
    with pytest.raises(ValueError, match="coefficients"):
        fitted.concept_maps(images, method="cam")


# --- importance ------------------------------------------------------------------------------


def test_sobol_importance_of_a_linear_top_is_c_squared_share(fitted: Craft) -> None:
    # s(U ⊙ m) = Σ_i m_i c_i + const with c_i = ū_i (W w_c)_i / 1 (GAP then linear): the total
    # index of an additive function of independent uniforms is c_i² / Σ c_j².
    images = block_images(2, seed=2)
    codes = fitted.transform(images).mean(dim=(1, 2))  # ū (N, r)
    c = codes * (fitted.components_ @ fitted.model.fc.weight[fitted.class_id_].detach())
    expected = c.square() / c.square().sum(dim=1, keepdim=True)
    indices = fitted.importance(images, per_image=True, nb_design=1024, seed=3)
    assert indices.shape == (2, 3)
    assert torch.allclose(indices, expected, atol=0.005), (indices, expected)
    assert torch.allclose(fitted.importance(images, nb_design=1024, seed=3), indices.mean(dim=0))


def test_rise_of_a_linear_top_recovers_the_contributions_up_to_a_constant(fitted: Craft) -> None:
    # s(U ⊙ m) = Σ_j m_j c_j + b: with Bernoulli(½) masks RISE's φ_i = E[s | m_i = 1]
    # = c_i + ½ Σ_{j≠i} c_j + b, so φ_i − φ_j = c_i + ½ c_j − c_j − ½ c_i = (c_i − c_j) / 2.
    # Monte Carlo error with 4096 masks: about 0.004 per φ here (s has sd ≈ 0.17).
    images = block_images(2, seed=2)
    codes = fitted.transform(images).mean(dim=(1, 2))  # ū (N, r)
    c = codes * (fitted.components_ @ fitted.model.fc.weight[fitted.class_id_].detach())
    rise = fitted.importance(images, "rise", per_image=True, nb_samples=4096, seed=1)
    assert rise.shape == (2, 3)
    contrast = (rise[:, :, None] - rise[:, None, :]) - (c[:, :, None] - c[:, None, :]) / 2
    assert float(contrast.abs().max()) < 0.06 * float(c.abs().max()), (rise, c)
    assert torch.equal(rise.argsort(dim=1), c.argsort(dim=1))
    again = fitted.importance(images, "rise", per_image=True, nb_samples=4096, seed=1)
    assert torch.equal(rise, again)  # seeded


def test_gradient_input_is_complete_at_the_last_layer(tiny: TinyNet) -> None:
    # Two concepts for a rank-3 layer leave a real residual E: completeness must hold with it.
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    craft = Craft(tiny, layer="relu2", n_concepts=2, patch_size=8, progress=False).fit(images, 2)
    assert craft.reconstruction_error_ > 0.01
    gxi = craft.importance(images, "gradient_input", per_image=True)
    full, emptied = split_scores(craft, images, torch.tensor([[1.0, 1.0], [0.0, 0.0]])).unbind(dim=1)
    with torch.no_grad():
        assert torch.allclose(full, tiny(images)[:, 2], atol=1e-5)  # the residual makes m = 1 exact
    assert torch.allclose(gxi.sum(dim=1), full - emptied, atol=1e-5)
    # For an affine h, occlusion and Integrated Gradients coincide with Gradient×Input.
    assert torch.allclose(craft.importance(images, "occlusion", per_image=True), gxi, atol=1e-5)
    assert torch.allclose(
        craft.importance(images, "integrated_gradients", per_image=True, steps=3), gxi, atol=1e-5
    )
    saliency = craft.importance(images, "saliency", per_image=True)
    assert torch.allclose(
        saliency, (craft.components_ @ tiny.fc.weight[2].detach()).abs().expand(3, -1), atol=1e-5
    )


def test_gradient_input_has_concept_mufidelity_one_at_the_last_layer(fitted: Craft) -> None:
    images = block_images(3, seed=5)
    gxi = fitted.importance(images, "gradient_input", per_image=True)
    subsets = [s for k in (1, 2) for s in itertools.combinations(range(3), k)]
    masks = torch.ones(len(subsets) + 1, 3)
    for row, subset in enumerate(subsets, start=1):
        masks[row, list(subset)] = 0.0
    scores = split_scores(fitted, images, masks)
    drops = scores[:, :1] - scores[:, 1:]  # (N, subsets)
    for i in range(images.shape[0]):
        summed = torch.stack([gxi[i, list(s)].sum() for s in subsets])
        correlation = torch.corrcoef(torch.stack([summed, drops[i]]))[0, 1]
        assert float(correlation) > 1 - 1e-5
        assert torch.allclose(summed, drops[i], atol=1e-5)


def test_perturbations_keep_the_residual_through_a_nonlinear_top() -> None:
    # Signed activations at conv2, then ReLU → GAP → linear: h is not affine, so leaving the
    # residual out (or misplacing it) changes every perturbed score.
    signed = TinyNet(signed=True)
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    craft = Craft(signed, layer="conv2", n_concepts=2, patch_size=8, dictionary="semi_nmf", progress=False)
    craft.fit(images, 3)
    assert craft.reconstruction_error_ > 0.01
    scores = split_scores(craft, images, torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]]))
    with torch.no_grad():
        assert torch.allclose(scores[:, 0], signed(images)[:, 3], atol=1e-5)
    occlusion = craft.importance(images, "occlusion", per_image=True)
    assert torch.allclose(occlusion, scores[:, :1] - scores[:, 1:], atol=1e-5)


def test_importance_is_seeded_and_batch_size_invariant(tiny: TinyNet) -> None:
    images = block_images(3, seed=6)
    small = Craft(tiny, layer="relu2", n_concepts=3, patch_size=8, batch_size=5, progress=False)
    large = Craft(tiny, layer="relu2", n_concepts=3, patch_size=8, batch_size=64, progress=False)
    small.fit(images, 0)
    large.fit(images, 0)
    assert torch.allclose(small.components_, large.components_)
    a = small.importance(images, per_image=True, nb_design=16)
    assert torch.allclose(a, large.importance(images, per_image=True, nb_design=16), atol=1e-6)
    assert not torch.allclose(a, small.importance(images, per_image=True, nb_design=16, seed=1))


def test_the_model_is_left_as_found(tiny: TinyNet) -> None:
    tiny.train()
    tiny.pool.eval()
    images = block_images(2, seed=7)
    with left_as_found(tiny):
        craft = Craft(tiny, layer="relu2", n_concepts=3, patch_size=8, progress=False).fit(images, 0)
        craft.importance(images, "gradient_input")
        craft.importance(images, nb_design=8)
        craft.concept_maps(images)
        with pytest.raises(ValueError, match="values in"):
            craft.importance(images * 255)
        with pytest.raises(ValueError, match="values in"):
            craft.fit(images * 255, 0)
    assert tiny.training and tiny.conv1.training and not tiny.pool.training


# --- recursion -------------------------------------------------------------------------------


def test_decompose_fits_a_child_on_the_typical_crops_at_an_earlier_layer(fitted: Craft) -> None:
    child = fitted.decompose(0, percentile=80)
    assert child.layer == "relu1"  # the previous feature map of higher resolution, >= 0
    assert child.is_fitted and child.n_concepts == 3 and child.class_id_ == fitted.class_id_
    assert child.parent_concept_ == 0 and child.parent_crops_ is not None
    threshold = torch.quantile(fitted.crops_u_[:, 0].double(), 0.8)
    assert (
        child.parent_crops_.tolist() == torch.nonzero(fitted.crops_u_[:, 0] > threshold).squeeze(1).tolist()
    )
    assert 3 <= len(child.crops_) < len(fitted.crops_)
    assert torch.equal(child.crops_, fitted.crops_[child.parent_crops_])
    assert child.components_.shape == (3, 5)
    explicit = fitted.decompose(1, layer="conv1", n_concepts=2, percentile=50)
    assert explicit.layer == "conv1" and explicit.n_concepts == 2


def test_decompose_needs_enough_crops(fitted: Craft) -> None:
    with pytest.raises(ValueError, match="too few crops to decompose concept 2"):
        fitted.decompose(2, percentile=99)
    with pytest.raises(ValueError, match="concepts must be an int in"):
        fitted.decompose(3)


# --- errors ----------------------------------------------------------------------------------


def test_negative_activations_with_nmf_name_the_layer_and_the_alternatives() -> None:
    signed = TinyNet(signed=True)
    images = block_images(4, seed=8)
    with pytest.raises(ValueError, match=r"layer 'conv2'.*SemiNMF.*PCA"):
        Craft(signed, layer="conv2", n_concepts=3, patch_size=8, dictionary="nmf", progress=False).fit(
            images, 0
        )
    semi = Craft(signed, layer="conv2", n_concepts=3, patch_size=8, dictionary="semi_nmf", progress=False)
    assert semi.fit(images, 0).reconstruction_error_ < 0.05
    assert (semi.dictionary_, semi.dictionary_reason_) == ("semi_nmf", "given")
    # By default the learner follows the sign: Semi-NMF here, the same fit as asking for it.
    auto = Craft(signed, layer="conv2", n_concepts=3, patch_size=8, progress=False).fit(images, 0)
    assert auto.dictionary_ == "semi_nmf" and "signed" in auto.dictionary_reason_
    assert torch.equal(auto.components_, semi.components_)
    relu = Craft(signed, layer="relu2", n_concepts=3, patch_size=8, progress=False).fit(images, 0)
    assert relu.dictionary_ == "nmf"


def test_clear_errors_on_bad_use(tiny: TinyNet) -> None:
    craft = Craft(tiny, layer="relu2", n_concepts=3, patch_size=8, progress=False)
    images = block_images(1)
    for use in (
        lambda: craft.transform(images),
        lambda: craft.importance(images),
        lambda: craft.concept_maps(images),
        lambda: craft.decompose(0),
        lambda: craft.components_,
        lambda: craft.crops_u_,
    ):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            use()
    assert not hasattr(craft, "crops_")
    with pytest.raises(ValueError, match="at least n_concepts=30 crops"):  # 25 crops at stride 6
        Craft(tiny, layer="relu2", n_concepts=30, patch_size=8, progress=False).fit(images, 0)
    with pytest.raises(ValueError, match="values in"):
        craft.fit(images * 255, 0)
    with pytest.raises(ValueError, match="patch_size=64 does not fit"):
        Craft(tiny, layer="relu2", n_concepts=3, patch_size=64, progress=False).fit(images, 0)
    with pytest.raises(ValueError, match="class_id must lie in"):
        craft.fit(images, 4)
    with pytest.raises(ValueError, match="unknown layer"):
        Craft(tiny, layer="relu9")
    with pytest.raises(ValueError, match="unknown dictionary learner"):
        Craft(tiny, layer="relu2", dictionary="nfm")
    with pytest.raises(ValueError, match="feature maps"):
        Craft(tiny, layer="fc", n_concepts=2, patch_size=8, progress=False).fit(images, 0)
    craft.fit(block_images(2), 0)
    with pytest.raises(ValueError, match="method must be one of"):
        craft.importance(images, method="lime")
    with pytest.raises(ValueError, match="power of two"):
        craft.importance(images, nb_design=30)


def test_default_stride_is_the_papers_overlapping_grid(tiny: TinyNet) -> None:
    # craft_torch.py cuts crops at stride int(0.8 * patch_size): 51 px for 64 px crops, so
    # 4 x 4 crops of a 224 px image (tops 0, 51, 102, 153), against 3 x 3 when tiling.
    assert Craft(tiny, patch_size=64).stride == 51
    assert Craft(tiny, patch_size=1).stride == 1
    assert Craft(tiny, patch_size=64, stride=64).stride == 64
    craft = Craft(tiny, layer="relu2", n_concepts=3, patch_size=8, progress=False).fit(block_images(2), 0)
    assert craft.stride == 6
    starts = [0, 6, 12, 18, 24]  # 32 px images
    boxes = [[i, top, left] for i in range(2) for top in starts for left in starts]
    assert craft.crop_boxes_.tolist() == boxes


def test_default_layer_is_the_last_feature_map(tiny: TinyNet) -> None:
    assert Craft(tiny).layer == "relu2"


@pytest.mark.filterwarnings("error")
def test_docstring_examples_run() -> None:
    result = doctest.testmod(craft_module, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0


# --- the real default model ------------------------------------------------------------------


# The child's NMF on a few crops may stop at max_iter: irrelevant to what is checked here.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_end_to_end_on_the_default_model(lite0: models.VisionModel) -> None:
    if not IMAGENETTE_TENCH.is_dir():
        pytest.skip(f"Imagenette photos not found at {IMAGENETTE_TENCH}")
    torch.set_num_threads(2)  # real forward passes: the one-thread fixture would double the time
    photos = data.read_images(IMAGENETTE_TENCH, lite0.preprocess, limit=4, progress=False).images
    craft = Craft(lite0, n_concepts=3, patch_size=112, batch_size=16, progress=False).fit(photos, 0)
    assert craft.layer == "bn2" and craft.components_.shape == (3, 1280)
    assert craft.crops_.shape == (16, 3, 112, 112)
    importance = craft.importance(photos[:2], nb_design=8)
    assert importance.shape == (3,) and bool(torch.isfinite(importance).all())
    top = int(importance.argmax())
    # Seen again whole, the crops ranked best for the top concept hold more of it than those ranked worst.
    order = craft.crops_u_[:, top].argsort(descending=True)
    again = craft.concept_maps(
        F.interpolate(craft.crops_[order[[0, 1, -2, -1]]], size=(224, 224), mode="bilinear")
    )
    amount = again[:, top].mean(dim=(1, 2))
    assert float(amount[:2].min()) > float(amount[2:].max()), amount
    cam = craft.concept_maps(photos[:1], concepts=top, method="gradcam")
    assert cam.shape == (1, 1, 224, 224) and bool((cam >= 0).all()) and float(cam.max()) > 0
    child = craft.decompose(top, n_concepts=2, percentile=50)
    assert child.layer == "blocks.5.0.bn1" and child.components_.shape == (2, 672)
