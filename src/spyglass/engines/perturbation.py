"""The perturbation engine: masks → perturbed images → model scores, streamed in batches.

Occlusion, RISE, Sobol, HSIC, LIME and KernelSHAP (and later the fidelity metrics and
concept importance) all draw masks, apply a perturbation to an image under each mask,
run the model and reduce the scores with an estimator. This module does the middle part
once, for all of them:

- a method describes its masks as an :class:`~spyglass.engines.InputSource` (a length
  and a way to build any slice of rows), usually small low-resolution grids that
  :class:`UpsampledMasks` resizes one batch at a time;
- :func:`perturbation_scores` builds the perturbed images of *all* images × masks as one
  flat stream, cuts it into batches of ``batch_size`` (a batch may span two images, so no
  forward pass is wasted on a half-empty batch), and returns the ``(N, M)`` scores.

Memory is bounded by ``batch_size`` and the mask resolution, never by the number of
masks; the cost is ``N × M`` forward passes and little else.

Masks follow one convention everywhere: values in [0, 1], **1 keeps the pixel, 0
perturbs it fully**. A :data:`Perturbation` turns one image and a batch of masks into a
batch of perturbed images; :func:`inpainting`, :func:`blurring` and :func:`amplitude` are
the three of Fel et al. (2021).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spyglass.engines.forward import batched_forward
from spyglass.engines.grid import upsample_cells
from spyglass.engines.sources import InputSource
from spyglass.objectives import Objective, target_logit
from spyglass.validation import check_finite_tensor, check_positive_float, check_probability, check_scores

__all__ = [
    "Perturbation",
    "PerturbedImages",
    "UpsampledMasks",
    "amplitude",
    "blurring",
    "inpainting",
    "perturbation_scores",
]

Perturbation = Callable[[Tensor, Tensor], Tensor]
"""``perturbation(image (3, H, W), masks (B, 1, H, W)) -> (B, 3, H, W)``; mask 1 keeps a pixel."""

MaskSpec = InputSource | Callable[[int], InputSource]


def inpainting(value: float | Tensor = 0.0) -> Perturbation:
    r"""Replace masked-out pixels by a constant: :math:`x \odot M + (1 - M)\, v`.

    ``value`` is a float or a per-channel ``(3,)`` tensor in image space ([0, 1]).
    """
    if isinstance(value, Tensor):
        fill = check_finite_tensor(value, "inpainting value", minimum=0.0, maximum=1.0, hint="image space")
        fill = fill.detach().to(torch.float32)
    else:
        fill = torch.tensor(check_probability(value, "inpainting value"), dtype=torch.float32)
    if fill.dim() not in (0, 1) or (fill.dim() == 1 and fill.numel() not in (1, 3)):
        raise ValueError(f"inpainting value must be a float or a (3,) tensor; got shape {tuple(fill.shape)}")

    def perturb(image: Tensor, masks: Tensor) -> Tensor:
        baseline = fill.to(image.device, image.dtype).reshape(-1, 1, 1).expand_as(image)
        # baseline + M (x - baseline): one fused pass over the batch instead of four.
        return torch.addcmul(baseline, masks, image - baseline)

    return perturb


def gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    """Blur ``(..., C, H, W)`` with a separable Gaussian of standard deviation ``sigma`` pixels.

    Reflect padding keeps the borders from darkening; the kernel is cut at 3σ (and at the
    image size, which reflect padding cannot exceed).
    """
    if sigma <= 0:
        return image
    height, width = image.shape[-2:]
    radius = min(math.ceil(3 * sigma), height - 1, width - 1)
    offsets = torch.arange(-radius, radius + 1, device=image.device, dtype=image.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    shape = image.shape
    flat = image.reshape(-1, 1, height, width)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel.view(1, 1, 1, -1))
    flat = F.conv2d(flat, kernel.view(1, 1, -1, 1))
    return flat.reshape(shape)


def blurring(sigma: float = 10.0) -> Perturbation:
    r"""Replace masked-out pixels by a blurred copy: :math:`x \odot M + (1 - M)\,(x * g_\sigma)`."""
    sigma = check_positive_float(sigma, "blurring sigma", hint="pixels")

    def perturb(image: Tensor, masks: Tensor) -> Tensor:
        blurred = gaussian_blur(image, sigma)  # one image per batch: negligible beside the forward pass
        return torch.addcmul(blurred, masks, image - blurred)

    return perturb


def amplitude(sigma: float = 2.0) -> Perturbation:
    r"""Scale each region's amplitude: :math:`x \odot (M - \tfrac12)\,\sigma`.

    With ``sigma = 2`` a mask value of 1 keeps the pixel, 0.5 blacks it out and 0 negates it
    (the amplitude variation of Fel et al. 2021).
    """
    sigma = check_positive_float(sigma, "amplitude sigma")

    def perturb(image: Tensor, masks: Tensor) -> Tensor:
        return image * (masks - 0.5) * sigma

    return perturb


class UpsampledMasks:
    """Low-resolution masks ``(M, h, w)`` served at ``size`` one batch at a time, as ``(B, 1, H, W)``.

    ``mode`` is ``"nearest"`` (sharp cells, as Sobol, HSIC and MuFidelity use: the exact
    integer rule of :func:`~spyglass.engines.grid.upsample_cells`, so a grid's cells are
    those of :func:`~spyglass.engines.grid.cell_of_pixel`) or any other
    :func:`torch.nn.functional.interpolate` mode (RISE uses ``"bilinear"``).
    """

    def __init__(self, masks: Tensor, size: tuple[int, int], *, mode: str = "nearest") -> None:
        if masks.dim() != 3:
            raise ValueError(f"masks must have shape (M, h, w); got {tuple(masks.shape)}")
        self.masks = masks
        self.size = size
        self.mode = mode

    def __len__(self) -> int:
        return self.masks.shape[0]

    def __getitem__(self, rows: slice) -> Tensor:
        low = self.masks[rows].unsqueeze(1).to(torch.float32)
        if tuple(low.shape[-2:]) == self.size:
            return low
        if self.mode == "nearest":
            return upsample_cells(low, self.size)
        align = {"align_corners": False} if self.mode in ("bilinear", "bicubic") else {}
        return F.interpolate(low, size=self.size, mode=self.mode, **align)


class PerturbedImages:
    """Every image perturbed under every mask, as one flat :class:`InputSource` of ``N × M`` rows.

    Row ``r`` is image ``r // M`` under its mask ``r % M``. ``masks`` is either one source
    shared by all images or a function ``i -> source`` (e.g. superpixels of image ``i``);
    every image must have the same number of masks ``M``.
    """

    def __init__(self, images: Tensor, masks: MaskSpec, perturbation: Perturbation) -> None:
        self.images = images
        # A source is indexed, a per-image spec is called (a tensor is not callable).
        self._shared: InputSource | None = None
        self._per_image: Callable[[int], InputSource] | None = None
        if callable(masks):
            self._per_image = masks
        else:
            self._shared = masks
        self._cache: tuple[int, InputSource] | None = None
        self.perturbation = perturbation
        self.nb_masks = len(self.masks_of(0))

    def masks_of(self, index: int) -> InputSource:
        if self._shared is not None:
            return self._shared
        assert self._per_image is not None  # one of the two is set in __init__
        if self._cache is None or self._cache[0] != index:
            source = self._per_image(index)
            self._cache = (index, source)
        return self._cache[1]

    def __len__(self) -> int:
        return self.images.shape[0] * self.nb_masks

    def __getitem__(self, rows: slice) -> Tensor:
        start, stop, _ = rows.indices(len(self))
        parts = []
        position = start
        while position < stop:
            index, first = divmod(position, self.nb_masks)
            last = min(self.nb_masks, first + stop - position)
            source = self.masks_of(index)
            if len(source) != self.nb_masks:
                raise ValueError(
                    f"every image needs the same number of masks; image 0 has {self.nb_masks}, "
                    f"image {index} has {len(source)}"
                )
            image = self.images[index]
            masks = source[first:last].to(image.device, image.dtype)
            perturbed = self.perturbation(image, masks)
            expected = (last - first, *image.shape)
            if tuple(perturbed.shape) != expected:
                raise ValueError(
                    f"the perturbation returned shape {tuple(perturbed.shape)}; expected {expected} "
                    "(one perturbed image per mask)"
                )
            parts.append(perturbed)
            position += last - first
        return torch.cat(parts)


def perturbation_scores(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    masks: MaskSpec,
    *,
    perturbation: Perturbation,
    objective: Objective = target_logit,
    batch_size: int = 32,
    progress: bool = True,
    desc: str = "perturbations",
) -> Tensor:
    """The objective's score on every image under every mask: ``(N, M)``.

    Parameters
    ----------
    model
        The classifier; it runs in eval mode without gradient, and is left as found.
    images
        ``(N, 3, H, W)`` checked images.
    targets
        ``(N,)`` class indices; image ``i``'s scores are all for ``targets[i]``.
    masks
        A source of ``(M, 1, H, W)`` masks shared by all images (e.g.
        :class:`UpsampledMasks`), or a function ``i -> source`` for per-image masks.
    perturbation
        How a mask perturbs an image (:func:`inpainting`, :func:`blurring`,
        :func:`amplitude` or any :data:`Perturbation`).
    objective, batch_size, progress, desc
        As in :func:`~spyglass.engines.batched_forward`.

    Examples
    --------
    >>> import torch
    >>> from spyglass import models
    >>> from spyglass.engines.perturbation import UpsampledMasks, inpainting, perturbation_scores
    >>> model = models.load()
    >>> grid = torch.eye(4).view(4, 2, 2)  # hide one quarter of the image at a time
    >>> masks = UpsampledMasks(1 - grid, (224, 224))
    >>> scores = perturbation_scores(model, torch.rand(2, 3, 224, 224), torch.tensor([1, 2]),
    ...                              masks, perturbation=inpainting(0.5))
    >>> scores.shape
    torch.Size([2, 4])
    """
    source = PerturbedImages(images, masks, perturbation)
    nb_masks = source.nb_masks
    flat_targets = targets.repeat_interleave(nb_masks)

    def score(net: nn.Module, batch: Tensor, rows: slice) -> Tensor:
        y = flat_targets[rows].to(batch.device)
        return check_scores(objective(net, batch, y), batch.shape[0], objective)

    scores = batched_forward(model, source, batch_size=batch_size, progress=progress, fn=score, desc=desc)
    return scores.reshape(images.shape[0], nb_masks)
