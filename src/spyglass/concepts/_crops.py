"""CRAFT's crops: square patches on a grid over each image, fed to the model at its input size.

CRAFT (Fel et al., CVPR 2023) learns its concepts from the activations of image *parts*:
each image is cut into ``patch_size`` squares on a regular grid, each square is resized
to the model's input size (bilinear), and the model's activations of the square, averaged
over space, make one row of the matrix that the dictionary factorises. The crops are
built batch by batch (:class:`CropSource` is an :class:`~spyglass.engines.InputSource`),
so that memory stays bounded by the batch size and not by the number of crops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["CropSource", "crop_grid", "cut_crops", "resize"]


def _starts(size: int, patch_size: int, stride: int) -> list[int]:
    return list(range(0, size - patch_size + 1, stride))


def crop_grid(n_images: int, height: int, width: int, patch_size: int, stride: int) -> Tensor:
    """Boxes ``(n_crops, 3)`` long: ``(image, top, left)`` of every crop, image by image, row-major.

    Raises
    ------
    ValueError
        If ``patch_size`` exceeds the height or width of the images.
    """
    if patch_size > min(height, width):
        raise ValueError(
            f"patch_size={patch_size} does not fit in images of {height} x {width} px; use a patch_size "
            f"of at most {min(height, width)}"
        )
    tops, lefts = _starts(height, patch_size, stride), _starts(width, patch_size, stride)
    image = torch.arange(n_images).repeat_interleave(len(tops) * len(lefts))
    top = torch.tensor(tops).repeat_interleave(len(lefts)).repeat(n_images)
    left = torch.tensor(lefts).repeat(len(tops) * n_images)
    return torch.stack([image, top, left], dim=1)


def cut_crops(images: Tensor, boxes: Tensor, patch_size: int) -> Tensor:
    """The crops ``(len(boxes), 3, patch_size, patch_size)`` of ``images`` at ``boxes``, not resized."""
    rows = torch.arange(patch_size, device=images.device)
    image = boxes[:, 0].to(images.device)
    ys = (boxes[:, 1].to(images.device)[:, None] + rows)[:, :, None]  # (n, p, 1)
    xs = (boxes[:, 2].to(images.device)[:, None] + rows)[:, None, :]  # (n, 1, p)
    # Advanced indexing on (N, H, W, 3) gathers every crop at once: (n, p, p, 3).
    pixels = images.permute(0, 2, 3, 1)[image[:, None, None], ys, xs]
    return pixels.permute(0, 3, 1, 2).contiguous()


def resize(crops: Tensor, size: tuple[int, int]) -> Tensor:
    """Crops resized to ``size`` (bilinear), as the model sees them; a no-op at that size already."""
    if tuple(crops.shape[-2:]) == size:
        return crops
    return F.interpolate(crops, size=size, mode="bilinear", align_corners=False).clamp_(0.0, 1.0)


class CropSource:
    """Rows are the crops at ``boxes`` of ``images``, resized to ``size``, built on demand."""

    def __init__(self, images: Tensor, boxes: Tensor, patch_size: int, size: tuple[int, int]) -> None:
        self.images, self.boxes, self.patch_size, self.size = images, boxes, patch_size, size

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def __getitem__(self, rows: slice) -> Tensor:
        return resize(cut_crops(self.images, self.boxes[rows], self.patch_size), self.size)
