"""Every method on the architectures people explain today: ResNet, ViT, ConvNeXt, EfficientNet-Lite0.

Random weights, 64 px inputs. Checked: the default layer each family gets, token grids read
as feature maps (the prefix tokens set aside, found from the shapes alone), Grad-CAM on a ViT
against the rule computed by hand on the reshaped tokens, a planted-token truth check, CRAFT
on signed activations (Semi-NMF picked and recorded; explicit NMF refused) and its
Gradient×Input importance complete at a ViT's last layer.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spyglass import attributions, models
from spyglass.concepts import Craft

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")

SIZE = (64, 64)


def wrap(network: nn.Module, classes: int = 10) -> models.VisionModel:
    return models.VisionModel(
        network.eval(),
        input_size=SIZE,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        class_names=[f"c{i}" for i in range(classes)],
    )


def vit(**options: object) -> models.VisionModel:
    torch.manual_seed(0)
    network = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=SIZE[0], num_classes=10, depth=3, **options
    )
    return wrap(network)


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, *SIZE, generator=torch.Generator().manual_seed(seed))


# --- layouts ------------------------------------------------------------------------------


def test_token_layouts_are_found_from_the_shape_and_input_size() -> None:
    assert models.feature_layout((197, 768), (224, 224)) == models.FeatureLayout("tokens", 768, 14, 14, 1)
    assert models.feature_layout((201, 384), (224, 224)).prefix_tokens == 5  # class + 4 registers
    assert models.feature_layout((196, 768), (224, 224)).prefix_tokens == 0
    # Non-square: 1 + 4 x 8 tokens of a 64 x 128 image at patch 16.
    assert models.feature_layout((33, 8), (64, 128)) == models.FeatureLayout("tokens", 8, 4, 8, 1)
    assert models.feature_layout((7, 7, 768), (224, 224)).kind == "channels_last"
    assert models.feature_layout((1280, 7, 7), (224, 224)).kind == "channels_first"
    assert models.feature_layout((1000,), (224, 224)) is None
    assert models.feature_layout((1280, 1, 1), (224, 224)) is None


def test_layout_rows_round_trip_and_grid_is_row_major() -> None:
    layout = models.FeatureLayout("tokens", 3, 2, 2, prefix_tokens=1)
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    grid = layout.to_grid(tokens)
    assert grid.shape == (2, 3, 2, 2)
    assert torch.equal(grid[:, :, 0, 1], tokens[:, 2])  # token 1 + (row 0, col 1)
    assert torch.equal(grid[:, :, 1, 0], tokens[:, 3])
    assert torch.equal(layout.from_rows(layout.rows(tokens)), tokens)
    last = models.FeatureLayout("channels_last", 3, 2, 2)
    nhwc = torch.rand(2, 2, 2, 3)
    assert torch.equal(last.to_grid(nhwc), nhwc.permute(0, 3, 1, 2))
    assert torch.equal(last.from_rows(last.rows(nhwc)), nhwc)
    with pytest.raises(ValueError, match="expects"):
        layout.to_grid(torch.rand(2, 6, 3))


def test_list_layers_shows_tokens_as_maps() -> None:
    infos = {info.name: info for info in models.list_layers(vit())}
    assert infos["blocks.1"].output_shape == (17, 192)
    assert infos["blocks.1"].map_shape == (192, 4, 4)
    assert infos["blocks.1"].prefix_tokens == 1
    assert infos["head"].map_shape is None


# --- default layers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: wrap(torchvision.models.resnet18(num_classes=10)), "layer4"),
        (lambda: wrap(timm.create_model("convnext_atto", pretrained=False, num_classes=10)), "stages"),
        # Class-token ViT: the last block's patch tokens never reach the head (the final norm
        # is per token), so the rule takes the previous block, whose tokens the last attention reads.
        (lambda: vit(), "blocks.1"),
        (lambda: vit(global_pool="avg", fc_norm=False), "norm"),
        (lambda: models.load(), "bn2"),
    ],
    ids=["resnet18", "convnext_atto", "vit_cls", "vit_avg", "efficientnet_lite0"],
)
def test_default_layer_by_one_rule(build, expected: str) -> None:  # type: ignore[no-untyped-def]
    model = build()
    assert models.default_layer(model) == expected
    assert attributions.GradCAM(model, progress=False).layer == expected


def test_default_layer_leaves_the_model_as_found() -> None:
    model = vit()
    model.train()
    models.default_layer(model)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks for m in model.modules())


# --- Grad-CAM on tokens -------------------------------------------------------------------


def test_gradcam_on_a_vit_is_the_rule_on_the_reshaped_tokens() -> None:
    model = vit()
    x, targets = images(3), torch.tensor([1, 4, 7])
    maps = attributions.GradCAM(model, layer="blocks.1", progress=False)(x, targets)
    g, h = models.split(model, "blocks.1")
    tokens = g(x).detach().requires_grad_(True)
    (gradient,) = torch.autograd.grad(h(tokens).gather(1, targets[:, None]).sum(), tokens)
    patches, grads = tokens[:, 1:].detach(), gradient[:, 1:]  # the class token set aside
    a = patches.reshape(3, 4, 4, 192).permute(0, 3, 1, 2)
    alpha = grads.reshape(3, 4, 4, 192).mean(dim=(1, 2))
    cam = torch.relu(torch.einsum("bc,bchw->bhw", alpha, a))
    expected = F.interpolate(cam[:, None], size=SIZE, mode="bilinear", align_corners=False)[:, 0]
    assert float(cam.abs().max()) > 0
    assert torch.allclose(maps, expected, atol=1e-6, rtol=1e-4)


class PlantedTokens(nn.Module):
    """A ViT-shaped model: patch tokens after a class token; only bright patches activate.

    The patch embedding has no bias and a ReLU, so a black patch's token is zero; the class
    token is a large constant. The head averages the patch tokens. Grad-CAM's map must then
    be zero everywhere but on the bright patch: reading the class token as a grid cell, or
    the grid in the wrong order, moves or spreads it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 16, stride=16, bias=False)
        self.cls = nn.Parameter(torch.full((1, 1, 8), 50.0))
        self.block = nn.Sequential(nn.Linear(8, 8, bias=False), nn.ReLU())
        self.head = nn.Linear(8, 2)
        with torch.no_grad():
            self.embed.weight.abs_()
            self.block[0].weight.copy_(torch.eye(8))
            self.head.weight.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = torch.relu(self.embed(x)).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1)
        return self.head(self.block(tokens)[:, 1:].mean(dim=1))


def test_gradcam_finds_a_planted_token() -> None:
    model = models.VisionModel(
        PlantedTokens(), input_size=SIZE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), class_names=["a", "b"]
    )
    assert models.default_layer(model) == "block"
    x = torch.zeros(2, 3, *SIZE)
    x[0, :, 16:32, 32:48] = 1.0  # cell (1, 2) of the 4 x 4 grid
    x[1, :, 48:64, 0:16] = 1.0  # cell (3, 0)
    maps = attributions.GradCAM(model, progress=False)(x, 1)
    cells = F.avg_pool2d(maps[:, None], 16)[:, 0]
    for image, (row, col) in enumerate([(1, 2), (3, 0)]):
        assert int(cells[image].argmax()) == row * 4 + col
        away = maps[image].clone()
        away[max(0, 16 * row - 8) : 16 * row + 24, max(0, 16 * col - 8) : 16 * col + 24] = 0
        assert float(away.abs().max()) == 0.0


# --- CRAFT on signed activations ----------------------------------------------------------


def test_craft_on_a_vit_picks_semi_nmf_and_gradient_input_is_complete() -> None:
    model = vit(global_pool="avg", fc_norm=False)  # head = mean of patch tokens, then linear: affine
    craft = Craft(model, n_concepts=3, patch_size=32, stride=32, progress=False).fit(images(4), 2)
    assert craft.layer == "norm"
    assert craft.dictionary_ == "semi_nmf"
    assert "signed" in craft.dictionary_reason_
    x = images(2, seed=3)
    gxi = craft.importance(x, "gradient_input", per_image=True)
    g, h = models.split(model, "norm")
    with torch.no_grad():
        tokens = g(x)
        rows = tokens.reshape(-1, 192)
        codes = craft.learner_.transform(rows)
        residual = rows - craft.learner_.inverse_transform(codes)
        full = h(tokens)[:, 2]
        emptied = h((craft.learner_.inverse_transform(codes * 0) + residual).reshape(tokens.shape))[:, 2]
    assert torch.allclose(gxi.sum(dim=1), full - emptied, atol=1e-4)
    assert craft.transform(x).shape == (2, 4, 4, 3)
    assert craft.concept_maps(x, method="gradcam").shape == (2, 3, *SIZE)


def test_craft_with_explicit_nmf_on_signed_tokens_keeps_the_clear_error() -> None:
    craft = Craft(vit(), n_concepts=2, patch_size=32, stride=32, dictionary="nmf", progress=False)
    with pytest.raises(ValueError, match="non-negative"):
        craft.fit(images(2), 1)


def test_craft_on_convnext_and_resnet_with_defaults() -> None:
    torch.manual_seed(0)
    convnext = wrap(timm.create_model("convnext_atto", pretrained=False, num_classes=10))
    fitted = Craft(convnext, n_concepts=2, patch_size=32, stride=32, progress=False).fit(images(2), 1)
    assert (fitted.layer, fitted.dictionary_) == ("stages", "semi_nmf")
    resnet = wrap(torchvision.models.resnet18(num_classes=10))
    fitted = Craft(resnet, n_concepts=2, patch_size=32, stride=32, progress=False).fit(images(2), 1)
    assert (fitted.layer, fitted.dictionary_) == ("layer4", "nmf")  # after a ReLU: CRAFT's own NMF
    x = images(2, seed=3)
    gxi = fitted.importance(x, "gradient_input", per_image=True)  # layer4 -> pool -> fc is affine
    occlusion = fitted.importance(x, "occlusion", per_image=True)
    assert torch.allclose(gxi, occlusion, atol=1e-4)


# --- feature visualization on tokens ------------------------------------------------------


def test_featureviz_objectives_read_tokens_as_a_grid() -> None:
    from spyglass.featureviz import channel, direction, neuron

    model = vit()
    x = images(2)
    g, _ = models.split(model, "blocks.1")
    with torch.no_grad():
        grid = g(x)[:, 1:].reshape(2, 4, 4, 192).permute(0, 3, 1, 2)  # class token set aside
        assert torch.allclose(channel("blocks.1", 5)(model, x), grid[:, 5].mean(dim=(1, 2)), atol=1e-6)
        assert torch.allclose(neuron("blocks.1", 5, position=(1, 3))(model, x), grid[:, 5, 1, 3])
        v = torch.rand(192, generator=torch.Generator().manual_seed(1))
        pooled = grid.mean(dim=(2, 3))
        cosine = F.cosine_similarity(pooled, v.expand_as(pooled), dim=1)
        expected = (pooled @ v) * cosine.clamp(min=0.1) ** 2
        assert torch.allclose(direction("blocks.1", v)(model, x), expected, rtol=1e-5)


# --- EVA on a ViT -------------------------------------------------------------------------


def test_eva_on_a_vit_names_the_unsupported_op_and_hybrid_works() -> None:
    from spyglass.bounds import UnsupportedOperationError

    torch.manual_seed(0)
    network = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        num_classes=4,
        depth=2,
        embed_dim=48,
        num_heads=2,
    )
    model = models.VisionModel(
        network.eval(), input_size=(32, 32), mean=(0.5,) * 3, std=(0.5,) * 3, class_names=list("abcd")
    )
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with pytest.raises(UnsupportedOperationError, match="layer_norm"):
        attributions.EVA(model, bounds="ibp", grid_size=2, progress=False)(x, 0)
    hybrid = attributions.EVA(model, bounds="hybrid", grid_size=2, progress=False)
    assert hybrid.layer == "head_drop"  # after every LayerNorm and attention: only the head is bounded
    maps = hybrid(x, 0)
    assert maps.shape == (1, 32, 32) and bool(torch.isfinite(maps).all())


# --- the contract's truth check on a token model ------------------------------------------


class TokenReader(nn.Module):
    """The contract's block reader as a ViT: 8 px patch tokens after a class token; the head reads one.

    ``KeepBlock`` zeroes every pixel outside the contract's block (cell (1, 2) of the 4 × 4 patch
    grid of a 32 px image); the patch embedding has no bias, so every other patch token is zero;
    the head reads the block's token only (token ``1 + 1·4 + 2``). A method that reads the class
    token as a grid cell, or the grid in the wrong order, puts the map in another cell.
    """

    def __init__(self) -> None:
        super().__init__()
        from tests.tiny import KeepBlock

        generator = torch.Generator().manual_seed(0)
        self.keep = KeepBlock()
        self.embed = nn.Conv2d(3, 8, 8, stride=8, bias=False)
        self.cls = nn.Parameter(torch.full((1, 1, 8), 3.0))
        self.block = nn.Sequential(nn.Linear(8, 8, bias=False), nn.ReLU())
        self.head = nn.Linear(8, 5)
        with torch.no_grad():
            for layer in (self.embed, self.block[0], self.head):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) / 2)
            self.head.weight.abs_()  # logits >= 0 and rising with the token: a CAM is positive there
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(self.keep(x)).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1)
        return self.head(self.block(tokens)[:, 1 + 1 * 4 + 2])


# The white-box methods: they read the model's layers or gradients, where a token layout could go
# wrong. Black-box methods never see a layer; the contract's block reader checks them.
WHITE_BOX = [
    n
    for n in attributions.list_methods()
    if attributions.method_class(n).kind in ("gradient", "propagation", "cam")
]


@pytest.mark.parametrize("name", WHITE_BOX)
def test_white_box_methods_find_the_token_the_model_reads(name: str) -> None:
    from tests.attributions.test_contract import TRUTH_SHARE, block_shares, registered
    from tests.tiny import tiny_images

    model = models.VisionModel(
        TokenReader(), input_size=(32, 32), mean=(0.5,) * 3, std=(0.25,) * 3, class_names=list("abcde")
    )
    maps = registered(name)(model)(tiny_images(), torch.tensor([0, 1, 2, 3, 4]))
    share, peak_inside = block_shares(maps)
    assert bool(peak_inside.all()), (name, peak_inside)
    kind = attributions.method_class(name).kind
    if kind == "cam":
        # A CAM lives on the 4 x 4 token grid: upsampled bilinearly, the block's cell spreads half
        # a cell (4 px) around it, and nothing reaches further.
        away = maps.clone()
        away[:, 4:20, 12:28] = 0
        assert float(away.abs().max()) == 0.0, name
    else:
        assert bool((share >= TRUTH_SHARE[kind]).all()), (name, share)


# --- Swin: channels-last grids ------------------------------------------------------------


def test_swin_channels_last_grid_default_layer_and_gradcam() -> None:
    from timm.models.swin_transformer import SwinTransformer

    torch.manual_seed(0)
    network = SwinTransformer(
        img_size=64,
        patch_size=4,
        window_size=4,
        embed_dim=24,
        depths=(1, 1),
        num_heads=(1, 2),
        num_classes=10,
    )
    model = wrap(network)
    assert models.default_layer(model) == "norm"
    shape = models.probe_layers(model, names=["norm"])["norm"]
    assert shape == (8, 8, 48)
    assert models.feature_layout(shape, SIZE) == models.FeatureLayout("channels_last", 48, 8, 8)
    x, targets = images(2), torch.tensor([3, 5])
    maps = attributions.GradCAM(model, progress=False)(x, targets)
    g, h = models.split(model, "norm")
    grid = g(x).detach().requires_grad_(True)  # (N, h, w, C)
    (gradient,) = torch.autograd.grad(h(grid).gather(1, targets[:, None]).sum(), grid)
    cam = torch.relu(torch.einsum("bc,bhwc->bhw", gradient.mean(dim=(1, 2)), grid.detach()))
    expected = F.interpolate(cam[:, None], size=SIZE, mode="bilinear", align_corners=False)[:, 0]
    assert float(cam.max()) > 0
    assert torch.allclose(maps, expected, atol=1e-6, rtol=1e-4)
