"""The colour a "removed" pixel becomes: the model's own neutral colour, or the user's.

Black-box attributions (occlusion, RISE, HSIC, LIME, KernelSHAP) and the fidelity
metrics' baselines replace pixels by a constant. The default is the colour the model
treats as neutral: the normalisation mean of a :class:`~spyglass.models.VisionModel`
(what a zero in the network's input space means; the reference implementations fill
zeros there), and mid-grey (0.5) for a plain module that has no mean. Values are in
image space, ``[0, 1]``, never normalised.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["check_fill", "default_fill"]


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
