"""The random views an optimised image is judged through: crops, rotations and noise.

A feature visualization is optimised so that the model responds to many random views of
it, not to one grid of pixels (Olah et al., Distill 2017; MACO, Fel, Boissin et al., 2023).
Each step draws a batch of square crops of random size and position, resizes them to
the model's input, optionally rotates them, and adds Gaussian noise. Every draw comes
from the caller's ``torch.Generator``, so the same seed gives the same views.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align

__all__ = ["random_crops"]


def random_crops(
    image: Tensor,
    nb_crops: int,
    *,
    crop_size: tuple[float, float],
    output_size: tuple[int, int],
    generator: torch.Generator,
    noise: float = 0.0,
    rotation: float = 0.0,
) -> Tensor:
    """``nb_crops`` random views of one image, ``(nb_crops, 3, *output_size)``.

    Each view is a square whose side is ``s · S`` with ``s ~ U(crop_size)`` and ``S`` the
    image side, placed uniformly at random wholly inside the image, resampled to
    ``output_size`` by area-averaging ROI-align (antialiased when it shrinks), turned by
    an angle ``~ U(-rotation, rotation)`` degrees when ``rotation > 0``, plus
    ``N(0, noise²)`` per pixel. Differentiable in ``image``.

    Examples
    --------
    >>> import torch
    >>> from spyglass.featureviz.transforms import random_crops
    >>> views = random_crops(torch.rand(3, 128, 128), 4, crop_size=(0.3, 0.5),
    ...                      output_size=(32, 32), generator=torch.Generator().manual_seed(0))
    >>> views.shape
    torch.Size([4, 3, 32, 32])
    """
    size = image.shape[-1]
    device = image.device
    low, high = crop_size
    sides = (low + (high - low) * torch.rand(nb_crops, generator=generator, device=generator.device)) * size
    corners = torch.rand(nb_crops, 2, generator=generator, device=generator.device) * (size - sides)[:, None]
    boxes = torch.cat(
        [torch.zeros(nb_crops, 1, device=generator.device), corners, corners + sides[:, None]], dim=1
    ).to(device=device, dtype=image.dtype)
    views = roi_align(image[None], boxes, output_size=output_size, sampling_ratio=-1, aligned=True)
    if rotation > 0:
        angles = (torch.rand(nb_crops, generator=generator, device=generator.device) * 2 - 1) * rotation
        radians = (angles * math.pi / 180).to(device=device, dtype=image.dtype)
        cos, sin = torch.cos(radians), torch.sin(radians)
        zero = torch.zeros_like(cos)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        grid = F.affine_grid(theta, list(views.shape), align_corners=False)
        views = F.grid_sample(views, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if noise > 0:
        views = views + noise * torch.randn(views.shape, generator=generator, device=generator.device).to(
            device=device, dtype=image.dtype
        )
    return views
