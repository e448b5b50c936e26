"""How black-box attribution methods turn a user's option into a :data:`Perturbation`.

HSIC, LIME and KernelSHAP all "remove" parts of the image. What a removed pixel becomes
is a choice of the method's user; the default is the colour the model itself treats as
neutral, the normalisation mean of a :class:`~spyglass.models.VisionModel` (what a
zero in the network's input space means; the reference implementations fill zeros there),
and mid-grey (0.5) for a plain module that has no mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from spyglass.engines.perturbation import Perturbation, blurring, inpainting

__all__ = ["PERTURBATIONS", "check_fill", "default_fill", "resolve_perturbation"]

PERTURBATIONS: tuple[str, ...] = ("inpainting", "blurring")
"""Names accepted for ``perturbation``: a constant fill (:func:`default_fill`) or a 10 px blur."""


def default_fill(model: nn.Module) -> Tensor:
    """The model's normalisation mean ``(3,)`` when it has one, else mid-grey ``0.5``."""
    mean = getattr(model, "mean", None)
    if isinstance(mean, Tensor) and mean.numel() == 3:
        return mean.detach().flatten().to("cpu", torch.float32)
    return torch.tensor(0.5)


def check_fill(value: float | Sequence[float] | Tensor | None, model: nn.Module) -> Tensor:
    """Return ``value`` as a float tensor of 1 or 3 values in [0, 1]; ``None`` gives :func:`default_fill`."""
    if value is None:
        return default_fill(model)
    expected = "value must be None, a float in [0, 1] or 3 floats in [0, 1] (one per RGB channel)"
    if isinstance(value, bool):
        raise ValueError(f"{expected}; got {value!r}")
    try:
        fill = torch.as_tensor(value, dtype=torch.float32).detach().to("cpu")
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{expected}; got {value!r}") from None
    if fill.numel() not in (1, 3) or fill.dim() > 1:
        raise ValueError(f"{expected}; got shape {tuple(fill.shape)}")
    if not bool(torch.isfinite(fill).all()) or float(fill.min()) < 0.0 or float(fill.max()) > 1.0:
        raise ValueError(f"{expected} (image space, not normalised); got {fill.tolist()}")
    return fill.reshape(-1) if fill.numel() == 3 else fill.reshape(())


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
