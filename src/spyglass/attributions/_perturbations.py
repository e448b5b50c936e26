"""How black-box attribution methods turn a user's option into a :data:`Perturbation`.

HSIC, LIME and KernelSHAP all "remove" parts of the image. What a removed pixel becomes
is a choice of the method's user; the default is the colour the model itself treats as
neutral, the normalisation mean of a :class:`~spyglass.models.VisionModel` (what a
zero in the network's input space means; the reference implementations fill zeros there),
and mid-grey (0.5) for a plain module that has no mean (:mod:`spyglass.engines.fill`,
shared with the fidelity metrics' baselines).
"""

from __future__ import annotations

from torch import nn

from spyglass.engines.fill import check_fill, default_fill
from spyglass.engines.perturbation import Perturbation, blurring, inpainting

__all__ = ["PERTURBATIONS", "check_fill", "default_fill", "resolve_perturbation"]

PERTURBATIONS: tuple[str, ...] = ("inpainting", "blurring")
"""Names accepted for ``perturbation``: a constant fill (:func:`default_fill`) or a 10 px blur."""


def resolve_perturbation(perturbation: str | Perturbation, model: nn.Module) -> Perturbation:
    """``"inpainting"`` (fill with :func:`default_fill`), ``"blurring"`` (σ = 10 px), or a callable as is."""
    if isinstance(perturbation, str):
        if perturbation == "inpainting":
            return inpainting(default_fill(model))
        if perturbation == "blurring":
            return blurring()
    elif callable(perturbation):
        return perturbation
    raise ValueError(
        f"perturbation must be one of {', '.join(map(repr, PERTURBATIONS))} or a callable "
        f"(image (3, H, W), masks (B, 1, H, W)) -> (B, 3, H, W); got {perturbation!r}"
    )
