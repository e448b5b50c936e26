"""harmonization_loss and alignment_score against independent float64 references and hand cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from spyglass.alignment import (
    HUMAN_SPEARMAN_CEILING,
    alignment_score,
    decayed_parameters,
    gaussian_pyramid,
    harmonization_loss,
)


def _net(size: int = 8, classes: int = 3, norm: bool = True) -> nn.Module:
    torch.manual_seed(0)
    # Softplus: a non-zero second derivative, so double backprop carries information.
    # BatchNorm (in training mode inside the loss) must be left out of the weight decay.
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4) if norm else nn.Identity(),
        nn.Softplus(),
        nn.Flatten(),
        nn.Linear(4 * size * size, classes),
    ).double()


def _reference_pyramid(x: np.ndarray, levels: int) -> list[np.ndarray]:
    # Written from the TF semantics with loops: "SAME" at stride 2 gives out = ceil(n/2),
    # pad_total = (out - 1) * 2 + 5 - n, pad_before = pad_total // 2.
    k1 = np.array([1.0, 4.0, 6.0, 4.0, 1.0])
    kernel = np.outer(k1, k1) / 256.0
    out = [x]
    for _ in range(levels - 1):
        b, h, w = x.shape
        oh, ow = -(-h // 2), -(-w // 2)
        ph = (oh - 1) * 2 + 5 - h
        pw = (ow - 1) * 2 + 5 - w
        padded = np.zeros((b, h + ph, w + pw))
        padded[:, ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w] = x
        y = np.zeros((b, oh, ow))
        for i in range(oh):
            for j in range(ow):
                y[:, i, j] = (padded[:, 2 * i : 2 * i + 5, 2 * j : 2 * j + 5] * kernel).sum(axis=(1, 2))
        out.append(y)
        x = y
    return out


def _reference_loss(model, images, labels, maps, tokens) -> float:
    """float64 NumPy re-implementation of the authors' harmonizer_loss (value only)."""
    model.train()
    x = images.clone().requires_grad_(True)
    logits = model(x)
    (grad,) = torch.autograd.grad(logits[torch.arange(len(labels)), labels].sum(), x)
    phi = grad.mean(1).detach().numpy()
    z = logits.detach().numpy()
    k = z.shape[1]
    onehot = np.eye(k)[labels.numpy()] * 0.9 + 0.1 / k
    logp = z - z.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    ce = float(-(onehot * logp).sum(1).mean())

    def cut(h):
        m = h.mean(axis=(1, 2), keepdims=True)
        s = np.sqrt(((h - m) ** 2).mean(axis=(1, 2), keepdims=True))
        return np.maximum((h - m) / (s + 1e-5), 0)

    s_ = cut(phi)
    h_ = cut(maps.numpy())
    h_ = h_ / (h_.max(axis=(1, 2), keepdims=True) + 1e-6) * (s_.max(axis=(1, 2), keepdims=True) + 1e-6)
    t = tokens.numpy()[:, None, None]
    pyr = np.mean(
        [
            ((a - b) ** 2 * t).mean()
            for a, b in zip(_reference_pyramid(s_, 5), _reference_pyramid(h_, 5), strict=True)
        ]
    )
    decay = 0.5 * sum(
        float((p.detach().numpy() ** 2).sum())
        for n, p in model.named_parameters()
        if n.startswith(("0.", "4."))
    )
    return ce + 1e-5 * decay + pyr


@pytest.mark.parametrize("size", [8, 9])
def test_pyramid_matches_tf_same_reference(size):
    x = torch.rand(2, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours = gaussian_pyramid(x, 4)
    ref = _reference_pyramid(x.numpy(), 4)
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-12, atol=1e-14)


def test_pyramid_pads_one_before_two_after():
    # One hot pixel at (0, 0) of a 4x4 map: with pad (1, 2) output (0, 0) sees it at kernel
    # tap (1, 1): 4*4/256; with symmetric padding=2 it would be tap (2, 2): 36/256.
    x = torch.zeros(1, 4, 4, dtype=torch.float64)
    x[0, 0, 0] = 1.0
    level = gaussian_pyramid(x, 2)[1]
    assert level.shape == (1, 2, 2)
    assert level[0, 0, 0].item() == pytest.approx(16 / 256)


def test_loss_matches_float64_reference():
    model = _net()
    g = torch.Generator().manual_seed(2)
    images = torch.rand(4, 3, 8, 8, dtype=torch.float64, generator=g)
    labels = torch.tensor([0, 2, 1, 2])
    maps = torch.rand(4, 8, 8, dtype=torch.float64, generator=g)
    tokens = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    model.eval()
    ours = harmonization_loss(model, images, labels, maps, tokens)
    assert not model.training and not any(m.training for m in model.modules())
    ref = _reference_loss(model, images, labels, maps, tokens)
    assert ours.item() == pytest.approx(ref, rel=1e-10)


def test_tokens_zero_gives_zero_pyramid_and_tokens_dilute():
    model = _net(norm=False)  # batch statistics would couple the images
    g = torch.Generator().manual_seed(3)
    images = torch.rand(4, 3, 8, 8, dtype=torch.float64, generator=g)
    labels = torch.tensor([0, 1, 2, 0])
    maps = torch.rand(4, 8, 8, dtype=torch.float64, generator=g)
    zero = harmonization_loss(
        model, images, labels, maps, torch.zeros(4, dtype=torch.float64), return_terms=True
    )
    assert zero.pyramid.item() == 0.0
    full = harmonization_loss(model, images, labels, maps, return_terms=True)
    half = harmonization_loss(
        model, images, labels, maps, torch.tensor([1.0, 1, 0, 0], dtype=torch.float64), return_terms=True
    )
    first = harmonization_loss(model, images[:2], labels[:2], maps[:2], return_terms=True)
    assert full.pyramid.item() > 0
    # Not renormalised: two tokened images out of four give half their own term.
    assert half.pyramid.item() == pytest.approx(first.pyramid.item() / 2, rel=1e-8)


def test_gradient_matches_finite_differences():
    model = _net(size=4, classes=2)
    g = torch.Generator().manual_seed(4)
    images = torch.rand(2, 3, 4, 4, dtype=torch.float64, generator=g)
    labels = torch.tensor([0, 1])
    # The reference stops the gradient through max φ (the map's rescaling), so the loss's
    # gradient is not the derivative of its value wherever the map term depends on it. A
    # zero map standardises to zero and removes that dependence: the pyramid term is then
    # mean P^i relu(std(φ))², whose true gradient needs the double backprop through φ.
    maps = torch.zeros(2, 4, 4, dtype=torch.float64)
    names = [f"inner.{n}" for n, _ in model.named_parameters()]
    wrapped = _Wrap(model, lambda m: harmonization_loss(m, images, labels, maps, weight_decay=0.1))

    def as_function(*values):
        return torch.func.functional_call(wrapped, dict(zip(names, values, strict=True)), ())

    values = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())
    assert torch.autograd.gradcheck(as_function, values, eps=1e-6, atol=1e-6, rtol=1e-4)


class _Wrap(nn.Module):
    def __init__(self, model, fn):
        super().__init__()
        self.inner = model
        self.fn = fn

    def forward(self):
        return self.fn(self.inner)


class _OnceDifferentiable(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.tanh(x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (1 - torch.tanh(x) ** 2)


class _OnceNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3 * 4 * 4, 2).double()

    def forward(self, x):
        return _OnceDifferentiable.apply(self.linear(x.flatten(1)))


class _DetachedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3 * 4 * 4, 2).double()

    def forward(self, x):
        with torch.no_grad():
            weight = self.linear.weight * 1.0
        return x.flatten(1) @ weight.T


@pytest.mark.parametrize("net", [_OnceNet, _DetachedNet])
def test_model_not_twice_differentiable_is_refused(net):
    images = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="not differentiable twice"):
        harmonization_loss(net(), images, torch.tensor([0, 1]), torch.rand(2, 4, 4, dtype=torch.float64))


def test_bad_input():
    model = _net(size=4, classes=2)
    images = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    labels = torch.tensor([0, 1])
    maps = torch.rand(2, 4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="shape"):
        harmonization_loss(model, images, labels, torch.rand(2, 5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=">= 0"):
        harmonization_loss(model, images, labels, maps - 1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        harmonization_loss(model, images, torch.tensor([0, 2]), maps)
    with pytest.raises(ValueError, match="tokens"):
        harmonization_loss(model, images, labels, maps, torch.tensor([2.0, 0.0]))
    with pytest.raises(TypeError, match="human_maps"):
        harmonization_loss(model, images, labels, maps.numpy())
    with pytest.raises(ValueError, match="label_smoothing"):
        harmonization_loss(model, images, labels, maps, label_smoothing=1.0)


def test_weight_decay_skips_norm_embedding_and_tokens():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)
            self.bn = nn.BatchNorm2d(2)
            self.ln = nn.LayerNorm(2)
            self.embedding = nn.Embedding(3, 2)
            self.cls_token = nn.Parameter(torch.zeros(2))
            self.head = nn.Linear(2, 2)

    net = Net()
    kept = {id(p) for p in decayed_parameters(net)}
    expected = {id(net.conv.weight), id(net.conv.bias), id(net.head.weight), id(net.head.bias)}
    assert kept == expected


# ----------------------------------------------------------------------------- alignment score


def _given(maps):
    return lambda images, labels: maps


def test_alignment_hand_computed():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 2 * 5, 2))
    images = torch.rand(3, 3, 2, 5)
    labels = torch.tensor([0, 1, 0])
    human = torch.arange(10.0).reshape(1, 2, 5).repeat(3, 1, 1)
    explained = torch.stack(
        [
            torch.arange(10.0).reshape(2, 5),  # same order: ρ = 1, top 10 % = {9} both: Dice = IoU = 1
            -torch.arange(10.0).reshape(2, 5),  # reversed: ρ = -1, top sets {0} vs {9}: Dice = IoU = 0
            torch.ones(2, 5),  # constant: no ρ, left out
        ]
    )
    result = alignment_score(model, images, labels, human, explainer=_given(explained))
    assert result.n_images == 3 and result.n_constant == 1
    assert result.spearman == pytest.approx(0.0)
    assert result.dice == pytest.approx(0.5) and result.iou == pytest.approx(0.5)
    assert math.isnan(result.per_image[2])
    assert result.per_image[:2].tolist() == pytest.approx([1.0, -1.0])


def test_alignment_top_sets_of_binary_maps_keep_their_ties():
    # A binary "human" map (the object's half): its top 10 % is its ones, not nothing.
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 10, 2))
    images = torch.rand(2, 3, 4, 10)
    labels = torch.tensor([0, 1])
    human = torch.zeros(2, 4, 10)
    human[:, :, :5] = 1.0  # left half: 20 of 40 pixels
    sparse = torch.zeros(4, 10)
    sparse[0, :2] = 1.0  # 2 ones, fewer than the 4 pixels of 10 %: the top is those 2
    explained = torch.stack([human[0].clone(), sparse])
    result = alignment_score(model, images, labels, human, explainer=_given(explained))
    # image 0: the same half, Dice = IoU = 1; image 1: {2 pixels} inside the half of 20:
    # Dice = 2·2 / (2 + 20), IoU = 2 / 20
    assert result.dice == pytest.approx((1 + 4 / 22) / 2)
    assert result.iou == pytest.approx((1 + 2 / 20) / 2)


def test_alignment_spearman_with_ties_and_ceiling():
    # x = [1, 2, 2, 3], y = [1, 3, 2, 4]: ranks [1, 2.5, 2.5, 4] and [1, 3, 2, 4];
    # centred [-1.5, 0, 0, 1.5] · [-1.5, 0.5, -0.5, 1.5] = 4.5; norms √4.5 and √5 → ρ = √0.9.
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    ex = torch.tensor([[[1.0, 2.0], [2.0, 3.0]]])
    hu = torch.tensor([[[1.0, 3.0], [2.0, 4.0]]])
    result = alignment_score(model, torch.rand(1, 3, 2, 2), torch.tensor([1]), hu, explainer=_given(ex))
    assert result.spearman == pytest.approx(math.sqrt(0.9))
    assert result.score == pytest.approx(math.sqrt(0.9) / HUMAN_SPEARMAN_CEILING)
    assert result.percent == pytest.approx(100 * result.score)


def test_alignment_default_saliency_on_linear_model():
    # Saliency of a linear model is |w_y| maxed over channels: with the human map equal to
    # it, ρ = 1.
    torch.manual_seed(5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    weight = model[1].weight.detach().reshape(2, 3, 4, 4).abs().amax(1)
    labels = torch.tensor([1, 0])
    result = alignment_score(model, torch.rand(2, 3, 4, 4), labels, weight[labels])
    assert result.spearman == pytest.approx(1.0)
    assert result.n_constant == 0


def test_alignment_bad_input():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    images = torch.rand(1, 3, 2, 2)
    with pytest.raises(ValueError, match="shape"):
        alignment_score(model, images, torch.tensor([0]), torch.rand(1, 3, 3))
    with pytest.raises(ValueError, match="constant"):
        alignment_score(
            model, images, torch.tensor([0]), torch.ones(1, 2, 2), explainer=_given(torch.rand(1, 2, 2))
        )
    with pytest.raises(TypeError, match="explainer"):
        alignment_score(model, images, torch.tensor([0]), torch.rand(1, 2, 2), explainer=3)
