r"""1-Lipschitz classifiers: build them, bound their constant, train them with hKR, export them.

A 1-Lipschitz network satisfies :math:`\|f(x) - f(y)\|_2 \le \|x - y\|_2` for all images.
Trained with the hinge-Kantorovich–Rubinstein (hKR) loss it becomes an *optimal-transport
neural network* (OTNN) whose gradients are counterfactual directions (Serrurier, Mamalet,
Fel et al., "On the explainable properties of 1-Lipschitz neural networks: an optimal
transport perspective", NeurIPS 2023), and whose explanations have a higher MeGe and ReCo
(Fel et al., WACV 2022). The layers and losses are deel-torchlip's (``deel-torchlip``
1.0.5, imported by name: ``from deel.torchlip import *`` fails in that release).

- :func:`lipschitz_classifier` builds a CNN of spectral convolutions, GroupSort2 and scaled
  L2-norm pooling, wrapped as a :class:`~spyglass.models.VisionModel`;
- :func:`lipschitz_constant` estimates the constant from below (the largest Jacobian norm
  found by power iteration, then ascent on the Lipschitz ratio) and bounds it from above
  (the product of per-layer bounds);
- :func:`train_lipschitz` trains with torchlip's multiclass soft-hKR loss on the shared loop;
- :func:`export_lipschitz` bakes the re-parametrised weights into plain ``Conv2d``/``Linear``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import timm.layers
import torch
import torch.nn.functional as F
from deel.torchlip import (
    FrobeniusLinear,
    GroupSort2,
    HKRLoss,
    ScaledL2NormPool2d,
    SoftHKRMulticlassLoss,
    SpectralConv2d,
    SpectralLinear,
    vanilla_model,
)
from torch import Tensor, nn
from torch.utils.data import Dataset

from spyglass.models.vision_model import VisionModel
from spyglass.training.loop import TrainingHistory, Validate, train
from spyglass.validation import check_images, check_int

__all__ = [
    "HEADS",
    "LipschitzEstimate",
    "alpha_from_lambda",
    "export_lipschitz",
    "hkr_loss",
    "layer_bound",
    "lipschitz_classifier",
    "lipschitz_constant",
    "train_lipschitz",
]

HEADS = ("spectral", "frobenius")

# torch.fx cannot trace torchlip's layers (GroupSort2 branches on shapes, Björck loops until
# convergence): registered as timm's untraceable modules, which spyglass.models.trace keeps
# whole, they become single graph nodes, so that methods which split the model (Grad-CAM,
# CRAFT, the atlas) work on 1-Lipschitz networks too.
for _layer in (GroupSort2, ScaledL2NormPool2d, SpectralConv2d, SpectralLinear, FrobeniusLinear):
    timm.layers.register_notrace_module(_layer)
BUILDER = "lipschitz_classifier"
# Pixels in [0, 1] are centred but not divided by a std: a std below 1 would multiply the
# constant with respect to the pixels by 1/std.
_MEAN = (0.5, 0.5, 0.5)
_STD = (1.0, 1.0, 1.0)


def lipschitz_classifier(
    num_classes: int,
    *,
    input_size: tuple[int, int] = (32, 32),
    widths: Sequence[int] = (16, 32),
    depth: int = 2,
    hidden: Sequence[int] = (),
    head: str = "spectral",
    class_names: Sequence[str] | None = None,
    name: str = "lipschitz_cnn",
) -> VisionModel:
    r"""Build a 1-Lipschitz CNN classifier (w.r.t. the L2 norm of ``[0, 1]`` RGB images).

    The network is a chain: for each width ``w`` in ``widths``, ``depth`` times
    ``SpectralConv2d(3×3, w, padding 1) → GroupSort2``, then ``ScaledL2NormPool2d(2)`` (which
    halves the size); then a flatten, one ``SpectralLinear → GroupSort2`` per entry of
    ``hidden``, and the head. Each piece is 1-Lipschitz: spectral normalisation and Björck
    orthonormalisation make each kernel matrix orthonormal, and torchlip scales a
    :math:`k\times k` convolution by :math:`1/\sqrt{k_1 k_2}` (each pixel is read by at most
    :math:`k_1 k_2` patches); GroupSort2 is a permutation; L2 pooling over disjoint windows is
    1-Lipschitz. The :class:`~spyglass.models.VisionModel` subtracts 0.5 and divides by 1, so
    the bound holds in pixel space.

    Parameters
    ----------
    num_classes
        Outputs; 1 gives a binary classifier with one score :math:`f` (class 1 where
        :math:`f > 0`), the setting of the OTNN paper's Prop. 2.
    input_size
        ``(H, W)``, each divisible by ``2 ** len(widths)``.
    widths
        Channels of each stage, even (GroupSort2 sorts pairs of channels); ``()`` gives a
        dense network (flatten, then ``hidden``, then the head).
    depth
        Convolutions per stage.
    hidden
        Widths (even) of dense layers before the head.
    head
        ``"spectral"`` (``SpectralLinear``: orthonormal rows, gradient-norm preserving) or
        ``"frobenius"`` (``FrobeniusLinear`` normalised as a whole matrix, so that the vector of
        logits is 1-Lipschitz; torchlip's per-row ``disjoint_neurons`` variant makes each logit
        1-Lipschitz but the vector :math:`\sqrt{C}`-Lipschitz, and is not offered).
    class_names
        One name per class (default ``"class 0"``, …).
    name
        A label for reports.

    Returns
    -------
    VisionModel
        In eval mode; ``model.spec`` holds the arguments, which :func:`spyglass.models.save`
        writes beside the weights so that :func:`spyglass.models.load` can rebuild it.

    Examples
    --------
    >>> import torch
    >>> from spyglass.alignment import lipschitz_classifier
    >>> model = lipschitz_classifier(10, input_size=(32, 32), widths=(8, 16))
    >>> model(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """
    num_classes = check_int(num_classes, "num_classes", 1)
    if (
        not isinstance(input_size, (tuple, list))
        or len(input_size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in input_size)
    ):
        raise ValueError(f"input_size must be (H, W), two positive ints; got {input_size!r}")
    widths = _check_widths(widths, "widths")
    hidden = _check_widths(hidden, "hidden")
    depth = check_int(depth, "depth", 1)
    if head not in HEADS:
        raise ValueError(f"head must be one of {', '.join(HEADS)}; got {head!r}")
    factor = 2 ** len(widths)
    if input_size[0] % factor or input_size[1] % factor:
        raise ValueError(
            f"input_size {tuple(input_size)} must be divisible by 2 ** len(widths) = {factor} "
            f"(each of the {len(widths)} stage(s) halves it)"
        )
    if class_names is None:
        class_names = [f"class {i}" for i in range(num_classes)]
    layers: list[nn.Module] = []
    channels = 3
    for width in widths:
        for _ in range(depth):
            layers += [SpectralConv2d(channels, width, 3, padding=1), GroupSort2()]
            channels = width
        layers.append(ScaledL2NormPool2d(2))
    layers.append(nn.Flatten())
    features = channels * (input_size[0] // factor) * (input_size[1] // factor)
    for width in hidden:
        layers += [SpectralLinear(features, width), GroupSort2()]
        features = width
    if head == "spectral":
        layers.append(SpectralLinear(features, num_classes))
    else:
        layers.append(FrobeniusLinear(features, num_classes, disjoint_neurons=False))
    model = VisionModel(
        nn.Sequential(*layers),
        input_size=(input_size[0], input_size[1]),
        mean=_MEAN,
        std=_STD,
        class_names=list(class_names),
        name=name,
    )
    model.spec = {  # type: ignore[assignment]
        "builder": BUILDER,
        "arguments": {
            "num_classes": num_classes,
            "input_size": [input_size[0], input_size[1]],
            "widths": list(widths),
            "depth": depth,
            "hidden": list(hidden),
            "head": head,
            "class_names": list(model.class_names),
            "name": name,
        },
        "exported": False,
    }
    return model.eval()


def _positive(value: object, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and value > 0)
    ):
        raise ValueError(f"{name} must be a finite positive number; got {value!r}")
    return float(value)


def _check_widths(widths: Sequence[int], name: str) -> tuple[int, ...]:
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise TypeError(f"{name} must be a sequence of even positive ints; got {type(widths).__name__}")
    values = tuple(widths)
    if not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 and w % 2 == 0 for w in values):
        raise ValueError(
            f"{name} must be even positive ints (GroupSort2 sorts pairs of channels); got {list(values)}"
        )
    return values


def build_from_spec(spec: dict[str, Any]) -> VisionModel:
    """Rebuild the model a spec describes (its weights as initialised); used by ``models.load``."""
    arguments = dict(spec["arguments"])
    arguments["input_size"] = tuple(arguments["input_size"])
    model = lipschitz_classifier(**arguments)
    if spec.get("exported"):
        model = export_lipschitz(model)
    return model


# --------------------------------------------------------------------------------------------
# The constant


@dataclass(frozen=True)
class LipschitzEstimate:
    """Bounds on the L2 Lipschitz constant of a model, with respect to its ``[0, 1]`` input.

    Attributes
    ----------
    lower
        The largest value found of a quantity that cannot exceed the constant: a Jacobian
        spectral norm :math:`\\|J_f(x)\\|_2` (power iteration) or a ratio
        :math:`\\|f(x)-f(y)\\|/\\|x-y\\|` (gradient ascent).
    upper
        The product of per-layer bounds (``inf`` when a layer has no known bound or the network
        is not a chain of layers).
    gradient_norms
        ``(N,)`` the Jacobian spectral norm found at each image (for one output, ``‖∇f(x)‖``).
    layers
        ``(layer name, bound)`` of each layer that enters ``upper``.
    unbounded
        Names of the layers (or the reason) that make ``upper`` infinite.
    """

    lower: float
    upper: float
    gradient_norms: Tensor
    layers: tuple[tuple[str, float], ...]
    unbounded: tuple[str, ...]


def layer_bound(module: nn.Module) -> float | None:
    r"""A proven bound on the L2 Lipschitz constant of one layer, or ``None`` if unknown.

    ``Linear``: :math:`\|W\|_2`. ``Conv2d`` (zero or circular padding, no dilation, one
    group): :math:`\|W_{\mathrm{mat}}\|_2 \sqrt{\lceil k_1/s_1\rceil \lceil k_2/s_2\rceil}` with
    :math:`W_{\mathrm{mat}}` the ``(out, in·k1·k2)`` kernel matrix — the convolution is
    :math:`W_{\mathrm{mat}}` applied to the patches, and each pixel lies in at most that many
    patches. GroupSort2, ReLU, Flatten, Identity, Dropout (in eval): 1. L2 pooling (p = 2)
    and average pooling: by the same patch count. torchlip's spectral layers are handled
    through their re-parametrised ``weight`` (their bound comes out at 1 by construction).
    """
    if isinstance(module, nn.Linear):
        return float(torch.linalg.matrix_norm(module.weight.detach().double(), ord=2))
    if isinstance(module, nn.Conv2d):
        if module.groups != 1 or module.dilation != (1, 1):
            return None
        if module.padding_mode not in ("zeros", "circular"):
            return None
        weight = module.weight.detach().double().flatten(1)
        k1, k2 = module.kernel_size
        s1, s2 = module.stride
        return float(torch.linalg.matrix_norm(weight, ord=2)) * math.sqrt(
            math.ceil(k1 / s1) * math.ceil(k2 / s2)
        )
    if isinstance(module, (GroupSort2, nn.ReLU, nn.Flatten, nn.Identity, nn.Dropout)):
        return 1.0
    if isinstance(module, nn.LeakyReLU):
        return max(1.0, abs(module.negative_slope))
    if isinstance(module, nn.LPPool2d) and float(module.norm_type) == 2.0:
        coefficient = float(getattr(module, "_coefficient_lip", 1.0))
        return coefficient * _patch_factor(module.kernel_size, module.stride)
    if isinstance(module, nn.AvgPool2d) and module.padding in (0, (0, 0)):
        k1, k2 = _pair(module.kernel_size)
        return _patch_factor(module.kernel_size, module.stride) / math.sqrt(k1 * k2)
    return None


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _patch_factor(kernel: Any, stride: Any) -> float:
    k1, k2 = _pair(kernel)
    s1, s2 = _pair(stride if stride is not None else kernel)
    return math.sqrt(math.ceil(k1 / s1) * math.ceil(k2 / s2))


def _upper_bound(model: nn.Module) -> tuple[float, tuple[tuple[str, float], ...], tuple[str, ...]]:
    factor = 1.0
    network: nn.Module = model
    if isinstance(model, VisionModel):
        factor = float(1.0 / model.std.min())
        network = model.network
    layers: list[tuple[str, float]] = []
    if factor != 1.0:
        layers.append(("normalisation (1 / std)", factor))
    unbounded: list[str] = []

    def walk(module: nn.Module, prefix: str) -> None:
        if isinstance(module, nn.Sequential):
            for child_name, child in module.named_children():
                walk(child, f"{prefix}.{child_name}" if prefix else child_name)
            return
        bound = layer_bound(module)
        label = prefix or type(module).__name__
        if bound is None:
            unbounded.append(f"{label} ({type(module).__name__})")
        else:
            layers.append((label, bound))

    if isinstance(network, nn.Sequential) or layer_bound(network) is not None:
        walk(network, "")
    else:
        unbounded.append(
            f"the network ({type(network).__name__}) is not an nn.Sequential chain, so its layers "
            "cannot be composed"
        )
    upper = math.inf if unbounded else math.prod(bound for _, bound in layers)
    return upper, tuple(layers), tuple(unbounded)


def _normalise(v: Tensor) -> Tensor:
    return v / v.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (v.ndim - 1)))


def _jacobian_norms(
    model: nn.Module, x: Tensor, iterations: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Power iteration on ``JᵀJ`` at each image: ``(norms (N,), top right singular vectors)``."""
    v = _normalise(torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device))
    norms = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for _ in range(iterations):
        inputs = x.detach().requires_grad_(True)
        outputs = model(inputs)
        probe = torch.zeros_like(outputs, requires_grad=True)
        (transposed,) = torch.autograd.grad(outputs, inputs, grad_outputs=probe, create_graph=True)
        (jv,) = torch.autograd.grad(transposed, probe, grad_outputs=v)  # J v (Jᵀu is linear in u)
        u = _normalise(jv.detach())
        (jtu,) = torch.autograd.grad(outputs, inputs, grad_outputs=u)
        norms = torch.maximum(norms, jtu.flatten(1).norm(dim=1).detach())
        v = _normalise(jtu.detach())
    return norms, v


def lipschitz_constant(
    model: nn.Module,
    images: Tensor,
    *,
    iterations: int = 20,
    ascent_steps: int = 20,
    step_size: float = 1e-2,
    seed: int = 0,
) -> LipschitzEstimate:
    r"""Estimate the L2 Lipschitz constant of ``model`` from below and bound it from above.

    Lower: at each image, ``iterations`` steps of power iteration on :math:`J^\top J` give
    :math:`\|J_f(x)\|_2` (Jacobian-vector products by double backprop); then ``ascent_steps``
    of Adam on pairs :math:`(x, y)`, started at :math:`y = x + 10^{-3} v` along the top
    singular vector, maximise :math:`\|f(x)-f(y)\|_2 / \|x-y\|_2`. Every value seen is at most
    the constant (computed in float64), so their maximum is a lower bound (not the constant itself).
    Upper: for a chain of layers (an ``nn.Sequential``, possibly nested, inside a
    :class:`~spyglass.models.VisionModel`), :math:`L \le \frac{1}{\min \sigma} \prod_l L_l`
    with :func:`layer_bound` for each layer; ``inf`` when some layer has no known bound.

    Parameters
    ----------
    model
        A classifier of ``[0, 1]`` images. The search runs on a float64 copy in eval mode, so
        ``model`` itself is not touched (the copy costs the model's memory twice over).
    images
        ``(N, 3, H, W)`` points where the lower bound is searched.
    iterations, ascent_steps, step_size
        Power-iteration steps, ascent steps (0 skips the ascent) and the Adam step size.
    seed
        Seed of the random start vectors.

    Returns
    -------
    LipschitzEstimate
        ``lower ≤ L ≤ upper``.

    Examples
    --------
    >>> import torch
    >>> from spyglass.alignment import lipschitz_classifier, lipschitz_constant
    >>> model = lipschitz_classifier(3, input_size=(16, 16), widths=(4,), depth=1)
    >>> estimate = lipschitz_constant(model, torch.rand(2, 3, 16, 16), iterations=5, ascent_steps=0)
    >>> estimate.lower <= estimate.upper <= 1 + 1e-3
    True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    check_images(images)
    iterations = check_int(iterations, "iterations", 1)
    ascent_steps = check_int(ascent_steps, "ascent_steps", 0)
    step_size = _positive(step_size, "step_size")
    generator = torch.Generator().manual_seed(check_int(seed, "seed", 0))
    # A float64 copy: in float32 the rounding of f(x) - f(y) over a short distance can push a
    # ratio above the true constant, and a "lower bound" of 1.0009 for a 1-Lipschitz net.
    work = copy.deepcopy(model).double().eval()
    with torch.enable_grad():
        parameter = next(iter(work.parameters()), None)
        x = images.detach().double().to(parameter.device if parameter is not None else images.device)
        norms, direction = _jacobian_norms(work, x, iterations, generator)
        lower = float(norms.max())
        if ascent_steps:
            lower = max(lower, _ascent(work, x, direction, ascent_steps, step_size))
    del work
    upper, layers, unbounded = _upper_bound(model)
    return LipschitzEstimate(lower, upper, norms.cpu(), layers, unbounded)


def _ascent(model: nn.Module, x: Tensor, direction: Tensor, steps: int, step_size: float) -> float:
    a = x.clone().requires_grad_(True)
    b = (x + 1e-3 * direction).requires_grad_(True)
    optimizer = torch.optim.Adam([a, b], lr=step_size)
    best = 0.0
    for _ in range(steps + 1):
        distance = (a - b).flatten(1).norm(dim=1)
        change = (model(a) - model(b)).flatten(1).norm(dim=1)
        ratio = change / distance.clamp_min(1e-12)
        valid = distance > 1e-9  # below that, even float64 rounding of f(a) - f(b) matters
        if bool(valid.any()):
            best = max(best, float(ratio[valid].max().detach()))
        optimizer.zero_grad()
        (-ratio.sum()).backward()
        optimizer.step()
    return best


# --------------------------------------------------------------------------------------------
# Training


def alpha_from_lambda(lam: float) -> float:
    r"""torchlip's ``alpha`` for the paper's hinge weight :math:`\lambda`: :math:`\lambda/(1+\lambda)`.

    The paper writes hKR as :math:`\mathcal{L}_{KR} + \lambda\,\mathcal{L}_{hinge}`; torchlip
    1.x as the convex mix :math:`\alpha\,\mathcal{L}_{hinge} + (1-\alpha)\,\mathcal{L}_{KR}`,
    the paper's loss divided by :math:`1+\lambda`. The ImageNet OTNN's :math:`\lambda = 500`
    is :math:`\alpha = 500/501`.

    >>> round(alpha_from_lambda(500), 4)
    0.998
    """
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam >= 0 or math.isinf(lam):
        raise ValueError(f"lambda must be a finite number ≥ 0; got {lam!r}")
    return float(lam) / (1.0 + float(lam))


def hkr_loss(
    num_classes: int,
    *,
    alpha: float = 0.9,
    min_margin: float = 1.0,
    temperature: float = 1.0,
) -> Callable[[Tensor, Tensor], Tensor]:
    """``loss(logits, labels)``: torchlip's soft multiclass hKR (or binary hKR for one output).

    ``labels`` are class indices (binary: 0 or 1). ``alpha`` in ``[0, 1]`` is torchlip's
    convex mix (see :func:`alpha_from_lambda`); ``min_margin`` the hinge margin;
    ``temperature`` the softmax temperature over the other classes (torchlip multiplies it
    by ``min_margin``). The multiclass loss keeps a running mean of ``|logits|``.
    """
    num_classes = check_int(num_classes, "num_classes", 1)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(
            f"alpha must be a number in [0, 1], torchlip's hinge/KR mix; got {alpha!r} (for the "
            "paper's hinge weight lambda, pass alpha_from_lambda(lambda))"
        )
    min_margin = _positive(min_margin, "min_margin")
    temperature = _positive(temperature, "temperature")
    if num_classes == 1:
        binary = HKRLoss(alpha=float(alpha), min_margin=float(min_margin))

        def loss_binary(logits: Tensor, labels: Tensor) -> Tensor:
            return binary(logits, (2.0 * labels.to(logits.dtype) - 1.0).view(-1, 1))

        return loss_binary
    multiclass = SoftHKRMulticlassLoss(
        alpha=float(alpha), min_margin=float(min_margin), temperature=float(temperature)
    )

    def loss_multiclass(logits: Tensor, labels: Tensor) -> Tensor:
        return multiclass(logits, F.one_hot(labels.long(), num_classes).to(logits.dtype))

    return loss_multiclass


def train_lipschitz(
    model: VisionModel,
    data: Dataset[Any],
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    alpha: float = 0.9,
    min_margin: float = 1.0,
    temperature: float = 1.0,
    batch_size: int = 32,
    seed: int = 0,
    max_steps: int | None = None,
    validate: Validate | None = None,
    checkpoint: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainingHistory:
    """Train a 1-Lipschitz classifier with hKR and Adam on :func:`spyglass.training.train`.

    ``data`` yields ``(image, label)`` with images in ``[0, 1]`` at the model's input size.
    The defaults are torchlip's (``alpha`` 0.9, i.e. the paper's λ = 9; margin 1;
    temperature 1); the paper's ImageNet run used λ = 500 (``alpha = 500/501``), margin 0.05.
    The constraint holds by construction, so the trained model stays 1-Lipschitz. The loss's
    running mean of ``|logits|`` is not part of a checkpoint: a resumed run restarts it.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from spyglass.alignment import lipschitz_classifier, train_lipschitz
    >>> model = lipschitz_classifier(2, input_size=(16, 16), widths=(4,), depth=1)
    >>> data = TensorDataset(torch.rand(8, 3, 16, 16), torch.tensor([0, 1] * 4))
    >>> train_lipschitz(model, data, epochs=1, batch_size=4, progress=False).steps
    2
    """
    if not isinstance(model, VisionModel):
        raise TypeError(
            f"model must be a VisionModel (from lipschitz_classifier); got {type(model).__name__}"
        )
    criterion = hkr_loss(model.num_classes, alpha=alpha, min_margin=min_margin, temperature=temperature)
    num_classes = model.num_classes

    def loss(network: nn.Module, batch: Any) -> Tensor:
        images, labels = batch[0], batch[1]
        if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.is_complex():
            raise TypeError(
                f"the dataset's labels must be integer class indices; got "
                f"{labels.dtype if isinstance(labels, Tensor) else type(labels).__name__}"
            )
        if labels.min() < 0 or labels.max() >= max(num_classes, 2):
            raise ValueError(
                f"labels must be class indices in [0, {max(num_classes, 2) - 1}]; got values "
                f"{int(labels.min())}..{int(labels.max())}"
            )
        return criterion(network(images), labels)

    optimizer = torch.optim.Adam(model.parameters(), lr=_positive(lr, "lr"))
    return train(
        model,
        data,
        loss,
        optimizer,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        seed=seed,
        validate=validate,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        desc="hKR",
    )


# --------------------------------------------------------------------------------------------
# Export


def export_lipschitz(model: VisionModel) -> VisionModel:
    """A copy of ``model`` with plain ``Conv2d``/``Linear``/``LPPool2d`` layers (weights baked in).

    torchlip's ``vanilla_model`` replaces each spectral layer by a torch layer holding its
    re-parametrised weight: no power iteration, no Björck at inference, the same outputs.
    ``GroupSort2`` stays torchlip's (so loading still needs ``deel-torchlip``). The builder
    uses no ``BatchCentering``, so torchlip 1.0.5's failing copy of that layer is never met;
    the export works on a deep copy, converted in place, and ``model`` is left as found.

    Examples
    --------
    >>> import torch
    >>> from spyglass.alignment import export_lipschitz, lipschitz_classifier
    >>> model = lipschitz_classifier(2, input_size=(16, 16), widths=(4,), depth=1)
    >>> plain = export_lipschitz(model)
    >>> x = torch.rand(1, 3, 16, 16)
    >>> bool(torch.allclose(model(x), plain(x)))
    True
    """
    if not isinstance(model, VisionModel):
        raise TypeError(f"model must be a VisionModel; got {type(model).__name__}")
    exported = copy.deepcopy(model)
    exported.network = vanilla_model(exported.network, in_place=True)
    spec = getattr(model, "spec", None)
    if isinstance(spec, dict):
        exported.spec = {**copy.deepcopy(spec), "exported": True}  # type: ignore[assignment]
    return exported.train(model.training)
