"""Attribution methods: *where* the model looks.

Every method is called as ``method(images, targets) -> maps`` with images
``(N, 3, H, W)`` in [0, 1], targets an int or ``(N,)`` ints, and maps ``(N, H, W)``
float32 at input resolution. Build one by class or by registered name:

>>> from spyglass import attributions, models
>>> model = models.load()
>>> method = attributions.create("integrated_gradients", model, steps=32)
>>> "saliency" in attributions.list_methods()
True
"""

from spyglass.attributions._base import KINDS, SETTINGS_LEVELS, Attribution, levels
from spyglass.attributions._registry import create, list_methods, method_class, method_settings, register
from spyglass.attributions.eva import EVA
from spyglass.attributions.gradcam import GradCAM, GradCAMPlusPlus
from spyglass.attributions.gradient_input import GradientInput
from spyglass.attributions.guided import DeconvNet, GuidedBackprop
from spyglass.attributions.hsic import HsicAttribution
from spyglass.attributions.integrated_gradients import IntegratedGradients
from spyglass.attributions.kernel_shap import KernelShap
from spyglass.attributions.lime import Lime
from spyglass.attributions.occlusion import Occlusion
from spyglass.attributions.rise import RISE
from spyglass.attributions.saliency import Saliency
from spyglass.attributions.smoothgrad import NoiseTunnel, SmoothGrad, SquareGrad, VarGrad
from spyglass.attributions.sobol import SobolAttribution

__all__ = [
    "EVA",
    "KINDS",
    "RISE",
    "SETTINGS_LEVELS",
    "Attribution",
    "DeconvNet",
    "GradCAM",
    "GradCAMPlusPlus",
    "GradientInput",
    "GuidedBackprop",
    "HsicAttribution",
    "IntegratedGradients",
    "KernelShap",
    "Lime",
    "NoiseTunnel",
    "Occlusion",
    "Saliency",
    "SmoothGrad",
    "SobolAttribution",
    "SquareGrad",
    "VarGrad",
    "create",
    "levels",
    "list_methods",
    "method_class",
    "method_settings",
    "register",
]
