"""Grad-CAM and Grad-CAM++: class activation maps weighted by the gradient at a layer.

Both cut the model ``f = h ∘ g`` at a convolutional layer with
:func:`spyglass.models.split`, compute the activations ``A = g(x)`` and the gradient of
the objective through ``h`` with the shared batched-gradient engine, weigh each channel
of ``A``, keep the positive part of the weighted sum, and resample it to the input size.
The two methods differ only in the channel weights. A layer that outputs tokens
``(N, t + h·w, C)`` (a ViT) or an ``(N, h, w, C)`` grid is read as the ``(N, C, h, w)`` map
of :class:`~spyglass.models.FeatureLayout`: the gradient is taken at the layer's own tensor,
and both it and the activations are read on the grid, the class/register tokens set aside.

We write them ourselves rather than wrap Captum: the method is what spyglass is about,
it must follow the library's conventions (pixel-space images, swappable objectives,
``batch_size`` as the memory bound, the model left as found), and Grad-CAM++ is not in
Captum at all. Captum is a test-only peer that our tests compare against.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spyglass.attributions._base import Attribution
from spyglass.attributions._registry import register
from spyglass.engines.forward import model_device
from spyglass.engines.gradients import iter_gradients
from spyglass.engines.state import eval_mode
from spyglass.models.feature_maps import FeatureLayout, default_layer, feature_layout, layer_layouts
from spyglass.models.layers import get_layer
from spyglass.models.probing import probe_layers
from spyglass.models.split import split
from spyglass.objectives import Objective, target_logit

__all__ = ["GradCAM", "GradCAMPlusPlus", "default_cam_layer"]


def default_cam_layer(model: nn.Module) -> str:
    """The layer Grad-CAM uses by default: :func:`spyglass.models.default_layer`'s rule.

    The last layer whose output reads as a feature map (a convolutional map, a ViT's token
    sequence, a channels-last grid), whose grid positions feed the logits, and at which
    :func:`~spyglass.models.split` cuts the model: ``bn2`` for EfficientNet-Lite0 (the batch
    norm and ReLU6 after ``conv_head``, 1280 × 7 × 7 at 224 px), ``layer4`` for a torchvision
    ResNet, ``stages`` for a timm ConvNeXt, the second-to-last block of a class-token ViT.

    Examples
    --------
    >>> from spyglass import models
    >>> from spyglass.attributions.gradcam import default_cam_layer
    >>> default_cam_layer(models.load())
    'bn2'
    """
    return default_layer(model)


def _suggest(maps: dict[str, FeatureLayout]) -> str:
    last = list(maps)[-1:]
    return f", e.g. layer={last[0]!r}" if last else ""


class _LayerActivations:
    """Row ``r`` is ``g(images[r])``, computed without gradient; the latest batch is kept.

    :func:`iter_gradients` differentiates the objective with respect to the rows it asks
    for; the CAM also needs those same activations, so the source keeps the last batch
    it built instead of running ``g`` twice.
    """

    def __init__(self, bottom: nn.Module, images: Tensor, device: torch.device) -> None:
        self.bottom, self.images, self.device = bottom, images, device
        self.latest = torch.empty(0)
        self.layout: FeatureLayout | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, rows: slice) -> Tensor:
        with torch.no_grad():
            activations = self.bottom(self.images[rows].to(self.device))
        if not isinstance(activations, Tensor):
            raise ValueError(f"the layer must output one tensor; got {type(activations).__name__}")
        size = (int(self.images.shape[2]), int(self.images.shape[3]))
        layout = feature_layout(tuple(activations.shape[1:]), size)
        if layout is None:
            raise ValueError(
                f"the layer outputs {tuple(activations.shape)} on images of {size[0]}×{size[1]} pixels: not "
                "a feature map (C, h, w) with h, w > 1, a token grid or an (h, w, C) grid, so the map would "
                "say nothing about where; pass larger images or choose an earlier layer"
            )
        self.layout = layout
        self.latest = activations
        return activations


class _GradientWeightedCAM(Attribution):
    """Shared body of Grad-CAM and Grad-CAM++: only :meth:`channel_weights` differs."""

    kind = "cam"

    desc: ClassVar[str]

    def __init__(
        self,
        model: nn.Module,
        *,
        layer: str | None = None,
        objective: Objective = target_logit,
        batch_size: int = 32,
        progress: bool = True,
    ) -> None:
        super().__init__(model, objective=objective, batch_size=batch_size, progress=progress)
        if layer is not None and not isinstance(layer, str):
            raise TypeError(f"layer must be a layer name (str) or None; got {type(layer).__name__}")
        # One forward pass tells every layer's output shape: far cheaper than list_layers,
        # which traces the model once per layer.
        if layer is None:
            self.layer = default_layer(model)  # checked by a split that succeeded
            return
        shapes = probe_layers(model)
        maps = layer_layouts(model)
        try:
            get_layer(model, layer)
        except ValueError as error:
            raise ValueError(
                f"{error} Its last feature maps are {', '.join(list(maps)[-4:]) or '(none)'}."
            ) from None
        if layer not in shapes:
            raise ValueError(
                f"layer {layer!r} does not run in the forward pass, or does not return one tensor"
            )
        if len(shapes[layer]) not in (2, 3):
            raise ValueError(
                f"layer {layer!r} outputs shape {shapes[layer]} per image; {type(self).__name__} needs a "
                f"feature map (C, h, w), a token sequence or an (h, w, C) grid{_suggest(maps)}"
            )
        if layer not in maps:
            # Refused rather than warned: a 1×1 map upsampled is one constant value per image,
            # a "map" that says nothing about where, and looks like a method that failed.
            raise ValueError(
                f"layer {layer!r} outputs {shapes[layer]} per image at the model's input size: no grid "
                f"with h, w > 1; {type(self).__name__} needs one to localise anything (a pooled layer has "
                f"none){_suggest(maps)}"
            )
        split(model, layer)  # fail now, not at the first call, if the model cannot be cut there
        self.layer = layer

    @staticmethod
    @abstractmethod
    def channel_weights(activations: Tensor, gradients: Tensor) -> Tensor:
        """``(B, C)`` channel weights from ``A`` and ``∂score/∂A``, both ``(B, C, h, w)``."""

    def explain(self, images: Tensor, targets: Tensor) -> Tensor:
        # Split again at every call (a trace, no forward pass): g and h hold their own
        # references to the model's buffers, which go stale if the model is moved or cast.
        bottom, top = split(self.model, self.layer, check=False)
        source = _LayerActivations(bottom, images, model_device(self.model))
        maps = torch.empty(images.shape[0], *images.shape[2:], dtype=torch.float32, device=images.device)
        # g's modules are not all in h: restore the whole model's flags, not only h's.
        with eval_mode(self.model):
            for rows, gradients, _ in iter_gradients(
                top,
                source,
                targets,
                objective=self.objective,
                batch_size=self.batch_size,
                progress=self.progress,
                desc=self.desc,
            ):
                layout = source.layout  # the batch these gradients are of, read as (B, C, h, w)
                assert layout is not None
                activations = layout.to_grid(source.latest)
                gradients = layout.to_grid(gradients)
                weights = self.channel_weights(activations, gradients)
                cam = torch.relu(torch.einsum("bc,bchw->bhw", weights, activations))
                upsampled = F.interpolate(
                    cam[:, None], size=images.shape[2:], mode="bilinear", align_corners=False
                )
                maps[rows] = upsampled[:, 0].to(maps.device, torch.float32)
        return maps

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layer={self.layer!r}, batch_size={self.batch_size})"


@register("gradcam")
class GradCAM(_GradientWeightedCAM):
    r"""Grad-CAM: the layer's channels weighted by their spatially averaged gradient.

    Selvaraju, Cogswell, Das, Vedantam, Parikh & Batra, "Grad-CAM: Visual Explanations
    from Deep Networks via Gradient-based Localization", ICCV 2017. With ``A = g(x)`` the
    activations ``(C, h, w)`` of the layer and ``S`` the objective:

    .. math:: \alpha_k = \frac{1}{hw} \sum_{ij} \frac{\partial S}{\partial A^k_{ij}}, \qquad
              \phi(x) = \operatorname{up}\Big(\operatorname{ReLU}\Big(\sum_k \alpha_k A^k\Big)\Big)

    ``up`` resamples the ``h × w`` map to the input size, bilinearly with
    ``align_corners=False`` (the ReLU comes first, as in the paper). The maps are the raw
    values, not normalised: they are in the units of ``S`` and comparable across images.
    On a network that ends in global average pooling and a linear layer, Grad-CAM at the
    last feature map is the CAM of Zhou et al. (2016) divided by ``hw``. Cost: one
    forward pass and one backward pass through ``h`` only, per image.

    Parameters
    ----------
    layer
        Name of the layer whose activations are weighed, relative to the network (see
        :func:`~spyglass.models.list_layers`); its output must be ``(C, h, w)``. Default:
        :func:`default_cam_layer`, the last convolutional feature map at which the model
        splits (``bn2`` on EfficientNet-Lite0). The resolved name is kept in ``self.layer``.
    objective
        What is explained. It is called as ``objective(h, A, targets)``: the top part ``h``
        of the split stands in for the model and the layer's activations ``A`` for the
        images. The built-in objectives, and any that only call ``model(images)``, work
        unchanged.
    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, models
    >>> cam = attributions.GradCAM(models.load())
    >>> cam.layer
    'bn2'
    >>> cam(torch.rand(2, 3, 224, 224), targets=[967, 281]).shape
    torch.Size([2, 224, 224])
    """

    desc = "grad-cam"

    @staticmethod
    def channel_weights(activations: Tensor, gradients: Tensor) -> Tensor:
        return gradients.mean(dim=(2, 3))


@register("gradcam_pp")
class GradCAMPlusPlus(_GradientWeightedCAM):
    r"""Grad-CAM++: channel weights that count every positive location, not their average.

    Chattopadhay, Sarkar, Howlader & Balasubramanian, "Grad-CAM++: Generalized
    Gradient-based Visual Explanations for Deep Convolutional Networks", WACV 2018. With
    ``g = ∂S/∂A`` the first gradient of the objective at the layer's activations ``A``:

    .. math:: a^k_{ij} = \frac{g_{kij}^2}{2 g_{kij}^2 + \sum_{ab} A^k_{ab} \, g_{kij}^3}, \qquad
              w_k = \sum_{ij} a^k_{ij} \operatorname{ReLU}(g_{kij}), \qquad
              \phi(x) = \operatorname{up}\Big(\operatorname{ReLU}\Big(\sum_k w_k A^k\Big)\Big)

    The paper explains ``exp(S)``: when ``h`` is piecewise linear (ReLU-type networks),
    the second and third derivatives of ``exp(S)`` are ``exp(S) g²`` and ``exp(S) g³``,
    so only the first gradient is needed, and the ``exp(S)`` of the coefficients cancels.
    The one ``exp(S)`` left in the weights scales each image's map by a positive constant:
    it is dropped, so the maps stay in the units of ``S`` (Grad-CAM's scale) and do not
    overflow for logits above ~88. Where the denominator vanishes, ``a = 0``. Resampling
    as :class:`GradCAM` (bilinear, ``align_corners=False``); raw, unnormalised values.
    Options as :class:`GradCAM`.
    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, models
    >>> maps = attributions.GradCAMPlusPlus(models.load())(torch.rand(1, 3, 224, 224), 967)
    >>> maps.shape
    torch.Size([1, 224, 224])
    """

    desc = "grad-cam++"

    @staticmethod
    def channel_weights(activations: Tensor, gradients: Tensor) -> Tensor:
        squared = gradients * gradients
        denominator = 2 * squared + activations.sum(dim=(2, 3), keepdim=True) * squared * gradients
        safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
        alphas = torch.where(denominator != 0, squared / safe, torch.zeros_like(squared))
        return (alphas * gradients.clamp_min(0)).sum(dim=(2, 3))
